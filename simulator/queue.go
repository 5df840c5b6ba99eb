package simulator

import "time"

// Who acts when an action comes due: a shopper slot (>= 0) or an arrival.
const (
	arrivalNext    = -1 // the next arrival of the Poisson stream, which schedules the one after
	arrivalOpening = -2 // one of the shoppers waiting at the door at opening time
)

// action is something due at a simulated time: an arrival or a shopper's next
// step. seq breaks ties in scheduling order, so the run is the same every time.
type action struct {
	at  time.Duration // simulated time since Start
	seq uint64
	who int32
}

func (a action) before(b action) bool {
	return a.at < b.at || a.at == b.at && a.seq < b.seq
}

// queue is a min-heap of actions. It is typed (no container/heap) so that
// pushing and popping do not allocate.
type queue struct {
	items []action
	seq   uint64
}

func (q *queue) push(at time.Duration, who int32) {
	q.seq++
	q.items = append(q.items, action{at: at, seq: q.seq, who: who})
	i := len(q.items) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !q.items[i].before(q.items[p]) {
			break
		}
		q.items[i], q.items[p] = q.items[p], q.items[i]
		i = p
	}
}

// pop removes and returns the earliest action; the queue must not be empty.
func (q *queue) pop() action {
	top := q.items[0]
	last := len(q.items) - 1
	q.items[0] = q.items[last]
	q.items = q.items[:last]
	i := 0
	for {
		l := 2*i + 1
		if l >= last {
			break
		}
		m := l
		if r := l + 1; r < last && q.items[r].before(q.items[l]) {
			m = r
		}
		if !q.items[m].before(q.items[i]) {
			break
		}
		q.items[i], q.items[m] = q.items[m], q.items[i]
		i = m
	}
	return top
}
