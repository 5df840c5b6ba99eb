package pipeline

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// check holds t to its invariants: every tracked id in exactly one list, the
// links both ways, the counts, the protected bound, the free slots.
func (t *shopperTable) check() error {
	seen := 0
	for seg := range t.lists {
		l := t.lists[seg]
		n, prev := 0, int32(-1)
		for i := l.head; i >= 0; i = t.slot(i).next {
			s := t.slot(i)
			if s.prev != prev || s.seg != segment(seg) || t.index[s.id] != i {
				return fmt.Errorf("list %d: slot %d (%q) badly linked", seg, i, s.id)
			}
			prev = i
			if n++; n > int(t.used) {
				return fmt.Errorf("list %d: a cycle", seg)
			}
		}
		if prev != l.tail || n != l.n {
			return fmt.Errorf("list %d: %d walked, tail %d; recorded %d, tail %d", seg, n, prev, l.n, l.tail)
		}
		seen += n
	}
	free := 0
	for i := t.free; i >= 0; i = t.slot(i).next {
		if t.slot(i).id != "" {
			return fmt.Errorf("free slot %d still holds %q", i, t.slot(i).id)
		}
		free++
	}
	switch {
	case seen != len(t.index):
		return fmt.Errorf("%d in the lists, %d in the index", seen, len(t.index))
	case seen+free != int(t.used):
		return fmt.Errorf("%d tracked + %d free != %d slots", seen, free, t.used)
	case seen > t.limit:
		return fmt.Errorf("%d tracked, limit %d", seen, t.limit)
	case t.lists[protected].n > t.protectedMax:
		return fmt.Errorf("%d protected, at most %d", t.lists[protected].n, t.protectedMax)
	}
	return nil
}

// order lists a list's ids, most recent first.
func (t *shopperTable) order(seg segment) []string {
	var ids []string
	for i := t.lists[seg].head; i >= 0; i = t.slot(i).next {
		ids = append(ids, t.slot(i).id)
	}
	return ids
}

// moveAll records one event for each id, adding the new ones.
func (t *shopperTable) moveAll(now int64, ids ...string) []evicted {
	var out []evicted
	for _, id := range ids {
		if t.touch(id, now) == nil {
			_, ev := t.add(id, now)
			out = append(out, ev)
		}
	}
	return out
}

func TestShopperTable(t *testing.T) {
	type want struct {
		probation, protected []string
		evicted              []evicted
	}
	tests := map[string]struct {
		limit int
		run   func(*shopperTable) []evicted
		want  want
	}{
		"a first move is probation, a second protects": {
			limit: 10,
			run: func(t *shopperTable) []evicted {
				return t.moveAll(1, "a", "b", "c", "b")
			},
			want: want{probation: []string{"c", "a"}, protected: []string{"b"}},
		},
		"a full table evicts the least recent one-move shopper, not an established one": {
			limit: 3,
			run: func(t *shopperTable) []evicted {
				return t.moveAll(1, "real", "real", "f1", "f2", "f3", "f4", "f5")
			},
			want: want{probation: []string{"f5", "f4"}, protected: []string{"real"},
				evicted: []evicted{evictedOneMove, evictedOneMove, evictedOneMove}},
		},
		"protected shoppers are evicted least recent first once probation is empty": {
			limit: 2,
			run: func(t *shopperTable) []evicted {
				return t.moveAll(1, "a", "a", "b", "b", "a", "c")
			},
			// protected holds at most 2 − 2/5 = 2: a and b; c evicts b,
			// the least recently active.
			want: want{probation: []string{"c"}, protected: []string{"a"}, evicted: []evicted{evictedLeastRecent}},
		},
		"protected holds at most four fifths: its least recent goes back to probation": {
			limit: 5,
			run: func(t *shopperTable) []evicted {
				return t.moveAll(1, "a", "b", "c", "d", "e", "a", "b", "c", "d", "e")
			},
			want: want{probation: []string{"a"}, protected: []string{"e", "d", "c", "b"}},
		},
		"a touched shopper moves to the head": {
			limit: 10,
			run: func(t *shopperTable) []evicted {
				return t.moveAll(1, "a", "a", "b", "b", "c", "c", "a")
			},
			want: want{protected: []string{"a", "c", "b"}},
		},
		"a forgotten shopper's slot is reused": {
			limit: 3,
			run: func(t *shopperTable) []evicted {
				ev := t.moveAll(1, "a", "b", "c")
				if !t.forget("b") || t.forget("b") {
					panic("forget")
				}
				return append(ev, t.moveAll(1, "d")...)
			},
			want: want{probation: []string{"d", "c", "a"}},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			tab := newShopperTable(tt.limit)
			ev := tt.run(tab)
			if err := tab.check(); err != nil {
				t.Fatal(err)
			}
			ev = slices.DeleteFunc(ev, func(e evicted) bool { return e == evictedNone })
			if got := tab.order(probation); !slices.Equal(got, tt.want.probation) {
				t.Errorf("probation %v, want %v", got, tt.want.probation)
			}
			if got := tab.order(protected); !slices.Equal(got, tt.want.protected) {
				t.Errorf("protected %v, want %v", got, tt.want.protected)
			}
			if !slices.Equal(ev, tt.want.evicted) {
				t.Errorf("evicted %v, want %v", ev, tt.want.evicted)
			}
			if int(tab.used) > tt.limit {
				t.Errorf("%d slots for a limit of %d", tab.used, tt.limit)
			}
		})
	}
}

