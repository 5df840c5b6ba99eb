// Package cache owns the cache in front of a store.Source (the in-process
// catalog or a remote central): in Redis, shared by every storeflow that
// uses it, or in a bounded in-process LRU; one source call for concurrent
// misses of a key, negative entries for unknown customers, and a degraded
// mode that serves from the source while Redis is away.
package cache

import (
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"

	"github.com/storeflow/storeflow/store"
)

// Config sizes a Cache. Zero values take the defaults of store.Config
// (CACHE_TTL 1h, CACHE_MAX_ITEMS 100000).
type Config struct {
	TTL      time.Duration // how long an entry lives
	Prefix   string        // of every Redis key
	MaxItems int           // entries of the in-process cache, at most
}

// Defaults of Config, the same as store.Config's envDefault.
const (
	defaultCacheTTL      = time.Hour
	defaultCacheMaxItems = 100_000
)

// maxNegativeTTL bounds how long an unknown customer is remembered as
// unknown: long enough that a flood of unknown ids (a misconfigured
// simulator, a replayed feed) reaches the central once per id and minute,
// short enough that a customer added to the central is seen soon.
const maxNegativeTTL = time.Minute

// maxCachedValue bounds a value read from Redis: anything larger is not
// something this cache wrote.
const maxCachedValue = 8 << 20

// cacheWarnEvery is how often each kind of degraded-mode warning is logged
// at most; the lines in between are counted and the count is logged with the
// next line.
const cacheWarnEvery = 10 * time.Second

// Cache is a Source in front of another Source, backed by Redis
// (NewRedis) or by a bounded in-process LRU (NewMemory). It is safe
// for concurrent use.
//
// What it caches, for Config.TTL: customers, each department's coupons
// valid on a day, and each coupon's products. Unknown customers are cached
// too, as a "missing" entry for min(TTL, 1m), so that a flood of unknown ids
// does not hammer the central; unknown departments and coupons are not. An
// ErrUnavailable answer is never cached.
//
// Degraded mode: when Redis cannot be reached, every request is served from
// the source, counted in storeflow_cache_errors_total{kind="redis"} and
// warned about at most once per 10 s; go-redis reconnects by itself and the
// cache is used again once Redis answers. When the source is unavailable, cached values are still
// served and uncached requests fail with an error wrapping ErrUnavailable.
// Concurrent misses for the same entry make one source call between them.
//
// What it does is counted in storeflow_cache_hits_total,
// storeflow_cache_misses_total, storeflow_cache_errors_total and
// storeflow_central_answers_total, registered with the prometheus.Registerer
// given to NewMemory or NewRedis (nil: a private registry).
type Cache struct {
	src    store.Source
	tier   cacheTier
	ttl    time.Duration
	negTTL time.Duration
	log    *slog.Logger
	flight singleflight.Group // of source calls, by key

	m                                metrics
	warnRead, warnWrite, warnCorrupt cacheWarner
	warnSource                       cacheWarner

	closeOnce sync.Once
	closeErr  error
}

// metrics are the cache's counters, recorded in Prometheus as they happen.
type metrics struct {
	hits   [cacheKinds]prometheus.Counter // answered from the cache, negative entries included
	misses [cacheKinds]prometheus.Counter // not in the cache (or corrupt there): asked the source

	redisErrors prometheus.Counter // Redis reads and writes that failed (Redis down, timeout, refused)
	corrupt     prometheus.Counter // values in Redis that failed validation; each is a miss and is overwritten

	sourceNotFound    prometheus.Counter // the source said ErrNotFound
	sourceUnavailable prometheus.Counter // the source failed otherwise (ErrUnavailable)
}

