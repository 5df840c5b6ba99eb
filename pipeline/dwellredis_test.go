package pipeline

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/storeflow/storeflow/broker"
	"github.com/storeflow/storeflow/event"
	"github.com/storeflow/storeflow/internal/harness"
	"github.com/storeflow/storeflow/internal/metrictest"
	"github.com/storeflow/storeflow/internal/mosquittotest"
	"github.com/storeflow/storeflow/internal/redistest"
	"github.com/storeflow/storeflow/store"
)

// newRedisClient is a client of r, closed when the test ends.
func newRedisClient(t *testing.T, r *redistest.Redis) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1, DialTimeout: time.Second,
		ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// ruleCase is a sequence of moves of one shopper under one rule, with the
// outcome of each.
type ruleCase struct {
	rule     DwellRule
	browsing BrowsingRule
	steps    []wanderStep
}

// ruleCases are the in-memory detector's test tables (TestShopperMove,
// TestShopperBrowsing) and its two long runs, as one table.
func ruleCases() map[string]ruleCase {
	out := map[string]ruleCase{}
	for name, steps := range dwellCases {
		c := ruleCase{rule: dwellRule}
		for _, st := range steps {
			c.steps = append(c.steps, wanderStep{st.ts, 0, 0, st.dep, st.want})
		}
		out["focus: "+name] = c
	}
	for name, parts := range browsingCases {
		c := ruleCase{rule: browsingDwellRule, browsing: browsingRule}
		for _, steps := range parts {
			c.steps = append(c.steps, steps...)
		}
		out["browsing: "+name] = c
	}
	noCooldown := ruleCase{rule: DwellRule{Dwell: 10 * time.Second, Gap: 20 * time.Second}}
	for ts := int64(100); ts < 100+3600; ts += 5 {
		want := moveOK
		if ts == 110 {
			want = moveFocus
		}
		noCooldown.steps = append(noCooldown.steps, wanderStep{ts, 0, 0, store.Men, want})
	}
	out["focus: FOCUS_COOLDOWN=0 gives one focus an hour"] = noCooldown
	off := ruleCase{rule: DwellRule{Dwell: 10 * time.Second, Gap: 20 * time.Second}, browsing: BrowsingRule{Moves: 1}}
	for ts := int64(100); ts < 100+600; ts++ {
		off.steps = append(off.steps, wanderStep{ts, int(ts % 6), 0, A, moveOK})
	}
	out["browsing: BROWSING_AFTER=0 is off"] = off
	return out
}

// sharedMoves applies steps to one shopper of st in batches of at most
// dwellBatch and returns the outcomes. A batch ends at each step that
// expects a focus, which is then marked published, as the dwell worker does
// once it published it.
func sharedMoves(t *testing.T, st *sharedShoppers, id string, steps []wanderStep) []moveResult {
	t.Helper()
	var out []moveResult
	for len(steps) > 0 {
		n := min(len(steps), dwellBatch)
		if i := slices.IndexFunc(steps[:n], func(s wanderStep) bool { return s.want == moveFocus }); i >= 0 {
			n = i + 1
		}
		batch, deps := make([]shopperEvent, n), make([]store.Department, n)
		for i, s := range steps[:n] {
			batch[i], deps[i] = shopperEvent{kind: kindMove, id: id, ts: s.ts, x: s.x, y: s.y}, s.dep
		}
		res, errs, at := make([]moveResult, n), make([]error, n), make([]int64, n)
		st.apply(context.Background(), batch, deps, res, errs, at)
		for i, err := range errs {
			if err != nil {
				t.Fatalf("move %d: %v", len(out)+i, err)
			}
		}
		if res[n-1] == moveFocus {
			markPublished(t, st, id, steps[n-1].ts)
		}
		out, steps = append(out, res...), steps[n:]
	}
	return out
}