// Expiry takes the shoppers silent since the cutoff from both lists, and
// only them.
func TestShopperTableExpire(t *testing.T) {
	tab := newShopperTable(100)
	tab.moveAll(10, "old1", "old2", "kept2")
	tab.moveAll(10, "old2")
	tab.moveAll(20, "new1", "kept2")
	tab.moveAll(30, "new2", "new2")
	if n := tab.expire(10); n != 2 {
		t.Fatalf("expire(10) forgot %d, want old1 and old2", n)
	}
	if err := tab.check(); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"old1", "old2"} {
		if _, ok := tab.index[id]; ok {
			t.Errorf("%s still tracked", id)
		}
	}
	if tab.len() != 3 || tab.expire(10) != 0 {
		t.Errorf("%d tracked after expiry, want new1, new2, kept2", tab.len())
	}
	if n := tab.expire(30); n != 3 || tab.len() != 0 {
		t.Errorf("expire(30) forgot %d, %d left; want all 3", n, tab.len())
	}
}

// Random events, forgets and expiries keep the table consistent and within
// its limit.
func TestShopperTableRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, limit := range []int{1, 2, 5, 64} {
		tab := newShopperTable(limit)
		now := int64(0)
		for step := range 20000 {
			id := strconv.Itoa(r.IntN(3 * limit))
			switch k := r.IntN(20); {
			case k == 0:
				tab.forget(id)
			case k == 1:
				now++
			case k == 2:
				tab.expire(now - 3)
			default:
				tab.moveAll(now, id)
			}
			if err := tab.check(); err != nil {
				t.Fatalf("limit %d, step %d: %v", limit, step, err)
			}
		}
	}
}

// After a flood of one-move fake ids far beyond MAX_SHOPPERS, a shopper who
// was moving before keeps the dwell it built up and focuses on time, and a
// new shopper who comes after the flood is tracked and focuses too. Before,
// the full table dropped every move of a new shopper.
func TestFloodOfFakeIDsKeepsRealShoppers(t *testing.T) {
	cfg := testConfig()
	cfg.DwellWorkers, cfg.MaxShoppers = 2, 1000
	b := newBus()
	reg := prometheus.NewRegistry()
	p := start(t, cfg, testCatalog(t), b, reg, nil)
	ts := time.Now().Unix()
	move := func(id string, ts int64) {
		_ = b.Publish(context.Background(), "move", fmt.Appendf(nil, `{"id":%q,"ts":%d,"x":0,"y":7}`, id, ts))
	}
	for i := range 5 { // half the dwell
		move("before", ts+int64(i))
	}
	for i := range 20 * cfg.MaxShoppers {
		p.onMove("move", fmt.Appendf(nil, `{"id":"fake-%d","ts":%d,"x":1,"y":0}`, i, ts))
	}
	for i := 5; i <= 10; i++ {
		move("before", ts+int64(i))
	}
	for i := range 11 {
		move("after", ts+int64(i))
	}
	focused := map[string]bool{}
	waitFor(t, "both shoppers focus", func() bool {
		for {
			select {
			case m := <-b.out:
				for _, id := range []string{"before", "after"} {
					if m == fmt.Sprintf(`focus {"id":%q,"ts":%d,"dep":"Men","x":0,"y":7}`, id, ts+10) {
						focused[id] = true
					}
				}
			default:
				return focused["before"] && focused["after"]
			}
		}
	})
	if got := testutil.ToFloat64(p.m.evicted[evictedOneMove]); got < float64(19*cfg.MaxShoppers) {
		t.Errorf("evicted{one_move} = %v, want the flood's", got)
	}
	if got := testutil.ToFloat64(p.m.evicted[evictedLeastRecent]); got != 0 {
		t.Errorf("evicted{least_recent} = %v, want 0: only fakes had to go", got)
	}
	if got := testutil.ToFloat64(p.m.tracked); got > float64(cfg.MaxShoppers) {
		t.Errorf("tracked = %v, over MAX_SHOPPERS", got)
	}
}