// newMetrics registers the cache's counters with reg (nil: a private
// registry), every series at zero.
func newMetrics(reg prometheus.Registerer) metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	vec := func(name, help, label string) *prometheus.CounterVec {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{label})
		reg.MustRegister(v)
		return v
	}
	hits := vec("storeflow_cache_hits_total", "Focus-path reads answered from the cache, by kind.", "kind")
	misses := vec("storeflow_cache_misses_total", "Focus-path reads the cache did not hold (asked the central), by kind.", "kind")
	errs := vec("storeflow_cache_errors_total", "Cache trouble: Redis unreachable or failing, corrupt values in Redis.", "kind")
	answers := vec("storeflow_central_answers_total", "Answers of the central behind the cache to cache misses, by outcome.", "outcome")
	m := metrics{
		redisErrors:       errs.WithLabelValues("redis"),
		corrupt:           errs.WithLabelValues("corrupt"),
		sourceNotFound:    answers.WithLabelValues("not_found"),
		sourceUnavailable: answers.WithLabelValues("unavailable"),
	}
	for k := range cacheKinds {
		m.hits[k] = hits.WithLabelValues(k.String())
		m.misses[k] = misses.WithLabelValues(k.String())
	}
	return m
}

// cacheKind is what an entry holds.
type cacheKind uint8

const (
	kindCustomer cacheKind = iota
	kindCoupons
	kindProducts
	cacheKinds
)

// cacheKindNames name the kinds in metric labels, log lines and Redis keys.
var cacheKindNames = [cacheKinds]string{
	kindCustomer: "customer",
	kindCoupons:  "coupons",
	kindProducts: "products",
}

func (k cacheKind) String() string {
	if k < cacheKinds {
		return cacheKindNames[k]
	}
	return fmt.Sprintf("cacheKind(%d)", uint8(k))
}

// cacheKey names an entry. It is comparable, so the in-process tier uses it
// as a map key without building a string; the singleflight keys on its
// Redis name.
type cacheKey struct {
	kind   cacheKind
	id     string           // kindCustomer
	dep    store.Department // kindCoupons
	day    store.Day        // kindCoupons
	coupon int              // kindProducts
	limit  int              // kindProducts: the first this many; store.AllProducts: every one
}

// redisKey is the key's name in Redis: {prefix}customer:{id},
// {prefix}coupons:{dep}:{YYYY-MM-DD}, {prefix}products:{couponID} (every
// product of the coupon) or {prefix}products:{couponID}:first{limit}. The
// limit is in the name so that no reader takes a list of one length for
// another: a full list written before limits existed is read as the full
// list it is, never as the first twenty.
func (k cacheKey) redisKey(prefix string) string {
	b := make([]byte, 0, len(prefix)+len(k.id)+32)
	b = append(b, prefix...)
	b = append(b, k.kind.String()...)
	b = append(b, ':')
	switch k.kind {
	case kindCustomer:
		b = append(b, k.id...)
	case kindCoupons:
		b = append(b, k.dep.String()...)
		b = append(b, ':')
		b = time.Unix(int64(k.day)*86400, 0).UTC().AppendFormat(b, time.DateOnly)
	case kindProducts:
		b = strconv.AppendInt(b, int64(k.coupon), 10)
		if k.limit > 0 {
			b = append(b, ":first"...)
			b = strconv.AppendInt(b, int64(k.limit), 10)
		}
	}
	return string(b)
}

// cacheMissing is the value of a negative entry: the customer is unknown.
type cacheMissing struct{}

// errCacheCorrupt marks a value in Redis that did not decode or validate.
var errCacheCorrupt = errors.New("corrupt cache value")

// cacheTier is where entries live. Values are Customer, cacheMissing,
// []Coupon or []Product; a tier owns what it is given and what it returns is
// shared, never to be modified.
type cacheTier interface {
	// get returns the entry, ok false when there is none; err is a failure
	// of the tier (Redis down) or errCacheCorrupt.
	get(ctx context.Context, k cacheKey) (v any, ok bool, err error)
	set(ctx context.Context, k cacheKey, v any, ttl time.Duration) error
	close() error
}

// NewMemory puts a bounded in-process cache in front of src: at most
// cfg.MaxItems entries, the least recently used evicted first, each living
// cfg.TTL.
func NewMemory(src store.Source, cfg Config, reg prometheus.Registerer) *Cache {
	cfg = cfg.normalize()
	return newCache(src, newMemoryTier(cfg.MaxItems), cfg, nil, reg)
}

