package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/storeflow/storeflow/event"
	"github.com/storeflow/storeflow/internal/metrictest"
	"github.com/storeflow/storeflow/internal/modeltest"
	"github.com/storeflow/storeflow/internal/proctest"
	"github.com/storeflow/storeflow/recommender"
	"github.com/storeflow/storeflow/recommender/protocol"
	"github.com/storeflow/storeflow/recommender/score"
	"github.com/storeflow/storeflow/recommender/v2"
	"github.com/storeflow/storeflow/store"
	"github.com/storeflow/storeflow/store/central"
	"github.com/storeflow/storeflow/store/world"
)

// The tests of this file play floods and stalls against the real wiring
// (the embedded broker, publishing through its inline client as the
// simulator does) and check that real shoppers still get their coupons.

// couponsFor returns a channel that receives the customer id of every coupon
// the app publishes.
func couponsFor(t *testing.T, a *App) <-chan string {
	t.Helper()
	ids := make(chan string, 1000)
	err := a.conn.Subscribe(a.cfg.Pipeline.PredictionTopic, func(_ string, payload []byte) {
		o, err := event.DecodeOffer(payload)
		if err != nil {
			t.Errorf("coupon message %s: %v", payload, err)
			return
		}
		select {
		case ids <- o.CustomerID:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// waitCoupon waits until a coupon for id arrives, at most within.
func waitCoupon(t *testing.T, coupons <-chan string, id string, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case got := <-coupons:
			if got == id {
				return
			}
		case <-deadline:
			t.Fatalf("no coupon for %s within %s", id, within)
		}
	}
}

// publish sends one payload through the app's broker, as the simulator does.
func publish(t *testing.T, a *App, topic string, payload []byte) {
	t.Helper()
	if err := a.conn.Publish(context.Background(), topic, payload); err != nil {
		t.Fatalf("publish on %s: %v", topic, err)
	}
}

// lingerInBoys plays a shopper who enters at ts and stays in Boys past the
// dwell, and returns the ts of its last move.
func lingerInBoys(t *testing.T, a *App, id string, ts int64) int64 {
	t.Helper()
	area, ok := a.plan.Area(store.Boys)
	if !ok {
		t.Fatal("the plan has no Boys")
	}
	publish(t, a, a.cfg.Pipeline.EntryTopic, event.AppendPresence(nil, event.Presence{ID: id, TS: ts}))
	dwell := int64(a.cfg.Pipeline.FocusDwell / time.Second)
	for range dwell + 2 {
		ts++
		publish(t, a, a.cfg.Pipeline.MoveTopic, event.AppendMove(nil, event.Move{ID: id, TS: ts, X: area.Rect.Min.X, Y: area.Rect.Min.Y}))
	}
	return ts
}

// boysShopper returns a catalog customer for whom Boys has a coupon valid
// at ts: with PREDICTION_THRESHOLD=0 every focus of theirs there gets one.
func boysShopper(t *testing.T, a *App, ts int64, n int) string {
	t.Helper()
	if cs, _ := a.catalog.ValidCoupons(context.Background(), store.Boys, store.DayOf(ts), nil); len(cs) == 0 {
		t.Fatal("the generated catalog has no Boys coupon today")
	}
	return a.catalog.Customers()[n].ID
}

// After a flood of 200,000 fake ids — twice MAX_SHOPPERS — a real shopper
// who lingers still gets a coupon. Before, the full shopper table dropped
// every move of a new shopper until SHOPPER_TTL (30 min) freed room, and
// scanned the whole table at each: the flood alone took minutes.
func TestFloodOfFakeIDsDoesNotLockShoppersOut(t *testing.T) {
	a := runApp(t, map[string]string{"PREDICTION_THRESHOLD": "0"})
	coupons := couponsFor(t, a)
	ts := time.Now().Unix()
	area, _ := a.plan.Area(store.Boys)
	const flood = 200_000
	// Generous: the flood takes about 4 s with -race on 2 busy cores.
	deadline := time.Now().Add(time.Minute)
	var buf []byte
	for i := range flood { // one move each, in a department, as a replayed or forged feed would
		buf = fmt.Appendf(buf[:0], `{"id":"fake-%d","ts":%d,"x":%d,"y":%d}`, i, ts, area.Rect.Min.X, area.Rect.Min.Y)
		publish(t, a, a.cfg.Pipeline.MoveTopic, buf)
		if i%1000 == 0 && time.Now().After(deadline) {
			t.Fatalf("only %d of the %d fake moves taken in a minute: a full table slows intake down", i, flood)
		}
	}
	id := boysShopper(t, a, ts, 0)
	lingerInBoys(t, a, id, ts)
	waitCoupon(t, coupons, id, 10*time.Second)

	if got := metrictest.Sum(t, a.reg, "storeflow_shoppers_tracked"); got > float64(a.cfg.Pipeline.MaxShoppers) {
		t.Errorf("%v shoppers tracked, MAX_SHOPPERS is %d", got, a.cfg.Pipeline.MaxShoppers)
	}
	if got, want := metrictest.Sum(t, a.reg, "storeflow_shoppers_evicted_total"), float64(flood-a.cfg.Pipeline.MaxShoppers); got < want {
		t.Errorf("storeflow_shoppers_evicted_total = %v, want at least %v", got, want)
	}
}

// A prediction service that never answers costs focus events their coupons,
// counted, and nothing else: 3,000 moves of shoppers who never focus are
// handled at once while it hangs, its circuit breaker opens and /readyz
// says so, and coupons come again within 2 s of it answering. Before, once
// the focus queue was full the dwell workers waited for it: the 3,000 moves
// took 18 s (PIPELINE_QUEUE=1024; minutes here).
func TestHangingPredictorDoesNotHoldUpTheStore(t *testing.T) {
	model, err := recommender.LoadModel(modeltest.File(t))
	if err != nil {
		t.Fatal(err)
	}
	service := http.NewServeMux()
	srv := protocol.NewServer(model, slog.New(slog.DiscardHandler), protocol.NewServerMetrics(prometheus.NewRegistry()))
	score.Register(service, srv)
	v2.Register(service, srv)
	var hanging atomic.Bool
	hanging.Store(true)
	back := make(chan struct{})
	pred := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hanging.Load() {
			select {
			case <-back: // comes back: answers what it held too
			case <-r.Context().Done():
				return
			}
		}
		service.ServeHTTP(w, r)
	}))
	t.Cleanup(pred.Close)
	var once sync.Once
	comeBack := func() { once.Do(func() { hanging.Store(false); close(back) }) }
	t.Cleanup(comeBack) // before pred.Close, which waits for the handlers

	// A queue of 256 (not 1,024) so that the catalog has customers enough
	// to overfill the focus stages; PREDICTION_TIMEOUT is its default, 1 s.
	a := runApp(t, map[string]string{"PREDICTION_URL": pred.URL, "PREDICTION_THRESHOLD": "0", "PIPELINE_QUEUE": "256"})
	coupons := couponsFor(t, a)
	ts := time.Now().Unix()
	boysShopper(t, a, ts, 0)
	const lingerers, walkers = 600, 3000
	var start time.Time
	published := make(chan struct{})
	go func() { // the publisher may be held: the test watches from here
		defer close(published)
		for i := range lingerers { // each completes a focus: far more than the stages and the queue hold
			lingerInBoys(t, a, a.catalog.Customers()[i].ID, ts)
		}
		start = time.Now()
		for i := range walkers { // shoppers in the cross aisle: no focus
			publish(t, a, a.cfg.Pipeline.MoveTopic, fmt.Appendf(nil, `{"id":"walker-%d","ts":%d,"x":2,"y":5}`, i, ts))
		}
	}()
	deadline := time.Now().Add(5 * time.Second) // generous: about 0.1 s here, 18 s before
	for metrictest.Sum(t, a.reg, "storeflow_shoppers_tracked") < lingerers+walkers {
		if time.Now().After(deadline) {
			t.Fatalf("%v of %d shoppers' moves handled within 5s while the prediction service hangs",
				metrictest.Sum(t, a.reg, "storeflow_shoppers_tracked"), lingerers+walkers)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition with a deadline
	}
	<-published
	t.Logf("%d moves of shoppers who do not focus handled in %s with the prediction service hanging",
		walkers, time.Since(start).Round(time.Millisecond))
	if got := metrictest.Sum(t, a.reg, "storeflow_events_dropped_total", "queue=focus"); got == 0 {
		t.Error("no focus event dropped, although the stages and their queue were full")
	}

	// After PREDICTION_BREAKER_FAILURES timeouts (about 2 s) the breaker
	// opens: the held focus events fail fast, and /readyz says why.
	deadline = time.Now().Add(10 * time.Second)
	for metrictest.Sum(t, a.reg, "storeflow_focus_outcomes_total", "outcome=predictor_unavailable") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no focus event failed fast as predictor_unavailable within 10s")
		}
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
	if code, body := readyz(t, a); code != http.StatusServiceUnavailable || !strings.Contains(body, "prediction: circuit breaker open") {
		t.Errorf("GET /readyz = %d %q with the breaker open, want 503 naming it", code, body)
	}

	// The service answers again: within 2 s coupons come again, for the
	// shoppers who keep lingering.
	comeBack()
	answering := time.Now()
	for i := lingerers; ; i++ {
		if time.Since(answering) > 2*time.Second || i == len(a.catalog.Customers()) {
			t.Fatalf("no coupon within %s of the prediction service answering again", time.Since(answering).Round(time.Millisecond))
		}
		lingerInBoys(t, a, a.catalog.Customers()[i].ID, ts)
		select {
		case <-coupons:
			t.Logf("first coupon %s after the prediction service answered again", time.Since(answering).Round(time.Millisecond))
			return
		case <-time.After(20 * time.Millisecond): // the next shopper comes in
		}
	}
}