// markPublished is the dwell worker's word that it published id's focus at ts.
func markPublished(t *testing.T, st *sharedShoppers, id string, ts int64) {
	t.Helper()
	if err := st.published(context.Background(), []publishedFocus{{id, ts}}); err != nil {
		t.Fatal(err)
	}
}

// The Redis script is the in-memory rule: every case of the in-memory
// tables gives the same outcomes through both, and the expected ones.
func TestSharedRuleMatchesMemory(t *testing.T) {
	rdb := newRedisClient(t, redistest.Start(t))
	for name, c := range ruleCases() {
		t.Run(name, func(t *testing.T) {
			st := newSharedShoppers(rdb, "test:", c.rule, c.browsing, time.Hour)
			got := sharedMoves(t, st, name, c.steps)
			var s shopper
			for i, step := range c.steps {
				mem := s.move(&c.rule, &c.browsing, step.ts, step.x, step.y, step.dep)
				if got[i] != mem || mem != step.want {
					t.Fatalf("move %d (ts=%d at %d,%d in %q): Redis %d, memory %d, want %d", i, step.ts, step.x, step.y, step.dep, got[i], mem, step.want)
				}
			}
		})
	}
}

// A focus the dwell worker did not mark published (its instance died
// between the script and the publication) is returned again by the
// shopper's next move at least refocusAfter later, with its own ts and
// department, until it is marked published; the in-memory rule knows no
// such thing.
func TestSharedPendingFocus(t *testing.T) {
	rdb := newRedisClient(t, redistest.Start(t))
	rule := DwellRule{Dwell: 10 * time.Second, Gap: 20 * time.Second, Cooldown: time.Minute}
	type step struct {
		op     string // "move", "reset" (enter or exit), "published" (ts: the focus's)
		ts     int64
		dep    store.Department
		want   moveResult
		wantAt int64 // moveRefocus: the focus's ts
	}
	// The dwell up to the focus at 110 in Men, not yet marked published.
	dwell := func(more ...step) []step {
		steps := []step{{"move", 100, store.Men, moveOK, 0}, {"move", 105, store.Men, moveOK, 0}, {"move", 110, store.Men, moveFocus, 0}}
		return append(steps, more...)
	}
	for name, steps := range map[string][]step{
		"not published: back 3 s later, with its ts, until marked": dwell(
			step{"move", 111, store.Men, moveOK, 0}, step{"move", 112, store.Men, moveOK, 0},
			step{"move", 113, store.Men, moveRefocus, 110}, step{"move", 114, store.Men, moveRefocus, 110},
			step{"published", 110, 0, 0, 0}, step{"move", 115, store.Men, moveOK, 0}),
		"published at once: never back": dwell(
			step{"published", 110, 0, 0, 0}, step{"move", 113, store.Men, moveOK, 0}, step{"move", 130, store.Men, moveOK, 0}),
		"back in its own department after the shopper left it": dwell(
			step{"move", 111, store.Women, moveOK, 0}, step{"move", 113, store.Women, moveRefocus, 110}),
		"the mark of another ts leaves it pending": dwell(
			step{"published", 109, 0, 0, 0}, step{"move", 113, store.Men, moveRefocus, 110}),
		"a move out of order brings nothing back": dwell(
			step{"move", 120, store.Men, moveRefocus, 110}, step{"move", 119, store.Men, moveOutOfOrder, 0}),
		"an entry or exit forgets it": dwell(
			step{"reset", 0, 0, 0, 0}, step{"move", 113, store.Men, moveOK, 0}),
	} {
		t.Run(name, func(t *testing.T) {
			st := newSharedShoppers(rdb, "pending:", rule, BrowsingRule{}, time.Hour)
			id := name
			for i, s := range steps {
				if s.op == "published" {
					markPublished(t, st, id, s.ts)
					continue
				}
				ev := shopperEvent{kind: kindMove, id: id, ts: s.ts}
				if s.op == "reset" {
					ev.kind = kindExit
				}
				deps, res, errs, at := []store.Department{s.dep}, make([]moveResult, 1), make([]error, 1), make([]int64, 1)
				st.apply(context.Background(), []shopperEvent{ev}, deps, res, errs, at)
				if errs[0] != nil {
					t.Fatalf("step %d: %v", i, errs[0])
				}
				if s.op == "reset" {
					continue
				}
				if res[0] != s.want || (s.want == moveRefocus && (at[0] != s.wantAt || deps[0] != store.Men)) {
					t.Fatalf("step %d (ts=%d in %s): %d at %d in %s, want %d at %d in Men", i, s.ts, s.dep, res[0], at[0], deps[0], s.want, s.wantAt)
				}
			}
		})
	}
}

