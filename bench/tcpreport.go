package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// Print writes the real-path report for people.
func (r TCPReport) Print(w io.Writer) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }
	ref := r.Reference
	cpu := "n/a"
	if ref.CPU >= 0 {
		cpu = fmt.Sprintf("%.2f µs/move", perMove(ref.CPU, ref.Received))
	}
	fmt.Fprintf(w, "reference   %s forwarding the moves to one TCP subscriber (QoS 0): %d of %d moves received in %.2fs = %.0f moves/s, CPU %s\n",
		ref.Broker, ref.Received, ref.Sent, ref.Elapsed.Seconds(), ref.MovesPerSec(), cpu)
	paths := []*PathReport{&r.Embedded}
	if r.External != nil {
		paths = append(paths, r.External)
	}
	for _, p := range paths {
		name := "storeflow, embedded broker"
		if p != &r.Embedded {
			name = "storeflow on " + p.Broker
		}
		loads := []struct {
			what string
			l    LoadReport
		}{{"full speed", p.Full}, {fmt.Sprintf("paced at %.0f moves/s", p.Paced.Rate), p.Paced}}
		if p.Stalled {
			loads = loads[:1]
		}
		for _, load := range loads {
			l := load.l
			ingest := fmt.Sprintf("%.0f moves/s", l.MovesPerSec())
			if l.Ingest == 0 {
				ingest = fmt.Sprintf("STALLED: %d of %d moves accepted, then none for 5 s (the paced load skipped)", l.Accepted, l.Moves)
			}
			fmt.Fprintf(w, "%s, %s: %d visits, %d moves: ingest %s, %.0f coupons/s, CPU %.2f µs/move\n",
				name, load.what, l.Visits, l.Moves, ingest, l.CouponsPerSec(), perMove(l.CPU, l.Moves))
			fmt.Fprintf(w, "  coupons   published %d = delivered %d + counted last-hop drops %d + lost without a count %d; other coupon messages %d\n",
				l.Published, l.Delivered, l.LastHopDrops, l.Lost(), l.Unexpected)
			fmt.Fprintf(w, "  focus     %d detected, %d without a coupon %v (storeflow_focus_outcomes_total); events dropped by storeflow %d\n",
				l.Focus, l.FocusWithoutCoupon(), l.FocusNoCoupon, l.EventsDropped)
			fmt.Fprintf(w, "  latency   dwell-completing move sent → coupon at the phone: p50 %s  p99 %s  max %s\n",
				ms(l.LatencyP50), ms(l.LatencyP99), ms(l.LatencyMax))
		}
	}
	fmt.Fprintf(w, "ratio       storeflow embedded ingest / reference forwarding %.2f", r.Ratio(&r.Embedded))
	if r.External != nil {
		fmt.Fprintf(w, "; storeflow on %s / reference %.2f", r.External.Broker, r.Ratio(r.External))
	}
	fmt.Fprintln(w)
}

func perMove(d time.Duration, moves int) float64 {
	if moves == 0 {
		return 0
	}
	return float64(d) / float64(time.Microsecond) / float64(moves)
}

// JSON is the real-path report as one object, for machines; README lists
// the keys. The external_ keys are there only when that part ran.
func (r TCPReport) JSON() ([]byte, error) {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	ref := r.Reference
	var refCPU any // null: not measured
	if ref.CPU >= 0 {
		refCPU = perMove(ref.CPU, ref.Received)
	}
	out := map[string]any{
		"publishers":                  r.Publishers,
		"visits":                      r.Visits,
		"moves_per_visit":             r.Linger,
		"reference_broker":            ref.Broker,
		"reference_moves_sent":        ref.Sent,
		"reference_moves_received":    ref.Received,
		"reference_moves_per_s":       ref.MovesPerSec(),
		"reference_cpu_us_per_move":   refCPU,
		"ratio_embedded_to_reference": r.Ratio(&r.Embedded),
		"ratio_external_to_reference": nil,
		"external_broker":             nil,
	}
	add := func(prefix string, l LoadReport) {
		for k, v := range map[string]any{
			"moves":                         l.Moves,
			"moves_accepted":                l.Accepted,
			"target_moves_per_s":            l.Rate,
			"moves_per_s":                   l.MovesPerSec(),
			"coupons_per_s":                 l.CouponsPerSec(),
			"coupons_published":             l.Published,
			"coupons_delivered":             l.Delivered,
			"coupons_dropped":               l.LastHopDrops,
			"coupons_lost":                  l.Lost(),
			"coupons_other":                 l.Unexpected,
			"events_dropped":                l.EventsDropped,
			"focus_detected":                l.Focus,
			"focus_without_coupon":          l.FocusWithoutCoupon(),
			"focus_outcomes_without_coupon": l.FocusNoCoupon,
			"p50_move_to_coupon_ms":         ms(l.LatencyP50),
			"p99_move_to_coupon_ms":         ms(l.LatencyP99),
			"max_move_to_coupon_ms":         ms(l.LatencyMax),
			"cpu_us_per_move":               perMove(l.CPU, l.Moves),
		} {
			out[prefix+k] = v
		}
	}
	path := func(prefix string, p *PathReport) {
		out[prefix+"stalled"] = p.Stalled
		add(prefix+"full_", p.Full)
		if !p.Stalled {
			add(prefix+"paced_", p.Paced)
		}
	}
	path("embedded_", &r.Embedded)
	if r.External != nil {
		out["external_broker"] = r.External.Broker
		out["ratio_external_to_reference"] = r.Ratio(r.External)
		path("external_", r.External)
	}
	return json.Marshal(out)
}
