package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/storeflow/storeflow/event"
	"github.com/storeflow/storeflow/internal/redistest"
	"github.com/storeflow/storeflow/recommender"
	"github.com/storeflow/storeflow/store"
)

// redisClient is a client of a real redis-server started for the test.
func redisClient(t *testing.T) (*redis.Client, *redistest.Redis) {
	t.Helper()
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb, srv
}

// claimResult is what a claim returned.
type claimResult struct {
	token string
	err   error
}

// claimAsync runs s.claim(f) and hands back its result.
func claimAsync(s *shared, f event.Focus) <-chan claimResult {
	out := make(chan claimResult, 1)
	go func() {
		tok, err := s.claim(context.Background(), f)
		out <- claimResult{tok, err}
	}()
	return out
}

func TestFocusClaim(t *testing.T) {
	rdb, _ := redisClient(t)
	ctx := context.Background()
	const claimTTL, keepTTL = 5 * time.Second, time.Hour
	f := event.Focus{ID: "c1", TS: 1700000000, Dep: store.Departments[0]}
	key := "shop:focus:{c1}:" + f.Dep.String() + ":1700000000"

	tests := map[string]struct {
		// end is what the first instance does with its claim while the
		// second one waits; wantSecond whether the second then holds it.
		end        func(t *testing.T, a *shared, token string)
		wantSecond bool
	}{
		"confirmed: the second sees it handled": {
			end: func(t *testing.T, a *shared, token string) {
				if held, err := a.finish(ctx, f, token, true); err != nil || !held {
					t.Fatalf("confirm = %v, %v; want held", held, err)
				}
			},
		},
		"released: the second takes it": {
			end: func(t *testing.T, a *shared, token string) {
				if held, err := a.finish(ctx, f, token, false); err != nil || !held {
					t.Fatalf("release = %v, %v; want held", held, err)
				}
			},
			wantSecond: true,
		},
		"not confirmed: the second takes it once the claim expired": {
			end: func(t *testing.T, _ *shared, _ string) {
				// The first instance died: its claim lives until it expires.
				if ttl := rdb.PTTL(ctx, key).Val(); ttl <= 0 || ttl > claimTTL {
					t.Fatalf("claim's TTL = %v, want (0, %v]", ttl, claimTTL)
				}
				rdb.PExpire(ctx, key, 50*time.Millisecond) // FOCUS_CLAIM_TTL passes
			},
			wantSecond: true,
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			rdb.FlushAll(ctx)
			rdb.ConfigResetStat(ctx)
			a := newShared(rdb, "shop:", claimTTL, keepTTL)
			b := newShared(rdb, "shop:", claimTTL, keepTTL)
			token, err := a.claim(ctx, f)
			if err != nil || token == "" {
				t.Fatalf("first claim = %q, %v; want a token", token, err)
			}
			second := claimAsync(b, f)
			waitFor(t, "the second instance to find the claim held", func() bool {
				return scriptCalls(t, rdb) >= 3 // the first's claim, the second's first try and one more
			})
			select {
			case r := <-second:
				t.Fatalf("second claim returned %+v while the first held it", r)
			default:
			}
			tt.end(t, a, token)
			var r claimResult
			select {
			case r = <-second:
			case <-time.After(claimTTL + 2*time.Second):
				t.Fatal("second claim still waiting")
			}
			if r.err != nil || (r.token != "") != tt.wantSecond {
				t.Fatalf("second claim = %+v, want a token: %v", r, tt.wantSecond)
			}
			if tt.wantSecond {
				if r.token == token {
					t.Fatal("both instances got the same token")
				}
				if held, err := a.finish(ctx, f, token, true); err != nil || held {
					t.Errorf("first instance's late confirm = %v, %v; want not held: the claim is the second's", held, err)
				}
				if _, err := b.finish(ctx, f, r.token, true); err != nil {
					t.Fatal(err)
				}
			}
			if got := rdb.Get(ctx, key).Val(); got != confirmed {
				t.Errorf("key holds %q, want %q", got, confirmed)
			}
			// A confirmed focus is remembered for SHOPPER_TTL, not FOCUS_CLAIM_TTL.
			if ttl := rdb.PTTL(ctx, key).Val(); ttl <= claimTTL || ttl > keepTTL {
				t.Errorf("confirmed key's TTL = %v, want (%v, %v]", ttl, claimTTL, keepTTL)
			}
			if tok, err := b.claim(ctx, f); err != nil || tok != "" {
				t.Errorf("claim after confirm = %q, %v; want handled", tok, err)
			}
		})
	}
}