// A state written before the pending focus (53 bytes) reads as one without.
func TestSharedStateOfTheFormerFormat(t *testing.T) {
	rdb := newRedisClient(t, redistest.Start(t))
	rule := DwellRule{Dwell: 10 * time.Second, Gap: 20 * time.Second, Cooldown: time.Minute}
	st := newSharedShoppers(rdb, "old:", rule, BrowsingRule{}, time.Hour)
	got := sharedMoves(t, st, "s", []wanderStep{{100, 0, 0, store.Men, moveOK}})
	key := st.key("s")
	v, err := rdb.Get(context.Background(), key).Bytes()
	if err != nil || len(v) != 54 || got[0] != moveOK {
		t.Fatalf("state %x, %v; move %d", v, err, got[0])
	}
	if err := rdb.Set(context.Background(), key, v[:53], time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	got = sharedMoves(t, st, "s", []wanderStep{{110, 0, 0, store.Men, moveFocus}, {120, 0, 0, store.Men, moveOK}})
	if got[0] != moveFocus || got[1] != moveOK {
		t.Fatalf("on the former state: %v, want a focus, then nothing", got)
	}
}

// Random walks, with rules of fractional seconds (the script's rounding),
// enters and exits: the script and the memory detector never disagree.
func TestSharedRuleMatchesMemoryRandom(t *testing.T) {
	rdb := newRedisClient(t, redistest.Start(t))
	plan, err := store.GridPlan(6, 10)
	if err != nil {
		t.Fatal(err)
	}
	rules := []struct {
		rule     DwellRule
		browsing BrowsingRule
	}{
		{DwellRule{Dwell: 10 * time.Second, Gap: 20 * time.Second, Cooldown: time.Minute}, BrowsingRule{After: 20 * time.Second, Moves: 8}},
		{DwellRule{Dwell: 2500 * time.Millisecond, Gap: 1500 * time.Millisecond, Cooldown: 3500 * time.Millisecond}, BrowsingRule{After: 1500 * time.Millisecond, Moves: 2}},
		{DwellRule{Dwell: time.Second, Gap: time.Second}, BrowsingRule{After: time.Second, Moves: 1}},
	}
	for r, rule := range rules {
		t.Run(strconv.Itoa(r), func(t *testing.T) {
			st := newSharedShoppers(rdb, fmt.Sprintf("random%d:", r), rule.rule, rule.browsing, time.Hour)
			rng := rand.New(rand.NewPCG(uint64(r), 16))
			var mem shopper
			var batch []shopperEvent
			var deps []store.Department
			var want []moveResult
			ts := int64(1000)
			x, y := 0, 0
			for range 5000 {
				ev := shopperEvent{kind: kindMove, id: "walker"}
				switch n := rng.IntN(100); {
				case n < 2:
					ev.kind = kindEnter
				case n < 4:
					ev.kind = kindExit
				case n < 8:
					ev.ts = ts - int64(rng.IntN(5)) // at times out of order
				default:
					ts += int64(rng.IntN(4)) // pauses of 0 to 3 s: around every rule's edges
					if rng.IntN(3) > 0 {
						x, y = (x+rng.IntN(3)+5)%6, (y+rng.IntN(3)+9)%10
					}
					ev.ts = ts
				}
				ev.x, ev.y = x, y
				dep := plan.DepartmentAt(x, y)
				res := moveOK
				if ev.kind == kindMove {
					res = mem.move(&rule.rule, &rule.browsing, ev.ts, ev.x, ev.y, dep)
				} else {
					mem = shopper{}
				}
				batch, deps, want = append(batch, ev), append(deps, dep), append(want, res)
			}
			// A batch ends at each focus, marked published at once.
			for start, end := 0, 0; start < len(batch); start = end {
				end = min(start+dwellBatch, len(batch))
				if i := slices.Index(want[start:end], moveFocus); i >= 0 {
					end = start + i + 1
				}
				res, errs, at := make([]moveResult, end-start), make([]error, end-start), make([]int64, end-start)
				st.apply(context.Background(), batch[start:end], deps[start:end], res, errs, at)
				if res[len(res)-1] == moveFocus {
					markPublished(t, st, "walker", batch[end-1].ts)
				}
				for i := range res {
					if errs[i] != nil {
						t.Fatal(errs[i])
					}
					if ev := batch[start+i]; res[i] != want[start+i] {
						t.Fatalf("event %d (%s ts=%d at %d,%d): Redis %d, memory %d", start+i, ev.kind, ev.ts, ev.x, ev.y, res[i], want[start+i])
					}
				}
			}
		})
	}
}

// A shopper's hash expires SHOPPER_TTL after its last event; then the next
// move starts afresh.
func TestSharedShopperExpires(t *testing.T) {
	r := redistest.Start(t)
	rdb := newRedisClient(t, r)
	const ttl = 1500 * time.Millisecond
	st := newSharedShoppers(rdb, "ttl:", dwellRule, BrowsingRule{}, ttl)
	key := st.key("s1")
	if key != "ttl:shopper:{s1}" {
		t.Fatalf("key %q: want the prefix and the id as hash tag", key)
	}
	sharedMoves(t, st, "s1", []wanderStep{{100, 0, 0, B, moveOK}, {109, 0, 0, B, moveOK}})
	if d := rdb.PTTL(context.Background(), key).Val(); d <= 0 || d > ttl {
		t.Fatalf("PTTL after a move: %s, want in (0, %s]", d, ttl)
	}
	// An out-of-order move is an event too: it keeps the shopper.
	rdb.PExpire(context.Background(), key, time.Hour)
	sharedMoves(t, st, "s1", []wanderStep{{90, 0, 0, B, moveOutOfOrder}})
	if d := rdb.PTTL(context.Background(), key).Val(); d <= 0 || d > ttl {
		t.Fatalf("PTTL after an out-of-order move: %s, want in (0, %s]", d, ttl)
	}
	harness.Until(t, 10*time.Second, "the shopper's key expires", func() bool {
		return rdb.Exists(context.Background(), key).Val() == 0
	})
	// Forgotten: 110 would have completed the dwell begun at 100.
	if got := sharedMoves(t, st, "s1", []wanderStep{{110, 0, 0, B, moveOK}}); got[0] != moveOK {
		t.Fatalf("first move after expiry: %d, want moveOK (a new dwell)", got[0])
	}
}

// lastMove is the ts of the last move in the shopper state at key
// (stateFormat: the second double), 0 when there is none.
func lastMove(t *testing.T, rdb redis.UniversalClient, key string) int64 {
	t.Helper()
	v, err := rdb.Get(context.Background(), key).Bytes()
	if errors.Is(err, redis.Nil) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(v) != 54 {
		t.Fatalf("state of %d bytes, want 54 (stateFormat %s)", len(v), stateFormat)
	}
	return int64(math.Float64frombits(binary.LittleEndian.Uint64(v[8:16])))
}

// roundTrips counts what a client sends, but for the handshake of a new
// connection: pipelines and single commands, and the commands in them.
type roundTrips struct {
	mu                   sync.Mutex
	trips, cmds, scripts int
}

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		r.count([]redis.Cmder{cmd})
		return next(ctx, cmd)
	}
}

