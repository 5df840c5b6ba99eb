package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/storeflow/storeflow/app"
	"github.com/storeflow/storeflow/broker"
	"github.com/storeflow/storeflow/config"
	"github.com/storeflow/storeflow/internal/harness"
	"github.com/storeflow/storeflow/internal/modeltest"
	"github.com/storeflow/storeflow/internal/proctest"
)

// scenarios are the original demo's scenario files (testdata/original/scenarios).
var scenarios = []string{
	filepath.Join("..", "..", "testdata", "original", "scenarios", "scenario_4.json"),
	filepath.Join("..", "..", "testdata", "original", "scenarios", "scenario_18.json"),
	filepath.Join("..", "..", "testdata", "original", "scenarios", "scenario_32.json"),
}

// startStore runs storeflow's real wiring with its embedded broker on a free
// loopback port, and points the tools' settings (the process environment
// storeflow replay and record read) at it.
func startStore(t *testing.T, extra map[string]string) *app.App {
	t.Helper()
	environ := map[string]string{
		"BROKER_LISTEN_ADDR": "127.0.0.1:0", "HTTP_ADDR": config.HTTPOff, "SIMULATOR_ENABLED": "false",
		"LOG_LEVEL": "warn", "MODEL_FILE": modeltest.File(t),
	}
	maps.Copy(environ, extra)
	cfg, err := config.Load(environ)
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.New(context.Background(), cfg, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	harness.Start(t, "storeflow", a.Run, a.Ready())
	t.Setenv("MQTT_HOST", "")
	t.Setenv("BROKER_LISTEN_ADDR", a.BrokerAddr())
	for k, v := range extra {
		t.Setenv(k, v) // the same topics and plan as the store
	}
	return a
}

// watcher is an outside subscriber of the store's broker: a staff screen.
type watcher struct {
	msgs  chan [2]string
	other [][2]string // read by until while it waited for another topic
}

func watch(t *testing.T, filter string) *watcher {
	t.Helper()
	cfg, err := config.Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := broker.Dial(context.Background(), cfg.Broker.ToolClient("watch-test"), slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	w := &watcher{msgs: make(chan [2]string, 10000)}
	if err := c.Subscribe(filter, func(topic string, payload []byte) {
		select {
		case w.msgs <- [2]string{topic, string(payload)}:
		default:
			t.Errorf("watcher: more than %d messages unread", cap(w.msgs))
		}
	}); err != nil {
		t.Fatal(err)
	}
	<-c.Ready()
	return w
}

// until collects the shopper and department of every event on topic until
// want (shopper → department, "" for events without one) is complete; an
// event want does not hold fails the test. Messages of other topics read on
// the way are kept for the next call.
func (w *watcher) until(t *testing.T, topic string, want map[string]string, within time.Duration) {
	t.Helper()
	got := map[string]string{}
	take := func(m [2]string) {
		var e struct{ ID, Dep string }
		if err := json.Unmarshal([]byte(m[1]), &e); err != nil {
			t.Fatalf("%s payload %s: %v", topic, m[1], err)
		}
		key := e.ID + " " + e.Dep
		if _, ok := want[key]; !ok {
			t.Fatalf("%s %s: not expected (want %v)", topic, m[1], keysOf(want))
		}
		got[key] = m[1]
	}
	kept := w.other[:0]
	for _, m := range w.other {
		if m[0] == topic {
			take(m)
		} else {
			kept = append(kept, m)
		}
	}
	w.other = kept
	deadline := time.After(within)
	for len(got) < len(want) {
		select {
		case m := <-w.msgs:
			if m[0] != topic {
				w.other = append(w.other, m)
				continue
			}
			take(m)
		case <-deadline:
			t.Fatalf("%s: got %v within %s, want %v", topic, keysOf(got), within, keysOf(want))
		}
	}
}

func keysOf(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// The original demo's three scenario files, replayed together by storeflow
// replay into a running storeflow with the original store plan, give a focus
// event for every department their shoppers linger in for FOCUS_DWELL (10 s)
// of their own clock, though they are played 100 times faster, and a
// browsing event for each shopper who walks on for BROWSING_AFTER without
// focusing.
func TestReplayOriginalScenariosIntoStoreflow(t *testing.T) {
	a := startStore(t, map[string]string{"STORE_PLAN": "original"})
	for _, id := range []string{"4", "18", "32"} {
		if _, err := a.Catalog().Customer(context.Background(), id); err != nil {
			t.Fatalf("the generated catalog lacks the scenarios' customer %s: %v", id, err)
		}
	}
	w := watch(t, "customer/#")
	out, err := runCmd(t, append([]string{"replay", "--speed", "100"}, scenarios...)...)
	if err != nil || !strings.Contains(out, "replay: published 281 of 281 steps from 3 file(s) to tcp://"+a.BrokerAddr()) {
		t.Fatalf("replay: %v\n%s", err, out)
	}
	// Steps (counted from 0) in each department: scenario_4 Men 30–65,
	// Sports 66–99; scenario_18 Women 14–25; scenario_32 Girls 8–18, Boys
	// 19–40. Women 42–49 (scenario_32) is shorter than the dwell.
	w.until(t, "customer/focus", map[string]string{
		"4 Men": "", "4 Sports": "", "18 Women": "", "32 Girls": "", "32 Boys": "",
	}, 10*time.Second)
	// And the two that wander on after their focus are browsing, once each
	// (the original flagged shopper 18 too); 32 is in an aisle by then.
	w.until(t, "customer/browsing", map[string]string{"18 Men": "", "32 ": ""}, 10*time.Second)
}

// Bad use of replay and record is refused before anything connects.
func TestReplayRecordRefuseBadUse(t *testing.T) {
	t.Setenv("MQTT_HOST", "")
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte("[{\"type\": \"MOVE\",}]"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"replay"}, "replay: name at least one scenario or recording file"},
		{[]string{"replay", "--speed", "0", scenarios[0]}, "replay: --speed 0: want more than 0"},
		{[]string{"replay", "missing.json"}, "replay: open missing.json: no such file or directory"},
		{[]string{"replay", scenarios[0], bad}, "replay: " + bad + ": line 1, column 18: invalid character '}'"},
		{[]string{"record", "extra"}, "record: takes no arguments"},
		{[]string{"record", "--topic", ""}, "record: --topic: empty filter"},
	} {
		_, err := runCmd(t, tt.args...)
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("%v: error %v, want it to start with %s", tt.args, err, tt.want)
		}
	}
}

