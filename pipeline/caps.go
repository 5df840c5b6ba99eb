package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/storeflow/storeflow/event"
	"github.com/storeflow/storeflow/store"
)

// The frequency caps: at most COUPONS_PER_SHOPPER_PER_DAY coupons per
// shopper per day (the event-time day of the focus, store.DayOf), and no
// second coupon in one department for a shopper within
// COUPON_DEPARTMENT_COOLDOWN (event time, across visits). A focus is looked
// at twice: before the context stage (a shopper capped already costs no
// central call and no scoring) and at the offer, where the coupon's place
// under the caps is reserved atomically — two foci of one shopper handled at
// once, by two workers or two instances, do not both pass a cap of one —
// and given back when the coupon is not published, so only published
// coupons use up the allowance.
type caps interface {
	// capped tells whether f's shopper has no room left for a coupon in
	// f's department on f's day (read only).
	capped(ctx context.Context, f event.Focus) (bool, error)
	// reserve takes f's place under the caps; ok is false when there is
	// none. prev is what release needs to undo it.
	reserve(ctx context.Context, f event.Focus) (ok bool, prev int64, err error)
	// release gives back a reservation whose coupon was not published.
	release(ctx context.Context, f event.Focus, prev int64) error
}

// noCoupon is the prev of a reservation with no earlier coupon in the
// department on record.
const noCoupon = int64(-1 << 63)

// capRule is the two caps; a zero field turns its cap off.
type capRule struct {
	perDay   int   // COUPONS_PER_SHOPPER_PER_DAY
	cooldown int64 // COUPON_DEPARTMENT_COOLDOWN, in seconds
}

// dayLeft is how long, in event time, f's day lasts after f, plus
// capDayMargin for focus events that come late.
func dayLeft(ts int64) time.Duration {
	return time.Duration((int64(store.DayOf(ts))+1)*86400-ts)*time.Second + capDayMargin
}

// capDayMargin keeps a day's count past its end for late focus events.
const capDayMargin = time.Hour

// inCooldown tells whether a coupon at ts falls within the cooldown of the
// department's last coupon at last (either side: focus events may come out
// of order).
func (r capRule) inCooldown(ts, last int64) bool {
	if r.cooldown == 0 || last == noCoupon {
		return false
	}
	d := ts - last
	return d < r.cooldown && -d < r.cooldown
}

// memCaps keeps the caps in process (DWELL_STATE=memory): per shopper the
// coupon counts of the days still running and the last coupon time per
// department, forgotten once the day and the cooldowns have passed in event
// time. At most MAX_SHOPPERS shoppers are held: when full, the one with the
// oldest coupon is forgotten (counted in storeflow_caps_evicted_total; that
// shopper's caps start afresh).
type memCaps struct {
	rule     capRule
	perShard int
	clock    atomic.Int64 // the latest ts of a coupon reserved: event time, for expiry
	evicted  func()
	shards   [visitShards]struct {
		mu sync.Mutex
		m  map[string]*capShopper
	}
}

// capShopper is one shopper's coupons under the caps.
type capShopper struct {
	days []dayCount                 // coupons per day, for days not yet over
	deps map[store.Department]int64 // ts of the last coupon per department
	last int64                      // ts of the latest coupon
}

type dayCount struct {
	day store.Day
	n   int
}

func newMemCaps(rule capRule, maxShoppers int, evicted func()) *memCaps {
	c := &memCaps{rule: rule, perShard: max(1, maxShoppers/visitShards), evicted: evicted}
	for i := range c.shards {
		c.shards[i].m = make(map[string]*capShopper)
	}
	return c
}

func (s *capShopper) count(day store.Day) *int {
	for i := range s.days {
		if s.days[i].day == day {
			return &s.days[i].n
		}
	}
	return nil
}

