package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/storeflow/storeflow/event"
	"github.com/storeflow/storeflow/experiment"
	"github.com/storeflow/storeflow/internal/harness"
	"github.com/storeflow/storeflow/internal/mosquittotest"
	"github.com/storeflow/storeflow/internal/redistest"
	"github.com/storeflow/storeflow/store"
)

// capsBoth returns the two kinds of caps under one rule: in process, and
// in a real redis-server (a second client on it plays a second instance).
func capsBoth(t *testing.T, rule capRule) map[string][2]caps {
	t.Helper()
	srv := redistest.Start(t)
	client := func() redis.UniversalClient {
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		t.Cleanup(func() { _ = rdb.Close() })
		return rdb
	}
	mem := newMemCaps(rule, 1000, func() {})
	return map[string][2]caps{
		"memory": {mem, mem},
		"redis":  {&redisCaps{rdb: client(), prefix: "t:", rule: rule}, &redisCaps{rdb: client(), prefix: "t:", rule: rule}},
	}
}

// The rule, step by step: what each reserve, release and lookup answers.
func TestCapsRule(t *testing.T) {
	const day = 20_000 * 86400 // a midnight
	at := func(h, m int, dep store.Department) event.Focus {
		return event.Focus{ID: "7", TS: int64(day + h*3600 + m*60), Dep: dep}
	}
	type step struct {
		op   string // reserve, release (the last reserve), capped
		f    event.Focus
		want bool // reserve: ok; capped: capped
	}
	for _, tc := range []struct {
		name  string
		rule  capRule
		steps []step
	}{
		{"two a day", capRule{perDay: 2}, []step{
			{"reserve", at(9, 0, store.Men), true},
			{"reserve", at(9, 0, store.Men), true}, // no cooldown: the same department again
			{"capped", at(10, 0, store.Women), true},
			{"reserve", at(23, 59, store.Women), false},
			{"reserve", at(24, 0, store.Women), true}, // the next day
		}},
		{"a failed publish gives its place back", capRule{perDay: 1, cooldown: 3600}, []step{
			{"reserve", at(9, 0, store.Men), true},
			{"release", at(9, 0, store.Men), false},
			{"capped", at(9, 10, store.Men), false},
			{"reserve", at(9, 10, store.Men), true},
			{"reserve", at(12, 0, store.Women), false},
		}},
		{"department cooldown, either side in event time", capRule{cooldown: 4 * 3600}, []step{
			{"reserve", at(10, 0, store.Men), true},
			{"reserve", at(13, 59, store.Men), false},
			{"capped", at(6, 1, store.Men), true}, // a late focus from before
			{"reserve", at(10, 0, store.Women), true},
			{"reserve", at(14, 0, store.Men), true},
			{"release", at(14, 0, store.Men), false}, // back to the 10:00 coupon
			{"capped", at(13, 0, store.Men), true},
			{"capped", at(14, 0, store.Men), false},
		}},
	} {
		for mode, cs := range capsBoth(t, tc.rule) {
			t.Run(tc.name+"/"+mode, func(t *testing.T) {
				ctx := context.Background()
				var last event.Focus
				var prev int64
				for i, s := range tc.steps {
					var got bool
					var err error
					switch s.op {
					case "reserve":
						got, prev, err = cs[i%2].reserve(ctx, s.f)
						last = s.f
					case "release":
						err = cs[i%2].release(ctx, last, prev)
					case "capped":
						got, err = cs[i%2].capped(ctx, s.f)
					}
					if err != nil {
						t.Fatalf("step %d %s: %v", i, s.op, err)
					}
					if got != s.want {
						t.Fatalf("step %d: %s at %s in %s = %v, want %v", i, s.op,
							time.Unix(s.f.TS, 0).UTC().Format("Jan 2 15:04"), s.f.Dep, got, s.want)
					}
				}
			})
		}
	}
}

// Many foci of one shopper reserved at once, from two clients (two
// instances): exactly the cap's worth pass.
func TestCapsHoldUnderConcurrency(t *testing.T) {
	const perDay, tries = 3, 40
	for mode, cs := range capsBoth(t, capRule{perDay: perDay, cooldown: 600}) {
		t.Run(mode, func(t *testing.T) {
			var ok atomic.Int64
			var wg sync.WaitGroup
			for i := range tries {
				wg.Go(func() {
					f := event.Focus{ID: "9", TS: 1_800_000_000 + int64(i%4)*3600, Dep: store.Departments[i%len(store.Departments)]}
					passed, _, err := cs[i%2].reserve(context.Background(), f)
					if err != nil {
						t.Error(err)
					}
					if passed {
						ok.Add(1)
					}
				})
			}
			wg.Wait()
			if got := ok.Load(); got != perDay {
				t.Errorf("%d of %d foci at once passed a cap of %d", got, tries, perDay)
			}
		})
	}
}

