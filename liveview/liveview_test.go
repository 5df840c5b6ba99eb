package liveview

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/storeflow/storeflow/broker"
	"github.com/storeflow/storeflow/internal/harness"
	"github.com/storeflow/storeflow/internal/metrictest"
	"github.com/storeflow/storeflow/store"
)

var topics = Topics{Enter: "customer/enter", Move: "customer/move", Exit: "customer/exit",
	Focus: "customer/focus", Browsing: "customer/browsing", Prediction: "customer/prediction"}

type rig struct {
	view *View
	br   *broker.Embedded
	reg  *prometheus.Registry
	srv  *httptest.Server
}

// newRig runs a view on a real embedded broker, served over HTTP.
func newRig(t *testing.T, cfg Config) *rig {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	plan, err := store.GridPlan(12, 10)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	v, err := New(cfg, plan, topics, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	br, err := broker.NewEmbedded(broker.Config{ListenAddr: "127.0.0.1:0", Name: "test"}, log, broker.EmbeddedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stop := harness.Start(t, "embedded broker", br.Run, br.Ready())
	t.Cleanup(func() { stop(5 * time.Second) })
	if err := v.Subscribe(br); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	v.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &rig{view: v, br: br, reg: reg, srv: srv}
}

func (r *rig) pub(t *testing.T, topic, payload string) {
	t.Helper()
	if err := r.br.Publish(context.Background(), topic, []byte(payload)); err != nil {
		t.Fatal(err)
	}
}

const coupon = `{"customer": {"id": "1"},
 "coupon": {"id": 7, "type": "just_discount", "department": "Boys", "discount": 15.0, "how_many": 1,
  "start_date": "2026-01-01", "end_date": "2026-12-31",
  "products": [{"id": 3, "name": "Cap", "category": "Hats", "sizes": "M", "vendor": "V", "description": "a cap", "buy_price": 9.5, "department": "Boys"}]},
 "ts": 100}`

func TestSnapshotAfterScriptedEvents(t *testing.T) {
	r := newRig(t, Config{Enabled: true, MaxViewers: 4})
	boys, _ := r.view.plan.Area(store.Boys)
	x, y := boys.Rect.Min.X, boys.Rect.Min.Y
	r.pub(t, topics.Enter, `{"id":"1","ts":100}`)
	r.pub(t, topics.Enter, `{"id":"2","ts":100}`)
	r.pub(t, topics.Move, fmt.Sprintf(`{"id":"1","ts":101,"x":%d,"y":%d}`, x, y))
	r.pub(t, topics.Move, `{"id":"2","ts":101,"x":0,"y":0}`)
	r.pub(t, topics.Focus, fmt.Sprintf(`{"id":"1","ts":111,"dep":"Boys","x":%d,"y":%d}`, x, y))
	r.pub(t, topics.Prediction, coupon)
	r.pub(t, topics.Browsing, `{"id":"2","ts":120,"x":0,"y":0}`)
	r.pub(t, topics.Browsing, `{"id":"3","ts":121,"dep":"Men","x":1,"y":7}`)
	r.pub(t, topics.Exit, `{"id":"2","ts":130}`)
	r.pub(t, topics.Move, `{"id":"1","ts":131,"x":-5,"y":0}`) // bad: rejected, counted
	r.pub(t, topics.Move, `not json`)

	resp, err := http.Get(r.srv.URL + "/api/store")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var s struct {
		Seq  uint64 `json:"seq"`
		Plan struct {
			Name        string
			Width       int
			Height      int
			Entrance    Point
			Exit        Point
			Departments []Department
		}
		Shoppers []Shopper
		Coupons  []struct {
			Customer struct{ ID string }
			Coupon   struct {
				ID       int
				Type     string
				Products []struct{ Name string }
			}
		}
		Alerts  []Alert
		Figures Figures
	}
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	if s.Seq != 9 {
		t.Errorf("seq %d, want 9 (nine events applied)", s.Seq)
	}
	if s.Plan.Name != "grid" || s.Plan.Width != 12 || s.Plan.Height != 10 || s.Plan.Exit != (Point{11, 0}) || len(s.Plan.Departments) != 5 {
		t.Errorf("plan %+v", s.Plan)
	}
	if d := s.Plan.Departments[1]; d.Name != "Boys" || d.Min != (Point{x, y}) {
		t.Errorf("department %+v, want Boys from (%d,%d)", d, x, y)
	}
	want := []Shopper{{ID: "1", X: x, Y: y, HasPos: true, Dep: "Boys", Focus: true}}
	if fmt.Sprint(s.Shoppers) != fmt.Sprint(want) {
		t.Errorf("shoppers %+v, want %+v", s.Shoppers, want)
	}
	if len(s.Coupons) != 1 || s.Coupons[0].Customer.ID != "1" || s.Coupons[0].Coupon.ID != 7 ||
		s.Coupons[0].Coupon.Type != "just_discount" || len(s.Coupons[0].Coupon.Products) != 1 || s.Coupons[0].Coupon.Products[0].Name != "Cap" {
		t.Errorf("coupons %+v", s.Coupons)
	}
	if len(s.Alerts) != 1 || s.Alerts[0].ID != "3" || s.Alerts[0].Dep != "Men" {
		t.Errorf("alerts %+v, want only 3's (2 left the store)", s.Alerts)
	}
	if f := s.Figures; f.Shoppers != 1 || f.FocusPerMinute != 1 || f.CouponsPerMinute != 1 {
		t.Errorf("figures %+v", f)
	}
	if got := metrictest.Sum(t, r.reg, "storeflow_view_events_rejected_total", "kind=move"); got != 2 {
		t.Errorf("rejected moves %v, want 2", got)
	}
}

func TestCouponsKeepTheLatest(t *testing.T) {
	r := newRig(t, Config{Enabled: true, MaxViewers: 4})
	for i := range recentCoupons + 5 {
		r.pub(t, topics.Prediction, strings.Replace(coupon, `"id": "1"`, fmt.Sprintf(`"id": "%d"`, i), 1))
	}
	s := r.view.Snapshot("")
	if len(s.Coupons) != recentCoupons {
		t.Fatalf("%d coupons, want %d", len(s.Coupons), recentCoupons)
	}
	for i, c := range s.Coupons {
		if want := fmt.Sprintf(`{"customer":{"id":"%d"}`, recentCoupons+4-i); !strings.HasPrefix(string(c), want) {
			t.Fatalf("coupon %d is %.30s, want %s…", i, c, want)
		}
	}
}

type sse struct{ id, event, data string }

// stream opens GET /api/events and delivers its events on a channel.
func stream(t *testing.T, url, lastID string) (<-chan sse, *http.Response) {
	t.Helper()
	return streamOf(t, url+"/api/events", lastID)
}

// streamOf is stream for the event stream at url (with its query).
func streamOf(t *testing.T, url, lastID string) (<-chan sse, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	ch := make(chan sse, 4096)
	if resp.StatusCode != http.StatusOK {
		close(ch)
		return ch, resp
	}
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		var e sse
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if e.event != "" {
					ch <- e
				}
				e = sse{}
			case strings.HasPrefix(line, "id: "):
				e.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				e.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				e.data = line[6:]
			}
		}
	}()
	return ch, resp
}