// 50,000 focus events of unique unknown ids — no entry seen, so nothing
// cached — make at most CENTRAL_MAX_RPS requests a second to the central
// (plus one second's burst); the others fail fast as central_limited.
// Before, each made a request: 50,001 in 6.6 s.
func TestUnknownIDsDoNotFloodTheCentral(t *testing.T) {
	shop, err := world.Generate(world.Config{Seed: 1, Reference: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	central.NewServer(shop.Catalog, nil, nil).Register(mux)
	var requests atomic.Int64
	peer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(peer.Close)
	const maxRPS = 100
	a := runApp(t, map[string]string{"CENTRAL_URL": peer.URL, "CENTRAL_MAX_RPS": fmt.Sprint(maxRPS)})

	const n = 50_000
	ts := time.Now().Unix()
	start := time.Now()
	var buf []byte
	for i := range n {
		buf = fmt.Appendf(buf[:0], `{"id":"nobody-%d","ts":%d,"dep":"Boys"}`, i, ts)
		publish(t, a, a.cfg.Pipeline.FocusTopic, buf)
	}
	accepted := func() float64 { return metrictest.Sum(t, a.reg, "storeflow_events_accepted_total", "kind=focus") }
	dropped := func() float64 { return metrictest.Sum(t, a.reg, "storeflow_events_dropped_total", "queue=focus") }
	deadline := time.Now().Add(30 * time.Second)
	for accepted()+dropped() < n || metrictest.Sum(t, a.reg, "storeflow_focus_outcomes_total") < accepted() {
		if time.Now().After(deadline) {
			t.Fatal("the focus events did not all reach an outcome within 30s")
		}
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
	elapsed := time.Since(start)
	bound := int64(maxRPS * (1 + elapsed.Seconds()))
	t.Logf("%d focus events of unknown ids: %d requests to the central in %s (bound %d)",
		n, requests.Load(), elapsed.Round(time.Millisecond), bound)
	if got := requests.Load(); got > bound {
		t.Errorf("%d requests to the central in %s, want at most %d (CENTRAL_MAX_RPS=%d)", got, elapsed, bound, maxRPS)
	}
	limited := metrictest.Sum(t, a.reg, "storeflow_focus_outcomes_total", "outcome=central_limited")
	if limited == 0 {
		t.Error("no focus event counted as central_limited")
	}
}

// A central that cannot be reached opens its circuit breaker after
// CENTRAL_BREAKER_FAILURES failures: the focus events after that fail fast
// as central_unavailable without a request, and /readyz says so while the
// process stays ready (the cache still serves what it holds).
func TestCentralBreakerFailsFocusFast(t *testing.T) {
	closed := proctest.FreeAddr(t) // nothing listens there: every call is refused
	a := runApp(t, map[string]string{"CENTRAL_URL": "http://" + closed, "CENTRAL_BREAKER_FAILURES": "2", "CENTRAL_BREAKER_COOLDOWN": "1h"})
	ts := time.Now().Unix()
	for i := range 10 {
		publish(t, a, a.cfg.Pipeline.FocusTopic, fmt.Appendf(nil, `{"id":"%d","ts":%d,"dep":"Boys"}`, i+1, ts))
	}
	outcome := func(o string) float64 {
		return metrictest.Sum(t, a.reg, "storeflow_focus_outcomes_total", "outcome="+o)
	}
	deadline := time.Now().Add(10 * time.Second)
	for outcome("context_error")+outcome("central_unavailable") < 10 {
		if time.Now().After(deadline) {
			t.Fatal("the focus events did not all reach an outcome within 10s")
		}
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
	// The context workers ask in parallel: a few calls may be out when the
	// breaker opens.
	calls := func(o string) float64 {
		return metrictest.Sum(t, a.reg, "storeflow_central_client_calls_total", "outcome="+o)
	}
	transport, refused := calls("transport"), calls("breaker_open")
	if transport < 2 || transport > float64(2+a.cfg.Pipeline.FocusWorkers) || transport+refused != 10 {
		t.Errorf("central client: %v refused connections, %v not asked; want 2 to %d refused connections, the rest not asked",
			transport, refused, 2+a.cfg.Pipeline.FocusWorkers)
	}
	if got := outcome("context_error"); got != transport {
		t.Errorf("%v focus events failed with the central's error, want the %v that asked", got, transport)
	}
	if code, body := readyz(t, a); code != http.StatusOK || !strings.HasPrefix(body, "ready, degraded: central: circuit breaker open") {
		t.Errorf("GET /readyz = %d %q, want 200 saying the central's breaker is open", code, body)
	}
}
