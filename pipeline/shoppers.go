package pipeline

// shopperTable is what one dwell worker remembers: at most limit shoppers,
// found by id. Only the worker touches it, so it has no lock.
//
// Admission (MAX_SHOPPERS): a full table never turns a shopper away; it
// evicts one, in O(1). The policy is a segmented LRU. A shopper's first move
// puts it in the probation list; its second promotes it to the protected
// list. Eviction takes the least recently active shopper of probation, and
// of protected only while probation is empty. A flood of fake ids — one move
// each — therefore only churns probation: shoppers who keep moving (every
// real one: a focus takes FOCUS_DWELL of moves) stay, and a new shopper
// still gets a place. Protected holds at most limit − limit/5, so probation
// always has room to let new shoppers in even when the table is full of
// established ones; past that, the least recently active protected shopper
// goes back to the head of probation.
//
// Both lists are in order of last activity, most recent at the head, so
// SHOPPER_TTL expiry takes from their tails and costs O(expired). The only
// exception is a shopper demoted to probation while the table is that full:
// it is forgotten when it reaches the tail, evicted or expired.
//
// The shoppers live in chunks of slots, linked by index: no allocation per
// shopper and no pointer for the collector to trace but the id, a table
// that grows without copying what it holds, and memory bounded by the limit
// (bytes per shopper: BenchmarkShopperTableMemory).
type shopperTable struct {
	index        map[string]int32
	chunks       [][]tracked // of slotChunk slots; the last one may be short
	used         int32       // slots handed out so far
	free         int32       // first free slot, chained through next; none: -1
	lists        [2]shopperList
	limit        int
	protectedMax int
}

// tracked is one shopper in the table.
type tracked struct {
	shopper
	id         string
	seen       int64 // wall clock (unix seconds) of the last event, for SHOPPER_TTL
	prev, next int32 // neighbours in its list (towards head, towards tail); none: -1
	seg        segment
}

type segment uint8

const (
	probation segment = iota // one move so far
	protected                // two moves or more
)

// shopperList is a doubly linked list of slots, most recently active first.
type shopperList struct {
	head, tail int32
	n          int
}

// evicted says which shopper a full table let go, for the metric.
type evicted uint8

const (
	evictedNone        evicted = iota
	evictedOneMove             // a shopper seen in one move only
	evictedLeastRecent         // an established shopper: MAX_SHOPPERS is small for the store
)

// slotChunk is the slots of one chunk: 96 KB.
const slotChunk = 1024

func newShopperTable(limit int) *shopperTable {
	limit = max(limit, 1)
	return &shopperTable{
		index:        make(map[string]int32, min(limit, slotChunk)),
		free:         -1,
		lists:        [2]shopperList{{head: -1, tail: -1}, {head: -1, tail: -1}},
		limit:        limit,
		protectedMax: limit - limit/5,
	}
}

func (t *shopperTable) len() int { return len(t.index) }

func (t *shopperTable) slot(i int32) *tracked { return &t.chunks[i/slotChunk][i%slotChunk] }

func (t *shopperTable) full() bool { return len(t.index) >= t.limit }

// touch returns the shopper id's state after recording an event at now, or
// nil when id is not tracked. The pointer is valid until the next call that
// adds a shopper.
func (t *shopperTable) touch(id string, now int64) *shopper {
	i, ok := t.index[id]
	if !ok {
		return nil
	}
	s := t.slot(i)
	s.seen = now
	if s.seg == protected && t.lists[protected].head == i {
		return &s.shopper // the most recently active already: the common case of a shopper on the move
	}
	t.unlink(i)
	if s.seg == probation {
		s.seg = protected
		if t.lists[protected].n >= t.protectedMax {
			demote := t.lists[protected].tail
			t.unlink(demote)
			t.slot(demote).seg = probation
			t.pushHead(demote)
		}
	}
	t.pushHead(i)
	return &s.shopper
}

// add tracks id, new, as of now, evicting a shopper when the table is full,
// and returns its state (valid until the next add) and what was evicted.
// The caller expires what it can before, so that an eviction never takes a
// shopper while an expired one is held.
func (t *shopperTable) add(id string, now int64) (*shopper, evicted) {
	ev := evictedNone
	if t.full() {
		victim := t.lists[probation].tail
		ev = evictedOneMove
		if victim < 0 {
			victim, ev = t.lists[protected].tail, evictedLeastRecent
		}
		t.remove(victim)
	}
	i := t.free
	if i >= 0 {
		t.free = t.slot(i).next
	} else {
		if t.used%slotChunk == 0 {
			t.chunks = append(t.chunks, make([]tracked, min(slotChunk, t.limit-int(t.used))))
		}
		i = t.used
		t.used++
	}
	s := t.slot(i)
	*s = tracked{id: id, seen: now, seg: probation}
	t.pushHead(i)
	t.index[id] = i
	return &s.shopper, ev
}

// forget drops id and reports whether it was tracked.
func (t *shopperTable) forget(id string) bool {
	i, ok := t.index[id]
	if ok {
		t.remove(i)
	}
	return ok
}

// expire forgets the shoppers whose last event was at or before cutoff and
// returns how many.
func (t *shopperTable) expire(cutoff int64) int {
	n := 0
	for seg := range t.lists {
		for i := t.lists[seg].tail; i >= 0 && t.slot(i).seen <= cutoff; i = t.lists[seg].tail {
			t.remove(i)
			n++
		}
	}
	return n
}

func (t *shopperTable) remove(i int32) {
	t.unlink(i)
	s := t.slot(i)
	delete(t.index, s.id)
	*s = tracked{next: t.free} // drop the id string for the collector
	t.free = i
}

func (t *shopperTable) unlink(i int32) {
	s := t.slot(i)
	l := &t.lists[s.seg]
	if s.prev >= 0 {
		t.slot(s.prev).next = s.next
	} else {
		l.head = s.next
	}
	if s.next >= 0 {
		t.slot(s.next).prev = s.prev
	} else {
		l.tail = s.prev
	}
	l.n--
}

func (t *shopperTable) pushHead(i int32) {
	s := t.slot(i)
	l := &t.lists[s.seg]
	s.prev, s.next = -1, l.head
	if l.head >= 0 {
		t.slot(l.head).prev = i
	} else {
		l.tail = i
	}
	l.head = i
	l.n++
}
