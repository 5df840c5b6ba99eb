package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/storeflow/storeflow/event"
	"github.com/storeflow/storeflow/recommender"
	"github.com/storeflow/storeflow/store"
)

// Dwell state modes (DWELL_STATE).
const (
	DwellStateMemory = "memory" // one instance: everything in process
	DwellStateRedis  = "redis"  // several instances: shared state, focus claims and the visit ledger in Redis
)

// defaultKeyPrefix starts every Redis key when Parts.RedisPrefix is empty.
const defaultKeyPrefix = "storeflow:"

// confirmed is the value of a focus key once its focus was handled.
const confirmed = "done"

// claimFinishTimeout bounds the confirm or release of a claim. It runs after
// the focus settled, on its own context: a cancelled stage context must not
// leave a published coupon unconfirmed.
const claimFinishTimeout = time.Second

// How often a focus claimed by another instance is looked at again while it
// waits: quickly at first (the other instance usually publishes within
// milliseconds), then no more than 10 times a second.
const (
	claimPollFirst = 2 * time.Millisecond
	claimPollMax   = 100 * time.Millisecond
)

// errClaimHeld is a claim of another instance that neither ended nor expired
// within FOCUS_CLAIM_TTL and a second of waiting: instances with different
// FOCUS_CLAIM_TTL, or a Redis that does not expire keys.
var errClaimHeld = errors.New("pipeline: focus claimed by another instance past FOCUS_CLAIM_TTL")

// claimScript takes the focus key when it is free and returns nil; else it
// returns what the key holds: "done", or another instance's claim token.
var claimScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false`)

// finishScript ends a claim while it is still the caller's (ARGV[1]):
// confirms it (the key says "done" for ARGV[2] ms) or, when ARGV[2] is 0,
// releases it. It returns 0 when the claim was no longer the caller's.
var finishScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '0' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], 'done', 'PX', ARGV[2]) end
return 1`)

// offerScript adds to the visit set KEYS[1] the first of the candidate
// coupon ids (ARGV[2..], best first) it does not hold yet, renews the set's
// expiry (ARGV[1] ms), remembers it as the focus's pick (KEYS[2], for
// ARGV[1] ms) and returns that candidate's position (0-based); -1 when
// every candidate was offered before. A focus picked before (an instance
// that claimed it died after its pick, perhaps after publishing) gets the
// same coupon again: delivered twice at worst, never a second coupon.
var offerScript = redis.NewScript(`
local prev = redis.call('GET', KEYS[2])
if prev then
  for i = 2, #ARGV do
    if ARGV[i] == prev then
      redis.call('SADD', KEYS[1], prev)
      redis.call('PEXPIRE', KEYS[1], ARGV[1])
      return i - 2
    end
  end
end
for i = 2, #ARGV do
  if redis.call('SADD', KEYS[1], ARGV[i]) == 1 then
    redis.call('PEXPIRE', KEYS[1], ARGV[1])
    redis.call('SET', KEYS[2], ARGV[i], 'PX', ARGV[1])
    return i - 2
  end
end
return -1`)

// shared is the state instances share with DWELL_STATE=redis: the focus
// claims (exactly one coupon per focus) and the visit ledger (never the same
// coupon twice in a visit). Every key carries the shopper id as its hash tag,
// so a shopper's keys live on one Redis Cluster shard with its dwell state.
type shared struct {
	rdb      redis.UniversalClient
	prefix   string
	claimTTL time.Duration // FOCUS_CLAIM_TTL: an unconfirmed claim expires
	keepTTL  time.Duration // SHOPPER_TTL: how long a handled focus and a visit are remembered
	instance string        // random, so claim tokens differ between instances
	seq      atomic.Uint64
}

func newShared(rdb redis.UniversalClient, prefix string, claimTTL, keepTTL time.Duration) *shared {
	if prefix == "" {
		prefix = defaultKeyPrefix
	}
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand documents it)
	return &shared{rdb: rdb, prefix: prefix, claimTTL: claimTTL, keepTTL: keepTTL, instance: hex.EncodeToString(b[:])}
}

// focusKey is the Redis key of a focus: {prefix}focus:{id}:dep:ts.
func (s *shared) focusKey(f event.Focus) string {
	return s.prefix + "focus:{" + f.ID + "}:" + f.Dep.String() + ":" + strconv.FormatInt(f.TS, 10)
}

