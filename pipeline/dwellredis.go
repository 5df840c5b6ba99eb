package pipeline

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/storeflow/storeflow/event"
	"github.com/storeflow/storeflow/store"
)

// dwellBatch is the most events a dwell worker in Redis mode sends in one
// pipeline: one round trip for up to this many script calls. A worker never
// waits to fill a batch; it takes what is queued.
const dwellBatch = 128

// shopperScriptText is shopper.move and the reset of an enter or exit, for
// the shopper whose state is the string KEYS[1], applied atomically. It
// must stay the in-memory rule line for line (dwell.go):
// TestSharedRuleMatchesMemory runs the same cases through both.
//
// ARGV: 1 "m" (move) or "r" (enter, exit: forget the shopper), 2 ts,
// 3 x, 4 y, 5 department. It returns a moveResult, or, for a focus still
// pending, the array {moveRefocus, its ts, its department}. The rule is
// formatted into the text (%d: dwell, gap, cooldown and browsing after in
// whole seconds, see sharedRule; browsing moves; SHOPPER_TTL in ms;
// refocusAfter in seconds): seven arguments less to send and parse per call.
//
// A focus is pending (pend: its department) from the move that completes it
// until the instance that applied that move has published it and said so
// (publishedScript). An instance that dies in between leaves it pending;
// the shopper's next move at least refocusAfter later (that would otherwise
// be moveOK) returns it again, with the focus's own ts, so it is published
// under the same identity and the focus claims let one coupon through
// whether the first publication happened or not. The in-memory detector
// has no pending focus: in one process nothing is lost between the state
// and the publication.
//
// The state is one value packed with struct.pack (stateFormat), written
// with SET … PX, so the write and the expiry are one command: a hash of
// the same fields (HMGET, HSET, PEXPIRE) cost Redis twice the CPU per move
// (README, Several instances). An absent key is the zero shopper.
const shopperScriptText = `
local k = KEYS[1]
if ARGV[1] == 'r' then
  redis.call('DEL', k)
  return 0
end
local ts, x, y, dep = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local dwell, gap, cooldown, after, moves, ttl, refocus = %d, %d, %d, %d, %d, %d, %d
local since, last, focusAt, sdep, focused, wanderFrom, movedAt, sx, sy, steps, alerted, pend = 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
local v = redis.call('GET', k)
if v then
  if #v == 53 then v = v .. '\0' end -- written before the pending focus: none
  since, last, focusAt, sdep, focused, wanderFrom, movedAt, sx, sy, steps, alerted, pend = struct.unpack('` + stateFormat + `', v)
end
if last ~= 0 and ts < last then
  redis.call('PEXPIRE', k, ttl)
  return 3
end
local first = last == 0
local res = 0
if dep ~= sdep then
  sdep, since, focused = dep, ts, 0
elseif last == 0 or ts - last > gap then
  since = ts
end
last = ts
if dep ~= 0 then
  if focused == 1 then
    if cooldown > 0 and ts - focusAt >= cooldown then
      focused, since = 0, ts
    end
  elseif ts - since >= dwell then
    focused, focusAt, pend = 1, ts, dep
    res = 1
  end
end
if after > 0 then
  local moved = not first and (x ~= sx or y ~= sy)
  sx, sy = x, y
  if first or focused == 1 then
    wanderFrom, movedAt, steps, alerted = ts, ts, 0, 0
  elseif alerted == 1 then
  elseif ts - movedAt > gap then
    wanderFrom, movedAt, steps = ts, ts, 0
  else
    if moved then
      movedAt = ts
      if steps < 65535 then steps = steps + 1 end
    end
    if steps >= moves and ts - wanderFrom >= after then
      alerted = 1
      res = 2
    end
  end
end
redis.call('SET', k, struct.pack('` + stateFormat + `', since, last, focusAt, sdep, focused, wanderFrom, movedAt, sx, sy, steps, alerted, pend), 'PX', ttl)
if res == 0 and pend ~= 0 and ts - focusAt >= refocus then
  return {4, focusAt, pend}
end
return res
`