func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		r.count(cmds)
		return next(ctx, cmds)
	}
}

func (r *roundTrips) count(cmds []redis.Cmder) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := cmds[0].Name(); n == "hello" || n == "client" || n == "info" {
		return // a new connection's handshake, the test's own INFO
	}
	r.trips++
	r.cmds += len(cmds)
	for _, c := range cmds {
		if n := c.Name(); n == "evalsha" || n == "eval" {
			r.scripts++
		}
	}
}

func (r *roundTrips) get() (trips, cmds, scripts int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.trips, r.cmds, r.scripts
}

// commandCalls is INFO commandstats' calls of cmd.
func commandCalls(t *testing.T, rdb redis.UniversalClient, cmd string) int {
	t.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(info, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+cmd+":calls="); ok {
			n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
			return n
		}
	}
	return 0
}

// sharedPipeline builds a DWELL_STATE=redis pipeline on b with one dwell
// worker; tweak may adjust its Config.
func sharedPipeline(t *testing.T, rdb redis.UniversalClient, b *bus, reg *prometheus.Registry, tweak func(*Config)) *Pipeline {
	t.Helper()
	cfg := testConfig()
	cfg.DwellState, cfg.DwellWorkers, cfg.QueueSize = DwellStateRedis, 1, 1024
	if tweak != nil {
		tweak(&cfg)
	}
	return newTestPipeline(t, cfg, Parts{Source: testCatalog(t), Scorer: discountScorer{}, Sub: b, Pub: b, Registerer: reg,
		Redis: rdb, RedisPrefix: "storeflow:"})
}