// NewRedis puts a Redis cache in front of src, in client's server or
// Redis Cluster (every key it uses is a single-key GET or SET, so it needs
// no hash tags). The client is the caller's: Close leaves it open. Redis
// being down is not an error: the cache serves from src, and uses Redis as
// soon as it answers.
func NewRedis(src store.Source, client redis.UniversalClient, cfg Config, log *slog.Logger, reg prometheus.Registerer) *Cache {
	cfg = cfg.normalize()
	return newCache(src, &redisTier{client: client, prefix: cfg.Prefix}, cfg, log, reg)
}

func (cfg Config) normalize() Config {
	if cfg.TTL <= 0 {
		cfg.TTL = defaultCacheTTL
	}
	if cfg.MaxItems <= 0 {
		cfg.MaxItems = defaultCacheMaxItems
	}
	return cfg
}

func newCache(src store.Source, tier cacheTier, cfg Config, log *slog.Logger, reg prometheus.Registerer) *Cache {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Cache{
		src:    src,
		tier:   tier,
		ttl:    cfg.TTL,
		negTTL: min(cfg.TTL, maxNegativeTTL),
		log:    log.With("component", "cache"),
		m:      newMetrics(reg),
	}
}

// Customer returns the customer, from the cache or else from the source.
// An unknown customer is ErrNotFound, from the source or from a negative
// entry.
func (c *Cache) Customer(ctx context.Context, id string) (store.Customer, error) {
	k := cacheKey{kind: kindCustomer, id: id}
	v, err := c.lookup(ctx, k)
	if err != nil {
		return store.Customer{}, err
	}
	if _, missing := v.(cacheMissing); missing {
		return store.Customer{}, fmt.Errorf("customer %q: %w", id, store.ErrNotFound)
	}
	return v.(store.Customer), nil
}

// ValidCoupons appends the department's coupons valid on day to dst.
func (c *Cache) ValidCoupons(ctx context.Context, dep store.Department, day store.Day, dst []store.Coupon) ([]store.Coupon, error) {
	if !dep.Valid() {
		return c.src.ValidCoupons(ctx, dep, day, dst) // not worth a key
	}
	k := cacheKey{kind: kindCoupons, dep: dep, day: day}
	v, err := c.lookup(ctx, k)
	if err != nil {
		return dst, err
	}
	return append(dst, v.([]store.Coupon)...), nil
}

// CouponProducts returns the first limit products the coupon covers (every
// one for store.AllProducts), in a slice of the caller's own. Each limit is
// an entry of its own, holding only what it is asked for: the focus path
// asks for PREDICTION_MAX_PRODUCTS, and a department coupon's hundreds of
// products are neither stored nor read.
func (c *Cache) CouponProducts(ctx context.Context, couponID, limit int) ([]store.Product, error) {
	k := cacheKey{kind: kindProducts, coupon: couponID, limit: max(limit, store.AllProducts)}
	v, err := c.lookup(ctx, k)
	if err != nil {
		return nil, err
	}
	return slices.Clone(v.([]store.Product)), nil
}

// Prefetch loads the customer into the cache when it is not there yet, so
// that the focus that follows an entry finds it warm. An unknown customer is
// ErrNotFound (and remembered as unknown).
func (c *Cache) Prefetch(ctx context.Context, customerID string) error {
	_, err := c.Customer(ctx, customerID)
	return err
}

// Close empties the in-process cache. It is idempotent; neither the source
// nor the Redis client is closed.
func (c *Cache) Close() error {
	c.closeOnce.Do(func() { c.closeErr = c.tier.close() })
	return c.closeErr
}

// lookup answers k from the tier, or else from the source through the
// singleflight, filling the tier with the answer.
func (c *Cache) lookup(ctx context.Context, k cacheKey) (any, error) {
	v, ok, err := c.tier.get(ctx, k)
	tierUp := true
	switch {
	case err == nil && ok:
		c.m.hits[k.kind].Inc()
		return v, nil
	case errors.Is(err, errCacheCorrupt):
		c.m.corrupt.Inc()
		if n, ok := c.warnCorrupt.allow(); ok {
			c.log.Warn("cache_value_corrupt", "kind", k.kind.String(), "error", err, "suppressed", n)
		}
	case err != nil:
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		tierUp = false // do not pay for a write that will fail too
		c.m.redisErrors.Inc()
		if n, ok := c.warnRead.allow(); ok {
			c.log.Warn("redis_read_failed", "kind", k.kind.String(), "error", err, "suppressed", n)
		}
	}
	return c.miss(ctx, k, tierUp)
}

