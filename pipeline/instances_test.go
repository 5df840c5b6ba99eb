package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/storeflow/storeflow/broker"
	"github.com/storeflow/storeflow/event"
	"github.com/storeflow/storeflow/experiment"
	"github.com/storeflow/storeflow/internal/harness"
	"github.com/storeflow/storeflow/internal/mosquittotest"
	"github.com/storeflow/storeflow/internal/redistest"
	"github.com/storeflow/storeflow/store"
)

// dialMQTT connects a client named name to the mosquitto at addr, runs it
// until the test ends and returns once it is connected.
func dialMQTT(t *testing.T, addr, name string) *broker.Client {
	t.Helper()
	port, _ := strconv.Atoi(addr[len("127.0.0.1:"):])
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := broker.Dial(ctx, broker.Config{Host: "127.0.0.1", Port: port, Name: name, QoS: 1, OfflineQueue: 1000, CleanSession: true},
		slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatalf("dial %s: %v", name, err)
	}
	harness.Start(t, name, c.Run, c.Ready())
	return c
}

// couponWatcher counts the coupons on the prediction topic per focus
// (shopper, department, ts), as a phone app's backend would see them.
type couponWatcher struct {
	mu  sync.Mutex
	per map[string]int
	bad []string // payloads that are no prediction
	// onCoupon, when set, runs for each coupon as it arrives.
	onCoupon func(focus string)
}

func watchCoupons(t *testing.T, c *broker.Client, topic string) *couponWatcher {
	t.Helper()
	w := &couponWatcher{per: map[string]int{}}
	if err := c.Subscribe(topic, func(_ string, payload []byte) {
		var p event.Prediction
		w.mu.Lock()
		defer w.mu.Unlock()
		if err := json.Unmarshal(payload, &p); err != nil {
			w.bad = append(w.bad, string(payload))
			return
		}
		k := focusName(p.Customer.ID, p.Coupon.Department, p.TS)
		w.per[k]++
		if w.onCoupon != nil {
			w.onCoupon(k)
		}
	}); err != nil {
		t.Fatal(err)
	}
	return w
}

func focusName(id, dep string, ts int64) string { return fmt.Sprintf("%s/%s/%d", id, dep, ts) }

// counts returns the coupons seen, the foci that got one, and the foci that
// got more than one.
func (w *couponWatcher) counts() (coupons, foci, twice int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, n := range w.per {
		coupons += n
		foci++
		if n > 1 {
			twice++
		}
	}
	return coupons, foci, twice
}

// instance is one storeflow pipeline in DWELL_STATE=redis against the shared
// mosquitto and Redis, with its own broker connection and Redis client;
// arms splits its shoppers into the experiment's arms.
func startInstance(t *testing.T, name, mqttAddr, redisAddr string, cat *store.Catalog, cfg Config, arms experiment.Config) *Pipeline {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	t.Cleanup(func() { _ = rdb.Close() })
	c := dialMQTT(t, mqttAddr, name)
	return runUntilEnd(t, newTestPipeline(t, cfg, Parts{Source: cat, Scorer: discountScorer{}, Sub: c, Pub: c, Redis: rdb, Experiment: arms}), nil)
}

func outcomeCount(p *Pipeline, o string) int {
	return int(testutil.ToFloat64(p.m.outcome[o]))
}