func movePayload(id string, ts int64, x, y int) []byte {
	return event.AppendMove(nil, event.Move{ID: id, TS: ts, X: x, Y: y})
}

// A dwell worker sends what is queued as one pipeline: 100 moves queued
// before it starts are 100 script calls in one round trip.
func TestSharedDwellBatchesOneRoundTrip(t *testing.T) {
	r := redistest.Start(t)
	rdb := newRedisClient(t, r)
	hook := &roundTrips{}
	rdb.AddHook(hook)
	b := newBus()
	p := sharedPipeline(t, rdb, b, prometheus.NewRegistry(), nil)
	focus := make(chan struct{}, 10)
	b.Subscribe("focus", func(string, []byte) { focus <- struct{}{} })
	const moves = 100
	for i := range moves {
		p.onMove("move", movePayload(fmt.Sprintf("c%02d", i%10), 100+int64(i/10), 1, 1))
	}
	before := commandCalls(t, rdb, "evalsha")
	runUntilEnd(t, p, nil)
	harness.Until(t, 10*time.Second, "100 script calls", func() bool {
		_, _, s := hook.get()
		return s >= moves && p.Counts().StateRoundTrips >= 1
	})
	trips, cmds, scripts := hook.get()
	// Run loads the script first (SCRIPT LOAD: one command); then the batch.
	if trips != 2 || cmds != moves+1 || scripts != moves {
		t.Fatalf("round trips %d, commands %d, script calls %d: want 2 (SCRIPT LOAD, one pipeline), %d, %d",
			trips, cmds, scripts, moves+1, moves)
	}
	if n := p.Counts().StateRoundTrips; n != 1 {
		t.Fatalf("Counts().StateRoundTrips = %d, want 1", n)
	}
	if got := commandCalls(t, rdb, "evalsha") - before; got != moves {
		t.Fatalf("Redis counted %d EVALSHA, want %d", got, moves)
	}
	if len(focus) != 0 {
		t.Fatal("a focus before the dwell was reached")
	}
	// The tenth second completes each shopper's dwell: ten focus events.
	for i := range 10 {
		p.onMove("move", movePayload(fmt.Sprintf("c%02d", i), 110, 1, 1))
	}
	for i := range 10 {
		select {
		case <-focus:
		case <-time.After(10 * time.Second):
			t.Fatalf("%d focus events of 10", i)
		}
	}
}

