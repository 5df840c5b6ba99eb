package pipeline

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

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
// 3 x, 4 y, 5 department. It returns a moveResult. The rule is formatted
// into the text (%d: dwell, gap, cooldown and browsing after in whole
// seconds, see sharedRule; browsing moves; SHOPPER_TTL in ms): six
// arguments less to send and parse per call.
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
local dwell, gap, cooldown, after, moves, ttl = %d, %d, %d, %d, %d, %d
local since, last, focusAt, sdep, focused, wanderFrom, movedAt, sx, sy, steps, alerted = 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
local v = redis.call('GET', k)
if v then
  since, last, focusAt, sdep, focused, wanderFrom, movedAt, sx, sy, steps, alerted = struct.unpack('` + stateFormat + `', v)
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
    focused, focusAt = 1, ts
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
redis.call('SET', k, struct.pack('` + stateFormat + `', since, last, focusAt, sdep, focused, wanderFrom, movedAt, sx, sy, steps, alerted), 'PX', ttl)
return res
`

// stateFormat packs a shopper (struct.pack, little-endian): since, last,
// focusAt as doubles (event ts are whole seconds, exact far beyond year
// 9999), dep and focused as bytes, wanderFrom and movedAt as doubles, x and
// y as int32, steps as uint16, alerted as a byte: 53 bytes.
const stateFormat = "<dddBBddiiHB"

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
		script: redis.NewScript(fmt.Sprintf(shopperScriptText, sr[0], sr[1], sr[2], sr[3], b.Moves, ttl.Milliseconds()))}
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
// res, or its error to errs (nil when it was applied), and returns the
// round trips it took: one, two when NOSCRIPT. A shopper's events
// all go to one shard, in order; those a shard refused with NOSCRIPT (its
// script cache was empty: a restart, a failover) are sent again, in order,
// with the script itself.
func (s *sharedShoppers) apply(ctx context.Context, batch []shopperEvent, deps []store.Department, res []moveResult, errs []error) (trips int) {
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
		n, err := c.Int()
		if err == nil && (n < int(moveOK) || n > int(moveOutOfOrder)) {
			err = errors.New("pipeline: the dwell script answered " + strconv.Itoa(n))
		}
		res[i], errs[i] = moveResult(n), err
	}
	return trips
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
	var buf []byte
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
			p.m.stateTrips.Add(float64(p.shoppers.apply(ctx, batch, deps, res, errs)))
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
				if res[i] != moveOK {
					buf = p.act(ctx, res[i], ev, deps[i], buf)
				}
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
