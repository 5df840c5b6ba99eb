package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/storeflow/storeflow/internal/redisclient"
	"github.com/storeflow/storeflow/internal/redistest"
	"github.com/storeflow/storeflow/store"
	"github.com/storeflow/storeflow/store/world"

	"github.com/storeflow/storeflow/internal/harness"
)

// testReference is "today" of the generated catalog behind the caches.
var testReference = time.Date(2024, 5, 15, 13, 45, 0, 0, time.UTC)

// cacheWait bounds every wait in the cache tests.
const cacheWait = 15 * time.Second

// cacheCountingSource is the generated catalog behind a counter per method,
// with switches to make it fail or to hold Customer calls at a gate.
type cacheCountingSource struct {
	cat                         *store.Catalog
	customer, coupons, products atomic.Int64

	mu   sync.Mutex
	err  error         // when set, every call fails with it
	gate chan struct{} // when set, Customer waits until it is closed (or ctx ends)
}

func (s *cacheCountingSource) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

func (s *cacheCountingSource) state() (chan struct{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gate, s.err
}

func (s *cacheCountingSource) Customer(ctx context.Context, id string) (store.Customer, error) {
	s.customer.Add(1)
	gate, err := s.state()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return store.Customer{}, ctx.Err()
		}
	}
	if err != nil {
		return store.Customer{}, err
	}
	return s.cat.Customer(ctx, id)
}

func (s *cacheCountingSource) ValidCoupons(ctx context.Context, dep store.Department, day store.Day, dst []store.Coupon) ([]store.Coupon, error) {
	s.coupons.Add(1)
	if _, err := s.state(); err != nil {
		return dst, err
	}
	return s.cat.ValidCoupons(ctx, dep, day, dst)
}

func (s *cacheCountingSource) CouponProducts(ctx context.Context, couponID, limit int) ([]store.Product, error) {
	s.products.Add(1)
	if _, err := s.state(); err != nil {
		return nil, err
	}
	return s.cat.CouponProducts(ctx, couponID, limit)
}

// calls is the number of calls per method: customer, coupons, products.
func (s *cacheCountingSource) calls() [3]int64 {
	return [3]int64{s.customer.Load(), s.coupons.Load(), s.products.Load()}
}

var cacheTestCatalog = sync.OnceValues(func() (*store.Catalog, error) {
	return world.GenerateCatalog(world.Config{Seed: 1, Reference: testReference})
})

func newCacheSource(t testing.TB) *cacheCountingSource {
	t.Helper()
	cat, err := cacheTestCatalog()
	if err != nil {
		t.Fatal(err)
	}
	return &cacheCountingSource{cat: cat}
}

// cacheDay is the generated catalog's "today"; cacheDept a department with
// coupons running then and cacheCoupon one of them with products.
var cacheDay = store.DayOf(testReference.Unix())

func cacheDeptAndCoupon(t testing.TB, src *cacheCountingSource) (store.Department, int) {
	t.Helper()
	for _, d := range store.Departments {
		cs, _ := src.cat.ValidCoupons(context.Background(), d, cacheDay, nil)
		for _, cp := range cs {
			if ps, _ := src.cat.CouponProducts(context.Background(), cp.ID, store.AllProducts); len(ps) > 0 {
				return d, cp.ID
			}
		}
	}
	t.Fatal("the generated catalog has no coupon with products running on its reference day")
	return 0, 0
}

// cacheUnderTest is a Cache with what a test needs to look behind it: for
// the Redis cache, the server and a client of its own.
type cacheUnderTest struct {
	*Cache
	src    *cacheCountingSource
	prefix string
	srv    *redistest.Redis      // nil for the memory cache and the cluster
	rdb    redis.UniversalClient // nil for the memory cache
}

// cacheKinds are the two caches every shared test runs against.
// forEachCache runs test as a subtest on each kind of cache, built with cfg.
func forEachCache(t *testing.T, cfg Config, test func(t *testing.T, c cacheUnderTest)) {
	t.Helper()
	for _, mk := range cacheMakers {
		t.Run(mk.name, func(t *testing.T) { test(t, mk.make(t, cfg)) })
	}
}

var cacheMakers = []struct {
	name string
	make func(t testing.TB, cfg Config) cacheUnderTest
}{
	{"redis", newRedisCacheUnderTest},
	{"redis_cluster", newClusterCacheUnderTest},
	{"memory", newMemoryCacheUnderTest},
}

func newRedisCacheUnderTest(t testing.TB, cfg Config) cacheUnderTest {
	t.Helper()
	srv := redistest.Start(t)
	return redisCacheOn(t, srv, srv.URL(), "", cfg, nil)
}

func redisCacheOn(t testing.TB, srv *redistest.Redis, url, password string, cfg Config, log *slog.Logger) cacheUnderTest {
	t.Helper()
	c := redisCacheWith(t, openRedis(t, redisclient.Config{URL: url, Password: password}, log), cfg, log)
	c.srv = srv
	c.rdb = redis.NewClient(&redis.Options{Addr: srv.Addr(), Password: srv.Password(), MaxRetries: -1})
	t.Cleanup(func() { c.rdb.Close() })
	return c
}

// newClusterCacheUnderTest is the Redis cache in a three-node Redis Cluster.
func newClusterCacheUnderTest(t testing.TB, cfg Config) cacheUnderTest {
	t.Helper()
	cl := redistest.StartCluster(t)
	c := redisCacheWith(t, openRedis(t, redisclient.Config{URL: cl.URL(), Cluster: true}, nil), cfg, nil)
	c.rdb = redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
	t.Cleanup(func() { c.rdb.Close() })
	return c
}

