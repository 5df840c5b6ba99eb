package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/storeflow/storeflow/internal/harness"
	"github.com/storeflow/storeflow/internal/proctest"
	"github.com/storeflow/storeflow/internal/redistest"
	"github.com/storeflow/storeflow/recommender"
	"github.com/storeflow/storeflow/store"
)

// A Redis restarted in the middle of a run costs the cache, never a coupon:
// while Redis is down the context comes from the central and the trouble is
// counted; once Redis is back the cache fills and answers again.
func TestRedisRestartedDuringARunKeepsCouponsFlowing(t *testing.T) {
	r := redistest.Start(t)
	sys := startSystem(t, map[string]string{"REDIS_URL": r.URL(), "CACHE_PREFIX": "e2e:"})
	rdb := redisClient(t, r)
	obs, sensor := sys.observerAndSensor(t, "customer/prediction")

	now := time.Now().Unix()
	ids := customersWithCoupon(t, sys, store.Boys, now, 3)
	linger := func(id string) {
		t.Helper()
		s := &script{cl: sensor, id: id, ts: now}
		s.lingerInBoys()
		got := decodeOffer(t, obs.next("customer/prediction", 10*time.Second).Payload)
		if got.Customer.ID != id || got.Coupon.Department != "Boys" {
			t.Fatalf("prediction for %s in %s, want %s in Boys", got.Customer.ID, got.Coupon.Department, id)
		}
		s.exit()
	}
	hits := func() float64 { return sys.metric(t, "storeflow_cache_hits_total", "kind=customer") }

	linger(ids[0])
	waitKey(t, rdb, "e2e:customer:"+ids[0], 5*time.Second)
	if n := sys.metric(t, "storeflow_cache_errors_total", "kind=redis"); n != 0 {
		t.Fatalf("storeflow_cache_errors_total{kind=redis} = %v with Redis up", n)
	}

	r.Stop()
	linger(ids[1])
	sys.waitMetric(t, 1, 5*time.Second, "storeflow_cache_errors_total", "kind=redis")

	r.Restart()
	if n, err := rdb.Exists(t.Context(), "e2e:customer:"+ids[0]).Result(); err != nil || n != 0 {
		t.Fatalf("after the restart A's key exists %d (err %v): want an empty Redis", n, err)
	}
	linger(ids[2])
	// The cache touches Redis only when asked, and go-redis redials a dead
	// server at its own pace: each round asks for C once more (an entry
	// event prefetches the customer) until C is in Redis and read from it.
	base := hits()
	key := "e2e:customer:" + ids[2]
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := rdb.Exists(t.Context(), key).Result()
		if err == nil && n == 1 && hits() > base {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the restart: %s exists %d (err %v), customer hits %v (were %v), within 10s",
				key, n, err, hits(), base)
		}
		sensor.publish("customer/enter", fmt.Sprintf(`{"id":%q,"ts":%d}`, ids[2], now+100))
		time.Sleep(50 * time.Millisecond) // polling a condition with a deadline, not settling
	}
	if n := sys.metric(t, "storeflow_focus_outcomes_total", "outcome=published"); n != 3 {
		t.Errorf("storeflow_focus_outcomes_total{outcome=published} = %v, want 3", n)
	}
}

