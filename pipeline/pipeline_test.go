package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/storeflow/storeflow/store"
	"github.com/storeflow/storeflow/store/world"

	"github.com/storeflow/storeflow/internal/harness"
)

// bus is an in-memory broker with the embedded broker's semantics: exact
// topics, and subscribers called synchronously from Publish.
type bus struct {
	mu   sync.Mutex
	subs map[string][]func(string, []byte)
	out  chan string // "topic payload" of every publish
}

func newBus() *bus {
	return &bus{subs: map[string][]func(string, []byte){}, out: make(chan string, 1000)}
}

func (b *bus) Subscribe(filter string, h func(string, []byte)) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.subs[filter] = append(b.subs[filter], h)
	return nil
}

func (b *bus) Publish(_ context.Context, topic string, payload []byte) error {
	b.mu.Lock()
	hs := b.subs[topic]
	b.mu.Unlock()
	select {
	case b.out <- topic + " " + string(payload):
	default:
	}
	for _, h := range hs {
		h(topic, payload)
	}
	return nil
}

// blockingCentral holds every customer lookup until release is closed.
type blockingCentral struct {
	*store.Catalog
	release chan struct{}
}

func (c blockingCentral) Customer(ctx context.Context, id string) (store.Customer, error) {
	select {
	case <-c.release:
	case <-ctx.Done():
	}
	return c.Catalog.Customer(ctx, id)
}

