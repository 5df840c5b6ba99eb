package pipeline

import (
	"time"

	"github.com/storeflow/storeflow/store"
)

// DwellRule is the focus rule (PRODUCT.md §3), in event time.
type DwellRule struct {
	Dwell    time.Duration // consecutive moves inside one department for this long → focus
	Gap      time.Duration // a longer pause between moves restarts the dwell
	Cooldown time.Duration // staying on this long after a focus allows another; 0 = never
}

// shopper is what the dwell detector remembers about one shopper.
type shopper struct {
	since   int64            // ts of the first move of the current run in dep
	last    int64            // ts of the last move; 0 = no move yet
	focusAt int64            // ts of the focus of this stay
	dep     store.Department // department of the last move (NoDepartment: aisle)
	focused bool             // a focus was published for this stay in dep
}

// moveResult says what a move did.
type moveResult uint8

const (
	moveOK moveResult = iota
	moveFocus
	moveOutOfOrder
)

// move applies one move in department dep at ts and reports whether it
// completes a focus. One focus per stay in a department: leaving the
// department (even for one move) re-arms it, and so does Cooldown of further
// staying. A pause longer than Gap restarts the dwell without re-arming.
func (s *shopper) move(r *DwellRule, ts int64, dep store.Department) moveResult {
	if s.last != 0 && ts < s.last {
		return moveOutOfOrder
	}
	switch {
	case dep != s.dep:
		s.dep, s.since, s.focused = dep, ts, false
	case s.last == 0 || seconds(ts-s.last) > r.Gap:
		s.since = ts
	}
	s.last = ts
	if dep == store.NoDepartment {
		return moveOK
	}
	if s.focused {
		if r.Cooldown > 0 && seconds(ts-s.focusAt) >= r.Cooldown {
			s.focused, s.since = false, ts // a new dwell must build up
		}
		return moveOK
	}
	if seconds(ts-s.since) >= r.Dwell {
		s.focused, s.focusAt = true, ts
		return moveFocus
	}
	return moveOK
}

func seconds(n int64) time.Duration { return time.Duration(n) * time.Second }