// BenchmarkNewShopperMoves is intake of moves of new shoppers through the
// pipeline (decode, dwell queue, dwell worker) until the dwell workers have
// handled them: into empty tables, and into full ones (MAX_SHOPPERS=100000
// tracked), where each new shopper evicts one. Full must stay within 2× of
// empty. Before, a full table scanned all its shoppers for expired ones at
// each new id, then dropped the move.
func BenchmarkNewShopperMoves(b *testing.B) {
	const maxShoppers = 100_000
	for _, bc := range []struct {
		name string
		max  int
		full bool
	}{{"empty", 10_000_000, false}, {"full", maxShoppers, true}} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := testConfig()
			cfg.MaxShoppers, cfg.QueueSize = bc.max, 1024
			bus := newBus()
			p := newTestPipeline(b, cfg, Parts{Source: testCatalog(b), Scorer: discountScorer{}, Sub: bus, Pub: bus})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- p.Run(ctx) }()
			defer func() { cancel(); <-done }()
			<-p.Ready()

			var buf []byte
			move := func(id string, ts int64) {
				buf = fmt.Appendf(buf[:0], `{"id":%q,"ts":%d,"x":1,"y":0}`, id, ts)
				p.onMove("move", buf)
			}
			moveNew := func(n int) { // as move("new-n", 100), without the formatting's allocations
				buf = append(strconv.AppendInt(append(buf[:0], `{"id":"new-`...), int64(n), 10), `","ts":100,"x":1,"y":0}`...)
				p.onMove("move", buf)
			}
			// One marker shopper per dwell worker, with two moves so it is
			// established: its out-of-order move says when the worker has
			// handled everything before it.
			workers := uint32(cfg.DwellWorkers)
			markers := make([]string, workers)
			for i := 0; slices.Contains(markers, ""); i++ {
				id := "marker-" + strconv.Itoa(i)
				if w := hashID(id) % workers; markers[w] == "" {
					markers[w] = id
					move(id, 100)
					move(id, 101)
				}
			}
			ooo := 0
			settle := func() {
				for _, id := range markers {
					move(id, 1)
				}
				ooo += len(markers)
				for testutil.ToFloat64(p.m.outOfOrder) < float64(ooo) {
					time.Sleep(50 * time.Microsecond) // leave the cores to the workers
				}
			}
			if bc.full { // every worker's table holds its share of MAX_SHOPPERS
				perWorker := make([]int, workers)
				for w := range perWorker {
					perWorker[w] = 1 // the marker
				}
				for i, left := 0, bc.max-len(markers); left > 0; i++ {
					id := "pre-" + strconv.Itoa(i)
					if w := hashID(id) % workers; perWorker[w] < bc.max/int(workers) {
						perWorker[w]++
						left--
						move(id, 100)
					}
				}
			}
			settle()
			b.ResetTimer()
			for n := range b.N {
				moveNew(n)
			}
			settle()
		})
	}
}

// BenchmarkShopperTableMemory reports the heap a tracked shopper costs
// (B/shopper): the table's slot, its index entry and the id, here 8 bytes
// as the simulator's and most sensors' ids are. MAX_SHOPPERS times this is
// the most the dwell detector holds.
func BenchmarkShopperTableMemory(b *testing.B) {
	const n = 100_000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%08d", i)
	}
	var perShopper float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		// The ids are fresh strings, as the decoder makes them.
		tab := newShopperTable(n)
		for _, id := range ids {
			tab.add(strings.Clone(id), 1)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perShopper = float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(tab)
	}
	b.ReportMetric(perShopper, "B/shopper")
}
