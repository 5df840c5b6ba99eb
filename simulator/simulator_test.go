package simulator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/storeflow/storeflow/event"
	"github.com/storeflow/storeflow/internal/harness"
	"github.com/storeflow/storeflow/internal/metrictest"
	"github.com/storeflow/storeflow/store"
)

var testStart = time.Unix(1_700_000_000, 0).UTC()

func testConfig() Config {
	return Config{
		Enabled:        true,
		Speed:          MaxSpeed,
		Seed:           42,
		AverageInStore: 6,
		CustomersFile:  "customers.csv",
		EnterTopic:     "customer/enter",
		MoveTopic:      "customer/move",
		ExitTopic:      "customer/exit",
		Dwell:          12 * time.Second,
		Gap:            20 * time.Second,
		Start:          testStart,
	}
}

func customerIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = strconv.Itoa(i + 1)
	}
	return ids
}

func gridPlan(t testing.TB) *store.Plan {
	t.Helper()
	p, err := store.GridPlan(6, 10)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// published is one event as the fake broker saw it.
type published struct {
	topic   string
	payload []byte
}

// ev is a decoded event.
type ev struct {
	kind   string // enter, move, exit
	id     string
	ts     int64
	x, y   int
	wallAt time.Duration // since the recorder started
}

// recorder is the fake Publisher: it keeps a copy of every payload, decodes
// it, and cancels the run when stop says so.
type recorder struct {
	t      testing.TB
	cfg    Config
	cancel context.CancelFunc
	stop   func(e ev, n int) bool
	fail   func(n int) error // optional: the error to answer the n-th publish with
	start  time.Time

	raw    []published
	events []ev
	calls  int
}

func (r *recorder) Publish(ctx context.Context, topic string, payload []byte) error {
	r.calls++
	if r.fail != nil {
		if err := r.fail(r.calls); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		r.t.Errorf("publish after the run was cancelled: %s %s", topic, payload)
		return ctx.Err()
	}
	p := published{topic: topic, payload: bytes.Clone(payload)}
	e := ev{wallAt: time.Since(r.start)}
	switch topic {
	case r.cfg.EnterTopic, r.cfg.ExitTopic:
		pr, err := event.DecodePresence(payload)
		if err != nil {
			r.t.Errorf("%s payload %s: %v", topic, payload, err)
		}
		e.kind, e.id, e.ts = "enter", pr.ID, pr.TS
		if topic == r.cfg.ExitTopic {
			e.kind = "exit"
		}
	case r.cfg.MoveTopic:
		m, err := event.DecodeMove(payload)
		if err != nil {
			r.t.Errorf("%s payload %s: %v", topic, payload, err)
		}
		e.kind, e.id, e.ts, e.x, e.y = "move", m.ID, m.TS, m.X, m.Y
	default:
		r.t.Errorf("publish on unexpected topic %q", topic)
	}
	r.raw = append(r.raw, p)
	r.events = append(r.events, e)
	if r.stop(e, len(r.events)) {
		r.cancel()
	}
	return nil
}

// afterEvents stops a run after n events.
func afterEvents(n int) func(ev, int) bool {
	return func(_ ev, k int) bool { return k >= n }
}

// afterSimulated stops a run at the first event d of simulated time after start.
func afterSimulated(cfg Config, d time.Duration) func(ev, int) bool {
	end := cfg.Start.Add(d).Unix()
	return func(e ev, _ int) bool { return e.ts >= end }
}

type runOpts struct {
	customers []string
	setup     func(*Simulator)
	fail      func(n int) error
	log       *slog.Logger
	timeout   time.Duration
}

// runSim runs a simulator until stop cancels it, with a bounded wait.
func runSim(t testing.TB, cfg Config, plan *store.Plan, stop func(ev, int) bool, o runOpts) (*recorder, *Simulator, *prometheus.Registry) {
	t.Helper()
	if o.customers == nil {
		o.customers = customerIDs(1000)
	}
	if o.timeout == 0 {
		o.timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	t.Cleanup(cancel)
	rec := &recorder{t: t, cfg: cfg, cancel: cancel, stop: stop, fail: o.fail}
	reg := prometheus.NewRegistry()
	s, err := New(cfg, plan, o.customers, rec, o.log, reg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if o.setup != nil {
		o.setup(s)
	}
	rec.start = time.Now()
	if err := s.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("run did not reach its stop condition within %v (%d events)", o.timeout, len(rec.events))
	}
	return rec, s, reg
}

func TestSameSeedSameEvents(t *testing.T) {
	plan := gridPlan(t)
	cfg := testConfig()
	a, _, _ := runSim(t, cfg, plan, afterEvents(5000), runOpts{})
	b, _, _ := runSim(t, cfg, plan, afterEvents(5000), runOpts{})
	if len(a.raw) != len(b.raw) {
		t.Fatalf("runs published %d and %d events", len(a.raw), len(b.raw))
	}
	for i := range a.raw {
		if a.raw[i].topic != b.raw[i].topic || !bytes.Equal(a.raw[i].payload, b.raw[i].payload) {
			t.Fatalf("event %d differs: %s %s vs %s %s", i, a.raw[i].topic, a.raw[i].payload, b.raw[i].topic, b.raw[i].payload)
		}
	}

	cfg.Seed = 43
	c, _, _ := runSim(t, cfg, plan, afterEvents(5000), runOpts{})
	same := len(c.raw) == len(a.raw)
	for i := 0; same && i < len(a.raw); i++ {
		same = bytes.Equal(a.raw[i].payload, c.raw[i].payload)
	}
	if same {
		t.Fatal("seeds 42 and 43 published the same events")
	}
}

func TestRandomSeedIsReplayable(t *testing.T) {
	plan := gridPlan(t)
	cfg := testConfig()
	cfg.Seed = 0
	a, s, _ := runSim(t, cfg, plan, afterEvents(2000), runOpts{})
	if s.Seed() == 0 {
		t.Fatal("Seed() = 0 after New with seed 0; want the random seed picked")
	}
	cfg.Seed = s.Seed()
	b, _, _ := runSim(t, cfg, plan, afterEvents(2000), runOpts{})
	for i := range a.raw {
		if !bytes.Equal(a.raw[i].payload, b.raw[i].payload) {
			t.Fatalf("replay with Seed()=%d differs at event %d: %s vs %s", cfg.Seed, i, a.raw[i].payload, b.raw[i].payload)
		}
	}
}

// visit is what a checker knows about one shopper in the store.
type visit struct {
	moves []ev
	stops []stop
}

// deptRun is a stretch of consecutive moves inside one department.
type deptRun struct {
	dep         store.Department
	first, last int64 // ts
}

// checkVisits checks every shopper's events and the walk between stops, and
// returns how many lingering and passing-through stops it saw and the
// time-average and maximum number of shoppers in the store.
type visitReport struct {
	visits, lingers, passes int
	avgInStore              float64
	maxInStore              int
}

func checkVisits(t *testing.T, cfg Config, plan *store.Plan, events []ev, itineraries map[string][][]stop, allowStay bool) visitReport {
	t.Helper()
	var rep visitReport
	inside := map[string]*visit{}
	var area float64
	startTS, lastTS := cfg.Start.Unix(), cfg.Start.Unix()
	errs := 0
	fail := func(format string, args ...any) {
		t.Helper()
		if errs++; errs <= 10 {
			t.Errorf(format, args...)
		}
	}
	for i, e := range events {
		if e.ts < lastTS {
			fail("event %d: ts %d goes back from %d", i, e.ts, lastTS)
		}
		area += float64(len(inside)) * float64(e.ts-lastTS)
		lastTS = e.ts
		v := inside[e.id]
		switch e.kind {
		case "enter":
			if v != nil {
				fail("event %d: customer %s enters while already in the store", i, e.id)
				continue
			}
			v = &visit{}
			if its := itineraries[e.id]; len(its) > 0 {
				v.stops = its[0]
				itineraries[e.id] = its[1:]
			}
			inside[e.id] = v
			rep.maxInStore = max(rep.maxInStore, len(inside))
			if next := i + 1; next >= len(events) || events[next].kind != "move" || events[next].id != e.id || events[next].ts != e.ts {
				if next < len(events) {
					fail("event %d: enter of %s is not followed by its first move at the same ts", i, e.id)
				}
			}
		case "move":
			if v == nil {
				fail("event %d: move of %s, who is not in the store", i, e.id)
				continue
			}
			if !plan.Contains(e.x, e.y) {
				fail("event %d: move of %s to (%d,%d) is off the plan", i, e.id, e.x, e.y)
			}
			if len(v.moves) == 0 {
				if e.x != plan.Entrance.X || e.y != plan.Entrance.Y {
					fail("event %d: first move of %s at (%d,%d), not at the entrance %v", i, e.id, e.x, e.y, plan.Entrance)
				}
			} else {
				p := v.moves[len(v.moves)-1]
				if e.ts-p.ts != 1 {
					fail("event %d: moves of %s %d s apart, want 1", i, e.id, e.ts-p.ts)
				}
				dx, dy := abs(e.x-p.x), abs(e.y-p.y)
				ok := dx == plan.Step && dy == 0 || dx == 0 && dy == plan.Step || allowStay && dx == 0 && dy == 0
				if !ok {
					fail("event %d: %s steps from (%d,%d) to (%d,%d), not one lattice step %d", i, e.id, p.x, p.y, e.x, e.y, plan.Step)
				}
			}
			v.moves = append(v.moves, e)
		case "exit":
			if v == nil {
				fail("event %d: exit of %s, who is not in the store", i, e.id)
				continue
			}
			delete(inside, e.id)
			rep.visits++
			last := v.moves[len(v.moves)-1]
			if last.x != plan.Exit.X || last.y != plan.Exit.Y || last.ts != e.ts {
				fail("event %d: %s exits at ts %d after a last move at (%d,%d) ts %d; want the exit %v at the same ts", i, e.id, e.ts, last.x, last.y, last.ts, plan.Exit)
			}
			if v.stops == nil {
				continue
			}
			runs := departmentRuns(plan, v.moves)
			if len(runs) != len(v.stops) {
				fail("event %d: %s walked through departments %v, itinerary %v", i, e.id, runs, v.stops)
				continue
			}
			for k, r := range runs {
				st := v.stops[k]
				span := time.Duration(r.last-r.first) * time.Second
				switch {
				case r.dep != st.dep:
					fail("event %d: %s walked through departments %v, itinerary %v", i, e.id, runs, v.stops)
				case st.pass && span >= cfg.Dwell/2:
					fail("event %d: %s passed through %v in %v, want under %v", i, e.id, r.dep, span, cfg.Dwell/2)
				case !st.pass && span < cfg.Dwell:
					fail("event %d: %s lingered in %v for %v, want at least %v", i, e.id, r.dep, span, cfg.Dwell)
				case st.pass:
					rep.passes++
				default:
					rep.lingers++
				}
			}
		}
	}
	if lastTS > startTS {
		rep.avgInStore = area / float64(lastTS-startTS)
	}
	return rep
}

func departmentRuns(plan *store.Plan, moves []ev) []deptRun {
	var runs []deptRun
	for i, m := range moves {
		d := plan.DepartmentAt(m.x, m.y)
		switch {
		case d == store.NoDepartment:
		case i > 0 && len(runs) > 0 && plan.DepartmentAt(moves[i-1].x, moves[i-1].y) == d:
			runs[len(runs)-1].last = m.ts
		default:
			runs = append(runs, deptRun{dep: d, first: m.ts, last: m.ts})
		}
	}
	return runs
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// traceItineraries records every visit's itinerary, in order per customer.
func traceItineraries(m map[string][][]stop) func(*Simulator) {
	return func(s *Simulator) {
		s.traceVisit = func(id string, stops []stop) {
			m[id] = append(m[id], append([]stop(nil), stops...))
		}
	}
}

func TestVisits(t *testing.T) {
	grid := gridPlan(t)
	for _, tc := range []struct {
		name  string
		plan  *store.Plan
		dwell time.Duration
	}{
		{"grid", grid, 12 * time.Second},
		{"grid_short_dwell", grid, 2 * time.Second},
		{"original", store.OriginalPlan(), 12 * time.Second},
		{"original_long_dwell", store.OriginalPlan(), 45 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.Dwell = tc.dwell
			cfg.Gap = tc.dwell + time.Second
			its := map[string][][]stop{}
			rec, _, _ := runSim(t, cfg, tc.plan, afterSimulated(cfg, 2*time.Hour), runOpts{setup: traceItineraries(its)})
			rep := checkVisits(t, cfg, tc.plan, rec.events, its, false)
			t.Logf("%d events, %d visits, %d lingering stops, %d passed through", len(rec.events), rep.visits, rep.lingers, rep.passes)
			if rep.visits < 100 {
				t.Errorf("only %d complete visits in two simulated hours", rep.visits)
			}
			if rep.lingers == 0 {
				t.Error("no shopper lingered in a department")
			}
			if rep.passes == 0 && tc.dwell >= 4*time.Second {
				// With a 2 s dwell a pass-through is a single move: span 0, not > 0.
				t.Error("no shopper passed through a department")
			}
		})
	}
}

func TestAverageInStore(t *testing.T) {
	for _, avg := range []int{6, 20} {
		t.Run(strconv.Itoa(avg), func(t *testing.T) {
			cfg := testConfig()
			cfg.AverageInStore = avg
			plan := gridPlan(t)
			rec, s, reg := runSim(t, cfg, plan, afterSimulated(cfg, 4*time.Hour), runOpts{customers: customerIDs(2000)})
			rep := checkVisits(t, cfg, plan, rec.events, nil, false)
			t.Logf("mean visit %v, time-average %.2f in store, at most %d, %d visits", s.meanVisit, rep.avgInStore, rep.maxInStore, rep.visits)
			if lo, hi := 0.65*float64(avg), 1.35*float64(avg); rep.avgInStore < lo || rep.avgInStore > hi {
				t.Errorf("time-average %.2f shoppers in the store, want %d ± 35 %%", rep.avgInStore, avg)
			}
			if limit := 4*avg + 10; rep.maxInStore > limit {
				t.Errorf("%d shoppers in the store at once, over the cap %d", rep.maxInStore, limit)
			}
			if got := metrictest.Value(t, reg, "storeflow_simulator_visits_total"); int(got) < rep.visits {
				t.Errorf("visits_total = %v, want >= %d completed visits", got, rep.visits)
			}
		})
	}
}

func TestCapAndCustomersInsideOnce(t *testing.T) {
	plan := gridPlan(t)
	for _, tc := range []struct {
		name      string
		customers int
		cap       int // 0: the default 4*avg+10
		wantMax   int
	}{
		{"few_customers", 4, 0, 4},
		{"cap", 1000, 3, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			o := runOpts{customers: customerIDs(tc.customers)}
			if tc.cap > 0 {
				o.setup = func(s *Simulator) { s.maxIn = tc.cap }
			}
			rec, _, reg := runSim(t, cfg, plan, afterSimulated(cfg, time.Hour), o)
			rep := checkVisits(t, cfg, plan, rec.events, nil, false)
			if rep.maxInStore > tc.wantMax {
				t.Errorf("%d shoppers in the store at once, want at most %d", rep.maxInStore, tc.wantMax)
			}
			if away := metrictest.Value(t, reg, "storeflow_simulator_arrivals_turned_away_total"); away == 0 {
				t.Error("no arrival was turned away")
			}
			if rep.visits == 0 {
				t.Error("no visit completed")
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	cfg := testConfig()
	rec, s, reg := runSim(t, cfg, gridPlan(t), afterEvents(3000), runOpts{})
	count := map[string]int{}
	for _, e := range rec.events {
		count[e.kind]++
	}
	for _, kind := range []string{"enter", "move", "exit"} {
		if got := metrictest.Value(t, reg, "storeflow_simulator_events_published_total", "kind="+kind); int(got) != count[kind] {
			t.Errorf("events_published_total{kind=%q} = %v, want %d", kind, got, count[kind])
		}
	}
	if got := metrictest.Value(t, reg, "storeflow_simulator_shoppers_in_store"); int(got) != s.inStore || s.inStore != count["enter"]-count["exit"] {
		t.Errorf("shoppers_in_store = %v, inStore %d, want %d", got, s.inStore, count["enter"]-count["exit"])
	}
}

// countingHandler counts log records by message.
type countingHandler struct {
	counts map[string]int
	attrs  map[string][]slog.Attr
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	h.counts[r.Message]++
	r.Attrs(func(a slog.Attr) bool {
		h.attrs[r.Message] = append(h.attrs[r.Message], a)
		return true
	})
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }

func TestPublishErrorsCountedAndRateLimited(t *testing.T) {
	cfg := testConfig()
	h := &countingHandler{counts: map[string]int{}, attrs: map[string][]slog.Attr{}}
	errBroker := errors.New("broker down")
	failures := 0
	o := runOpts{
		log: slog.New(h),
		fail: func(n int) error {
			if n%3 == 0 {
				failures++
				return errBroker
			}
			return nil
		},
	}
	rec, _, reg := runSim(t, cfg, gridPlan(t), afterEvents(3000), o)
	if got := metrictest.Value(t, reg, "storeflow_simulator_publish_errors_total"); int(got) != failures {
		t.Errorf("publish_errors_total = %v, want %d", got, failures)
	}
	if len(rec.events) < 3000 {
		t.Errorf("simulation stopped after %d events", len(rec.events))
	}
	// The whole run takes well under 10 s of wall time: one line.
	if n := h.counts["simulator publish failed"]; n != 1 {
		t.Errorf("%d publish failure log lines, want 1 (rate-limited)", n)
	}
	if n := h.counts["simulator started"]; n != 1 {
		t.Errorf("%d start log lines, want 1", n)
	}
	keys := map[string]bool{}
	for _, a := range h.attrs["simulator started"] {
		keys[a.Key] = true
	}
	for _, k := range []string{"seed", "speed", "average_in_store", "customers", "plan"} {
		if !keys[k] {
			t.Errorf("start log line has no %q", k)
		}
	}
}

func TestPacing(t *testing.T) {
	cfg := testConfig()
	cfg.Speed = 20
	const simulated = 20 * time.Second // about one second of wall time
	rec, _, _ := runSim(t, cfg, gridPlan(t), afterSimulated(cfg, simulated), runOpts{timeout: 20 * time.Second})
	last := rec.events[len(rec.events)-1]
	sim := time.Duration(last.ts-cfg.Start.Unix()) * time.Second
	ratio := sim.Seconds() / last.wallAt.Seconds()
	t.Logf("%v simulated in %v wall: %.1f×", sim, last.wallAt, ratio)
	if ratio < 10 || ratio > 30 {
		t.Errorf("simulated time ran %.1f× wall time, want about 20×", ratio)
	}
}

func TestRun(t *testing.T) {
	t.Run("twice", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		s, err := New(testConfig(), gridPlan(t), customerIDs(10), nopPublisher{}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Run(ctx); err != nil {
			t.Fatalf("Run on a done context: %v", err)
		}
		if err := s.Run(ctx); err == nil {
			t.Fatal("second Run: no error")
		}
	})
	t.Run("disabled", func(t *testing.T) {
		cfg := testConfig()
		cfg.Enabled = false
		var published atomic.Int64
		pub := publisherFunc(func(context.Context, string, []byte) error { published.Add(1); return nil })
		s, err := New(cfg, gridPlan(t), customerIDs(10), pub, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		ready := make(chan struct{})
		close(ready) // a disabled simulator only waits for its context
		stop := harness.Start(t, "disabled simulator", s.Run, ready)
		stop(10 * time.Second)
		if n := published.Load(); n != 0 {
			t.Fatalf("disabled simulator published %d events", n)
		}
	})
	t.Run("real_time_cancel", func(t *testing.T) {
		// At real speed the first event is up to 5 s away; cancel must cut the wait short.
		cfg := testConfig()
		cfg.Speed = 1
		s, err := New(cfg, gridPlan(t), customerIDs(10), nopPublisher{}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		if err := s.Run(ctx); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("Run took %v to notice the cancelled context", d)
		}
	})
}

type nopPublisher struct{}

func (nopPublisher) Publish(context.Context, string, []byte) error { return nil }

type publisherFunc func(context.Context, string, []byte) error

func (f publisherFunc) Publish(ctx context.Context, topic string, payload []byte) error {
	return f(ctx, topic, payload)
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string // substring of the error; "" = valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"disabled_ignores_bad_values", func(c *Config) { c.Enabled = false; c.Speed = 0 }, ""},
		{"speed_zero", func(c *Config) { c.Speed = 0 }, "SIMULATOR_SPEED=0: must be > 0"},
		{"speed_negative", func(c *Config) { c.Speed = -2 }, "SIMULATOR_SPEED=-2"},
		{"speed_too_high", func(c *Config) { c.Speed = 2e6 }, "SIMULATOR_SPEED=2e+06: must be <= 1e6"},
		{"speed_max", func(c *Config) { c.Speed = 1e6 }, ""},
		{"average_zero", func(c *Config) { c.AverageInStore = 0 }, "CUSTOMERS_AVERAGE_IN_STORE=0"},
		{"average_too_high", func(c *Config) { c.AverageInStore = 10001 }, "CUSTOMERS_AVERAGE_IN_STORE=10001"},
		{"average_max", func(c *Config) { c.AverageInStore = 10000 }, ""},
		{"no_customers_file", func(c *Config) { c.CustomersFile = "" }, "CUSTOMERS_LIST_FILE="},
		{"enter_topic_empty", func(c *Config) { c.EnterTopic = "" }, "ENTER_TOPIC=: must not be empty"},
		{"move_topic_plus", func(c *Config) { c.MoveTopic = "customer/+" }, "MOVE_TOPIC=customer/+"},
		{"exit_topic_hash", func(c *Config) { c.ExitTopic = "customer/#" }, "EXIT_TOPIC=customer/#"},
		{"topics_equal", func(c *Config) { c.ExitTopic = c.EnterTopic }, "EXIT_TOPIC=customer/enter: must differ from ENTER_TOPIC"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			tc.edit(&cfg)
			err := cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("Validate: nil, want an error with %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("Validate: %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestNewRefuses(t *testing.T) {
	grid := gridPlan(t)
	plan := func(edit func(p *store.Plan)) *store.Plan {
		p := *grid
		p.Areas = append([]store.Area(nil), grid.Areas...)
		edit(&p)
		return &p
	}
	for _, tc := range []struct {
		name      string
		edit      func(*Config)
		plan      *store.Plan
		customers []string
		pub       Publisher
		want      string
	}{
		{name: "bad_config", edit: func(c *Config) { c.Speed = 0 }, want: "SIMULATOR_SPEED=0"},
		{name: "disabled_bad_config", edit: func(c *Config) { c.Enabled = false; c.Speed = 0 }, want: "SIMULATOR_SPEED=0"},
		{name: "dwell_short", edit: func(c *Config) { c.Dwell = time.Second }, want: "dwell"},
		{name: "dwell_long", edit: func(c *Config) { c.Dwell = 2 * time.Hour }, want: "dwell"},
		{name: "gap_one_second", edit: func(c *Config) { c.Gap = time.Second }, want: "gap"},
		{name: "start_before_1970", edit: func(c *Config) { c.Start = time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC) }, want: "start"},
		{name: "nil_plan", plan: nil, want: "plan"},
		{name: "step_zero", plan: plan(func(p *store.Plan) { p.Step = 0 }), want: "step"},
		{name: "exit_off_plan", plan: plan(func(p *store.Plan) { p.Exit = store.Point{X: 99, Y: 0} }), want: "exit"},
		{name: "exit_off_lattice", plan: plan(func(p *store.Plan) { p.Step = 2; p.Exit = store.Point{X: 5, Y: 0} }), want: "lattice"},
		{name: "entrance_in_department", plan: plan(func(p *store.Plan) { p.Entrance = store.Point{X: 0, Y: 1} }), want: "entrance"},
		{name: "exit_walled_off", plan: plan(func(p *store.Plan) {
			p.Areas = append(p.Areas, store.Area{Department: store.Men, Rect: store.Rect{Min: store.Point{X: 4, Y: 0}, Max: store.Point{X: 4, Y: 0}}})
		}), want: "no aisle"},
		{name: "no_department_reachable", plan: plan(func(p *store.Plan) { p.Areas = nil }), want: "no department"},
		{name: "huge_plan", plan: plan(func(p *store.Plan) { p.Width, p.Height = 1<<30, 1<<30 }), want: "sensor positions"},
		{name: "no_customers", customers: []string{}, want: "no customers"},
		{name: "empty_customer", customers: []string{"1", ""}, want: "customer #2: empty"},
		{name: "duplicate_customer", customers: []string{"1", "2", "1"}, want: "customer #3"},
		{name: "long_customer", customers: []string{strings.Repeat("x", 65)}, want: "64 bytes"},
		{name: "nil_publisher", pub: nil, want: "publisher"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			if tc.edit != nil {
				tc.edit(&cfg)
			}
			p := grid
			if tc.name == "nil_plan" || tc.plan != nil {
				p = tc.plan
			}
			customers := tc.customers
			if customers == nil {
				customers = customerIDs(10)
			}
			var pub Publisher = nopPublisher{}
			if tc.name == "nil_publisher" {
				pub = tc.pub
			}
			_, err := New(cfg, p, customers, pub, nil, nil)
			if err == nil {
				t.Fatalf("New: nil error, want one with %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want it to contain %q", err, tc.want)
			}
		})
	}

	t.Run("registered_twice", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		if _, err := New(testConfig(), grid, customerIDs(10), nopPublisher{}, nil, reg); err != nil {
			t.Fatal(err)
		}
		if _, err := New(testConfig(), grid, customerIDs(10), nopPublisher{}, nil, reg); err == nil {
			t.Fatal("second New on the same registry: nil error")
		}
	})
}

// TestOddPlans walks plans unlike the shipped ones: tiny departments, a
// department reached only through another, a lattice coarser than the plan,
// departments that cannot be reached at all.
func TestOddPlans(t *testing.T) {
	r := func(x0, y0, x1, y1 int) store.Rect {
		return store.Rect{Min: store.Point{X: x0, Y: y0}, Max: store.Point{X: x1, Y: y1}}
	}
	for _, tc := range []struct {
		name string
		plan store.Plan
	}{
		{"one_position_departments", store.Plan{Name: "tiny", Width: 5, Height: 3, Step: 1,
			Entrance: store.Point{X: 0, Y: 0}, Exit: store.Point{X: 4, Y: 0},
			Areas: []store.Area{{Department: store.Boys, Rect: r(1, 1, 1, 1)}, {Department: store.Girls, Rect: r(3, 1, 3, 1)}}}},
		{"department_behind_department", store.Plan{Name: "nested", Width: 5, Height: 5, Step: 1,
			Entrance: store.Point{X: 0, Y: 0}, Exit: store.Point{X: 4, Y: 0},
			Areas: []store.Area{{Department: store.Men, Rect: r(1, 2, 3, 4)}, {Department: store.Sports, Rect: r(0, 1, 4, 1)}}}},
		{"walled_off_department", store.Plan{Name: "walled", Width: 5, Height: 5, Step: 1,
			Entrance: store.Point{X: 0, Y: 0}, Exit: store.Point{X: 4, Y: 0},
			Areas: []store.Area{{Department: store.Women, Rect: r(0, 1, 4, 1)}, {Department: store.Men, Rect: r(0, 3, 4, 4)}}}},
		{"coarse_lattice", store.Plan{Name: "coarse", Width: 100, Height: 100, Step: 7,
			Entrance: store.Point{X: 50, Y: 3}, Exit: store.Point{X: 64, Y: 3},
			Areas: []store.Area{{Department: store.Boys, Rect: r(10, 20, 40, 60)}, {Department: store.Girls, Rect: r(60, 20, 99, 99)}}}},
		{"entrance_is_exit", store.Plan{Name: "door", Width: 6, Height: 6, Step: 1,
			Entrance: store.Point{X: 0, Y: 0}, Exit: store.Point{X: 0, Y: 0},
			Areas: []store.Area{{Department: store.Boys, Rect: r(2, 2, 4, 4)}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.Dwell = 6 * time.Second
			cfg.Gap = 10 * time.Second
			its := map[string][][]stop{}
			rec, _, _ := runSim(t, cfg, &tc.plan, afterSimulated(cfg, 20*time.Minute), runOpts{setup: traceItineraries(its)})
			rep := checkVisits(t, cfg, &tc.plan, rec.events, its, true)
			if rep.visits == 0 {
				t.Error("no visit completed")
			}
		})
	}
}

func BenchmarkRun(b *testing.B) {
	for _, tc := range []struct {
		name string
		plan func() *store.Plan
		avg  int
	}{
		{"grid/avg6", func() *store.Plan { p, _ := store.GridPlan(6, 10); return p }, 6},
		{"original/avg200", store.OriginalPlan, 200},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := testConfig()
			cfg.AverageInStore = tc.avg
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			n := 0
			pub := publisherFunc(func(context.Context, string, []byte) error {
				if n++; n >= b.N {
					cancel()
				}
				return nil
			})
			s, err := New(cfg, tc.plan(), customerIDs(5000), pub, nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			if err := s.Run(ctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

func Example() {
	plan, _ := store.GridPlan(6, 10)
	cfg := testConfig()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := 0
	pub := publisherFunc(func(_ context.Context, topic string, payload []byte) error {
		fmt.Println(topic, string(payload))
		if n++; n == 3 {
			cancel()
		}
		return nil
	})
	s, _ := New(cfg, plan, []string{"127"}, pub, nil, nil)
	_ = s.Run(ctx)
	// Output:
	// customer/enter {"id":"127","ts":1700000000}
	// customer/move {"id":"127","ts":1700000000,"x":0,"y":0}
	// customer/move {"id":"127","ts":1700000001,"x":1,"y":0}
}
