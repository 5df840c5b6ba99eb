package loop

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisLedger is the ledger of several instances (DWELL_STATE=redis): the
// open offers in a hash (field → ts) with a sorted set by ts beside it, so
// that any instance matches a redemption to an offer another made. Every
// instance sees every message of the topics; the scripts make each offer
// settle on one instance only, and each redemption count once. The keys
// share the {loop} hash tag: one slot in a Redis Cluster, for the scripts.
type redisLedger struct {
	rdb     redis.UniversalClient
	openKey string // hash: field → ts
	due     string // sorted set: field by ts
	mark    string // prefix of the keys that mark a redemption as handled
	max     int
	window  time.Duration
}

func newRedisLedger(rdb redis.UniversalClient, prefix string, max int, window time.Duration) *redisLedger {
	p := prefix + "{loop}:"
	return &redisLedger{rdb: rdb, openKey: p + "open", due: p + "due", mark: p + "redeemed:", max: max, window: window}
}

// openScript adds or renews the offer ARGV[1] made at ARGV[2], unless it is
// open with that very ts (another instance took the same message), and
// keeps at most ARGV[3] open: it returns the fields and ts of the oldest
// ones it removed to stay within.
var openScript = redis.NewScript(`
local prev = redis.call('HGET', KEYS[1], ARGV[1])
if prev == ARGV[2] then return {} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
local out = {}
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[3])
if over > 0 then
  local popped = redis.call('ZPOPMIN', KEYS[2], over)
  for i = 1, #popped, 2 do
    local ts = redis.call('HGET', KEYS[1], popped[i])
    redis.call('HDEL', KEYS[1], popped[i])
    if ts then out[#out+1] = popped[i]; out[#out+1] = ts end
  end
end
return out`)

// redeemScript handles the redemption KEYS[3] names once (marked for
// ARGV[2] ms): returns "dup" when an instance did already, the ts of the
// open offer ARGV[1] it settles, or false when none is open.
var redeemScript = redis.NewScript(`
if redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[2]) == false then return 'dup' end
local ts = redis.call('HGET', KEYS[1], ARGV[1])
if not ts then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return ts`)

// expireScript removes the offers made at or before ARGV[1], at most ARGV[2]
// of them, and returns their fields and ts.
var expireScript = redis.NewScript(`
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, f in ipairs(due) do
  redis.call('ZREM', KEYS[2], f)
  local ts = redis.call('HGET', KEYS[1], f)
  redis.call('HDEL', KEYS[1], f)
  if ts then out[#out+1] = f; out[#out+1] = ts end
end
return out`)

// expireBatch bounds the work of one expire call in Redis; the next call
// takes the rest.
const expireBatch = 1000

func (r *redisLedger) open(ctx context.Context, o offer) ([]settled, error) {
	res, err := openScript.Run(ctx, r.rdb, []string{r.openKey, r.due}, field(o.customer, o.coupon), o.ts, r.max).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("loop: redis: open offer: %w", err)
	}
	return settledOf(res, outcomeEvicted), nil
}

func (r *redisLedger) redeem(ctx context.Context, customer string, coupon int, ts int64) (offer, bool, bool, error) {
	f := field(customer, coupon)
	mark := r.mark + f + "\xff" + strconv.FormatInt(ts, 10)
	res, err := redeemScript.Run(ctx, r.rdb, []string{r.openKey, r.due, mark}, f, max(r.window, time.Minute).Milliseconds()).Text()
	switch {
	case err == redis.Nil:
		return offer{}, false, false, nil
	case err != nil:
		return offer{}, false, false, fmt.Errorf("loop: redis: redeem: %w", err)
	case res == "dup":
		return offer{}, false, true, nil
	}
	ots, err := strconv.ParseInt(res, 10, 64)
	if err != nil {
		return offer{}, false, false, fmt.Errorf("loop: redis: offer %q has ts %q", f, res)
	}
	return offer{customer: customer, coupon: coupon, ts: ots}, true, false, nil
}

func (r *redisLedger) expire(ctx context.Context, cutoff int64) ([]settled, error) {
	res, err := expireScript.Run(ctx, r.rdb, []string{r.openKey, r.due}, cutoff, expireBatch).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("loop: redis: expire offers: %w", err)
	}
	return settledOf(res, outcomeExpired), nil
}

func (r *redisLedger) size(ctx context.Context) (int, error) {
	n, err := r.rdb.HLen(ctx, r.openKey).Result()
	return int(n), err
}

// settledOf reads the scripts' answer, field and ts pairs, as offers settled
// as not used for why.
func settledOf(res []string, why string) []settled {
	out := make([]settled, 0, len(res)/2)
	for i := 0; i+1 < len(res); i += 2 {
		customer, coupon, ok := parseField(res[i])
		ts, err := strconv.ParseInt(res[i+1], 10, 64)
		if !ok || err != nil {
			continue // not written by this package
		}
		out = append(out, settled{offer: offer{customer: customer, coupon: coupon, ts: ts}, why: why})
	}
	return out
}
