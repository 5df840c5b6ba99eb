package pipeline

import (
	"sync"

	"github.com/storeflow/storeflow/event"
	"github.com/storeflow/storeflow/store"
)

// focusKey is what makes a focus event the same focus: one shopper, one
// department, one event time. The dwell detector publishes at most one focus
// per shopper and stay in a department, so a second event with the same key
// is the first one delivered again: a QoS 1 message the broker sends again
// because its PUBACK was lost with the connection, or a publish resent after
// a reconnect because its PUBACK never came.
type focusKey struct {
	id  string
	dep store.Department
	ts  int64
}

// recentFocus remembers the keys of the last FOCUS_DEDUP_WINDOW focus events
// taken in, so that a focus delivered again is not handled again — the visit
// ledger would offer the shopper the next best coupon. A ring of keys in
// arrival order and a map from key to its place in the ring: O(1) per event,
// at most len(ring) keys held; the oldest goes when a new one comes.
type recentFocus struct {
	mu   sync.Mutex
	seen map[focusKey]uint64 // key → its sequence number (its slot in ring is seq % len(ring))
	ring []focusKey
	next uint64 // sequence number of the next key
}

func newRecentFocus(n int) *recentFocus {
	return &recentFocus{seen: make(map[focusKey]uint64, n), ring: make([]focusKey, n)}
}

// add records f and reports whether it is new: false when a focus with the
// same key is among the last keys recorded.
func (r *recentFocus) add(f event.Focus) bool {
	k := focusKey{f.ID, f.Dep, f.TS}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.seen[k]; ok {
		return false
	}
	n := uint64(len(r.ring))
	slot := r.next % n
	if r.next >= n {
		// The slot's key leaves the window, unless it was forgotten and
		// recorded again since: then the map points to a newer slot.
		if old := r.ring[slot]; r.seen[old] == r.next-n {
			delete(r.seen, old)
		}
	}
	r.ring[slot] = k
	r.seen[k] = r.next
	r.next++
	return true
}

// forget removes f's key, so that the next delivery of f is taken in: for a
// focus that was recorded but could not be queued.
func (r *recentFocus) forget(f event.Focus) {
	r.mu.Lock()
	delete(r.seen, focusKey{f.ID, f.Dep, f.TS})
	r.mu.Unlock()
}