// full tells whether s has no room under rule for a coupon at f.
func (r capRule) full(s *capShopper, f event.Focus) bool {
	if s == nil {
		return false
	}
	if r.perDay > 0 {
		if n := s.count(store.DayOf(f.TS)); n != nil && *n >= r.perDay {
			return true
		}
	}
	last, ok := s.deps[f.Dep]
	return ok && r.inCooldown(f.TS, last)
}

func (c *memCaps) capped(_ context.Context, f event.Focus) (bool, error) {
	sh := &c.shards[hashID(f.ID)%visitShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return c.rule.full(sh.m[f.ID], f), nil
}

func (c *memCaps) reserve(_ context.Context, f event.Focus) (bool, int64, error) {
	if f.TS > c.clock.Load() {
		c.clock.Store(f.TS) // racy max: a clock for expiry only
	}
	sh := &c.shards[hashID(f.ID)%visitShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s := sh.m[f.ID]
	if c.rule.full(s, f) {
		return false, 0, nil
	}
	if s == nil {
		if len(sh.m) >= c.perShard {
			c.evictOldest(sh.m)
		}
		s = &capShopper{deps: map[store.Department]int64{}}
		sh.m[f.ID] = s
	}
	if c.rule.perDay > 0 {
		day := store.DayOf(f.TS)
		if n := s.count(day); n != nil {
			*n++
		} else {
			s.days = append(s.days, dayCount{day: day, n: 1})
		}
	}
	prev := noCoupon
	if c.rule.cooldown > 0 {
		if last, ok := s.deps[f.Dep]; ok {
			prev = last
		}
		s.deps[f.Dep] = f.TS
	}
	s.last = max(s.last, f.TS)
	return true, prev, nil
}

func (c *memCaps) release(_ context.Context, f event.Focus, prev int64) error {
	sh := &c.shards[hashID(f.ID)%visitShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s := sh.m[f.ID]
	if s == nil {
		return nil // evicted meanwhile
	}
	if n := s.count(store.DayOf(f.TS)); n != nil && *n > 0 {
		*n--
	}
	if last, ok := s.deps[f.Dep]; ok && last == f.TS {
		if prev == noCoupon {
			delete(s.deps, f.Dep)
		} else {
			s.deps[f.Dep] = prev
		}
	}
	return nil
}

// evictOldest forgets the shopper of m whose latest coupon is the oldest.
// It runs only when a shard is full: a scan of one shard.
func (c *memCaps) evictOldest(m map[string]*capShopper) {
	var oldest string
	at := int64(0)
	for id, s := range m {
		if oldest == "" || s.last < at {
			oldest, at = id, s.last
		}
	}
	delete(m, oldest)
	c.evicted()
}

// expire forgets what no focus can be capped by any more: the days before
// the clock's (less capDayMargin) and department coupons older than the
// cooldown; a shopper with nothing left goes. It returns how many went.
func (c *memCaps) expire() int {
	now := c.clock.Load()
	today := store.DayOf(now - int64(capDayMargin/time.Second))
	gone := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for id, s := range sh.m {
			s.days = slices.DeleteFunc(s.days, func(d dayCount) bool { return d.day < today })
			for dep, last := range s.deps {
				if now-last >= c.rule.cooldown {
					delete(s.deps, dep)
				}
			}
			if len(s.days) == 0 && len(s.deps) == 0 {
				delete(sh.m, id)
				gone++
			}
		}
		sh.mu.Unlock()
	}
	return gone
}

// capReserveScript reserves a coupon's place under the caps: KEYS[1] the
// shopper's coupon count of the day, KEYS[2] the ts of the shopper's last
// coupon in the department. ARGV: the daily cap (0 off), the day key's
// expiry (ms), the focus ts, the cooldown (s, 0 off), the department key's
// expiry (ms). It returns {0} when capped, else {1, the department's
// previous ts or ""}.
var capReserveScript = redis.NewScript(`
local cap = tonumber(ARGV[1])
if cap > 0 and tonumber(redis.call('GET', KEYS[1]) or '0') >= cap then return {0} end
local prev = ''
local cool = tonumber(ARGV[4])
if cool > 0 then
  prev = redis.call('GET', KEYS[2]) or ''
  if prev ~= '' and math.abs(tonumber(ARGV[3]) - tonumber(prev)) < cool then return {0} end
end
if cap > 0 then
  redis.call('INCR', KEYS[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if cool > 0 then redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[5]) end
return {1, prev}`)

// capReleaseScript undoes capReserveScript: the day's count down by one,
// and the department's last coupon back to ARGV[2] ("" none) if it still
// is this focus's ts ARGV[1]. ARGV[3] is the daily cap (0 off).
var capReleaseScript = redis.NewScript(`
if tonumber(ARGV[3]) > 0 and tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then redis.call('DECR', KEYS[1]) end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  if ARGV[2] == '' then redis.call('DEL', KEYS[2]) else redis.call('SET', KEYS[2], ARGV[2], 'KEEPTTL') end
end
return 1`)

// redisCaps keeps the caps in Redis (DWELL_STATE=redis), so they hold
// across instances. Both keys carry the shopper id as hash tag. The day key
// expires at the end of its day (event time, plus capDayMargin); the
// department key after the cooldown in wall time, which is at least as long
// as in event time when events come in real time or faster (the simulator);
// the stored ts decides.
type redisCaps struct {
	rdb    redis.UniversalClient
	prefix string
	rule   capRule
}

func (c *redisCaps) keys(f event.Focus) []string {
	return []string{
		c.prefix + "capday:{" + f.ID + "}:" + strconv.FormatInt(int64(store.DayOf(f.TS)), 10),
		c.prefix + "capdep:{" + f.ID + "}:" + f.Dep.String(),
	}
}

func (c *redisCaps) capped(ctx context.Context, f event.Focus) (bool, error) {
	keys := c.keys(f)
	vals, err := c.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return false, fmt.Errorf("pipeline: caps of %s: %w", f.ID, err)
	}
	if s, ok := vals[0].(string); ok && c.rule.perDay > 0 {
		if n, _ := strconv.Atoi(s); n >= c.rule.perDay {
			return true, nil
		}
	}
	if s, ok := vals[1].(string); ok {
		if last, err := strconv.ParseInt(s, 10, 64); err == nil && c.rule.inCooldown(f.TS, last) {
			return true, nil
		}
	}
	return false, nil
}

func (c *redisCaps) reserve(ctx context.Context, f event.Focus) (bool, int64, error) {
	res, err := capReserveScript.Run(ctx, c.rdb, c.keys(f), c.rule.perDay, dayLeft(f.TS).Milliseconds(),
		f.TS, c.rule.cooldown, max(c.rule.cooldown, 1)*1000).Slice()
	if err != nil {
		return false, 0, fmt.Errorf("pipeline: reserve caps of %s: %w", f.ID, err)
	}
	if len(res) < 2 {
		return false, 0, nil
	}
	prev := noCoupon
	if s, _ := res[1].(string); s != "" {
		if prev, err = strconv.ParseInt(s, 10, 64); err != nil {
			return false, 0, fmt.Errorf("pipeline: caps of %s: department key holds %q", f.ID, s)
		}
	}
	return true, prev, nil
}

func (c *redisCaps) release(ctx context.Context, f event.Focus, prev int64) error {
	p := ""
	if prev != noCoupon {
		p = strconv.FormatInt(prev, 10)
	}
	if err := capReleaseScript.Run(ctx, c.rdb, c.keys(f), f.TS, p, c.rule.perDay).Err(); err != nil {
		return fmt.Errorf("pipeline: release caps of %s: %w", f.ID, err)
	}
	return nil
}

// capsEvicted counts a shopper whose caps memCaps forgot to make room, and
// warns (rate-limited).
func (p *Pipeline) capsEvicted() {
	p.m.capsEvicted.Inc()
	p.warn.Log(slog.LevelWarn, "caps:evicted", "MAX_SHOPPERS reached in the frequency caps: a shopper's caps were forgotten and start afresh; raise MAX_SHOPPERS")
}