// openRedis opens the client a cache under test uses, closed when the test
// ends.
func openRedis(t testing.TB, cfg redisclient.Config, log *slog.Logger) redis.UniversalClient {
	t.Helper()
	client, err := redisclient.Open(cfg, log)
	if err != nil {
		t.Fatalf("redisclient.Open(%s): %v", cfg.URL, err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

func redisCacheWith(t testing.TB, client redis.UniversalClient, cfg Config, log *slog.Logger) cacheUnderTest {
	t.Helper()
	if cfg.Prefix == "" {
		cfg.Prefix = "test:"
	}
	src := newCacheSource(t)
	c := NewRedis(src, client, cfg, log, nil)
	t.Cleanup(func() { c.Close() })
	return cacheUnderTest{Cache: c, src: src, prefix: cfg.Prefix}
}

func newMemoryCacheUnderTest(t testing.TB, cfg Config) cacheUnderTest {
	t.Helper()
	src := newCacheSource(t)
	c := NewMemory(src, cfg, nil)
	t.Cleanup(func() { c.Close() })
	return cacheUnderTest{Cache: c, src: src}
}

// kindCounts is a counter of the cache by kind: customer, coupons, products.
type kindCounts struct{ Customer, Coupons, Products float64 }

// cacheCounts is what the cache's counters hold.
type cacheCounts struct {
	Hits, Misses                      kindCounts
	RedisErrors, Corrupt              float64
	SourceNotFound, SourceUnavailable float64
}

func (c cacheUnderTest) counts() cacheCounts { return countsOf(c.Cache) }

func countsOf(c *Cache) cacheCounts {
	m := &c.m
	kinds := func(a *[cacheKinds]prometheus.Counter) kindCounts {
		return kindCounts{testutil.ToFloat64(a[kindCustomer]), testutil.ToFloat64(a[kindCoupons]), testutil.ToFloat64(a[kindProducts])}
	}
	return cacheCounts{
		Hits: kinds(&m.hits), Misses: kinds(&m.misses),
		RedisErrors: testutil.ToFloat64(m.redisErrors), Corrupt: testutil.ToFloat64(m.corrupt),
		SourceNotFound: testutil.ToFloat64(m.sourceNotFound), SourceUnavailable: testutil.ToFloat64(m.sourceUnavailable),
	}
}

// has reports whether the cache holds an entry for k.
func (c cacheUnderTest) has(t testing.TB, k cacheKey) bool {
	t.Helper()
	if c.rdb == nil {
		_, ok, _ := c.tier.get(context.Background(), k)
		return ok
	}
	n, err := c.rdb.Exists(context.Background(), k.redisKey(c.prefix)).Result()
	if err != nil {
		t.Fatalf("EXISTS %s: %v", k.redisKey(c.prefix), err)
	}
	return n == 1
}

// waitFor polls cond until it holds, failing the test after cacheWait.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	harness.Until(t, cacheWait, what, cond)
}

func TestCacheHitsAndMisses(t *testing.T) {
	forEachCache(t, Config{TTL: time.Hour}, func(t *testing.T, c cacheUnderTest) {
		ctx := context.Background()
		dep, couponID := cacheDeptAndCoupon(t, c.src)
		id := c.src.cat.Customers()[0].ID

		wantCustomer, _ := c.src.cat.Customer(ctx, id)
		wantCoupons, _ := c.src.cat.ValidCoupons(ctx, dep, cacheDay, nil)
		wantProducts, _ := c.src.cat.CouponProducts(ctx, couponID, store.AllProducts)

		for round, want := range [][3]int64{{1, 1, 1}, {1, 1, 1}, {1, 1, 1}} {
			cu, err := c.Customer(ctx, id)
			if err != nil || cu != wantCustomer {
				t.Fatalf("round %d: Customer = %+v, %v; want %+v", round, cu, err, wantCustomer)
			}
			prefix := []store.Coupon{{ID: -1}}
			cs, err := c.ValidCoupons(ctx, dep, cacheDay, prefix)
			if err != nil || !slices.Equal(cs[1:], wantCoupons) || cs[0].ID != -1 {
				t.Fatalf("round %d: ValidCoupons = %v, %v; want dst then %v", round, cs, err, wantCoupons)
			}
			ps, err := c.CouponProducts(ctx, couponID, store.AllProducts)
			if err != nil || !slices.Equal(ps, wantProducts) {
				t.Fatalf("round %d: CouponProducts = %v, %v; want %v", round, ps, err, wantProducts)
			}
			ps[0].Name = "changed by the caller" // must not reach the cache
			if got := c.src.calls(); got != want {
				t.Fatalf("round %d: source calls (customer, coupons, products) = %v, want %v", round, got, want)
			}
		}
		st := c.counts()
		if want := (kindCounts{1, 1, 1}); st.Misses != want {
			t.Errorf("Misses = %+v, want %+v", st.Misses, want)
		}
		if want := (kindCounts{2, 2, 2}); st.Hits != want {
			t.Errorf("Hits = %+v, want %+v", st.Hits, want)
		}
		if st.RedisErrors != 0 || st.Corrupt != 0 {
			t.Errorf("counts = %+v, want no errors", st)
		}
		for _, k := range []cacheKey{{kind: kindCustomer, id: id}, {kind: kindCoupons, dep: dep, day: cacheDay}, {kind: kindProducts, coupon: couponID}} {
			if !c.has(t, k) {
				t.Errorf("no %s entry after the first read filled it", k.kind)
			}
		}
	})
}

func TestCacheUnknownDepartmentAndCoupon(t *testing.T) {
	forEachCache(t, Config{}, func(t *testing.T, c cacheUnderTest) {
		ctx := context.Background()
		tests := []struct {
			name string
			call func() error
		}{
			{"no department", func() error { _, err := c.ValidCoupons(ctx, store.NoDepartment, cacheDay, nil); return err }},
			{"unknown coupon", func() error { _, err := c.CouponProducts(ctx, -42, store.AllProducts); return err }},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				for range 2 {
					if err := tt.call(); !errors.Is(err, store.ErrNotFound) {
						t.Fatalf("error = %v, want ErrNotFound", err)
					}
				}
			})
		}
		// Neither is cached: both went to the source twice.
		if got := c.src.calls(); got != [3]int64{0, 2, 2} {
			t.Errorf("source calls = %v, want [0 2 2]", got)
		}
	})
}