func testCatalog(t testing.TB) *store.Catalog {
	t.Helper()
	c, err := world.GenerateCatalog(world.Config{Seed: 1, Reference: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func testConfig() Config {
	return Config{
		EntryTopic: "enter", MoveTopic: "move", ExitTopic: "exit", FocusTopic: "focus", PredictionTopic: "prediction",
		FocusDwell: 10 * time.Second, FocusGap: 20 * time.Second, FocusCooldown: 10 * time.Minute,
		ShopperTTL: 30 * time.Minute, MaxShoppers: 1000, DwellWorkers: 2, FocusWorkers: 2,
		QueueSize: 16, Overflow: OverflowBlock, MaxProducts: 20, ShutdownTimeout: 5 * time.Second, DedupWindow: 1000,
		BrowsingTopic: "browsing", BrowsingAfter: 20 * time.Second, BrowsingMoves: 20, DwellState: DwellStateMemory,
	}
}

// newTestPipeline builds a quiet pipeline on the 6×10 test plan from parts.
func newTestPipeline(tb testing.TB, cfg Config, parts Parts) *Pipeline {
	tb.Helper()
	plan, err := store.GridPlan(6, 10)
	if err != nil {
		tb.Fatal(err)
	}
	parts.Plan, parts.Log = plan, slog.New(slog.DiscardHandler)
	p, err := New(cfg, parts)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// runUntilEnd runs p until the test ends; tweak may adjust it before it runs.
func runUntilEnd(t *testing.T, p *Pipeline, tweak func(*Pipeline)) *Pipeline {
	t.Helper()
	if tweak != nil {
		tweak(p)
	}
	harness.Start(t, "pipeline", p.Run, p.Ready())
	return p
}

// start runs a pipeline on b until the test ends.
func start(t *testing.T, cfg Config, central store.Source, b *bus, reg *prometheus.Registry, tweak func(*Pipeline)) *Pipeline {
	t.Helper()
	return runUntilEnd(t, newTestPipeline(t, cfg, Parts{Source: central, Scorer: discountScorer{}, Sub: b, Pub: b, Registerer: reg}), tweak)
}

// startShedding runs a pipeline with PIPELINE_OVERFLOW=drop, a focus queue
// of one and one focus worker, whose central blocks until its release is
// closed: focus events published now are shed at the focus hand-off.
func startShedding(t *testing.T) (*Pipeline, *bus, blockingCentral, *prometheus.Registry) {
	t.Helper()
	cfg := testConfig()
	cfg.Overflow, cfg.QueueSize, cfg.FocusWorkers = OverflowDrop, 1, 1
	reg := prometheus.NewRegistry()
	b := newBus()
	central := blockingCentral{Catalog: testCatalog(t), release: make(chan struct{})}
	return start(t, cfg, central, b, reg, nil), b, central, reg
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	harness.Until(t, 5*time.Second, what, cond)
}

func TestConfigValidate(t *testing.T) {
	if err := testConfig().Validate(); err != nil {
		t.Fatalf("test config invalid: %v", err)
	}
	off := testConfig()
	off.BrowsingAfter = 0
	if err := off.Validate(); err != nil {
		t.Fatalf("BROWSING_AFTER=0 (off) refused: %v", err)
	}
	tests := map[string]struct {
		mod  func(*Config)
		want string
	}{
		"dwell":               {func(c *Config) { c.FocusDwell = 0 }, "FOCUS_DWELL"},
		"workers":             {func(c *Config) { c.DwellWorkers = 0 }, "DWELL_WORKERS=0"},
		"queue":               {func(c *Config) { c.QueueSize = -1 }, "PIPELINE_QUEUE=-1"},
		"overflow":            {func(c *Config) { c.Overflow = "x" }, "PIPELINE_OVERFLOW"},
		"loop":                {func(c *Config) { c.PredictionTopic = c.MoveTopic }, "COUPON_PREDICTION_TOPIC_NAME"},
		"no topic":            {func(c *Config) { c.FocusTopic = "" }, "FOCUS_EVENT_TOPIC_NAME is empty"},
		"products":            {func(c *Config) { c.MaxProducts = 0 }, "PREDICTION_MAX_PRODUCTS=0"},
		"cooldown":            {func(c *Config) { c.FocusCooldown = -time.Second }, "FOCUS_COOLDOWN"},
		"ttl":                 {func(c *Config) { c.ShopperTTL = 0 }, "SHOPPER_TTL"},
		"shoppers":            {func(c *Config) { c.MaxShoppers = 0 }, "MAX_SHOPPERS=0"},
		"gap":                 {func(c *Config) { c.FocusGap = time.Millisecond }, "FOCUS_GAP"},
		"f workers":           {func(c *Config) { c.FocusWorkers = 5000 }, "FOCUS_WORKERS=5000"},
		"shutdown":            {func(c *Config) { c.ShutdownTimeout = 0 }, "SHUTDOWN_TIMEOUT=0s"},
		"no browsing topic":   {func(c *Config) { c.BrowsingTopic = "" }, "BROWSING_TOPIC is empty"},
		"browsing loop":       {func(c *Config) { c.BrowsingTopic = c.FocusTopic }, "BROWSING_TOPIC"},
		"browsing prediction": {func(c *Config) { c.BrowsingTopic = c.PredictionTopic }, "BROWSING_TOPIC"},
		"browsing after":      {func(c *Config) { c.BrowsingAfter = 500 * time.Millisecond }, "BROWSING_AFTER=500ms"},
		"browsing after neg":  {func(c *Config) { c.BrowsingAfter = -time.Second }, "BROWSING_AFTER=-1s"},
		"browsing moves":      {func(c *Config) { c.BrowsingMoves = 0 }, "BROWSING_MOVES=0"},
		"browsing moves big":  {func(c *Config) { c.BrowsingMoves = 70000 }, "BROWSING_MOVES=70000"},
		"first":               {func(c *Config) { c.FirstCouponWait = -time.Second }, "FIRST_COUPON_WAIT=-1s"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			c := testConfig()
			tt.mod(&c)
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
}

// With PIPELINE_OVERFLOW=drop a full queue drops events, and every event is
// either accepted or counted as dropped: nothing is lost silently.
func TestOverflowDropCountsEveryEvent(t *testing.T) {
	p, b, central, _ := startShedding(t)
	const n = 50
	publishFocus(b, n)
	accepted := testutil.ToFloat64(p.m.accepted.WithLabelValues(kindFocus))
	dropped := testutil.ToFloat64(p.m.dropped.WithLabelValues("focus"))
	if accepted+dropped != n || dropped == 0 {
		t.Fatalf("accepted %v + dropped %v, want %d with some dropped", accepted, dropped, n)
	}
	close(central.release)
	waitFor(t, "accepted focus events all reach an outcome", func() bool {
		var sum float64
		for _, o := range outcomes {
			sum += testutil.ToFloat64(p.m.focusOutcome.WithLabelValues(o))
		}
		return sum == accepted
	})
}

// heldBroker is a bus that does not take focus events until release is
// closed: a dwell worker publishing one waits.
type heldBroker struct {
	*bus
	release chan struct{}
}

func (h heldBroker) Publish(ctx context.Context, topic string, payload []byte) error {
	if topic == "focus" {
		select {
		case <-h.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return h.bus.Publish(ctx, topic, payload)
}

// With PIPELINE_OVERFLOW=block a publisher waits for room in a dwell queue,
// and stops waiting once the pipeline is stopping: what it could not hand
// over is counted as dropped "shutdown".
func TestOverflowBlockReleasesOnStop(t *testing.T) {
	cfg := testConfig()
	cfg.QueueSize, cfg.DwellWorkers = 1, 1
	b := heldBroker{bus: newBus(), release: make(chan struct{})}
	p := newTestPipeline(t, cfg, Parts{Source: testCatalog(t), Scorer: discountScorer{}, Threshold: 0.2, Sub: b, Pub: b})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	<-p.Ready()
	published := make(chan struct{})
	go func() {
		defer close(published)
		for i := range 30 { // the 11th completes a focus, which the broker holds
			_ = b.Publish(context.Background(), "move", fmt.Appendf(nil, `{"id":"5","ts":%d,"x":0,"y":7}`, 1795000000+i))
		}
	}()
	select {
	case <-published:
		t.Fatal("the publisher never waited although the dwell worker is held")
	case <-time.After(200 * time.Millisecond): // the publisher is expected to be blocked now
	}
	cancel()
	select {
	case <-published:
	case <-time.After(5 * time.Second):
		t.Fatal("a blocked publisher was not released when the pipeline stopped")
	}
	close(b.release) // what was accepted can finish now
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if testutil.ToFloat64(p.m.dropped.WithLabelValues(dropShutdown)) == 0 {
		t.Fatal("events refused at stop were not counted as dropped")
	}
}

// Shoppers who vanish without an exit are forgotten after SHOPPER_TTL, and
// MAX_SHOPPERS bounds how many are tracked: a new shopper evicts one.
func TestShopperExpiryAndLimit(t *testing.T) {
	cfg := testConfig()
	cfg.DwellWorkers, cfg.MaxShoppers, cfg.ShopperTTL = 1, 2, time.Second
	b := newBus()
	var mu sync.Mutex
	clock := time.Now()
	p := start(t, cfg, testCatalog(t), b, prometheus.NewRegistry(), func(p *Pipeline) {
		p.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	})
	for _, id := range []string{"1", "2", "3"} {
		_ = b.Publish(context.Background(), "move", fmt.Appendf(nil, `{"id":%q,"ts":1795000000,"x":0,"y":0}`, id))
	}
	waitFor(t, "third shopper evicts the first at MAX_SHOPPERS=2", func() bool {
		return testutil.ToFloat64(p.m.evicted[evictedOneMove]) == 1
	})
	if got := testutil.ToFloat64(p.m.tracked); got != 2 {
		t.Fatalf("tracked = %v, want 2", got)
	}
	mu.Lock()
	clock = clock.Add(time.Hour)
	mu.Unlock()
	waitFor(t, "vanished shoppers expire", func() bool { return testutil.ToFloat64(p.m.expired) == 2 })
	if got := testutil.ToFloat64(p.m.tracked); got != 0 {
		t.Fatalf("tracked = %v after expiry, want 0", got)
	}
	// An exit forgets a shopper at once.
	_ = b.Publish(context.Background(), "move", []byte(`{"id":"4","ts":1795000000,"x":0,"y":0}`))
	_ = b.Publish(context.Background(), "exit", []byte(`{"id":"4","ts":1795000001}`))
	waitFor(t, "exit forgets", func() bool {
		return testutil.ToFloat64(p.m.accepted.WithLabelValues(kindExit)) == 1 && testutil.ToFloat64(p.m.tracked) == 0
	})
}

// A focus that completes publishes to the focus topic and, through the same
// bus, yields a prediction.
func TestMovesToPrediction(t *testing.T) {
	b := newBus()
	p := start(t, testConfig(), testCatalog(t), b, prometheus.NewRegistry(), nil)
	ts := time.Now().Unix()
	for i := range 12 {
		_ = b.Publish(context.Background(), "move", fmt.Appendf(nil, `{"id":"5","ts":%d,"x":0,"y":7}`, ts+int64(i)))
	}
	// The coupon may come before the last moves are published: look for it
	// anywhere, not last.
	var got []string
	predicted := false
	waitFor(t, "prediction published", func() bool {
		for {
			select {
			case m := <-b.out:
				got = append(got, m)
				predicted = predicted || strings.HasPrefix(m, "prediction ")
			default:
				return predicted
			}
		}
	})
	focus := fmt.Sprintf(`focus {"id":"5","ts":%d,"dep":"Men","x":0,"y":7}`, ts+10)
	found := false
	for _, m := range got {
		found = found || m == focus
	}
	if !found {
		t.Fatalf("no %s among %v", focus, got)
	}
	if testutil.ToFloat64(p.m.focusOutcome.WithLabelValues(OutcomePublished)) != 1 {
		t.Fatal("published outcome not counted")
	}
}

// discountScorer scores a coupon by its discount: 30 % off → 0.3. Simple
// enough that a test can tell which coupon must win.
type discountScorer struct{}

func (discountScorer) Score(_ context.Context, _ *store.Customer, coupons []store.Coupon, out []float64) error {
	for i := range coupons {
		out[i] = float64(coupons[i].Discount) / 100
	}
	return nil
}

// heldScorer scores like discountScorer once release is closed; until then
// it holds the call, and gives up only when its context ends.
type heldScorer struct {
	entered chan struct{} // receives one value per call
	release chan struct{}
}

func (s heldScorer) Score(ctx context.Context, c *store.Customer, coupons []store.Coupon, out []float64) error {
	s.entered <- struct{}{}
	select {
	case <-s.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return discountScorer{}.Score(ctx, c, coupons, out)
}

// runPipeline runs a pipeline with scorer until cancel is called; the error
// of Run arrives on done.
func runPipeline(t *testing.T, cfg Config, scorer heldScorer, b *bus) (p *Pipeline, cancel func(), done <-chan error) {
	t.Helper()
	p = newTestPipeline(t, cfg, Parts{Source: testCatalog(t), Scorer: scorer, Sub: b, Pub: b})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	d := make(chan error, 1)
	go func() { d <- p.Run(ctx) }()
	select {
	case <-p.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("pipeline not ready")
	}
	return p, cancel, d
}

// scorerEntered waits until scorer holds a call.
func scorerEntered(t *testing.T, scorer heldScorer) {
	t.Helper()
	select {
	case <-scorer.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the scorer was never called")
	}
}

// runReturned fails the test unless Run, reporting on done, returns nil
// within 5s; after says what it returns after.
func runReturned(t *testing.T, done <-chan error, after string) {
	t.Helper()
	harness.Done(t, 5*time.Second, "Run returned "+after, done)
}

// publishFocus sends focus events of n different shoppers in Men, today.
func publishFocus(b *bus, n int) { publishFocusFrom(b, 1, n) }

// publishFocusFrom sends focus events of n shoppers in Men, today, the
// first of them with id first.
func publishFocusFrom(b *bus, first, n int) {
	ts := time.Now().Unix()
	for i := range n {
		_ = b.Publish(context.Background(), "focus", fmt.Appendf(nil, `{"id":"%d","ts":%d,"dep":"Men"}`, first+i, ts))
	}
}

func sampleCount(t *testing.T, o prometheus.Observer) uint64 {
	t.Helper()
	var m dto.Metric
	if err := o.(prometheus.Metric).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// At shutdown the focus events already queued are finished, their coupons
// published, before Run returns; new events are refused and counted.
func TestShutdownDrainsQueuedFocus(t *testing.T) {
	cfg := testConfig()
	cfg.FocusWorkers = 1
	b := newBus()
	scorer := heldScorer{entered: make(chan struct{}, 100), release: make(chan struct{})}
	p, cancel, done := runPipeline(t, cfg, scorer, b)
	const n = 8
	publishFocus(b, n)
	scorerEntered(t, scorer) // one in the scorer, the rest queued behind it
	cancel()
	close(scorer.release)
	runReturned(t, done, "of the scorer's release")
	predictions := 0
	for len(b.out) > 0 {
		if strings.HasPrefix(<-b.out, "prediction ") {
			predictions++
		}
	}
	if predictions != n {
		t.Errorf("%d predictions published before Run returned, want %d", predictions, n)
	}
	for name, got := range map[string]float64{
		"focus_outcomes{published}": testutil.ToFloat64(p.m.focusOutcome.WithLabelValues(OutcomePublished)),
		"coupons_published":         testutil.ToFloat64(p.m.published),
		"predictions{ok}":           testutil.ToFloat64(p.m.predictions.WithLabelValues("ok")),
		"focus_seconds samples":     float64(sampleCount(t, p.m.focusSeconds)),
		"prediction_seconds count":  float64(sampleCount(t, p.m.predictionSeconds)),
		"stage{context} samples":    float64(sampleCount(t, p.m.stageContext)),
		"stage{score} samples":      float64(sampleCount(t, p.m.stageScore)),
		"stage{publish} samples":    float64(sampleCount(t, p.m.stagePublish)),
	} {
		if got != n {
			t.Errorf("%s = %v, want %d", name, got, n)
		}
	}
	if got := testutil.ToFloat64(p.m.dropped.WithLabelValues(dropShutdown)); got != 0 {
		t.Errorf("dropped{shutdown} = %v, want 0", got)
	}
	if got := testutil.CollectAndCount(p.m.stageSeconds, "storeflow_focus_stage_seconds"); got != 3 {
		t.Errorf("storeflow_focus_stage_seconds has %d series, want 3", got)
	}
	// Intake is closed: a late event is refused and counted.
	_ = b.Publish(context.Background(), "focus", fmt.Appendf(nil, `{"id":"late","ts":%d,"dep":"Men"}`, time.Now().Unix()))
	if got := testutil.ToFloat64(p.m.dropped.WithLabelValues(dropShutdown)); got != 1 {
		t.Errorf("dropped{shutdown} = %v after a late event, want 1", got)
	}
}

// A scorer that never answers holds shutdown for SHUTDOWN_TIMEOUT, no
// longer; every focus event it held up is counted as dropped "shutdown".
func TestShutdownTimeoutAbandons(t *testing.T) {
	cfg := testConfig()
	cfg.FocusWorkers, cfg.ShutdownTimeout = 1, 200*time.Millisecond
	b := newBus()
	scorer := heldScorer{entered: make(chan struct{}, 100), release: make(chan struct{})}
	p, cancel, done := runPipeline(t, cfg, scorer, b)
	const n = 6
	publishFocus(b, n)
	scorerEntered(t, scorer)
	start := time.Now()
	cancel()
	runReturned(t, done, "with SHUTDOWN_TIMEOUT=200ms")
	if took := time.Since(start); took < cfg.ShutdownTimeout {
		t.Errorf("Run returned after %s, before SHUTDOWN_TIMEOUT", took)
	}
	if got := testutil.ToFloat64(p.m.dropped.WithLabelValues(dropShutdown)); got != n {
		t.Errorf("dropped{shutdown} = %v, want the %d abandoned focus events", got, n)
	}
	var settled float64
	for _, o := range outcomes {
		settled += testutil.ToFloat64(p.m.focusOutcome.WithLabelValues(o))
	}
	if settled != 0 {
		t.Errorf("%v focus outcomes counted, want 0: all were abandoned", settled)
	}
	// The held call fails when abandoned; a worker may take one more job
	// before it sees the cancellation, and that call fails at once.
	if got := testutil.ToFloat64(p.m.predictions.WithLabelValues("error")); got < 1 {
		t.Errorf("predictions{error} = %v, want the cancelled call", got)
	}
	if got := testutil.ToFloat64(p.m.predictions.WithLabelValues("ok")); got != 0 {
		t.Errorf("predictions{ok} = %v, want 0", got)
	}
	if p.pending.Load() != 0 {
		t.Errorf("pending = %d after Run, want 0", p.pending.Load())
	}
}