// An entry warms the Redis cache: the customer's key appears with the
// configured TTL, and the focus that follows is answered from it; the focus
// leaves the department's coupons of the day and the coupon's products in
// Redis too.
func TestEntryPrefetchFillsRedis(t *testing.T) {
	r := redistest.Start(t)
	sys := startSystem(t, map[string]string{
		"REDIS_URL":    r.URL(),
		"CACHE_PREFIX": "e2e:",
		"CACHE_TTL":    "10m",
	})
	rdb := redisClient(t, r)
	obs, sensor := sys.observerAndSensor(t, "customer/#")

	s := shopper(t, sys, sensor, store.Boys)
	id := s.id
	s.enter()
	key := "e2e:customer:" + id
	waitKey(t, rdb, key, 5*time.Second)
	checkTTL(t, rdb, key, 10*time.Minute)
	var cached struct {
		ID string `json:"customer_id"`
	}
	if raw, err := rdb.Get(t.Context(), key).Bytes(); err != nil || json.Unmarshal(raw, &cached) != nil || cached.ID != id {
		t.Errorf("%s = %s (err %v), want the customer's row", key, raw, err)
	}
	sys.waitMetric(t, 1, 5*time.Second, "storeflow_prefetch_total", "outcome=ok")

	s.lingerInBoys() // enters again: a second prefetch, a hit
	focus := decodeFocus(t, obs.next("customer/focus", 10*time.Second).Payload)
	got := decodeOffer(t, obs.next("customer/prediction", 10*time.Second).Payload)
	if got.Customer.ID != id || got.Coupon.Department != "Boys" {
		t.Fatalf("prediction for %s in %s, want %s in Boys", got.Customer.ID, got.Coupon.Department, id)
	}
	// Only the first prefetch missed; the second one and the focus hit.
	sys.waitMetric(t, 2, 5*time.Second, "storeflow_cache_hits_total", "kind=customer")
	if n := sys.metric(t, "storeflow_cache_misses_total", "kind=customer"); n != 1 {
		t.Errorf("storeflow_cache_misses_total{kind=customer} = %v, want 1 (the first prefetch)", n)
	}
	for _, k := range []string{
		"e2e:coupons:Boys:" + store.DayOf(focus.TS).String(),
		fmt.Sprintf("e2e:products:%d:first20", got.Coupon.ID), // PREDICTION_MAX_PRODUCTS' default
	} {
		waitKey(t, rdb, k, 5*time.Second)
		checkTTL(t, rdb, k, 10*time.Minute)
	}
	if n := sys.metric(t, "storeflow_cache_errors_total"); n != 0 {
		t.Errorf("storeflow_cache_errors_total = %v with Redis up", n)
	}
	s.exit()
}

// One process serves the central API from its catalog and another, with the
// same CATALOG_SEED, takes its context from it over HTTP: the coupon it
// publishes is the one the central's own catalog gives, and every lookup went
// through the central. An unknown customer costs a coupon and nothing more.
func TestSplitRunTakesContextFromTheCentral(t *testing.T) {
	const seed = "11"
	central := startSystem(t, map[string]string{"CATALOG_SEED": seed})
	proxy := newCountingProxy(t, "http://"+central.app.HTTPAddr())
	// Caps off: the shopper's second visit lingers in the same department
	// within COUPON_DEPARTMENT_COOLDOWN, and must get a coupon again.
	sys := startSystem(t, map[string]string{"CATALOG_SEED": seed, "CENTRAL_URL": proxy.url,
		"COUPONS_PER_SHOPPER_PER_DAY": "0", "COUPON_DEPARTMENT_COOLDOWN": "0"})
	if !slices.Equal(sys.app.Catalog().Customers(), central.app.Catalog().Customers()) {
		t.Fatal("the two processes generated different catalogs from one CATALOG_SEED")
	}
	obs, sensor := sys.observerAndSensor(t, "customer/#")

	now := time.Now().Unix()
	id := customerWithCoupon(t, central, store.Boys, now)
	s := &script{cl: sensor, id: id, ts: now}
	s.lingerInBoys()
	focus := decodeFocus(t, obs.next("customer/focus", 10*time.Second).Payload)
	got := obs.nextOffer(t, 10*time.Second)
	want := bestCoupon(t, central, id, store.Boys, store.DayOf(focus.TS), false)
	if got.Customer.ID != id || got.Coupon.ID != want {
		t.Fatalf("prediction: customer %s coupon %d, want %s and the central's catalog's coupon %d",
			got.Customer.ID, got.Coupon.ID, id, want)
	}
	products, err := central.app.Catalog().CouponProducts(context.Background(), want, store.AllProducts)
	if err != nil {
		t.Fatal(err)
	}
	if gotIDs, wantIDs := productIDs(t, got.raw), idsOf(products); len(gotIDs) == 0 ||
		!slices.Equal(gotIDs, wantIDs[:min(len(wantIDs), len(gotIDs))]) {
		t.Errorf("products %v, want the first of the central's %v", gotIDs, wantIDs)
	}

	// The answers passed the proxy before the prediction was published.
	answers := proxy.answers()
	for _, path := range []string{
		"GET /central/customers/" + id + " 200",
		"GET /central/departments/Boys/coupons 200",
		fmt.Sprintf("GET /central/coupons/%d/products 200", want),
	} {
		if answers[path] < 1 {
			t.Errorf("the central did not answer %q; it answered %v", path, answers)
		}
	}
	// The entry's prefetch fetched the customer; the focus found it cached
	// or shared the call. A second fetch happens only when the first timed
	// out (CENTRAL_TIMEOUT) on a loaded machine, so allow it, but no more.
	if n := answers["GET /central/customers/"+id+" 200"]; n < 1 || n > 2 {
		t.Errorf("the central was asked for customer %s %d times, want once (twice at most)", id, n)
	}
	central.waitMetric(t, 1, 5*time.Second, "storeflow_central_server_requests_total", "route=customers", "outcome=ok")
	sys.waitMetric(t, 3, 5*time.Second, "storeflow_central_client_calls_total", "outcome=ok")
	s.exit()

	const unknown = "no-such-shopper"
	u := &script{cl: sensor, id: unknown, ts: now}
	u.lingerInBoys()
	sys.waitMetric(t, 1, 10*time.Second, "storeflow_focus_outcomes_total", "outcome=unknown_customer")
	central.waitMetric(t, 1, 5*time.Second, "storeflow_central_server_requests_total", "route=customers", "outcome=not_found")
	if n := proxy.answers()["GET /central/customers/"+unknown+" 404"]; n != 1 {
		t.Errorf("the central answered 404 for %s %d times, want once (then the cache remembers)", unknown, n)
	}
	u.exit()

	// Still serving: a new visit of the known customer gets a coupon again,
	// and nothing was published for the unknown one.
	s.ts += 100
	s.lingerInBoys()
	if again := decodeOffer(t, obs.next("customer/prediction", 10*time.Second).Payload); again.Customer.ID != id {
		t.Errorf("after the unknown customer, a prediction for %s, want %s", again.Customer.ID, id)
	}
	for _, m := range obs.pending {
		if m.Topic == "customer/prediction" {
			t.Errorf("unexpected prediction: %s", m.Payload)
		}
	}
	if code, body := httpGet(t, "http://"+sys.app.HTTPAddr()+"/readyz"); code != http.StatusOK {
		t.Errorf("GET /readyz = %d %s, want 200", code, body)
	}
}