func TestRedisCacheKeys(t *testing.T) {
	const ttl = 10 * time.Minute
	c := newRedisCacheUnderTest(t, Config{TTL: ttl, Prefix: "shop7:"})
	ctx := context.Background()
	dep, couponID := cacheDeptAndCoupon(t, c.src)
	id := c.src.cat.Customers()[3].ID
	if _, err := c.Customer(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ValidCoupons(ctx, dep, cacheDay, nil); err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int{store.AllProducts, focusMaxProducts} {
		if _, err := c.CouponProducts(ctx, couponID, limit); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name    string
		key     string
		columns []string
	}{
		{"customer", "shop7:customer:" + id, store.CustomerColumns},
		{"coupons", fmt.Sprintf("shop7:coupons:%s:%s", dep, cacheDay), store.CouponColumns},
		{"products", fmt.Sprintf("shop7:products:%d", couponID), store.ProductColumns},
		{"first products", fmt.Sprintf("shop7:products:%d:first%d", couponID, focusMaxProducts), store.ProductColumns},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			left, err := c.rdb.TTL(ctx, tt.key).Result()
			if err != nil {
				t.Fatalf("TTL %s: %v", tt.key, err)
			}
			if left <= 0 || left > ttl {
				t.Errorf("TTL %s = %v, want in (0, %v]", tt.key, left, ttl)
			}
			raw, err := c.rdb.Get(ctx, tt.key).Bytes()
			if err != nil {
				t.Fatalf("GET %s: %v", tt.key, err)
			}
			var obj map[string]any
			if tt.name == "customer" {
				err = json.Unmarshal(raw, &obj)
			} else {
				var list []map[string]any
				err = json.Unmarshal(raw, &list)
				if len(list) > 0 {
					obj = list[0]
				}
			}
			if err != nil || obj == nil {
				t.Fatalf("GET %s = %s: %v, want JSON with a row", tt.key, raw, err)
			}
			if got, want := slices.Sorted(maps.Keys(obj)), slices.Sorted(slices.Values(tt.columns)); !slices.Equal(got, want) {
				t.Errorf("fields of %s = %v, want the CSV columns %v", tt.key, got, want)
			}
		})
	}
	keys, err := c.rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != len(tests) {
		t.Errorf("keys in Redis = %v, want the %d above", keys, len(tests))
	}
}

func TestCacheTTLExpiry(t *testing.T) {
	forEachCache(t, Config{TTL: time.Second}, func(t *testing.T, c cacheUnderTest) {
		ctx := context.Background()
		id := c.src.cat.Customers()[1].ID
		k := cacheKey{kind: kindCustomer, id: id}
		if _, err := c.Customer(ctx, id); err != nil {
			t.Fatal(err)
		}
		if !c.has(t, k) {
			t.Fatal("no entry after the first read")
		}
		waitFor(t, "entry expires", func() bool { return !c.has(t, k) })
		if _, err := c.Customer(ctx, id); err != nil {
			t.Fatal(err)
		}
		if n := c.src.customer.Load(); n != 2 {
			t.Errorf("source Customer calls = %d, want 2 (the expired entry read again)", n)
		}
	})
}

func TestCachePrefetch(t *testing.T) {
	forEachCache(t, Config{}, func(t *testing.T, c cacheUnderTest) {
		ctx := context.Background()
		id := c.src.cat.Customers()[5].ID
		k := cacheKey{kind: kindCustomer, id: id}
		for range 2 {
			if err := c.Prefetch(ctx, id); err != nil {
				t.Fatalf("Prefetch: %v", err)
			}
		}
		if !c.has(t, k) {
			t.Fatal("Prefetch left no entry")
		}
		if _, err := c.Customer(ctx, id); err != nil {
			t.Fatal(err)
		}
		if n := c.src.customer.Load(); n != 1 {
			t.Errorf("source Customer calls = %d, want 1 (Prefetch loads on a miss only)", n)
		}
		if err := c.Prefetch(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Prefetch(unknown) = %v, want ErrNotFound", err)
		}
	})
}

func TestCacheNegative(t *testing.T) {
	forEachCache(t, Config{TTL: time.Hour}, func(t *testing.T, c cacheUnderTest) {
		ctx := context.Background()
		for i := range 5 {
			_, err := c.Customer(ctx, "ghost")
			if !errors.Is(err, store.ErrNotFound) || !strings.Contains(err.Error(), `"ghost"`) {
				t.Fatalf("read %d: error = %v, want ErrNotFound naming the id", i, err)
			}
		}
		if n := c.src.customer.Load(); n != 1 {
			t.Errorf("source Customer calls = %d, want 1", n)
		}
		st := c.counts()
		if st.SourceNotFound != 1 || st.Hits.Customer != 4 || st.Misses.Customer != 1 {
			t.Errorf("counts = %+v, want 1 not-found from the source, 4 hits, 1 miss", st)
		}
		if c.rdb == nil {
			return
		}
		key := c.prefix + "customer:ghost"
		left, err := c.rdb.TTL(ctx, key).Result()
		if err != nil || left <= 0 || left > maxNegativeTTL {
			t.Errorf("TTL %s = %v, %v; want in (0, %v]", key, left, err, maxNegativeTTL)
		}
		if raw, _ := c.rdb.Get(ctx, key).Result(); raw != `{"customer_id":"ghost","missing":true}` {
			t.Errorf("GET %s = %s, want the missing marker", key, raw)
		}
	})
}