func next(t *testing.T, ch <-chan sse) sse {
	t.Helper()
	select {
	case e, ok := <-ch:
		if !ok {
			t.Fatal("stream ended")
		}
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	return sse{}
}

func TestStreamInOrderWithIDs(t *testing.T) {
	r := newRig(t, Config{Enabled: true, MaxViewers: 4})
	r.pub(t, topics.Enter, `{"id":"0","ts":99}`) // before the viewer: not streamed
	ch, resp := stream(t, r.srv.URL, "")
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	r.pub(t, topics.Enter, `{"id":"1","ts":100}`)
	for i := range 50 {
		r.pub(t, topics.Move, fmt.Sprintf(`{"id":"1","ts":%d,"x":0,"y":%d}`, 101+i, i%10))
	}
	r.pub(t, topics.Focus, `{"id":"1","ts":200,"dep":"Women"}`)
	r.pub(t, topics.Browsing, `{"id":"1","ts":201,"dep":"Women"}`)
	r.pub(t, topics.Prediction, coupon)
	r.pub(t, topics.Exit, `{"id":"1","ts":300}`)

	if e := next(t, ch); e != (sse{"2", "enter", `{"id":"1","ts":100}`}) {
		t.Fatalf("first event %+v", e)
	}
	for i := range 50 {
		want := sse{fmt.Sprint(3 + i), "move", fmt.Sprintf(`{"id":"1","ts":%d,"x":0,"y":%d}`, 101+i, i%10)}
		if e := next(t, ch); e != want {
			t.Fatalf("event %+v, want %+v", e, want)
		}
	}
	for i, kind := range []string{"focus", "browsing", "coupon", "exit"} {
		if e := next(t, ch); e.event != kind || e.id != fmt.Sprint(53+i) {
			t.Fatalf("event %+v, want %s with id %d", e, kind, 53+i)
		}
	}
}

// slowWriter is a viewer's connection that takes nothing until released.
type slowWriter struct {
	release chan struct{}
	mu      sync.Mutex
	buf     strings.Builder
	header  http.Header
}

func (w *slowWriter) Header() http.Header { return w.header }
func (w *slowWriter) WriteHeader(int)     {}
func (w *slowWriter) Flush()              {}
func (w *slowWriter) Write(p []byte) (int, error) {
	<-w.release
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}
func (w *slowWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func TestSlowViewerIsToldToResyncAndTheDropsCounted(t *testing.T) {
	r := newRig(t, Config{Enabled: true, MaxViewers: 4})
	w := &slowWriter{release: make(chan struct{}), header: http.Header{}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.view.serveEvents(w, httptest.NewRequestWithContext(ctx, "GET", "/api/events", nil))
	}()
	deadline := time.Now().Add(10 * time.Second)
	for metrictest.Value(t, r.reg, "storeflow_view_viewers") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("viewer not registered within 10s")
		}
		time.Sleep(time.Millisecond)
	}
	const n = viewerBuffer + 100
	start := time.Now()
	for i := range n {
		r.pub(t, topics.Move, fmt.Sprintf(`{"id":"1","ts":%d,"x":0,"y":0}`, 1000+i))
	}
	// The broker's goroutine did not wait for the viewer: every publish
	// returned while it took nothing.
	if got := metrictest.Sum(t, r.reg, "storeflow_view_events_dropped_total"); got != 100 {
		t.Fatalf("dropped %v before the viewer read, want 100 (%v taken); out %q", got, time.Since(start), w.String())
	}
	close(w.release)
	for {
		out := w.String()
		dropped := metrictest.Sum(t, r.reg, "storeflow_view_events_dropped_total")
		delivered := strings.Count(out, "\nevent: move\n")
		if strings.Contains(out, "event: resync\ndata: {}\n\n") && float64(delivered)+dropped == n {
			break // every event delivered or counted
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: resync %v, delivered %d + dropped %v != %d", strings.Contains(out, "resync"), delivered, dropped, n)
		}
		time.Sleep(time.Millisecond)
	}
	if got := metrictest.Sum(t, r.reg, "storeflow_view_resyncs_total"); got != 1 {
		t.Errorf("resyncs %v, want 1", got)
	}
	// After the resync the viewer gets new events again.
	r.pub(t, topics.Exit, `{"id":"1","ts":5000}`)
	for !strings.Contains(w.String(), fmt.Sprintf("id: %d\nevent: exit\n", n+1)) {
		if time.Now().After(deadline) {
			t.Fatal("no event after the resync")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
}

func TestViewerCap(t *testing.T) {
	r := newRig(t, Config{Enabled: true, MaxViewers: 2})
	_, r1 := stream(t, r.srv.URL, "")
	_, r2 := stream(t, r.srv.URL, "")
	_, r3 := stream(t, r.srv.URL, "")
	if r1.StatusCode != 200 || r2.StatusCode != 200 || r3.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("statuses %d %d %d, want 200 200 503", r1.StatusCode, r2.StatusCode, r3.StatusCode)
	}
	if got := metrictest.Sum(t, r.reg, "storeflow_view_viewers_refused_total"); got != 1 {
		t.Errorf("refused %v, want 1", got)
	}
	r1.Body.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, r4 := stream(t, r.srv.URL, "")
		if r4.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a place freed by a closed stream was not given within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestReconnectWithLastEventID(t *testing.T) {
	r := newRig(t, Config{Enabled: true, MaxViewers: 8})
	stream(t, r.srv.URL, "") // a page open: events are kept for replay
	for i := range 5 {
		r.pub(t, topics.Enter, fmt.Sprintf(`{"id":"%d","ts":100}`, i))
	}
	ch, _ := stream(t, r.srv.URL, "3")
	r.pub(t, topics.Exit, `{"id":"0","ts":101}`)
	for _, want := range []sse{{"4", "enter", `{"id":"3","ts":100}`}, {"5", "enter", `{"id":"4","ts":100}`}, {"6", "exit", `{"id":"0","ts":101}`}} {
		if e := next(t, ch); e != want {
			t.Fatalf("event %+v, want %+v", e, want)
		}
	}
	// Up to date: nothing replayed, the next event follows.
	ch, _ = stream(t, r.srv.URL, "6")
	r.pub(t, topics.Exit, `{"id":"1","ts":101}`)
	if e := next(t, ch); e.id != "7" {
		t.Fatalf("event %+v, want id 7", e)
	}
	// Too far behind, an id from another process, or junk: resync.
	for i := range replayFrames {
		r.pub(t, topics.Move, fmt.Sprintf(`{"id":"2","ts":%d,"x":0,"y":0}`, 200+i))
	}
	for _, last := range []string{"6", "999999", "x"} {
		ch, _ = stream(t, r.srv.URL, last)
		if e := next(t, ch); e.event != "resync" {
			t.Fatalf("Last-Event-ID %s: first event %+v, want resync", last, e)
		}
	}
	if got := metrictest.Sum(t, r.reg, "storeflow_view_resyncs_total"); got != 3 {
		t.Errorf("resyncs %v, want 3", got)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{Enabled: true, MaxViewers: 0}).Validate(); err == nil || !strings.Contains(err.Error(), "VIEW_MAX_VIEWERS") {
		t.Errorf("MaxViewers 0: %v", err)
	}
	if err := (Config{Enabled: false}).Validate(); err != nil {
		t.Errorf("off: %v", err)
	}
}

// Events are framed and kept for replay only while a page is open, and for
// replayGrace after the last one closed; a page reconnecting from before
// events that were not kept is told to resync.
func TestReplayKeptOnlyWhilePagesOpen(t *testing.T) {
	r := newRig(t, Config{Enabled: true, MaxViewers: 8})
	var mu sync.Mutex
	now := time.Now()
	r.view.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	r.pub(t, topics.Enter, `{"id":"1","ts":100}`) // 1: no page ever open, not kept
	ch, resp := stream(t, r.srv.URL, "")
	r.pub(t, topics.Enter, `{"id":"2","ts":100}`) // 2
	if e := next(t, ch); e.id != "2" {
		t.Fatalf("event %+v, want 2", e)
	}
	resp.Body.Close()
	harness.Until(t, 10*time.Second, "the stream closed", func() bool { return metrictest.Sum(t, r.reg, "storeflow_view_viewers") == 0 })
	r.pub(t, topics.Enter, `{"id":"3","ts":100}`) // 3: within the grace, kept
	ch, _ = stream(t, r.srv.URL, "2")
	if e := next(t, ch); e != (sse{"3", "enter", `{"id":"3","ts":100}`}) {
		t.Fatalf("reconnected within the grace: %+v, want event 3 replayed", e)
	}
	ch, _ = stream(t, r.srv.URL, "0")
	if e := next(t, ch); e.event != "resync" {
		t.Fatalf("reconnected from before an event not kept: %+v, want resync", e)
	}
	r.view.Close() // every stream ends
	harness.Until(t, 10*time.Second, "the streams closed", func() bool { return metrictest.Sum(t, r.reg, "storeflow_view_viewers") == 0 })
	mu.Lock()
	now = now.Add(replayGrace + time.Second)
	mu.Unlock()
	r.pub(t, topics.Enter, `{"id":"4","ts":100}`) // 4: after the grace, not kept
	r.view.mu.Lock()
	_, ok := r.view.since(3)
	r.view.mu.Unlock()
	if ok {
		t.Error("event 4 came with no page open past the grace, yet a replay from 3 is offered")
	}
	if s := r.view.Snapshot(""); s.Seq != 4 || len(s.Shoppers) != 4 {
		t.Errorf("snapshot seq %d with %d shoppers, want 4 and 4: the state follows every event", s.Seq, len(s.Shoppers))
	}
}