// A central that cannot be reached costs each focus its coupon, counted as
// context_error, and nothing else: the process stays ready.
func TestCentralUnreachableIsCountedAndSurvived(t *testing.T) {
	closed := proctest.FreeAddr(t)

	sys := startSystem(t, map[string]string{"CENTRAL_URL": "http://" + closed, "CENTRAL_TIMEOUT": "300ms"})
	obs, sensor := sys.observerAndSensor(t, "customer/prediction")

	lingerInBoys(t, sys, sensor) // the central would know them
	sys.waitMetric(t, 1, 10*time.Second, "storeflow_focus_outcomes_total", "outcome=context_error")
	sys.waitMetric(t, 1, 5*time.Second, "storeflow_prefetch_total", "outcome=error")
	for _, o := range []string{"published", "unknown_customer"} {
		if n := sys.metric(t, "storeflow_focus_outcomes_total", "outcome="+o); n != 0 {
			t.Errorf("storeflow_focus_outcomes_total{outcome=%s} = %v with the central down", o, n)
		}
	}
	// The prefetch and the focus may share one call (the cache collapses
	// concurrent misses), so one refused connection is enough.
	if n := sys.metric(t, "storeflow_central_client_calls_total", "outcome=transport"); n < 1 {
		t.Errorf("storeflow_central_client_calls_total{outcome=transport} = %v, want at least 1", n)
	}
	select {
	case m := <-obs.msg:
		t.Errorf("a prediction was published with the central down: %s", m.Payload)
	default:
	}
	if code, body := httpGet(t, "http://"+sys.app.HTTPAddr()+"/readyz"); code != http.StatusOK {
		t.Errorf("GET /readyz = %d %s with the central down, want 200", code, body)
	}
}