// The caps keep at most MAX_SHOPPERS shoppers, count what they let go, and
// forget a shopper once the day and the cooldowns are over in event time.
func TestMemCapsBoundedAndExpire(t *testing.T) {
	var evicted atomic.Int64
	c := newMemCaps(capRule{perDay: 1, cooldown: 3600}, visitShards, func() { evicted.Add(1) }) // one shopper per shard
	ts := int64(20_000*86400 + 12*3600)
	for i := range 500 {
		if ok, _, _ := c.reserve(context.Background(), event.Focus{ID: fmt.Sprint(i), TS: ts, Dep: store.Men}); !ok {
			t.Fatalf("shopper %d capped at its first coupon", i)
		}
	}
	held := 0
	for i := range c.shards {
		held += len(c.shards[i].m)
	}
	if held > visitShards || evicted.Load() != int64(500-held) {
		t.Errorf("%d shoppers held (at most %d), %d evictions counted", held, visitShards, evicted.Load())
	}
	if n := c.expire(); n != 0 {
		t.Errorf("expire forgot %d shoppers while their day runs", n)
	}
	// The clock moves on: a shopper the next day, in place of one of its
	// shard's; the others' day is over.
	c.reserve(context.Background(), event.Focus{ID: "next", TS: ts + 86400 + 2*3600, Dep: store.Men})
	if n := c.expire(); n != held-1 {
		t.Errorf("expire forgot %d shoppers of the day before, want %d", n, held-1)
	}
}

// failFirstPrediction fails the first prediction publish.
type failFirstPrediction struct {
	*bus
	failed atomic.Bool
}

func (p *failFirstPrediction) Publish(ctx context.Context, topic string, payload []byte) error {
	if topic == "prediction" && p.failed.CompareAndSwap(false, true) {
		return errors.New("broker refused")
	}
	return p.bus.Publish(ctx, topic, payload)
}

// A coupon that was not published does not use up the shopper's day.
func TestCapsCountOnlyPublishedCoupons(t *testing.T) {
	cat := testCatalog(t)
	cfg := testConfig()
	cfg.CouponsPerDay, cfg.FocusWorkers = 1, 1
	b := newBus()
	p := runUntilEnd(t, newTestPipeline(t, cfg, Parts{Source: cat, Scorer: discountScorer{}, Sub: b, Pub: &failFirstPrediction{bus: b}}), nil)
	ts := time.Now().Unix()
	dep := departmentWithCoupons(t, cat, ts, 1)
	id := cat.Customers()[0].ID
	for i, want := range []string{OutcomePublishError, OutcomePublished, OutcomeCapped} {
		_ = b.Publish(context.Background(), "focus", event.AppendFocus(nil, event.Focus{ID: id, TS: ts + int64(i), Dep: dep}))
		waitFor(t, "focus "+fmt.Sprint(i)+" "+want, func() bool { return outcomeCount(p, want) == 1 })
	}
}

// capsDay is a scripted two days of focus events at full speed: every
// shopper focuses every 45 minutes of event time, going round the
// departments that have coupons on both days. With an odd number of
// shoppers, a broker that hands a shared subscription's messages round
// the group gives each shopper's foci to each instance in turn.
type capsDay struct {
	cat  *store.Catalog
	foci []event.Focus
	ids  []string
	arms experiment.Config
}

func newCapsDay(t *testing.T, shoppers int) capsDay {
	t.Helper()
	cat := testCatalog(t)
	day0 := int64(store.DayOf(time.Now().Unix())) * 86400
	var deps []store.Department
	for _, d := range store.Departments {
		a, _ := cat.ValidCoupons(context.Background(), d, store.DayOf(day0), nil)
		b, _ := cat.ValidCoupons(context.Background(), d, store.DayOf(day0+86400), nil)
		if len(a) > 0 && len(b) > 0 {
			deps = append(deps, d)
		}
	}
	if len(deps) < 3 {
		t.Fatalf("%d departments with coupons today and tomorrow in the test catalog, want 3", len(deps))
	}
	deps = deps[:3]
	d := capsDay{cat: cat, arms: experiment.Config{HoldoutFraction: 0.25, Salt: "caps"}}
	for _, c := range cat.Customers()[:shoppers] {
		d.ids = append(d.ids, c.ID)
	}
	for i, ts := 0, day0; ts < day0+2*86400; i, ts = i+1, ts+45*60 {
		for _, id := range d.ids {
			d.foci = append(d.foci, event.Focus{ID: id, TS: ts, Dep: deps[i%len(deps)]})
		}
	}
	return d
}