func TestRedisCacheCorruptValue(t *testing.T) {
	c := newRedisCacheUnderTest(t, Config{})
	ctx := context.Background()
	dep, couponID := cacheDeptAndCoupon(t, c.src)
	cu := c.src.cat.Customers()[7]
	other := dep%store.Department(len(store.Departments)) + 1
	cuJSON := func(edit func(m map[string]any)) string {
		b, _ := encodeCacheValue(cacheKey{kind: kindCustomer, id: cu.ID}, cu)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		edit(m)
		b, _ = json.Marshal(m)
		return string(b)
	}
	coupons, _ := c.src.cat.ValidCoupons(ctx, dep, cacheDay, nil)
	cpJSON := func(edit func(cp *store.Coupon)) string {
		cs := slices.Clone(coupons)
		edit(&cs[0])
		out := make([]store.CouponRow, len(cs))
		for i := range cs {
			out[i] = cs[i].Row()
		}
		b, _ := json.Marshal(out)
		return string(b)
	}
	customer := func() error {
		got, err := c.Customer(ctx, cu.ID)
		if err == nil && got != cu {
			err = fmt.Errorf("got %+v, want %+v", got, cu)
		}
		return err
	}
	validCoupons := func() error {
		got, err := c.ValidCoupons(ctx, dep, cacheDay, nil)
		if err == nil && !slices.Equal(got, coupons) {
			err = fmt.Errorf("got %v, want %v", got, coupons)
		}
		return err
	}
	couponProducts := func() error {
		want, _ := c.src.cat.CouponProducts(ctx, couponID, store.AllProducts)
		got, err := c.CouponProducts(ctx, couponID, store.AllProducts)
		if err == nil && !slices.Equal(got, want) {
			err = fmt.Errorf("got %v, want %v", got, want)
		}
		return err
	}
	firstProduct := func() error {
		want, _ := c.src.cat.CouponProducts(ctx, couponID, 1)
		got, err := c.CouponProducts(ctx, couponID, 1)
		if err == nil && !slices.Equal(got, want) {
			err = fmt.Errorf("got %v, want %v", got, want)
		}
		return err
	}
	customerKey := cacheKey{kind: kindCustomer, id: cu.ID}
	couponsKey := cacheKey{kind: kindCoupons, dep: dep, day: cacheDay}
	productsKey := cacheKey{kind: kindProducts, coupon: couponID}
	firstProductKey := cacheKey{kind: kindProducts, coupon: couponID, limit: 1}
	allProducts, _ := c.src.cat.CouponProducts(ctx, couponID, store.AllProducts)
	if len(allProducts) < 2 {
		t.Fatalf("coupon %d has %d products, the test needs 2 or more", couponID, len(allProducts))
	}
	allJSON, err := encodeCacheValue(productsKey, allProducts)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		key   cacheKey
		value string
		read  func() error
	}{
		{"not JSON", customerKey, "\x00\xffgarbage", customer},
		{"truncated", customerKey, `{"customer_id":"` + cu.ID + `","gen`, customer},
		{"trailing data", customerKey, cuJSON(func(map[string]any) {}) + "{}", customer},
		{"another customer", customerKey, cuJSON(func(m map[string]any) { m["customer_id"] = "someone else" }), customer},
		{"bad gender", customerKey, cuJSON(func(m map[string]any) { m["gender"] = "X" }), customer},
		{"negative age", customerKey, cuJSON(func(m map[string]any) { m["age"] = -3 }), customer},
		{"fractional count", customerKey, cuJSON(func(m map[string]any) { m["total_items_bought"] = 2.5 }), customer},
		{"string for number", customerKey, cuJSON(func(m map[string]any) { m["age"] = "30" }), customer},
		{"marker of another id", customerKey, `{"customer_id":"x","missing":true}`, customer},
		{"array for object", customerKey, `[]`, customer},
		{"null coupons", couponsKey, `null`, validCoupons},
		{"object for list", couponsKey, `{}`, validCoupons},
		{"empty coupon", couponsKey, `[{}]`, validCoupons},
		{"coupon of another department", couponsKey, cpJSON(func(cp *store.Coupon) { cp.Department = other }), validCoupons},
		{"coupon not running that day", couponsKey, cpJSON(func(cp *store.Coupon) { cp.Start, cp.End = cacheDay+1, cacheDay+5 }), validCoupons},
		{"bad coupon type", couponsKey, strings.Replace(cpJSON(func(*store.Coupon) {}), string(coupons[0].Type), "free_lunch", 1), validCoupons},
		{"bad date", couponsKey, strings.Replace(cpJSON(func(*store.Coupon) {}), cacheDay.String()[:4], "20x4", 1), validCoupons},
		{"null products", productsKey, `null`, couponProducts},
		{"product without department", productsKey, `[{"product_id":1,"buy_price":3}]`, couponProducts},
		{"negative price", productsKey, `[{"product_id":1,"buy_price":-3,"department":"Men"}]`, couponProducts},
		{"every product under the key of the first", firstProductKey, string(allJSON), firstProduct},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := tt.key.redisKey(c.prefix)
			if err := c.rdb.Set(ctx, key, tt.value, time.Hour).Err(); err != nil {
				t.Fatal(err)
			}
			before := c.counts()
			if err := tt.read(); err != nil {
				t.Fatalf("read over a corrupt value: %v", err)
			}
			after := c.counts()
			if after.Corrupt != before.Corrupt+1 {
				t.Errorf("Corrupt = %v, want %v", after.Corrupt, before.Corrupt+1)
			}
			// Repaired: the value now decodes, and the next read is a hit.
			raw, err := c.rdb.Get(ctx, key).Bytes()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := decodeCacheValue(tt.key, raw); err != nil {
				t.Errorf("value after the read still corrupt: %v", err)
			}
			if err := tt.read(); err != nil {
				t.Fatal(err)
			}
			if st := c.counts(); st.Corrupt != after.Corrupt || st.Misses != after.Misses {
				t.Errorf("second read: Corrupt %v, Misses %+v; want a hit (%v, %+v)", st.Corrupt, st.Misses, after.Corrupt, after.Misses)
			}
		})
	}
}