// scriptCalls is how many scripts Redis ran since its stats were reset.
func scriptCalls(t testing.TB, rdb *redis.Client) int {
	t.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(info, "\n") {
		if strings.HasPrefix(line, "cmdstat_eval") {
			var calls int
			_, _ = fmt.Sscanf(line[strings.Index(line, ":")+1:], "calls=%d", &calls)
			n += calls
		}
	}
	return n
}

// A focus key and a visit key carry the shopper id as their hash tag, so
// they share a Redis Cluster slot with the shopper's other keys.
func TestSharedKeysAreHashTagged(t *testing.T) {
	s := newShared(nil, "", time.Second, time.Minute)
	f := event.Focus{ID: "c-42", TS: 7, Dep: store.Departments[1]}
	for _, k := range []string{s.focusKey(f), s.visitKey(f.ID)} {
		if !strings.HasPrefix(k, defaultKeyPrefix) || !strings.Contains(k, "{c-42}") {
			t.Errorf("key %q: want prefix %q and hash tag {c-42}", k, defaultKeyPrefix)
		}
	}
}

func TestSharedVisitLedger(t *testing.T) {
	rdb, _ := redisClient(t)
	ctx := context.Background()
	const keep = time.Hour
	a := newShared(rdb, "", time.Second, keep)
	b := newShared(rdb, "", time.Second, keep) // a second instance
	coupons := []store.Coupon{{ID: 1}, {ID: 2}, {ID: 3}, {ID: 4}}
	probs := []float64{0.5, 0.9, 0.1, 0.9} // best first: 2 (tie with 4: lower id), 4, 1; 3 is below 0.3

	var focusTS int64 // each offer for another focus of the visit
	offer := func(s *shared) (int, bool, bool) {
		t.Helper()
		focusTS++
		c, ok, already, err := s.offer(ctx, event.Focus{ID: "c1", TS: focusTS}, coupons, probs, 0.3)
		if err != nil {
			t.Fatal(err)
		}
		return c.ID, ok, already
	}
	for i, want := range []int{2, 4, 1} {
		s := []*shared{a, b}[i%2] // the instances take turns: each knows what the other offered
		if id, ok, _ := offer(s); !ok || id != want {
			t.Fatalf("offer %d = %d (ok %v), want coupon %d", i, id, ok, want)
		}
	}
	if _, ok, already := offer(a); ok || !already {
		t.Fatalf("offer after every qualifying coupon = ok %v already %v, want already issued", ok, already)
	}
	if _, ok, already, _ := a.offer(ctx, event.Focus{ID: "c1", TS: 99}, coupons, []float64{0, 0, 0, 0}, 0.3); ok || already {
		t.Errorf("offer below the threshold = ok %v already %v, want neither", ok, already)
	}
	if ttl := rdb.PTTL(ctx, a.visitKey("c1")).Val(); ttl <= 0 || ttl > keep {
		t.Errorf("visit's TTL = %v, want (0, %v]", ttl, keep)
	}
	if err := b.release(ctx, "c1", 4); err != nil {
		t.Fatal(err)
	}
	if id, ok, _ := offer(a); !ok || id != 4 {
		t.Errorf("offer after coupon 4 was released = %d (ok %v), want 4", id, ok)
	}
	if err := b.forget(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if id, ok, _ := offer(a); !ok || id != 2 {
		t.Errorf("offer in a new visit = %d (ok %v), want 2", id, ok)
	}
}

// Instances offering to one shopper at once never offer a coupon twice.
func TestSharedVisitLedgerConcurrent(t *testing.T) {
	rdb, _ := redisClient(t)
	var coupons []store.Coupon
	var probs []float64
	for i := range 20 {
		coupons = append(coupons, store.Coupon{ID: i + 1})
		probs = append(probs, 0.5)
	}
	var mu sync.Mutex
	got := map[int]int{}
	var wg sync.WaitGroup
	for i := range 4 {
		s := newShared(rdb, "", time.Second, time.Minute)
		wg.Go(func() {
			for k := range 10 { // 40 focus events of one visit
				c, ok, _, err := s.offer(context.Background(), event.Focus{ID: "c1", TS: int64(10*i + k)}, coupons, probs, 0.3)
				if err != nil {
					t.Error(err)
					return
				}
				if ok {
					mu.Lock()
					got[c.ID]++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if len(got) != len(coupons) {
		t.Errorf("%d coupons offered, want all %d", len(got), len(coupons))
	}
	for id, n := range got {
		if n != 1 {
			t.Errorf("coupon %d offered %d times", id, n)
		}
	}
}

// Redis away: the claim fails (no coupon: fail-closed), counted as outcome
// redis_error and in storeflow_shared_state_errors_total.
func TestFocusClaimRedisDown(t *testing.T) {
	rdb, srv := redisClient(t)
	cfg := testConfig()
	cfg.DwellState = DwellStateRedis
	b := newBus()
	cat := testCatalog(t)
	p := runUntilEnd(t, newTestPipeline(t, cfg, Parts{Source: cat, Scorer: discountScorer{}, Sub: b, Pub: b, Redis: rdb}), nil)
	srv.Stop()
	ts := time.Now().Unix()
	_ = b.Publish(context.Background(), "focus", fmt.Appendf(nil, `{"id":%q,"ts":%d,"dep":%q}`,
		cat.Customers()[0].ID, ts, departmentWithCoupons(t, cat, ts, 1)))
	waitFor(t, "outcome redis_error", func() bool { return testutil.ToFloat64(p.m.outcome[OutcomeRedisError]) == 1 })
	if got := testutil.ToFloat64(p.m.sharedErrors.WithLabelValues(opClaim)); got != 1 {
		t.Errorf("claim errors = %v, want 1", got)
	}
	if got := testutil.ToFloat64(p.m.published); got != 0 {
		t.Errorf("coupons published = %v, want 0", got)
	}
}

func TestRedisDwellStateNeedsRedis(t *testing.T) {
	cfg := testConfig()
	cfg.DwellState = DwellStateRedis
	plan, _ := store.GridPlan(6, 10)
	_, err := New(cfg, Parts{Plan: plan, Source: testCatalog(t), Scorer: discountScorer{}, Sub: newBus(), Pub: newBus()})
	if err == nil || !strings.Contains(err.Error(), "DWELL_STATE=redis") || !strings.Contains(err.Error(), "REDIS_URL") {
		t.Fatalf("New = %v, want an error naming DWELL_STATE and REDIS_URL", err)
	}
}

// The Redis cost of one focus with DWELL_STATE=redis: claim, ledger offer,
// confirm — three script calls, three round trips.
func BenchmarkSharedFocus(b *testing.B) {
	srv := redistest.Start(b)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	b.Cleanup(func() { _ = rdb.Close() })
	s := newShared(rdb, "", 10*time.Second, time.Minute)
	ctx := context.Background()
	coupons := []store.Coupon{{ID: 1}, {ID: 2}, {ID: 3}}
	probs := []float64{0.9, 0.5, 0.4}
	rdb.ConfigResetStat(ctx)
	b.ResetTimer()
	for i := range b.N {
		f := event.Focus{ID: strconv.Itoa(i % 10_000), TS: int64(i), Dep: store.Departments[0]}
		token, err := s.claim(ctx, f)
		if err != nil || token == "" {
			b.Fatalf("claim = %q, %v", token, err)
		}
		if _, _, _, err := s.offer(ctx, f, coupons, probs, 0.3); err != nil {
			b.Fatal(err)
		}
		if _, err := s.finish(ctx, f, token, true); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(scriptCalls(b, rdb))/float64(b.N), "redis_calls/focus")
}

// failingScorer fails every call.
type failingScorer struct{}

func (failingScorer) Score(context.Context, *store.Customer, []store.Coupon, []float64) error {
	return errors.New("scorer down")
}

// How a focus settled decides what becomes of its claim: handled (a coupon,
// or an answer another try would repeat) confirms it; a passing failure
// releases it for another copy of the focus.
func TestFocusClaimFollowsTheOutcome(t *testing.T) {
	rdb, _ := redisClient(t)
	cat := testCatalog(t)
	ts := time.Now().Unix()
	dep := departmentWithCoupons(t, cat, ts, 1)
	tests := map[string]struct {
		scorer    recommender.Scorer
		threshold float64
		outcome   string
		key       string // what the focus key holds after: "" for none
	}{
		"published":       {discountScorer{}, 0, OutcomePublished, confirmed},
		"below threshold": {discountScorer{}, 1, OutcomeBelowThreshold, confirmed},
		"score error":     {failingScorer{}, 0, OutcomeScoreError, ""},
	}
	i := 0
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			i++
			cfg := testConfig()
			cfg.DwellState = DwellStateRedis
			b := newBus()
			p := runUntilEnd(t, newTestPipeline(t, cfg, Parts{Source: cat, Scorer: tt.scorer, Threshold: tt.threshold,
				Sub: b, Pub: b, Redis: rdb}), nil)
			f := event.Focus{ID: cat.Customers()[i].ID, TS: ts, Dep: dep}
			_ = b.Publish(context.Background(), "focus", event.AppendFocus(nil, f))
			waitFor(t, "outcome "+tt.outcome, func() bool { return testutil.ToFloat64(p.m.outcome[tt.outcome]) == 1 })
			if got := rdb.Get(context.Background(), p.shared.focusKey(f)).Val(); got != tt.key {
				t.Errorf("focus key holds %q, want %q", got, tt.key)
			}
		})
	}
}

// With DWELL_STATE=redis an entry or an exit ends the shopper's visit in
// the shared ledger: the next visit may be offered the same coupon again.
func TestSharedVisitEndsOnEnterAndExit(t *testing.T) {
	rdb, _ := redisClient(t)
	cat := testCatalog(t)
	cfg := testConfig()
	cfg.DwellState = DwellStateRedis
	b := newBus()
	p := runUntilEnd(t, newTestPipeline(t, cfg, Parts{Source: cat, Scorer: discountScorer{}, Sub: b, Pub: b, Redis: rdb}), nil)
	ts := time.Now().Unix()
	id := cat.Customers()[0].ID
	dep := departmentWithCoupons(t, cat, ts, 1)
	key := p.shared.visitKey(id)
	for i, topic := range []string{"enter", "exit"} {
		_ = b.Publish(context.Background(), "focus", event.AppendFocus(nil, event.Focus{ID: id, TS: ts + int64(i), Dep: dep}))
		waitFor(t, "a coupon recorded in the shared ledger", func() bool { return rdb.SCard(context.Background(), key).Val() == 1 })
		_ = b.Publish(context.Background(), topic, fmt.Appendf(nil, `{"id":%q,"ts":%d}`, id, ts+int64(i)))
		waitFor(t, topic+" ends the visit", func() bool { return rdb.Exists(context.Background(), key).Val() == 0 })
	}
	if got := testutil.ToFloat64(p.m.outcome[OutcomePublished]); got != 2 {
		t.Errorf("coupons published = %v, want 2 (one per visit)", got)
	}
}

// BenchmarkFocusNowMemory with DWELL_STATE=redis: the claim, the shared
// ledger and the confirm added to each focus.
func BenchmarkFocusNowRedis(b *testing.B) {
	srv := redistest.Start(b)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	b.Cleanup(func() { _ = rdb.Close() })
	benchmarkFocusNow(b, Parts{Redis: rdb})
}

// An instance that took over a focus whose claimant died after picking its
// coupon (perhaps after publishing it) offers the same coupon again, never
// a second one; another focus of the visit gets the next.
func TestSharedOfferRemembersThePick(t *testing.T) {
	rdb, _ := redisClient(t)
	ctx := context.Background()
	a := newShared(rdb, "", time.Second, time.Hour)
	b := newShared(rdb, "", time.Second, time.Hour)
	coupons := []store.Coupon{{ID: 1}, {ID: 2}, {ID: 3}}
	probs := []float64{0.9, 0.8, 0.7}
	f := event.Focus{ID: "c7", Dep: store.Departments[0], TS: 100}
	for i, s := range []*shared{a, b} {
		c, ok, _, err := s.offer(ctx, f, coupons, probs, 0.3)
		if err != nil || !ok || c.ID != 1 {
			t.Fatalf("offer %d of the same focus = %d, %v, %v; want coupon 1", i, c.ID, ok, err)
		}
	}
	f.TS = 130
	if c, ok, _, err := b.offer(ctx, f, coupons, probs, 0.3); err != nil || !ok || c.ID != 2 {
		t.Fatalf("offer for another focus = %d, %v, %v; want coupon 2", c.ID, ok, err)
	}
}