// couponLog keeps every prediction an outside subscriber receives.
type couponLog struct {
	mu  sync.Mutex
	got []event.Prediction
}

func (l *couponLog) all() []event.Prediction {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.got)
}

// run publishes the foci through a real mosquitto to instances pipelines
// (one redis-server between them for DWELL_STATE=redis) in one shared
// subscription group, so that a shopper's foci are spread over the
// instances; it waits until every focus settled and the subscriber has
// every coupon, and returns the coupons and the instances.
func (d capsDay) run(t *testing.T, cfg Config, instances int) ([]event.Prediction, []*Pipeline) {
	t.Helper()
	mqttAddr := mosquittotest.Start(t, "allow_anonymous true")
	srv := redistest.Start(t)
	cfg.QueueSize = len(d.foci) // room for every focus: this test counts coupons, not shedding
	cfg.ShareGroup = "storeflow"
	var ps []*Pipeline
	for i := range instances {
		ps = append(ps, startInstance(t, fmt.Sprintf("storeflow-%d", i), mqttAddr, srv.Addr(), d.cat, cfg, d.arms))
	}
	outside := dialMQTT(t, mqttAddr, "outside")
	var log couponLog
	if err := outside.Subscribe(cfg.PredictionTopic, func(_ string, payload []byte) {
		var p event.Prediction
		if err := json.Unmarshal(payload, &p); err != nil {
			t.Errorf("not a prediction: %s", payload)
			return
		}
		log.mu.Lock()
		log.got = append(log.got, p)
		log.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	for _, f := range d.foci {
		if err := outside.Publish(context.Background(), cfg.FocusTopic, event.AppendFocus(nil, f)); err != nil {
			t.Fatal(err)
		}
	}
	published := func() (n int) {
		for _, p := range ps {
			n += outcomeCount(p, OutcomePublished)
		}
		return n
	}
	harness.Until(t, 60*time.Second, "every focus settled", func() bool {
		var n int64
		for _, p := range ps {
			c := p.Counts()
			n += c.Outcomes + c.DroppedFocus
		}
		return n >= int64(len(d.foci))
	})
	harness.Until(t, 10*time.Second, "the subscriber received every coupon", func() bool { return len(log.all()) >= published() })
	for i, p := range ps {
		t.Logf("instance %d: published %d, capped %d, holdout %d, already_issued %d, duplicate %d, redis_error %d, shed %d", i,
			outcomeCount(p, OutcomePublished), outcomeCount(p, OutcomeCapped), outcomeCount(p, OutcomeHoldout),
			outcomeCount(p, OutcomeAlreadyIssued), outcomeCount(p, OutcomeDuplicate), outcomeCount(p, OutcomeRedisError), p.Counts().DroppedFocus)
	}
	return log.all(), ps
}

// perShopperDay counts coupons by customer and event-time day, and returns
// the most any shopper got in a day.
func perShopperDay(coupons []event.Prediction) (map[string]int, int) {
	per := map[string]int{}
	most := 0
	for _, c := range coupons {
		k := fmt.Sprintf("%s/%d", c.Customer.ID, store.DayOf(c.TS))
		per[k]++
		most = max(most, per[k])
	}
	return per, most
}

// check asserts the caps and the holdout on what the subscriber received:
// no shopper above the daily cap on any day, no two coupons of a shopper in
// a department within the cooldown, no coupon for the holdout and some
// coupon for every other shopper; and that the caps did bind.
func (d capsDay) check(t *testing.T, cfg Config, coupons []event.Prediction) {
	t.Helper()
	per, most := perShopperDay(coupons)
	for k, n := range per {
		if n > cfg.CouponsPerDay {
			t.Errorf("shopper/day %s: %d coupons, cap %d", k, n, cfg.CouponsPerDay)
		}
	}
	if most != cfg.CouponsPerDay {
		t.Errorf("no shopper reached the cap of %d a day (most %d): the test does not exercise it", cfg.CouponsPerDay, most)
	}
	byDep := map[string][]int64{}
	for _, c := range coupons {
		k := c.Customer.ID + "/" + c.Coupon.Department
		byDep[k] = append(byDep[k], c.TS)
	}
	for k, tss := range byDep {
		slices.Sort(tss)
		for i := 1; i < len(tss); i++ {
			if gap := time.Duration(tss[i]-tss[i-1]) * time.Second; gap < cfg.DepartmentCooldown {
				t.Errorf("shopper/department %s: coupons %s apart, cooldown %s", k, gap, cfg.DepartmentCooldown)
			}
		}
	}
	got := map[string]int{}
	for _, c := range coupons {
		got[c.Customer.ID]++
	}
	holdout := 0
	for _, id := range d.ids {
		in := d.arms.Assign(id) == experiment.Holdout
		switch {
		case in && got[id] > 0:
			t.Errorf("shopper %s in the holdout got %d coupons", id, got[id])
		case !in && got[id] == 0:
			t.Errorf("shopper %s, not in the holdout, got no coupon", id)
		}
		if in {
			holdout++
		}
	}
	if holdout == 0 || holdout == len(d.ids) {
		t.Errorf("%d of %d shoppers in the holdout: the test needs both kinds", holdout, len(d.ids))
	}
	t.Logf("%d foci, %d coupons to %d shoppers (%d in the holdout); most in a day %d", len(d.foci), len(coupons), len(d.ids), holdout, most)
}

func capsConfig() Config {
	cfg := testConfig()
	cfg.CouponsPerDay, cfg.DepartmentCooldown = 3, 4*time.Hour
	return cfg
}

// Two days of focus events at full speed through a real broker: no shopper
// gets more than COUPONS_PER_SHOPPER_PER_DAY a day, nor two coupons in a
// department within COUPON_DEPARTMENT_COOLDOWN; the holdout gets none.
func TestCapsOverSimulatedDays(t *testing.T) {
	d := newCapsDay(t, 25)
	cfg := capsConfig()
	coupons, ps := d.run(t, cfg, 1)
	d.check(t, cfg, coupons)
	if ps[0].Counts().DroppedFocus != 0 {
		t.Errorf("%d foci shed: the holdout count below is off", ps[0].Counts().DroppedFocus)
	}
	if outcomeCount(ps[0], OutcomeCapped) == 0 {
		t.Error("no focus counted capped")
	}
	holdout := 0
	for _, f := range d.foci {
		if d.arms.Assign(f.ID) == experiment.Holdout {
			holdout++
		}
	}
	if got := outcomeCount(ps[0], OutcomeHoldout); got != holdout {
		t.Errorf("outcome holdout counted %d, want the holdout's %d foci", got, holdout)
	}
}

// The same with two instances sharing one redis-server (DWELL_STATE=redis):
// the caps hold across instances.
func TestCapsHoldAcrossInstances(t *testing.T) {
	d := newCapsDay(t, 25)
	cfg := capsConfig()
	cfg.DwellState = DwellStateRedis
	coupons, ps := d.run(t, cfg, 2)
	d.check(t, cfg, coupons)
	for i, p := range ps {
		if outcomeCount(p, OutcomePublished) == 0 || outcomeCount(p, OutcomeCapped) == 0 {
			t.Errorf("instance %d published or capped nothing: the caps were not shared", i)
		}
	}
}

// Without Redis, two instances (one shopper's foci shared between them)
// keep a cap each: together they exceed it. This is what
// TestCapsHoldAcrossInstances guards against.
func TestCapsInMemoryDoNotHoldAcrossInstances(t *testing.T) {
	d := newCapsDay(t, 9)
	cfg := capsConfig()
	coupons, _ := d.run(t, cfg, 2)
	if _, most := perShopperDay(coupons); most <= cfg.CouponsPerDay {
		t.Errorf("two instances in memory: at most %d coupons a shopper a day, expected above the cap of %d", most, cfg.CouponsPerDay)
	}
}

// What the caps add to a focus that gets a coupon: the lookup before the
// context stage and the reservation at the offer.
func BenchmarkCaps(b *testing.B) {
	srv := redistest.Start(b)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	b.Cleanup(func() { _ = rdb.Close() })
	rule := capRule{perDay: 3, cooldown: 12 * 3600}
	for mode, c := range map[string]caps{
		"memory": newMemCaps(rule, 100_000, func() {}),
		"redis":  &redisCaps{rdb: rdb, prefix: "b:", rule: rule},
	} {
		b.Run(mode, func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for i := range b.N {
				f := event.Focus{ID: strconv.Itoa(i % 50_000), TS: 1_800_000_000 + int64(i), Dep: store.Departments[i%len(store.Departments)]}
				if _, err := c.capped(ctx, f); err != nil {
					b.Fatal(err)
				}
				if _, _, err := c.reserve(ctx, f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