// cacheLogRecorder keeps the messages of the records logged through it.
type cacheLogRecorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *cacheLogRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *cacheLogRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *cacheLogRecorder) WithGroup(string) slog.Handler            { return r }
func (r *cacheLogRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec.Clone())
	return nil
}

// count returns how many records had the message.
func (r *cacheLogRecorder) count(msg string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rec := range r.recs {
		if rec.Message == msg {
			n++
		}
	}
	return n
}

func (r *cacheLogRecorder) text() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, rec := range r.recs {
		fmt.Fprintf(&b, "%s %s", rec.Level, rec.Message)
		rec.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
		b.WriteByte('\n')
	}
	return b.String()
}

// waitForHit reads the customer until a read is a hit, which needs Redis
// back and reconnected.
func waitForHit(t *testing.T, c cacheUnderTest, id string) {
	t.Helper()
	waitFor(t, "a cache hit after Redis came back", func() bool {
		before := c.counts().Hits.Customer
		if _, err := c.Customer(context.Background(), id); err != nil {
			t.Fatalf("Customer while Redis comes back: %v", err)
		}
		return c.counts().Hits.Customer > before
	})
}

func TestRedisCacheRedisGoesAway(t *testing.T) {
	rec := new(cacheLogRecorder)
	srv := redistest.Start(t)
	c := redisCacheOn(t, srv, srv.URL(), "", Config{}, slog.New(rec))
	ctx := context.Background()
	customers := c.src.cat.Customers()
	if _, err := c.Customer(ctx, customers[0].ID); err != nil {
		t.Fatal(err)
	}

	srv.Stop()
	const reads = 50
	for i := range reads {
		want := customers[i%10]
		got, err := c.Customer(ctx, want.ID)
		if err != nil || got != want {
			t.Fatalf("Customer(%s) with Redis down = %+v, %v; want %+v from the source", want.ID, got, err, want)
		}
	}
	st := c.counts()
	if st.RedisErrors < reads {
		t.Errorf("RedisErrors = %v, want at least %v (one per read)", st.RedisErrors, reads)
	}
	if n := c.src.customer.Load(); n != 1+reads {
		t.Errorf("source Customer calls = %d, want %d: every read served by the source", n, 1+reads)
	}
	if n := rec.count("redis_read_failed"); n != 1 {
		t.Errorf("%d redis_read_failed lines for %d failures, want 1 (rate-limited):\n%s", n, reads, rec.text())
	}

	srv.Restart()
	waitForHit(t, c, customers[0].ID)
}

func TestRedisCacheStartsWithRedisDown(t *testing.T) {
	rec := new(cacheLogRecorder)
	srv := redistest.Start(t)
	srv.Stop()
	c := redisCacheOn(t, srv, srv.URL(), "", Config{}, slog.New(rec))
	if rec.count("redis_unavailable") != 1 {
		t.Errorf("log = %q, want one redis_unavailable line", rec.text())
	}
	id := c.src.cat.Customers()[0].ID
	if _, err := c.Customer(context.Background(), id); err != nil {
		t.Fatalf("Customer with Redis down at start: %v", err)
	}
	srv.Restart()
	waitForHit(t, c, id)
}

func TestCacheSourceUnavailable(t *testing.T) {
	tests := []struct {
		name string
		err  error
	}{
		{"ErrUnavailable", fmt.Errorf("central: 503: %w", store.ErrUnavailable)},
		{"other error", errors.New("connection reset by peer")},
	}
	for _, mk := range cacheMakers {
		for _, tt := range tests {
			t.Run(mk.name+"/"+tt.name, func(t *testing.T) {
				c := mk.make(t, Config{})
				ctx := context.Background()
				dep, couponID := cacheDeptAndCoupon(t, c.src)
				cached, uncached := c.src.cat.Customers()[0], c.src.cat.Customers()[1]
				if _, err := c.Customer(ctx, cached.ID); err != nil {
					t.Fatal(err)
				}
				if _, err := c.ValidCoupons(ctx, dep, cacheDay, nil); err != nil {
					t.Fatal(err)
				}

				c.src.fail(tt.err)
				if got, err := c.Customer(ctx, cached.ID); err != nil || got != cached {
					t.Errorf("cached Customer = %+v, %v; want it served from the cache", got, err)
				}
				if _, err := c.ValidCoupons(ctx, dep, cacheDay, nil); err != nil {
					t.Errorf("cached ValidCoupons: %v", err)
				}
				for range 2 {
					if _, err := c.Customer(ctx, uncached.ID); !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), tt.err.Error()) {
						t.Errorf("uncached Customer error = %v, want ErrUnavailable with the source's cause", err)
					}
					if _, err := c.CouponProducts(ctx, couponID, store.AllProducts); !errors.Is(err, store.ErrUnavailable) {
						t.Errorf("uncached CouponProducts error = %v, want ErrUnavailable", err)
					}
				}
				if st := c.counts(); st.SourceUnavailable != 4 || st.SourceNotFound != 0 {
					t.Errorf("counts = %+v, want 4 SourceUnavailable", st)
				}

				// The failure was not cached: the central's answer is, once it is back.
				c.src.fail(nil)
				if got, err := c.Customer(ctx, uncached.ID); err != nil || got != uncached {
					t.Errorf("Customer after the source is back = %+v, %v", got, err)
				}
			})
		}
	}
}