// Two instances both subscribed (plainly: each gets every message) to the
// focus topic of one mosquitto, sharing one Redis: an outside client
// publishes N focus events at QoS 1, and a watcher sees exactly N coupons,
// one per focus. Each instance counts as "duplicate" the foci the other
// published. (With DWELL_STATE=memory both publish every coupon: 2N.)
func TestTwoInstancesOneCouponPerFocus(t *testing.T) {
	mqttAddr := mosquittotest.Start(t, "allow_anonymous true")
	srv := redistest.Start(t)
	cat := testCatalog(t)
	cfg := testConfig()
	cfg.DwellState = DwellStateRedis
	// Room for every focus: under load the focus hand-off would shed some
	// (counted, see bulkhead.go), and this test counts coupons, not shedding.
	cfg.QueueSize = 128
	a := startInstance(t, "storeflow-a", mqttAddr, srv.Addr(), cat, cfg, experiment.Config{})
	b := startInstance(t, "storeflow-b", mqttAddr, srv.Addr(), cat, cfg, experiment.Config{})
	outside := dialMQTT(t, mqttAddr, "outside")
	w := watchCoupons(t, outside, cfg.PredictionTopic)

	// Each shopper focuses in two departments: the second focus must find
	// the first's coupon in the shared ledger, whichever instance offered it.
	ts := time.Now().Unix()
	deps := []store.Department{departmentWithCoupons(t, cat, ts, 1)}
	for _, d := range store.Departments {
		if valid, _ := cat.ValidCoupons(context.Background(), d, store.DayOf(ts), nil); len(valid) > 0 && d != deps[0] {
			deps = append(deps, d)
			break
		}
	}
	var foci []event.Focus
	for _, c := range cat.Customers()[:30] {
		for i, d := range deps {
			foci = append(foci, event.Focus{ID: c.ID, TS: ts + int64(i), Dep: d})
		}
	}
	n := len(foci)
	for _, f := range foci {
		if err := outside.Publish(context.Background(), cfg.FocusTopic, event.AppendFocus(nil, f)); err != nil {
			t.Fatal(err)
		}
	}
	settled := func(p *Pipeline) int { return outcomeCount(p, OutcomePublished) + outcomeCount(p, OutcomeDuplicate) }
	t.Cleanup(func() {
		if t.Failed() {
			for name, p := range map[string]*Pipeline{"a": a, "b": b} {
				t.Logf("instance %s: focus accepted %v, dropped %v; published %d, duplicate %d, redis_error %d; settled %d",
					name, testutil.ToFloat64(p.m.acceptedBy[kindFocus]), testutil.ToFloat64(p.m.dropFocus),
					outcomeCount(p, OutcomePublished), outcomeCount(p, OutcomeDuplicate), outcomeCount(p, OutcomeRedisError), p.Counts().Outcomes)
			}
		}
	})
	harness.Until(t, 20*time.Second, "both instances settled every focus", func() bool {
		return settled(a) == n && settled(b) == n
	})
	pubA, pubB := outcomeCount(a, OutcomePublished), outcomeCount(b, OutcomePublished)
	if pubA+pubB != n {
		t.Errorf("instances published %d + %d coupons for %d foci", pubA, pubB, n)
	}
	if dupA, dupB := outcomeCount(a, OutcomeDuplicate), outcomeCount(b, OutcomeDuplicate); dupA != pubB || dupB != pubA {
		t.Errorf("duplicates a=%d b=%d, want the other's coupons: a=%d b=%d", dupA, dupB, pubB, pubA)
	}
	harness.Until(t, 10*time.Second, "the watcher received every coupon", func() bool {
		coupons, _, _ := w.counts()
		return coupons >= pubA+pubB
	})
	coupons, got, twice := w.counts()
	if coupons != n || got != n || twice != 0 || len(w.bad) != 0 {
		t.Errorf("watcher: %d coupons for %d foci, %d foci with more than one, %d bad payloads; want %d, %d, 0, 0",
			coupons, got, twice, len(w.bad), n, n)
	}
	t.Logf("%d foci: instance a published %d, b %d", n, pubA, pubB)
}

// An instance that claimed a focus and died before publishing: its claim
// holds the focus until FOCUS_CLAIM_TTL expires it, then a live instance
// that has the focus (another copy, or the broker's redelivery) hands out
// its coupon. No coupon while the claim lives, exactly one after.
func TestClaimOfADeadInstanceExpires(t *testing.T) {
	mqttAddr := mosquittotest.Start(t, "allow_anonymous true")
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	cat := testCatalog(t)
	cfg := testConfig()
	cfg.DwellState, cfg.ClaimTTL = DwellStateRedis, time.Second
	p := startInstance(t, "storeflow-live", mqttAddr, srv.Addr(), cat, cfg, experiment.Config{})
	outside := dialMQTT(t, mqttAddr, "outside")
	w := watchCoupons(t, outside, cfg.PredictionTopic)

	ts := time.Now().Unix()
	f := event.Focus{ID: cat.Customers()[0].ID, TS: ts, Dep: departmentWithCoupons(t, cat, ts, 1)}
	key := p.shared.focusKey(f)
	// What the dead instance left: its claim, never confirmed.
	const deadToken = "dead-instance-1"
	if err := rdb.Set(context.Background(), key, deadToken, cfg.ClaimTTL).Err(); err != nil {
		t.Fatal(err)
	}
	// Whenever a coupon arrives, the dead instance's claim must be gone.
	claimAtCoupon := make(chan string, 4)
	w.mu.Lock()
	w.onCoupon = func(string) { claimAtCoupon <- rdb.Get(context.Background(), key).Val() }
	w.mu.Unlock()

	if err := outside.Publish(context.Background(), cfg.FocusTopic, event.AppendFocus(nil, f)); err != nil {
		t.Fatal(err)
	}
	select {
	case held := <-claimAtCoupon:
		if held == deadToken {
			t.Fatal("a coupon was published while the dead instance's claim lived")
		}
	case <-time.After(cfg.ClaimTTL + 10*time.Second):
		t.Fatal("no coupon after the dead instance's claim expired: the coupon is lost")
	}
	harness.Until(t, 5*time.Second, "the focus settled", func() bool { return outcomeCount(p, OutcomePublished) == 1 })
	if got := rdb.Get(context.Background(), key).Val(); got != confirmed {
		t.Errorf("focus key holds %q after the coupon, want %q", got, confirmed)
	}

	// Delivered again (a redelivery, or the dead instance's broker
	// session resent to another instance): no second coupon.
	other := startInstance(t, "storeflow-other", mqttAddr, srv.Addr(), cat, cfg, experiment.Config{})
	if err := outside.Publish(context.Background(), cfg.FocusTopic, event.AppendFocus(nil, f)); err != nil {
		t.Fatal(err)
	}
	harness.Until(t, 5*time.Second, "both instances counted the delivery again as a duplicate", func() bool {
		return outcomeCount(p, OutcomeDuplicate) == 1 && outcomeCount(other, OutcomeDuplicate) == 1
	})
	if coupons, _, _ := w.counts(); coupons != 1 {
		t.Errorf("%d coupons for one focus, want 1", coupons)
	}
}