// A customer prefetched while the central was up is still known when the
// central goes down: the focus takes the customer from the in-process cache
// and does not read as an unknown customer.
func TestCentralDownServesTheCachedCustomer(t *testing.T) {
	central := startSystem(t, nil)
	proxy := newCountingProxy(t, "http://"+central.app.HTTPAddr())
	sys := startSystem(t, map[string]string{"CENTRAL_URL": proxy.url, "CENTRAL_TIMEOUT": "300ms"})
	sensor := dial(t, sys.app.BrokerAddr(), "sensor", "")

	s := shopper(t, central, sensor, store.Boys)
	id := s.id
	s.enter()
	sys.waitMetric(t, 1, 5*time.Second, "storeflow_prefetch_total", "outcome=ok")

	proxy.down.Store(true)
	hits := sys.metric(t, "storeflow_cache_hits_total", "kind=customer")
	s.lingerInBoys()
	sys.waitMetric(t, 1, 10*time.Second, "storeflow_focus_outcomes_total")
	// The linger's own prefetch and its focus, both from the cache.
	sys.waitMetric(t, hits+2, 5*time.Second, "storeflow_cache_hits_total", "kind=customer")
	if n := sys.metric(t, "storeflow_focus_outcomes_total", "outcome=unknown_customer"); n != 0 {
		t.Errorf("the cached customer read as unknown %v times with the central down", n)
	}
	published := sys.metric(t, "storeflow_focus_outcomes_total", "outcome=published")
	ctxErr := sys.metric(t, "storeflow_focus_outcomes_total", "outcome=context_error")
	if published+ctxErr != 1 {
		t.Errorf("focus outcomes published %v, context_error %v: want one of them", published, ctxErr)
	}
	answers := proxy.answers()
	if n := answers["GET /central/customers/"+id+" 503"]; n != 0 {
		t.Errorf("the central was asked for the cached customer %d times while down", n)
	}
	// Only the customer was prefetched: the day's coupons were not cached,
	// so the focus asked the central for them and got its 503.
	if ctxErr == 1 && answers["GET /central/departments/Boys/coupons 503"] < 1 {
		t.Errorf("context_error without a coupons request to the central; it answered %v", answers)
	}
	if code, body := httpGet(t, "http://"+sys.app.HTTPAddr()+"/readyz"); code != http.StatusOK {
		t.Errorf("GET /readyz = %d %s with the central down, want 200", code, body)
	}
}

// customersWithCoupon returns n catalog customers for whom the in-process
// model scores some coupon of dep, valid at ts, above the default threshold.
func customersWithCoupon(t *testing.T, sys *system, dep store.Department, ts int64, n int) []string {
	t.Helper()
	ctx := context.Background()
	cat := sys.app.Catalog()
	coupons, _ := cat.ValidCoupons(ctx, dep, store.DayOf(ts), nil)
	probs := make([]float64, len(coupons))
	var ids []string
	for _, c := range cat.Customers() {
		if err := sys.app.Scorer().Score(ctx, &c, coupons, probs); err != nil {
			t.Fatal(err)
		}
		if _, ok := recommender.Best(coupons, probs, 0.2, nil); ok {
			if ids = append(ids, c.ID); len(ids) == n {
				return ids
			}
		}
	}
	t.Fatalf("%d customers have a %s coupon above 0.2, want %d", len(ids), dep, n)
	return nil
}

// redisClient is an outside client of r, to look at what the app cached.
func redisClient(t *testing.T, r *redistest.Redis) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: r.Addr(), DialTimeout: time.Second, ReadTimeout: time.Second})
	t.Cleanup(func() { c.Close() })
	return c
}

// waitKey waits until key exists in Redis.
func waitKey(t *testing.T, rdb *redis.Client, key string, within time.Duration) {
	t.Helper()
	harness.Until(t, within, "Redis key "+key, func() bool {
		n, err := rdb.Exists(t.Context(), key).Result()
		return err == nil && n == 1
	})
}

// checkTTL checks that key expires, within max.
func checkTTL(t *testing.T, rdb *redis.Client, key string, max time.Duration) {
	t.Helper()
	ttl, err := rdb.TTL(t.Context(), key).Result()
	if err != nil {
		t.Fatalf("TTL %s: %v", key, err)
	}
	if ttl <= 0 || ttl > max {
		t.Errorf("TTL %s = %v, want in (0, %v]", key, ttl, max)
	}
}

// productIDs are the ids of the products a prediction lists, in order.
func productIDs(t *testing.T, payload []byte) []int {
	t.Helper()
	var p struct {
		Coupon struct {
			Products []struct{ ID int } `json:"products"`
		} `json:"coupon"`
	}
	if err := json.Unmarshal(payload, &p); err != nil {
		t.Fatalf("prediction %s: %v", payload, err)
	}
	ids := make([]int, len(p.Coupon.Products))
	for i, pr := range p.Coupon.Products {
		ids[i] = pr.ID
	}
	return ids
}

func idsOf(products []store.Product) []int {
	ids := make([]int, len(products))
	for i, p := range products {
		ids[i] = p.ID
	}
	return ids
}