func TestRedisCachePassword(t *testing.T) {
	const pw = "p@ss/w:rd?#1"
	srv := redistest.StartWithPassword(t, pw)
	withPW := "redis://:" + url.QueryEscape(pw) + "@" + srv.Addr() + "/0"
	tests := []struct {
		name     string
		url      string
		password string // REDIS_PASSWORD
		wantErr  bool
	}{
		{name: "from REDIS_PASSWORD", url: srv.URL(), password: pw},
		{name: "from the URL", url: withPW},
		{name: "the URL's wins", url: withPW, password: "stale"},
		{name: "wrong", url: srv.URL(), password: "wrong-secret", wantErr: true},
		{name: "missing", url: srv.URL(), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := newCacheSource(t)
			client, err := redisclient.Open(redisclient.Config{URL: tt.url, Password: tt.password}, nil)
			if tt.wantErr {
				if err == nil {
					client.Close()
					t.Fatal("redisclient.Open succeeded, want the credentials refused")
				}
				msg := err.Error()
				if !strings.Contains(msg, "REDIS_PASSWORD") || (tt.password != "" && strings.Contains(msg, tt.password)) {
					t.Errorf("error = %q, want one naming REDIS_PASSWORD and not showing the password", msg)
				}
				return
			}
			if err != nil {
				t.Fatalf("redisclient.Open: %v", err)
			}
			defer client.Close()
			c := NewRedis(src, client, Config{Prefix: tt.name + ":"}, nil, nil)
			defer c.Close()
			id := src.cat.Customers()[0].ID
			for range 2 {
				if _, err := c.Customer(context.Background(), id); err != nil {
					t.Fatal(err)
				}
			}
			if st := countsOf(c); st.Hits.Customer != 1 || st.RedisErrors != 0 {
				t.Errorf("counts = %+v, want a hit and no Redis errors", st)
			}
		})
	}
}

func TestMemoryCacheBound(t *testing.T) {
	const max = 10
	c := newMemoryCacheUnderTest(t, Config{MaxItems: max})
	ctx := context.Background()
	mem := c.tier.(*memoryTier)
	customers := c.src.cat.Customers()
	read := func(i int) {
		t.Helper()
		if _, err := c.Customer(ctx, customers[i].ID); err != nil {
			t.Fatal(err)
		}
	}
	for i := range max {
		read(i)
	}
	read(0) // now the most recently used
	for i := max; i < 3*max; i++ {
		read(i)
		if n := mem.len(); n > max {
			t.Fatalf("%d entries after %d customers, want at most %d", n, i+1, max)
		}
		if i == max && !c.has(t, cacheKey{kind: kindCustomer, id: customers[0].ID}) {
			t.Error("the recently used entry was evicted before the least recently used one")
		}
	}
	for i := range 3 * max {
		want := i >= 2*max
		if got := c.has(t, cacheKey{kind: kindCustomer, id: customers[i].ID}); got != want {
			t.Errorf("customer %d cached = %v, want %v (the last %d read stay)", i, got, want, max)
		}
	}
}

func TestCacheCollapsesConcurrentMisses(t *testing.T) {
	const n = 20
	forEachCache(t, Config{}, func(t *testing.T, c cacheUnderTest) {
		gate := make(chan struct{})
		c.src.mu.Lock()
		c.src.gate = gate
		c.src.mu.Unlock()
		want := c.src.cat.Customers()[9]

		var wg sync.WaitGroup
		errs := make(chan error, n)
		for range n {
			wg.Go(func() {
				got, err := c.Customer(context.Background(), want.ID)
				if err == nil && got != want {
					err = fmt.Errorf("got %+v", got)
				}
				errs <- err
			})
		}
		// Every request has missed and joined the one call, held at the gate.
		waitFor(t, "all requests waiting", func() bool {
			return c.counts().Misses.Customer == n && c.src.customer.Load() == 1
		})
		close(gate)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
		if calls := c.src.customer.Load(); calls != 1 {
			t.Errorf("source Customer calls = %d, want 1 for %d concurrent misses", calls, n)
		}
	})
}

func TestCacheFlightCallerGivesUp(t *testing.T) {
	c := newMemoryCacheUnderTest(t, Config{})
	gate := make(chan struct{})
	c.src.mu.Lock()
	c.src.gate = gate
	c.src.mu.Unlock()
	want := c.src.cat.Customers()[2]

	leaderCtx, cancel := context.WithCancel(context.Background())
	leaderErr := make(chan error, 1)
	go func() {
		_, err := c.Customer(leaderCtx, want.ID)
		leaderErr <- err
	}()
	waitFor(t, "the first request in the source", func() bool { return c.src.customer.Load() == 1 })
	follower := make(chan error, 1)
	go func() {
		got, err := c.Customer(context.Background(), want.ID)
		if err == nil && got != want {
			err = fmt.Errorf("got %+v", got)
		}
		follower <- err
	}()
	waitFor(t, "the second request waiting", func() bool { return c.counts().Misses.Customer == 2 })
	cancel()
	if err := <-leaderErr; !errors.Is(err, context.Canceled) {
		t.Errorf("first request: %v, want context.Canceled", err)
	}
	close(gate) // the shared call, which the first request gave up on, may answer now
	if err := <-follower; err != nil {
		t.Errorf("second request, which did not give up: %v", err)
	}
	if n := c.src.customer.Load(); n != 1 {
		t.Errorf("source Customer calls = %d, want 1: the shared call goes on when the caller that made it gives up", n)
	}
	if st := c.counts(); st.SourceUnavailable != 0 {
		t.Errorf("SourceUnavailable = %v, want 0: a caller giving up is not the source failing", st.SourceUnavailable)
	}
}