// A batch that meets an empty script cache (Redis restarted, SCRIPT FLUSH)
// is sent again with the script itself, in order.
func TestSharedDwellNoScriptFallsBack(t *testing.T) {
	rdb := newRedisClient(t, redistest.Start(t))
	st := newSharedShoppers(rdb, "flush:", dwellRule, BrowsingRule{}, time.Hour)
	if err := rdb.ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	got := sharedMoves(t, st, "s1", []wanderStep{{100, 0, 0, B, moveOK}, {90, 0, 0, B, moveOutOfOrder}, {110, 0, 0, B, moveFocus}})
	if got[2] != moveFocus {
		t.Fatalf("outcomes %v after SCRIPT FLUSH, want the dwell's", got)
	}
	// The three moves, and the mark of the focus published.
	if n := commandCalls(t, rdb, "eval"); n != 4 {
		t.Fatalf("%d EVAL after NOSCRIPT, want 4", n)
	}
}

// Two instances on one Redis are one detector: a dwell begun on one is
// completed on the other, and a move older than what the other applied is
// out of order on this one, counted.
func TestSharedStateAcrossInstances(t *testing.T) {
	rdb := newRedisClient(t, redistest.Start(t))
	b1, b2 := newBus(), newBus()
	reg1, reg2 := prometheus.NewRegistry(), prometheus.NewRegistry()
	p1 := runUntilEnd(t, sharedPipeline(t, rdb, b1, reg1, nil), nil)
	p2 := runUntilEnd(t, sharedPipeline(t, rdb, b2, reg2, nil), nil)
	focus2 := make(chan string, 10)
	b2.Subscribe("focus", func(_ string, payload []byte) { focus2 <- string(payload) })

	p1.onEnter("enter", []byte(`{"id":"s1","ts":99}`))
	for ts := int64(100); ts <= 105; ts++ {
		p1.onMove("move", movePayload("s1", ts, 1, 1))
	}
	harness.Until(t, 10*time.Second, "instance 1 applied its moves", func() bool {
		return lastMove(t, rdb, "storeflow:shopper:{s1}") == 105
	})
	p2.onMove("move", movePayload("s1", 104, 1, 1)) // older than instance 1's last
	harness.Until(t, 10*time.Second, "instance 2 counts the out-of-order move", func() bool {
		return metrictest.Value(t, reg2, "storeflow_moves_out_of_order_total") == 1
	})
	p2.onMove("move", movePayload("s1", 110, 1, 1)) // ten seconds after instance 1's first
	select {
	case f := <-focus2:
		if !strings.Contains(f, `"ts":110`) {
			t.Fatalf("focus %s, want the move at 110's", f)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("instance 2 did not complete the dwell begun on instance 1")
	}
	if n := metrictest.Value(t, reg1, "storeflow_focus_detected_total"); n != 0 {
		t.Fatalf("instance 1 detected %v focus events, want 0", n)
	}
	// An exit on instance 2 forgets the shopper for both.
	p2.onExit("exit", []byte(`{"id":"s1","ts":111}`))
	harness.Until(t, 10*time.Second, "the exit forgets the shopper", func() bool {
		return rdb.Exists(context.Background(), "storeflow:shopper:{s1}").Val() == 0
	})
}

// Redis down: the dwell worker counts what it cannot apply and goes on;
// once Redis is back, moves are applied again.
func TestSharedDwellRedisDown(t *testing.T) {
	r := redistest.Start(t)
	rdb := newRedisClient(t, r)
	b := newBus()
	reg := prometheus.NewRegistry()
	p := runUntilEnd(t, sharedPipeline(t, rdb, b, reg, nil), nil)
	focus := make(chan struct{}, 10)
	b.Subscribe("focus", func(string, []byte) { focus <- struct{}{} })
	dropped := func() float64 {
		return metrictest.Value(t, reg, "storeflow_events_dropped_total", "queue="+queueDwellState)
	}
	if n := dropped(); n != 0 {
		t.Fatalf("dropped %v before Redis went away", n)
	}
	r.Stop()
	for ts := int64(100); ts < 105; ts++ {
		p.onMove("move", movePayload("s1", ts, 1, 1))
	}
	harness.Until(t, 20*time.Second, "5 moves counted dropped", func() bool { return dropped() == 5 })
	r.Restart()
	for ts := int64(200); ts <= 210; ts++ {
		p.onMove("move", movePayload("s1", ts, 1, 1))
	}
	select {
	case <-focus:
	case <-time.After(20 * time.Second):
		t.Fatal("no focus after Redis came back")
	}
	if n := dropped(); n != 5 {
		t.Fatalf("dropped %v, want the 5 moves sent while Redis was down", n)
	}
}

// DWELL_STATE=redis without a Redis client is refused at construction.
func TestSharedDwellNeedsRedis(t *testing.T) {
	cfg := testConfig()
	cfg.DwellState = DwellStateRedis
	plan, _ := store.GridPlan(6, 10)
	_, err := New(cfg, Parts{Plan: plan, Source: testCatalog(t), Scorer: discountScorer{}, Sub: newBus(), Pub: newBus()})
	if err == nil || !strings.Contains(err.Error(), "DWELL_STATE=redis") || !strings.Contains(err.Error(), "REDIS_URL") {
		t.Fatalf("New without Redis: %v, want an error naming DWELL_STATE and REDIS_URL", err)
	}
}

// Two instances in one share group (MQTT_SHARE_GROUP) on a real mosquitto
// and one Redis: the broker splits each topic between them, yet every
// shopper who lingers gets exactly one focus, as with one instance.
func TestSharedGroupOneFocusPerVisit(t *testing.T) {
	addr := mosquittotest.Start(t, "allow_anonymous true")
	rdb := newRedisClient(t, redistest.Start(t))
	host, portText, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portText)
	dial := func(name string) *broker.Client {
		t.Helper()
		cfg := broker.Config{Host: host, Port: port, Name: name, QoS: 1, OfflineQueue: 1000, CleanSession: true}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		c, err := broker.Dial(ctx, cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		harness.Start(t, "broker client "+name, c.Run, c.Ready())
		return c
	}
	regs := []*prometheus.Registry{prometheus.NewRegistry(), prometheus.NewRegistry()}
	for i, reg := range regs {
		c := dial("sf-share-" + strconv.Itoa(i))
		cfg := testConfig()
		cfg.DwellState, cfg.ShareGroup, cfg.QueueSize = DwellStateRedis, "storeflow", 1024
		runUntilEnd(t, newTestPipeline(t, cfg, Parts{Source: testCatalog(t), Scorer: discountScorer{}, Sub: c, Pub: c, Registerer: reg,
			Redis: rdb, RedisPrefix: "storeflow:"}), nil)
	}
	var mu sync.Mutex
	focus := map[string]int{}
	watcher := dial("sf-share-watcher")
	if err := watcher.Subscribe("focus", func(_ string, payload []byte) {
		f, err := event.DecodeFocus(payload)
		if err != nil {
			t.Errorf("focus %q: %v", payload, err)
			return
		}
		mu.Lock()
		focus[f.ID]++
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	sensor := dial("sf-share-sensor")
	publish := func(topic string, payload []byte) {
		t.Helper()
		if err := sensor.Publish(context.Background(), topic, payload); err != nil {
			t.Fatal(err)
		}
	}
	const shoppers, linger = 20, 30 // moves one second apart: three times the dwell
	accepted := func(kind string) (n float64) {
		for _, reg := range regs {
			n += metrictest.Value(t, reg, "storeflow_events_accepted_total", "kind="+kind)
		}
		return n
	}
	for s := range shoppers {
		publish("enter", []byte(fmt.Sprintf(`{"id":"s%d","ts":99}`, s)))
	}
	// Each visit begins once its entry was applied: the enter and the moves
	// may go to different instances.
	harness.Until(t, 10*time.Second, "every entry taken", func() bool { return accepted(kindEnter) == shoppers })
	for ts := int64(100); ts < 100+linger; ts++ {
		for s := range shoppers {
			publish("move", movePayload(fmt.Sprintf("s%d", s), ts, 1, 1))
		}
	}
	harness.Until(t, 20*time.Second, "a focus for every shopper", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(focus) == shoppers
	})
	harness.Until(t, 10*time.Second, "every move taken", func() bool { return accepted(kindMove) == shoppers*linger })
	for i, reg := range regs {
		if n := metrictest.Value(t, reg, "storeflow_events_accepted_total", "kind="+kindMove); n == 0 {
			t.Errorf("instance %d took no move: the group did not share the topic", i)
		}
		t.Logf("instance %d: %v moves, %v out of order, %v focus", i,
			metrictest.Value(t, reg, "storeflow_events_accepted_total", "kind="+kindMove),
			metrictest.Value(t, reg, "storeflow_moves_out_of_order_total"), metrictest.Value(t, reg, "storeflow_focus_detected_total"))
	}
	// Every focus consumed once, by one instance of the group.
	harness.Until(t, 10*time.Second, "every focus taken once", func() bool { return accepted(kindFocus) == shoppers })
	mu.Lock()
	defer mu.Unlock()
	for id, n := range focus {
		if n != 1 {
			t.Errorf("shopper %s: %d focus events, want 1", id, n)
		}
	}
}

// The dwell state's cost per move: batches of dwellBatch moves of
// different shoppers, one pipeline each, against a real redis-server on
// this machine (sharing its cores). ns/move is the wall time,
// redis-cpu-ns/move what redis-server spent (INFO cpu).
func BenchmarkSharedApply(b *testing.B) {
	r := redistest.Start(b)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer rdb.Close()
	st := newSharedShoppers(rdb, "bench:", dwellRule, BrowsingRule{After: 20 * time.Second, Moves: 20}, time.Hour)
	if err := st.load(context.Background()); err != nil {
		b.Fatal(err)
	}
	batch, deps := make([]shopperEvent, dwellBatch), make([]store.Department, dwellBatch)
	res, errs := make([]moveResult, dwellBatch), make([]error, dwellBatch)
	for i := range batch {
		batch[i] = shopperEvent{kind: kindMove, id: fmt.Sprintf("shopper-%04d", i), x: 1, y: 1}
		deps[i] = store.Boys
	}
	ts := int64(1)
	cpu := redisCPU(b, rdb)
	b.ReportAllocs()
	for b.Loop() {
		ts++
		for i := range batch {
			batch[i].ts = ts
		}
		st.apply(context.Background(), batch, deps, res, errs, make([]int64, len(batch)))
		if errs[0] != nil {
			b.Fatal(errs[0])
		}
	}
	moves := float64(b.N * dwellBatch)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/moves, "ns/move")
	b.ReportMetric((redisCPU(b, rdb)-cpu)*1e9/moves, "redis-cpu-ns/move")
}

// redisCPU is the CPU time redis-server has used, in seconds.
func redisCPU(tb testing.TB, rdb redis.UniversalClient) float64 {
	tb.Helper()
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		tb.Fatal(err)
	}
	var sum float64
	for line := range strings.SplitSeq(info, "\n") {
		for _, k := range []string{"used_cpu_sys:", "used_cpu_user:"} {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), k); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					tb.Fatalf("INFO cpu: %q: %v", line, err)
				}
				sum += f
			}
		}
	}
	return sum
}