// miss answers k from the source. Concurrent misses of k share one source
// call. It runs on a context of its own, the values of the first caller's
// without its end: a caller that gives up returns at once, and the call goes
// on for the others (bounded by the source's own deadline, CENTRAL_TIMEOUT
// for a remote central). It is a function of its own so that what the call
// captures is allocated on a miss only, never on a hit.
func (c *Cache) miss(ctx context.Context, k cacheKey, tierUp bool) (any, error) {
	fillCtx := context.WithoutCancel(ctx)
	call := c.flight.DoChan(k.redisKey(""), func() (any, error) { return c.fill(fillCtx, k, tierUp) })
	c.m.misses[k.kind].Inc() // once joined, so that a count of n misses means n callers on the call
	select {
	case r := <-call:
		return r.Val, r.Err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// fetch asks the source for what k names.
func (c *Cache) fetch(ctx context.Context, k cacheKey) (any, error) {
	switch k.kind {
	case kindCustomer:
		cu, err := c.src.Customer(ctx, k.id)
		return cu, err
	case kindCoupons:
		cs, err := c.src.ValidCoupons(ctx, k.dep, k.day, nil)
		if cs == nil {
			cs = []store.Coupon{} // an empty list is an answer too
		}
		return cs, err
	}
	ps, err := c.src.CouponProducts(ctx, k.coupon, k.limit)
	if ps == nil {
		ps = []store.Product{}
	}
	return ps, err
}

// fill asks the source for k and caches its answer: a value, or for an
// unknown customer a negative entry. An error that is not ErrNotFound is
// never cached and is returned wrapping ErrUnavailable.
func (c *Cache) fill(ctx context.Context, k cacheKey, tierUp bool) (any, error) {
	v, err := c.fetch(ctx, k)
	switch {
	case err == nil:
		c.store(ctx, k, v, c.ttl, tierUp)
		return v, nil
	case errors.Is(err, store.ErrNotFound):
		c.m.sourceNotFound.Inc()
		if k.kind == kindCustomer {
			c.store(ctx, k, cacheMissing{}, c.negTTL, tierUp)
		}
		return nil, err
	case errors.Is(err, store.ErrLimited):
		return nil, err // not asked: the client counts it, and the central is fine
	}
	c.m.sourceUnavailable.Inc()
	if n, ok := c.warnSource.allow(); ok {
		c.log.Warn("source_unavailable", "kind", k.kind.String(), "error", err, "suppressed", n)
	}
	if !errors.Is(err, store.ErrUnavailable) {
		err = fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return nil, err
}

// store writes an entry, counting and warning when the tier fails.
func (c *Cache) store(ctx context.Context, k cacheKey, v any, ttl time.Duration, tierUp bool) {
	if !tierUp {
		return
	}
	err := c.tier.set(ctx, k, v, ttl)
	if err == nil {
		return
	}
	if errors.Is(err, errCacheCorrupt) {
		// The source's answer would not pass validation when read back:
		// serve it, but do not cache it.
		if n, ok := c.warnCorrupt.allow(); ok {
			c.log.Warn("cache_value_refused", "kind", k.kind.String(), "error", err, "suppressed", n)
		}
		return
	}
	c.m.redisErrors.Inc()
	if n, ok := c.warnWrite.allow(); ok {
		c.log.Warn("redis_write_failed", "kind", k.kind.String(), "error", err, "suppressed", n)
	}
}

// cacheWarner lets one warning through per cacheWarnEvery and counts the
// ones it holds back.
type cacheWarner struct {
	last       atomic.Int64 // unix nanoseconds of the last warning let through; 0: none yet
	suppressed atomic.Uint64
}

// allow reports whether to log now, and how many warnings were held back
// since the last one logged.
func (w *cacheWarner) allow() (suppressed uint64, ok bool) {
	now := time.Now().UnixNano()
	last := w.last.Load()
	if (last != 0 && now-last < int64(cacheWarnEvery)) || !w.last.CompareAndSwap(last, now) {
		w.suppressed.Add(1)
		return 0, false
	}
	return w.suppressed.Swap(0), true
}

// memoryTier is a bounded LRU with a TTL per entry. Expired entries go
// when they are next looked up or when they reach the back of the list.
type memoryTier struct {
	mu    sync.Mutex
	max   int
	items map[cacheKey]*list.Element
	order list.List // of *memoryEntry, most recently used at the front
}

type memoryEntry struct {
	key     cacheKey
	val     any
	expires int64 // unix nanoseconds
}

func newMemoryTier(maxItems int) *memoryTier {
	m := &memoryTier{max: maxItems, items: make(map[cacheKey]*list.Element, min(maxItems, 1024))}
	m.order.Init()
	return m
}

func (m *memoryTier) get(_ context.Context, k cacheKey) (any, bool, error) {
	now := time.Now().UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	el, ok := m.items[k]
	if !ok {
		return nil, false, nil
	}
	e := el.Value.(*memoryEntry)
	if now >= e.expires {
		m.order.Remove(el)
		delete(m.items, k)
		return nil, false, nil
	}
	m.order.MoveToFront(el)
	return e.val, true, nil
}

func (m *memoryTier) set(_ context.Context, k cacheKey, v any, ttl time.Duration) error {
	expires := time.Now().Add(ttl).UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	if el, ok := m.items[k]; ok {
		e := el.Value.(*memoryEntry)
		e.val, e.expires = v, expires
		m.order.MoveToFront(el)
		return nil
	}
	m.items[k] = m.order.PushFront(&memoryEntry{key: k, val: v, expires: expires})
	for len(m.items) > m.max {
		back := m.order.Back()
		m.order.Remove(back)
		delete(m.items, back.Value.(*memoryEntry).key)
	}
	return nil
}

// len is the number of entries held, expired ones included.
func (m *memoryTier) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.items)
}

// purge drops every entry.
func (m *memoryTier) purge() {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.items)
	m.order.Init()
}

