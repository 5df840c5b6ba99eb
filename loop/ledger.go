package loop

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
)

// offer is a coupon offered to a shopper, waiting for its redemption.
type offer struct {
	customer string
	coupon   int
	ts       int64 // event time of the offer
}

// settled is an offer whose wait ended: redeemed (used) or not.
type settled struct {
	offer
	used bool
	why  string // outcomeUsed, outcomeExpired or outcomeEvicted
}

// The ways an offer settles, as the metric labels say them.
const (
	outcomeUsed    = "used"    // a redemption within the window
	outcomeExpired = "expired" // the window passed
	outcomeEvicted = "evicted" // REDEEM_MAX_OPEN_OFFERS were waiting: the oldest settled as not used early
)

// What a redemption found, as the metric labels say them.
const (
	redeemMatched   = "matched"   // an open offer of that coupon to that shopper
	redeemUnmatched = "unmatched" // none: counted and dropped
)

// ledger holds the open offers: in memory for one instance, in Redis for
// several. Each offer settles exactly once, on one instance. Calls come
// from the loop's one worker.
type ledger interface {
	// open adds an offer; an offer of the same coupon to the same shopper
	// still open is renewed (it waits from the new ts). It returns the
	// offers settled early to keep within the bound.
	open(ctx context.Context, o offer) ([]settled, error)
	// redeem settles the open offer of the coupon to the shopper as used, if
	// there is one; dup is a redemption another instance handled already.
	redeem(ctx context.Context, customer string, coupon int, ts int64) (o offer, found, dup bool, err error)
	// expire settles as not used the offers made at or before cutoff.
	expire(ctx context.Context, cutoff int64) ([]settled, error)
	// size is how many offers are open. It is safe to call from any
	// goroutine.
	size(ctx context.Context) (int, error)
}

type offerKey struct {
	customer string
	coupon   int
}

// memLedger is the ledger of one instance. Offers wait in a queue in the
// order they came (nearly the order of their ts): the front is the next to
// expire. An entry whose offer was renewed or redeemed since stays in the
// queue until it reaches the front, where it is skipped.
type memLedger struct {
	max     int
	waiting map[offerKey]int64 // ts of each open offer
	queue   []offer            // from the oldest; queue[head:] is live
	head    int
	n       atomic.Int64 // len(waiting), for size from other goroutines
}

func newMemLedger(max int) *memLedger {
	return &memLedger{max: max, waiting: map[offerKey]int64{}}
}

func (m *memLedger) open(_ context.Context, o offer) ([]settled, error) {
	m.waiting[offerKey{o.customer, o.coupon}] = o.ts
	m.queue = append(m.queue, o)
	var out []settled
	for len(m.waiting) > m.max {
		out = append(out, settled{offer: m.pop(), why: outcomeEvicted})
	}
	m.compact()
	m.n.Store(int64(len(m.waiting)))
	return out, nil
}

// pop removes and returns the oldest live offer; there is one.
func (m *memLedger) pop() offer {
	for {
		o := m.queue[m.head]
		m.queue[m.head] = offer{}
		m.head++
		k := offerKey{o.customer, o.coupon}
		if ts, ok := m.waiting[k]; ok && ts == o.ts {
			delete(m.waiting, k)
			return o
		}
	}
}

// compact drops the dead entries once they are most of the queue, so the
// queue stays within twice the open offers.
func (m *memLedger) compact() {
	if m.head <= len(m.queue)/2 && len(m.queue) <= 2*len(m.waiting)+64 {
		return
	}
	live := m.queue[:0]
	for _, o := range m.queue[m.head:] {
		if ts, ok := m.waiting[offerKey{o.customer, o.coupon}]; ok && ts == o.ts {
			live = append(live, o)
		}
	}
	clear(m.queue[len(live):])
	m.queue, m.head = live, 0
}

func (m *memLedger) redeem(_ context.Context, customer string, coupon int, _ int64) (offer, bool, bool, error) {
	k := offerKey{customer, coupon}
	ts, ok := m.waiting[k]
	if !ok {
		return offer{}, false, false, nil
	}
	delete(m.waiting, k)
	m.n.Store(int64(len(m.waiting)))
	return offer{customer: customer, coupon: coupon, ts: ts}, true, false, nil
}

func (m *memLedger) expire(_ context.Context, cutoff int64) ([]settled, error) {
	var out []settled
	for m.head < len(m.queue) && m.queue[m.head].ts <= cutoff {
		o := m.queue[m.head]
		m.queue[m.head] = offer{}
		m.head++
		k := offerKey{o.customer, o.coupon}
		if ts, ok := m.waiting[k]; ok && ts == o.ts {
			delete(m.waiting, k)
			out = append(out, settled{offer: o, why: outcomeExpired})
		}
	}
	m.compact()
	m.n.Store(int64(len(m.waiting)))
	return out, nil
}

func (m *memLedger) size(context.Context) (int, error) { return int(m.n.Load()), nil }

// field is an offer's name in Redis: customer id and coupon id. A customer
// id is valid UTF-8, so it holds no 0xff byte.
func field(customer string, coupon int) string {
	return customer + "\xff" + strconv.Itoa(coupon)
}

// parseField is field's inverse.
func parseField(f string) (customer string, coupon int, ok bool) {
	i := strings.LastIndexByte(f, 0xff)
	if i < 0 {
		return "", 0, false
	}
	c, err := strconv.Atoi(f[i+1:])
	return f[:i], c, err == nil
}