func TestCacheWarnerRateLimits(t *testing.T) {
	var w cacheWarner
	if _, ok := w.allow(); !ok {
		t.Fatal("first warning held back")
	}
	for range 5 {
		if _, ok := w.allow(); ok {
			t.Fatal("warning let through within the interval")
		}
	}
	w.last.Store(time.Now().Add(-cacheWarnEvery).UnixNano()) // the interval has passed
	if n, ok := w.allow(); !ok || n != 5 {
		t.Errorf("allow after the interval = %d, %v; want 5 suppressed, true", n, ok)
	}
}

func TestCacheClose(t *testing.T) {
	forEachCache(t, Config{}, func(t *testing.T, c cacheUnderTest) {
		for range 2 {
			if err := c.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}
	})
}

func FuzzDecodeCacheValue(f *testing.F) {
	cat, err := cacheTestCatalog()
	if err != nil {
		f.Fatal(err)
	}
	ctx := context.Background()
	cu := cat.Customers()[0]
	dep := store.Women
	cs, _ := cat.ValidCoupons(ctx, dep, cacheDay, nil)
	keys := []cacheKey{
		{kind: kindCustomer, id: cu.ID},
		{kind: kindCoupons, dep: dep, day: cacheDay},
		{kind: kindProducts, coupon: 1},
		{kind: kindProducts, coupon: 1, limit: 3},
	}
	seed := func(i int, v any) {
		b, err := encodeCacheValue(keys[i], v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(i), b)
	}
	seed(0, cu)
	seed(0, cacheMissing{})
	seed(1, cs)
	if len(cs) > 0 {
		ps, _ := cat.CouponProducts(ctx, cs[0].ID, store.AllProducts)
		seed(2, ps)
		seed(3, ps[:min(len(ps), 3)])
	}
	f.Add(uint8(1), []byte(`[]`))
	f.Add(uint8(2), []byte(`null`))
	f.Fuzz(func(t *testing.T, kind uint8, b []byte) {
		k := keys[int(kind)%len(keys)]
		v, err := decodeCacheValue(k, b)
		if err != nil {
			return
		}
		// Whatever passes validation is written back the same.
		again, err := encodeCacheValue(k, v)
		if err != nil {
			t.Fatalf("decoded %q to %+v, which does not encode: %v", b, v, err)
		}
		v2, err := decodeCacheValue(k, again)
		if err != nil || !reflect.DeepEqual(v, v2) {
			t.Fatalf("round trip of %+v: %+v, %v", v, v2, err)
		}
	})
}

// focusMaxProducts is what the focus path asks a coupon's products for:
// PREDICTION_MAX_PRODUCTS' default.
const focusMaxProducts = 20

// The focus path per iteration: the shopper's context, the department's
// coupons today, the products of the best one.
func focusPath(b *testing.B, src store.Source, id string, dep store.Department, dst []store.Coupon) []store.Coupon {
	ctx := context.Background()
	if _, err := src.Customer(ctx, id); err != nil {
		b.Fatal(err)
	}
	dst, err := src.ValidCoupons(ctx, dep, cacheDay, dst[:0])
	if err != nil || len(dst) == 0 {
		b.Fatalf("ValidCoupons: %d, %v", len(dst), err)
	}
	best := 0
	for i := range dst {
		if dst[i].Discount > dst[best].Discount {
			best = i
		}
	}
	if _, err := src.CouponProducts(ctx, dst[best].ID, focusMaxProducts); err != nil {
		b.Fatal(err)
	}
	return dst
}

// benchSources are the caches in front of the generated catalog, and the
// catalog alone for scale; flush empties one (nil: nothing to flush).
func benchSources(b *testing.B) []struct {
	name  string
	src   store.Source
	flush func()
	rdb   *redis.Client // the Redis behind src, nil for the others
} {
	cat, err := cacheTestCatalog()
	if err != nil {
		b.Fatal(err)
	}
	srv := redistest.Start(b)
	rc := NewRedis(cat, openRedis(b, redisclient.Config{URL: srv.URL()}, nil), Config{Prefix: "bench:"}, nil, nil)
	b.Cleanup(func() { rc.Close() })
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	b.Cleanup(func() { rdb.Close() })
	mc := NewMemory(cat, Config{}, nil)
	return []struct {
		name  string
		src   store.Source
		flush func()
		rdb   *redis.Client
	}{
		{"catalog", cat, nil, nil},
		{"memory", mc, mc.tier.(*memoryTier).purge, nil},
		{"redis", rc, func() {
			if err := rdb.FlushDB(context.Background()).Err(); err != nil {
				b.Fatal(err)
			}
		}, rdb},
	}
}

func BenchmarkFocusPathWarm(b *testing.B) {
	for _, s := range benchSources(b) {
		b.Run(s.name, func(b *testing.B) {
			cat, _ := cacheTestCatalog()
			customers := cat.Customers()[:100]
			dst := make([]store.Coupon, 0, 16)
			for _, cu := range customers { // warm
				dst = focusPath(b, s.src, cu.ID, store.Women, dst)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				dst = focusPath(b, s.src, customers[i%len(customers)].ID, store.Women, dst)
				i++
			}
		})
	}
}

