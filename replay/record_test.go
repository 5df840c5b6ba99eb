package replay

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/storeflow/storeflow/broker"
	"github.com/storeflow/storeflow/internal/harness"
	"github.com/storeflow/storeflow/internal/proctest"
)

// startBroker runs an embedded broker on a free loopback port and returns
// the settings a tool reaches it with.
func startBroker(t *testing.T) (*broker.Embedded, broker.Config) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg := broker.Config{Port: 1883, ListenAddr: "127.0.0.1:0", Name: "test", QoS: 1, OfflineQueue: 100}
	b, err := broker.NewEmbedded(cfg, log, broker.EmbeddedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	harness.Start(t, "embedded broker", b.Run, b.Ready())
	cfg.ListenAddr = b.Addr()
	return b, cfg
}

func dialTool(t *testing.T, cfg broker.Config, id string) *broker.Client {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	c, err := broker.Dial(context.Background(), cfg.ToolClient(id), log, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// What record writes, replay publishes again: the same topics in the same
// order, the same payloads byte for byte (JSON or not) but for ts, rebased so
// that the first is now and the others keep their distances.
func TestRecordThenReplay(t *testing.T) {
	b, cfg := startBroker(t)
	sent := []struct{ topic, payload string }{
		{"customer/enter", `{"id":"7","ts":1000}`},
		{"customer/move", `{"id":"7","ts":1001,"x":3,"y":1}`},
		{"other/topic", `{"id":"7","ts":1001}`}, // not recorded: outside the filter
		{"customer/focus", `{"id":"7","ts":1011,"dep":"Boys","x":3,"y":1}`},
		{"customer/move", `{"id": "7", "ts": 1012.5, "x": 3, "y": 1}`}, // a float ts, and space
		{"customer/move", `not json`},
		{"customer/move", `"a JSON string"`},
		{"customer/move", `42`},
		{"customer/exit", `{"id":"7","ts":1013}`},
	}
	var rec proctest.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	type result struct {
		r   Recorded
		err error
	}
	done := make(chan result, 1)
	ready := make(chan struct{})
	go func() {
		c := dialTool(t, cfg, "record-test")
		r, err := Record(ctx, c, []string{"customer/#"}, &rec, slog.Default(), ready)
		c.Close() // as storeflow record does: it must not see the replay
		done <- result{r, err}
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("record not subscribed within 10s")
	}
	for _, m := range sent {
		if err := b.Publish(context.Background(), m.topic, []byte(m.payload)); err != nil {
			t.Fatal(err)
		}
	}
	harness.Until(t, 10*time.Second, "8 lines recorded", func() bool { return strings.Count(rec.String(), "\n") >= len(sent)-1 })
	cancel()
	res := <-done
	if res.err != nil || res.r.Written != uint64(len(sent)-1) || res.r.Dropped != 0 {
		t.Fatalf("Record = %+v, %v; want %d written, none dropped", res.r, res.err, len(sent)-1)
	}
	if !strings.HasPrefix(rec.String(), `{"topic":"customer/enter","payload":{"id":"7","ts":1000},"time":"`) {
		t.Fatalf("first line: %s", strings.SplitAfter(rec.String(), "\n")[0])
	}

	f, err := Load("rec.jsonl", strings.NewReader(rec.String()), Options{Topics: testTopics, All: true})
	if err != nil || len(f.Bad) > 0 || len(f.Steps) != len(sent)-1 {
		t.Fatalf("Load: %v, bad %v, %d steps; want %d", err, f.Bad, len(f.Steps), len(sent)-1)
	}
	for i := 1; i < len(f.Steps); i++ {
		if f.Steps[i].At < f.Steps[i-1].At {
			t.Fatalf("step %d at %s before step %d at %s", i, f.Steps[i].At, i-1, f.Steps[i-1].At)
		}
	}

	watch := dialTool(t, cfg, "watch-test")
	got := make(chan [2]string, 100)
	if err := watch.Subscribe("customer/#", func(topic string, payload []byte) { got <- [2]string{topic, string(payload)} }); err != nil {
		t.Fatal(err)
	}
	<-watch.Ready()
	before := time.Now().Unix()
	n, err := Play(context.Background(), dialTool(t, cfg, "replay-test"), []*File{f}, 1000)
	if err != nil || n != len(f.Steps) {
		t.Fatalf("Play = %d, %v; want %d", n, err, len(f.Steps))
	}
	after := time.Now().Unix()
	var base int64
	for i, m := range append(sent[:2:2], sent[3:]...) {
		var g [2]string
		select {
		case g = <-got:
		case <-time.After(10 * time.Second):
			t.Fatalf("replayed message %d not received within 10s", i)
		}
		if i == 0 {
			// The first ts is now: between the replay's start and end.
			ts := strings.TrimSuffix(strings.TrimPrefix(g[1], `{"id":"7","ts":`), "}")
			base, _ = strconv.ParseInt(ts, 10, 64)
			if base < before || base > after {
				t.Fatalf("first replayed ts %s, want now (%d..%d)", g[1], before, after)
			}
		}
		want := strings.NewReplacer(`"ts":1000`, `"ts":`+strconv.FormatInt(base, 10),
			`"ts":1001`, `"ts":`+strconv.FormatInt(base+1, 10),
			`"ts":1011`, `"ts":`+strconv.FormatInt(base+11, 10),
			`"ts":1013`, `"ts":`+strconv.FormatInt(base+13, 10),
			`{"id": "7", "ts": 1012.5, "x": 3, "y": 1}`, `{"id":"7","ts":`+strconv.FormatInt(base+12, 10)+`.5,"x":3,"y":1}`,
		).Replace(m.payload)
		if g != [2]string{m.topic, want} {
			t.Errorf("replayed message %d = %s %s, want %s %s", i, g[0], g[1], m.topic, want)
		}
	}
}