// publishedScript marks the pending focus of the shopper KEYS[1] at ts
// ARGV[1] published (pend, the state's last byte, to 0; the expiry stays).
// A later focus, or none, is left alone.
var publishedScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v or #v ~= 54 then return 0 end
local focusAt = struct.unpack('<d', v, 17)
if focusAt ~= tonumber(ARGV[1]) then return 0 end
redis.call('SETRANGE', KEYS[1], 53, '\0')
return 1`)

// moveRefocus is a move of the shared state that brings back a pending
// focus (shopperScriptText): the focus is published again. The in-memory
// detector never returns it.
const moveRefocus = moveOutOfOrder + 1

// refocusAfter is how long in event time a focus stays pending before the
// shopper's next move publishes it again. The instance that applied the
// move publishes the focus and marks it within milliseconds; sensors send
// a move about every second, and the shopper's next moves may be applied
// by other instances at the same time, so a shorter wait would publish
// live focus events twice (harmless: same identity, one coupon; but a
// message more). Three seconds of moves is well past a live instance's
// publication and well within the seconds a shopper stays after a focus.
const refocusAfter = 3 * time.Second

// stateFormat packs a shopper (struct.pack, little-endian): since, last,
// focusAt as doubles (event ts are whole seconds, exact far beyond year
// 9999), dep and focused as bytes, wanderFrom and movedAt as doubles, x and
// y as int32, steps as uint16, alerted as a byte, the pending focus's
// department as a byte: 54 bytes.
const stateFormat = "<dddBBddiiHBB"

// sharedShoppers is the dwell state of DWELL_STATE=redis: one key per
// shopper, which every instance applies its events to with the script.
type sharedShoppers struct {
	client redis.UniversalClient
	prefix string
	script *redis.Script // shopperScriptText with this rule
}

func newSharedShoppers(client redis.UniversalClient, prefix string, r DwellRule, b BrowsingRule, ttl time.Duration) *sharedShoppers {
	sr := sharedRule(r, b)
	return &sharedShoppers{client: client, prefix: cmp.Or(prefix, "storeflow:"),
		script: redis.NewScript(fmt.Sprintf(shopperScriptText, sr[0], sr[1], sr[2], sr[3], b.Moves, ttl.Milliseconds(), int64(refocusAfter/time.Second)))}
}

// sharedRule is the rule in whole seconds for the script: dwell, gap,
// cooldown and browsing after. The script compares whole-second differences
// k of event ts; for a whole k, k·1s ≥ D is k ≥ ⌈D⌉ and k·1s > G is
// k > ⌊G⌋, so the rounding keeps every comparison the in-memory one.
func sharedRule(r DwellRule, b BrowsingRule) [4]int64 {
	ceil := func(d time.Duration) int64 { return int64((d + time.Second - 1) / time.Second) }
	return [4]int64{ceil(r.Dwell), int64(r.Gap / time.Second), ceil(r.Cooldown), ceil(b.After)}
}

// key is the shopper's state: the id is the hash tag, so Redis Cluster
// places the shopper's keys on one shard.
func (s *sharedShoppers) key(id string) string { return s.prefix + "shopper:{" + id + "}" }

// load puts the script in Redis's script cache (every shard of a cluster).
// It is only a head start: a batch that meets NOSCRIPT sends the script
// itself.
func (s *sharedShoppers) load(ctx context.Context) error {
	return s.script.Load(ctx, s.client).Err()
}

// args is ARGV for ev, whose position is in dep.
func (s *sharedShoppers) args(ev shopperEvent, dep store.Department) []any {
	if ev.kind != kindMove {
		return []any{"r"}
	}
	return []any{"m", ev.ts, ev.x, ev.y, uint8(dep)}
}

// apply runs the script for each event of batch (deps: the department of
// each move) in one pipeline, in order, and writes each event's outcome to
// res, or its error to errs (nil when it was applied); for a moveRefocus,
// the pending focus's ts to at and its department to deps. It returns the
// round trips it took: one, two when NOSCRIPT. A shopper's events
// all go to one shard, in order; those a shard refused with NOSCRIPT (its
// script cache was empty: a restart, a failover) are sent again, in order,
// with the script itself.
func (s *sharedShoppers) apply(ctx context.Context, batch []shopperEvent, deps []store.Department, res []moveResult, errs []error, at []int64) (trips int) {
	cmds := make([]*redis.Cmd, len(batch))
	pipe := s.client.Pipeline()
	for i, ev := range batch {
		cmds[i] = s.script.EvalSha(ctx, pipe, []string{s.key(ev.id)}, s.args(ev, deps[i])...)
	}
	_, _ = pipe.Exec(ctx) // each command carries its own error
	trips = 1
	var again []int
	for i, c := range cmds {
		if redis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
			again = append(again, i)
		}
	}
	if len(again) > 0 {
		pipe := s.client.Pipeline()
		for _, i := range again {
			cmds[i] = s.script.Eval(ctx, pipe, []string{s.key(batch[i].id)}, s.args(batch[i], deps[i])...)
		}
		_, _ = pipe.Exec(ctx)
		trips++
	}
	for i, c := range cmds {
		v, err := c.Result()
		n, ok := v.(int64)
		switch r, isArr := v.([]any); {
		case err != nil:
		case isArr && len(r) == 3:
			ts, _ := r[1].(int64)
			dep, _ := r[2].(int64)
			n, at[i], deps[i] = int64(moveRefocus), ts, store.Department(dep)
		case !ok || n < int64(moveOK) || n > int64(moveOutOfOrder):
			err = fmt.Errorf("pipeline: the dwell script answered %v", v)
		}
		res[i], errs[i] = moveResult(n), err
	}
	return trips
}

// publishedFocus is a focus of the shared state published by this
// instance: shopper and ts.
type publishedFocus struct {
	id string
	ts int64
}

// published marks the focus events of fs published, in one round trip.
func (s *sharedShoppers) published(ctx context.Context, fs []publishedFocus) error {
	pipe := s.client.Pipeline()
	for _, f := range fs {
		publishedScript.Run(ctx, pipe, []string{s.key(f.id)}, f.ts)
	}
	_, err := pipe.Exec(ctx)
	if redis.HasErrorPrefix(err, "NOSCRIPT") {
		pipe = s.client.Pipeline()
		for _, f := range fs {
			publishedScript.Eval(ctx, pipe, []string{s.key(f.id)}, f.ts)
		}
		_, err = pipe.Exec(ctx)
	}
	return err
}

// sharedDwellWorker is dwellWorker for DWELL_STATE=redis: it takes what is
// queued, up to dwellBatch events, applies it in one round trip and acts on
// the outcomes in order. The events of a batch Redis failed are dropped,
// counted and logged (rate-limited): the shopper's next moves go on from
// the state Redis holds.
func (p *Pipeline) sharedDwellWorker(ctx context.Context, in <-chan shopperEvent) {
	batch := make([]shopperEvent, 0, dwellBatch)
	deps := make([]store.Department, dwellBatch)
	res := make([]moveResult, dwellBatch)
	errs := make([]error, dwellBatch)
	at := make([]int64, dwellBatch)
	var buf []byte
	var done []publishedFocus
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-in:
			if !ok { // shutdown: the queue is empty and closed
				return
			}
			batch = append(batch[:0], ev)
		fill:
			for len(batch) < dwellBatch {
				select {
				case ev, ok := <-in:
					if !ok {
						break fill
					}
					batch = append(batch, ev)
				default:
					break fill
				}
			}
			for i, ev := range batch {
				deps[i] = p.plan.DepartmentAt(ev.x, ev.y)
			}
			p.m.stateTrips.Add(float64(p.shoppers.apply(ctx, batch, deps, res, errs, at)))
			done = done[:0]
			for i, ev := range batch {
				if err := errs[i]; err != nil {
					p.stateFailed(ctx, ev, err)
					continue
				}
				if ev.kind == kindEnter || ev.kind == kindExit {
					// The shared ledger's visit ends here, not in the
					// callback (no I/O there), before any focus this
					// worker detects later for the shopper; a round trip
					// per visit, not per move.
					p.sharedErr(opForget, ev.id, p.shared.forget(ctx, ev.id))
					continue
				}
				switch res[i] {
				case moveOK:
				case moveFocus, moveRefocus:
					f := event.Focus{ID: ev.id, TS: ev.ts, Dep: deps[i], X: ev.x, Y: ev.y, HasPos: true}
					if res[i] == moveRefocus { // where the shopper was then is not kept
						f = event.Focus{ID: ev.id, TS: at[i], Dep: deps[i]}
						if slices.Contains(done, publishedFocus{f.ID, f.TS}) {
							continue // published by this batch: its mark is on its way
						}
					}
					buf = event.AppendFocus(buf[:0], f)
					if p.detected(ctx, "focus", p.cfg.FocusTopic, buf, p.m.focus, f.ID, f.Dep, f.TS) {
						done = append(done, publishedFocus{f.ID, f.TS})
					}
				default:
					buf = p.act(ctx, res[i], ev, deps[i], buf)
				}
			}
			if len(done) > 0 {
				// One round trip for the batch's focus events, not per move.
				p.sharedErr(opPublished, done[0].id, p.shoppers.published(ctx, done))
			}
		}
	}
}

// stateFailed counts an event the shared dwell state did not take: dropped
// as "shutdown" when SHUTDOWN_TIMEOUT cancelled it, else as "dwell_state".
func (p *Pipeline) stateFailed(ctx context.Context, ev shopperEvent, err error) {
	if ctx.Err() != nil {
		p.m.dropShutdown.Inc()
		return
	}
	p.m.dropState.Inc()
	p.warn.Log(slog.LevelError, "drop:"+queueDwellState, "event dropped: the shared dwell state (Redis) failed",
		"kind", ev.kind, "customer_id", ev.id, "error", err)
}