func BenchmarkFocusPathCold(b *testing.B) {
	for _, s := range benchSources(b) {
		b.Run(s.name, func(b *testing.B) {
			cat, _ := cacheTestCatalog()
			customers := cat.Customers()
			dst := make([]store.Coupon, 0, 16)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if s.flush != nil {
					b.StopTimer()
					s.flush()
					b.StartTimer()
				}
				dst = focusPath(b, s.src, customers[i%len(customers)].ID, store.Women, dst)
				i++
			}
		})
	}
}

// A value over maxCachedValue is refused by the decoder itself. (Through a
// real Redis the 8 MiB read can outlast the cache's 200 ms timeout on a
// loaded machine, which would make the test measure the machine.)
func TestCacheValueTooLarge(t *testing.T) {
	var key cacheKey
	key.kind = kindProducts
	key.coupon = 1
	if _, err := decodeCacheValue(key, []byte(`[`+strings.Repeat(" ", maxCachedValue)+`]`)); err == nil {
		t.Fatal("a value over the size limit was accepted")
	}
}

// largestDepartmentCoupon is the generated catalog's department coupon with
// the most products: the worst case of the focus path's products read.
func largestDepartmentCoupon(tb testing.TB, cat *store.Catalog) (id, products int) {
	tb.Helper()
	for _, cp := range cat.Coupons() {
		if cp.Type != store.DeptCoupon {
			continue
		}
		if ps, _ := cat.CouponProducts(context.Background(), cp.ID, store.AllProducts); len(ps) > products {
			id, products = cp.ID, len(ps)
		}
	}
	if products == 0 {
		tb.Fatal("the generated catalog has no department coupon with products")
	}
	return id, products
}

// redisBytesSent is what the Redis server has written to its clients so far.
func redisBytesSent(tb testing.TB, rdb *redis.Client) int64 {
	tb.Helper()
	info, err := rdb.Info(context.Background(), "stats").Result()
	if err != nil {
		tb.Fatal(err)
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "total_net_output_bytes:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return n
		}
	}
	tb.Fatal("INFO stats has no total_net_output_bytes")
	return 0
}

// BenchmarkDepartmentCouponProducts is the focus path's products read for
// the largest department coupon, warm: what a coupon message costs to fill.
// redis-bytes/op is what Redis sends per read.
func BenchmarkDepartmentCouponProducts(b *testing.B) {
	cat, err := cacheTestCatalog()
	if err != nil {
		b.Fatal(err)
	}
	id, _ := largestDepartmentCoupon(b, cat)
	ctx := context.Background()
	for _, s := range benchSources(b) {
		b.Run(s.name, func(b *testing.B) {
			read := func() {
				ps, err := s.src.CouponProducts(ctx, id, focusMaxProducts)
				if err != nil || len(ps) != focusMaxProducts {
					b.Fatalf("CouponProducts(%d): %d, %v", id, len(ps), err)
				}
			}
			read() // warm
			var sent0 int64
			if s.rdb != nil {
				sent0 = redisBytesSent(b, s.rdb)
			}
			b.ReportAllocs()
			for b.Loop() {
				read()
			}
			if s.rdb != nil {
				b.ReportMetric(float64(redisBytesSent(b, s.rdb)-sent0)/float64(b.N), "redis-bytes/op")
			}
		})
	}
}

// A limited read is an entry of its own that holds the first products only,
// in the coupon's order: the largest department coupon's first 20, not its
// hundreds. The full list is another entry, under the key it always had.
func TestCacheCouponProductsLimit(t *testing.T) {
	const limit = focusMaxProducts
	forEachCache(t, Config{}, func(t *testing.T, c cacheUnderTest) {
		ctx := context.Background()
		id, n := largestDepartmentCoupon(t, c.src.cat)
		all, _ := c.src.cat.CouponProducts(ctx, id, store.AllProducts)
		firstKey := cacheKey{kind: kindProducts, coupon: id, limit: limit}
		allKey := cacheKey{kind: kindProducts, coupon: id}
		for round := range 2 {
			ps, err := c.CouponProducts(ctx, id, limit)
			if err != nil || !slices.Equal(ps, all[:limit]) {
				t.Fatalf("round %d: CouponProducts(%d, %d) = %d products, %v; want the first %d of %d", round, id, limit, len(ps), err, limit, n)
			}
		}
		if got := c.src.products.Load(); got != 1 {
			t.Errorf("source products calls = %d, want 1 (a miss, then a hit)", got)
		}
		if !c.has(t, firstKey) || c.has(t, allKey) {
			t.Errorf("entries: first %d %v, every product %v; want the first only", limit, c.has(t, firstKey), c.has(t, allKey))
		}
		if c.rdb != nil {
			b, err := c.rdb.Get(ctx, firstKey.redisKey(c.prefix)).Bytes()
			if err != nil {
				t.Fatal(err)
			}
			if v, err := decodeCacheValue(firstKey, b); err != nil || len(v.([]store.Product)) != limit {
				t.Errorf("%s: %d bytes, %v; want the %d products", firstKey.redisKey(c.prefix), len(b), err, limit)
			}
		}
		ps, err := c.CouponProducts(ctx, id, store.AllProducts)
		if err != nil || !slices.Equal(ps, all) || !c.has(t, allKey) {
			t.Errorf("CouponProducts(%d, AllProducts) = %d products, %v; want all %d, cached", id, len(ps), err, n)
		}
	})
}
