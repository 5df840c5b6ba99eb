package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/storeflow/storeflow/internal/modeltest"
	"github.com/storeflow/storeflow/internal/proctest"
)

// bench --tcp runs the real path: this test binary as the storeflow child
// (TestMain), sensors and a phone over TCP, and a real mosquitto the bench
// starts as the reference and as the outside broker. Its report must add
// up: every coupon published reached the phone or was counted as dropped,
// every visit got its coupon or a drop was counted, latencies are ordered.
func TestBenchTCP(t *testing.T) {
	proctest.FindTool(t, "mosquitto not found: install it with apt-get install -y mosquitto (see README)", "mosquitto", "/usr/sbin/mosquitto")
	t.Setenv("STOREFLOW_RUN_MAIN", "1") // the child is this binary run as storeflow
	t.Setenv("MODEL_FILE", modeltest.File(t))
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"bench", "--tcp", "--short", "--json"}, &out, &errOut); err != nil {
		t.Fatalf("bench --tcp: %v\n%s\n%s", err, out.String(), errOut.String())
	}
	t.Logf("bench --tcp:\n%s", out.String())
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var r map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
		t.Fatalf("last line is not JSON: %v", err)
	}
	num := func(key string) float64 {
		t.Helper()
		v, ok := r[key].(float64)
		if !ok {
			t.Fatalf("%s = %v, want a number", key, r[key])
		}
		return v
	}
	if r["reference_broker"] != "mosquitto" || r["external_broker"] != "mosquitto" {
		t.Errorf("reference %v, external %v: want the mosquitto the bench started", r["reference_broker"], r["external_broker"])
	}
	visits := num("visits")
	if visits != 2000 || num("publishers") != 2 {
		t.Errorf("--short ran %v visits over %v connections, want 2000 over 2", visits, r["publishers"])
	}
	if sent, got := num("reference_moves_sent"), num("reference_moves_received"); sent != visits*num("moves_per_visit") || got <= 0 || got > sent {
		t.Errorf("reference: %v of %v moves received", got, sent)
	}
	if num("reference_moves_per_s") <= 0 || num("reference_cpu_us_per_move") < 0 || num("ratio_embedded_to_reference") <= 0 {
		t.Errorf("reference %v moves/s, %v µs/move, ratio %v", r["reference_moves_per_s"], r["reference_cpu_us_per_move"], r["ratio_embedded_to_reference"])
	}
	load := func(p string) {
		t.Helper()
		if num(p+"moves_accepted") != num(p+"moves") || num(p+"moves_per_s") <= 0 || num(p+"coupons_per_s") <= 0 {
			t.Errorf("%s: %v of %v moves accepted, %v moves/s, %v coupons/s", p, r[p+"moves_accepted"], r[p+"moves"], r[p+"moves_per_s"], r[p+"coupons_per_s"])
		}
		published, delivered, dropped := num(p+"coupons_published"), num(p+"coupons_delivered"), num(p+"coupons_dropped")
		if published != delivered+dropped || num(p+"coupons_lost") != 0 {
			t.Errorf("%s: coupons published %v != delivered %v + counted drops %v", p, published, delivered, dropped)
		}
		// A focus without a coupon is counted with its outcome (already_issued:
		// a customer's many visits can use up their coupons of the day).
		if delivered+dropped+num(p+"focus_without_coupon")+num(p+"events_dropped") < visits {
			t.Errorf("%s: %v visits, %v coupons delivered, %v dropped, %v focus without a coupon, %v events dropped: some visits' coupons neither came nor were counted",
				p, visits, delivered, dropped, r[p+"focus_without_coupon"], r[p+"events_dropped"])
		}
		p50, p99, maxLat := num(p+"p50_move_to_coupon_ms"), num(p+"p99_move_to_coupon_ms"), num(p+"max_move_to_coupon_ms")
		if p50 <= 0 || p50 > p99 || p99 > maxLat {
			t.Errorf("%s: latency p50 %v, p99 %v, max %v ms: want 0 < p50 ≤ p99 ≤ max", p, p50, p99, maxLat)
		}
		if num(p+"cpu_us_per_move") < 0 {
			t.Errorf("%s: CPU %v µs/move", p, r[p+"cpu_us_per_move"])
		}
	}
	if r["embedded_stalled"] != false {
		t.Errorf("embedded_stalled = %v", r["embedded_stalled"])
	}
	load("embedded_full_")
	load("embedded_paced_")
	if num("embedded_paced_target_moves_per_s") != num("embedded_full_moves_per_s")/2 {
		t.Errorf("paced at %v moves/s, want half of %v", r["embedded_paced_target_moves_per_s"], r["embedded_full_moves_per_s"])
	}
	// On an external broker the load used to stall at full speed (paho's
	// acknowledgements of the pipeline's publishes waited behind the intake
	// handler on one connection): it must not.
	if r["external_stalled"] != false {
		t.Errorf("storeflow on mosquitto: external_stalled = %v (%v of %v moves accepted)", r["external_stalled"],
			r["external_full_moves_accepted"], r["external_full_moves"])
	}
	load("external_full_")
	load("external_paced_")
}