// pickKey is the Redis key of the coupon picked for a focus:
// {prefix}pick:{id}:dep:ts.
func (s *shared) pickKey(f event.Focus) string {
	return s.prefix + "pick:{" + f.ID + "}:" + f.Dep.String() + ":" + strconv.FormatInt(f.TS, 10)
}

// visitKey is the Redis key of a shopper's visit ledger: {prefix}visit:{id}.
func (s *shared) visitKey(id string) string {
	return s.prefix + "visit:{" + id + "}"
}

// claim takes f for this instance and returns the token that proves it.
// It returns "" and no error when f was handled already (by this instance
// or another). While another instance holds an unconfirmed claim on f, claim
// waits: until that instance confirms it (then "" as handled), releases it
// after a failure, or dies and its claim expires after FOCUS_CLAIM_TTL — then
// this instance takes f over, so no coupon is lost with the instance.
func (s *shared) claim(ctx context.Context, f event.Focus) (string, error) {
	key := s.focusKey(f)
	token := s.instance + "-" + strconv.FormatUint(s.seq.Add(1), 10)
	ttl := strconv.FormatInt(s.claimTTL.Milliseconds(), 10)
	deadline := time.Now().Add(s.claimTTL + time.Second)
	wait := claimPollFirst
	for {
		held, err := claimScript.Run(ctx, s.rdb, []string{key}, token, ttl).Text()
		switch {
		case errors.Is(err, redis.Nil):
			return token, nil
		case err != nil:
			return "", fmt.Errorf("pipeline: claim %s: %w", key, err)
		case held == confirmed:
			return "", nil
		case time.Now().After(deadline):
			return "", fmt.Errorf("%w: %s", errClaimHeld, key)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", fmt.Errorf("pipeline: claim %s: %w", key, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, claimPollMax)
	}
}

// finish confirms f's claim (handled: the key stays for SHOPPER_TTL so that
// a redelivery is recognised) or releases it (not handled: another copy of f
// may be). held is false when the claim was no longer the caller's: it
// expired before the focus settled.
func (s *shared) finish(ctx context.Context, f event.Focus, token string, handled bool) (held bool, err error) {
	keep := "0"
	if handled {
		keep = strconv.FormatInt(s.keepTTL.Milliseconds(), 10)
	}
	n, err := finishScript.Run(ctx, s.rdb, []string{s.focusKey(f)}, token, keep).Int()
	if err != nil {
		return false, fmt.Errorf("pipeline: finish claim %s: %w", s.focusKey(f), err)
	}
	return n == 1, nil
}

// offer is visits.claim against the shared ledger: the best coupon not yet
// offered to f's shopper this visit, recorded atomically, whichever
// instance offered the others; the coupon picked for f before, if any.
func (s *shared) offer(ctx context.Context, f event.Focus, coupons []store.Coupon, probs []float64, threshold float64) (c store.Coupon, ok, already bool, err error) {
	id := f.ID
	// The qualifying coupons, best first: Best again and again, each time
	// without those already picked (a department has a few dozen at most).
	var order []int
	args := []any{s.keepTTL.Milliseconds()}
	for {
		i, ok := recommender.Best(coupons, probs, threshold, func(couponID int) bool {
			return slices.ContainsFunc(order, func(j int) bool { return coupons[j].ID == couponID })
		})
		if !ok {
			break
		}
		order = append(order, i)
		args = append(args, coupons[i].ID)
	}
	if len(order) == 0 {
		return store.Coupon{}, false, false, nil
	}
	n, err := offerScript.Run(ctx, s.rdb, []string{s.visitKey(id), s.pickKey(f)}, args...).Int()
	if err != nil {
		return store.Coupon{}, false, false, fmt.Errorf("pipeline: visit ledger of %s: %w", id, err)
	}
	if n < 0 {
		return store.Coupon{}, false, true, nil
	}
	return coupons[order[n]], true, false, nil
}

// release forgets an offer that could not be delivered.
func (s *shared) release(ctx context.Context, id string, couponID int) error {
	return s.rdb.SRem(ctx, s.visitKey(id), couponID).Err()
}

// forget ends id's visit.
func (s *shared) forget(ctx context.Context, id string) error {
	return s.rdb.Del(ctx, s.visitKey(id)).Err()
}