// storeflow record writes what the store's broker carries; storeflow replay
// of that recording into the store gives the same focus events again.
func TestRecordThenReplayIntoStoreflow(t *testing.T) {
	a := startStore(t, map[string]string{"STORE_PLAN": "original"})
	rec := filepath.Join(t.TempDir(), "rec.jsonl")
	ctx, cancel := context.WithCancel(context.Background())
	var recOut proctest.SyncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"record", "--out", rec}, &recOut, &recOut) }()
	w := watch(t, "customer/focus")
	harness.Until(t, 10*time.Second, "record subscribed", func() bool {
		return strings.Contains(recOut.String(), "record: recording customer/# from tcp://"+a.BrokerAddr()+" to "+rec)
	})
	if out, err := runCmd(t, "replay", "--speed", "100", scenarios[2]); err != nil {
		t.Fatalf("replay: %v\n%s", err, out)
	}
	w.until(t, "customer/focus", map[string]string{"32 Girls": "", "32 Boys": ""}, 10*time.Second)
	// The exit, the replay's last step, is in the file: the recording is whole.
	harness.Until(t, 10*time.Second, "the exit recorded", func() bool {
		data, err := os.ReadFile(rec)
		return err == nil && bytes.Contains(data, []byte(`{"topic":"customer/exit","payload":{"id":"32"`))
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("record: %v\n%s", err, recOut.String())
	}
	data, err := os.ReadFile(rec)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`{"topic":"customer/enter","payload":{"id":"32","ts":`, `{"topic":"customer/focus","payload":{"id":"32","ts":`} {
		if !bytes.Contains(data, []byte(want)) {
			t.Fatalf("recording lacks %s:\n%s", want, data)
		}
	}
	if out, err := runCmd(t, "replay", "--speed", "100", rec); err != nil ||
		!strings.Contains(out, "replay: published 102 of 102 steps from 1 file(s)") {
		t.Fatalf("replay of the recording: %v\n%s", err, out)
	}
	w.until(t, "customer/focus", map[string]string{"32 Girls": "", "32 Boys": ""}, 10*time.Second)
}