func (m *memoryTier) close() error {
	m.purge()
	return nil
}

// redisTier keeps entries in Redis as JSON, with the CSV column names as
// field names, every key written with SET … EX ttl.
type redisTier struct {
	client redis.UniversalClient
	prefix string
}

func (r *redisTier) get(ctx context.Context, k cacheKey) (any, bool, error) {
	b, err := r.client.Get(ctx, k.redisKey(r.prefix)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	v, err := decodeCacheValue(k, b)
	if err != nil {
		return nil, false, fmt.Errorf("%w: %s: %w", errCacheCorrupt, k.redisKey(r.prefix), err)
	}
	return v, true, nil
}

func (r *redisTier) set(ctx context.Context, k cacheKey, v any, ttl time.Duration) error {
	b, err := encodeCacheValue(k, v)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", errCacheCorrupt, k.redisKey(r.prefix), err)
	}
	return r.client.Set(ctx, k.redisKey(r.prefix), b, ttl).Err()
}

func (r *redisTier) close() error { return nil } // the client is its owner's

// The cached values are JSON in the store's row forms (store.CustomerRow,
// store.CouponRow, store.ProductRow: one object per table row, named as the
// CSV columns are). A negative customer entry is
// {"customer_id": id, "missing": true}.
type cachedCustomer struct {
	store.CustomerRow
	Missing bool `json:"missing,omitempty"` // a negative entry: nothing else is set
}

// encodeCacheValue is the JSON of v, which must be of k's kind. A value that
// would not pass decodeCacheValue is refused: written, it would be a miss on
// every read.
func encodeCacheValue(k cacheKey, v any) ([]byte, error) {
	switch v := v.(type) {
	case cacheMissing:
		return json.Marshal(struct {
			ID      string `json:"customer_id"`
			Missing bool   `json:"missing"`
		}{k.id, true})
	case store.Customer:
		if err := errors.Join(v.Validate(), customerFits(k, &v)); err != nil {
			return nil, err
		}
		return json.Marshal(v.Row())
	case []store.Coupon:
		out := make([]store.CouponRow, len(v))
		for i := range v {
			if err := errors.Join(v[i].Validate(), couponFits(k, &v[i])); err != nil {
				return nil, err
			}
			out[i] = v[i].Row()
		}
		return json.Marshal(out)
	case []store.Product:
		if err := productsFit(k, len(v)); err != nil {
			return nil, err
		}
		out := make([]store.ProductRow, len(v))
		for i := range v {
			if err := v[i].Validate(); err != nil {
				return nil, err
			}
			out[i] = v[i].Row()
		}
		return json.Marshal(out)
	}
	return nil, fmt.Errorf("cache: cannot encode %T", v)
}

// decodeCacheValue parses and validates a value read from Redis for k. Redis
// is outside input: anything that is not what encodeCacheValue writes for k
// (wrong shape, wrong key, a record the store's rules refuse) is an error.
func decodeCacheValue(k cacheKey, b []byte) (any, error) {
	if len(b) > maxCachedValue {
		return nil, fmt.Errorf("%d bytes, more than %d", len(b), maxCachedValue)
	}
	switch k.kind {
	case kindCustomer:
		var j cachedCustomer
		if err := json.Unmarshal(b, &j); err != nil {
			return nil, err
		}
		if j.Missing {
			if j.CustomerID != k.id {
				return nil, fmt.Errorf("negative entry for customer %q under the key of %q", j.CustomerID, k.id)
			}
			return cacheMissing{}, nil
		}
		c, err := j.Customer()
		if err == nil {
			err = customerFits(k, &c)
		}
		if err != nil {
			return nil, err
		}
		return c, nil
	case kindCoupons:
		return decodeRows(b, "coupons", (*store.CouponRow).Coupon, func(cp *store.Coupon) error { return couponFits(k, cp) })
	case kindProducts:
		ps, err := decodeRows(b, "products", (*store.ProductRow).Product, func(*store.Product) error { return nil })
		if err == nil {
			err = productsFit(k, len(ps))
		}
		if err != nil {
			return nil, err
		}
		return ps, nil
	}
	return nil, fmt.Errorf("unknown kind %v", k.kind)
}

// decodeRows reads a JSON list of rows and converts each to its record (which
// holds it to the store's rules); fits holds the record to the key besides.
func decodeRows[R, T any](b []byte, what string, convert func(*R) (T, error), fits func(*T) error) ([]T, error) {
	var rows []R
	if err := json.Unmarshal(b, &rows); err != nil {
		return nil, err
	}
	if rows == nil {
		return nil, errors.New("null, not a list of " + what)
	}
	out := make([]T, len(rows))
	for i := range rows {
		var err error
		if out[i], err = convert(&rows[i]); err == nil {
			err = fits(&out[i])
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// customerFits holds a customer to the key it is cached under; the store's
// rules for a customer are Validate's.
func customerFits(k cacheKey, c *store.Customer) error {
	if c.ID != k.id {
		return fmt.Errorf("customer %q under the key of %q", c.ID, k.id)
	}
	return nil
}

// productsFit holds a list of n products to the limit of the key it is
// cached under.
func productsFit(k cacheKey, n int) error {
	if k.limit > 0 && n > k.limit {
		return fmt.Errorf("%d products under the key of the first %d", n, k.limit)
	}
	return nil
}

// couponFits holds a coupon to the department and day of the list it is
// cached in.
func couponFits(k cacheKey, cp *store.Coupon) error {
	switch {
	case cp.Department != k.dep:
		return fmt.Errorf("coupon %d of %s in the list of %s", cp.ID, cp.Department, k.dep)
	case !cp.ValidOn(k.day):
		return fmt.Errorf("coupon %d runs %s to %s, not on %s", cp.ID, cp.Start, cp.End, k.day)
	}
	return nil
}
