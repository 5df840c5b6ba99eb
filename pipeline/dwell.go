package pipeline

import (
	"math"
	"time"

	"github.com/storeflow/storeflow/store"
)

// DwellRule is the focus rule (PRODUCT.md §3), in event time.
type DwellRule struct {
	Dwell    time.Duration // consecutive moves inside one department for this long → focus
	Gap      time.Duration // a longer pause between moves restarts the dwell
	Cooldown time.Duration // staying on this long after a focus allows another; 0 = never
}

// BrowsingRule is the browsing rule, in event time: a shopper who keeps
// moving for After without a focus, through at least Moves moves to another
// position, none of its pauses (at one position, or between moves) longer
// than DwellRule.Gap, is browsing. Time and moves both, because either alone
// misleads: moves alone depend on how often the sensors fire, time alone
// counts a shopper standing in an aisle.
type BrowsingRule struct {
	After time.Duration // 0 = off
	Moves int
}

// shopper is what the dwell and browsing detectors remember about one shopper.
type shopper struct {
	since   int64 // ts of the first move of the current run in dep
	last    int64 // ts of the last move; 0 = no move yet
	focusAt int64 // ts of the focus of this stay

	// The browsing episode: it begins at the visit's first move, runs while
	// the shopper is not in a department it focused in, and starts again
	// after a pause; one browsing event at most per episode.
	wanderFrom int64  // ts the episode began
	movedAt    int64  // ts of the last move to another position
	x, y       int32  // position of the last move
	steps      uint16 // moves to another position since wanderFrom (saturating)

	dep     store.Department // department of the last move (NoDepartment: aisle)
	focused bool             // a focus was published for this stay in dep
	alerted bool             // a browsing event was published for this episode
}

// moveResult says what a move did.
type moveResult uint8

const (
	moveOK moveResult = iota
	moveFocus
	moveBrowsing
	moveOutOfOrder
)

// move applies one move to (x, y), in department dep, at ts, and reports
// whether it completes a focus or makes the shopper browsing. A move older
// than the shopper's last changes nothing.
func (s *shopper) move(r *DwellRule, b *BrowsingRule, ts int64, x, y int, dep store.Department) moveResult {
	if s.last != 0 && ts < s.last {
		return moveOutOfOrder
	}
	first := s.last == 0
	res := s.dwell(r, ts, dep)
	if b.After > 0 && s.wander(b, r.Gap, first, ts, x, y) {
		return moveBrowsing // never on a focus: the focus starts a new episode
	}
	return res
}

// dwell applies an in-order move to the focus rule. One focus per stay in a
// department: leaving the department (even for one move) re-arms it, and so
// does Cooldown of further staying. A pause longer than Gap restarts the
// dwell without re-arming.
func (s *shopper) dwell(r *DwellRule, ts int64, dep store.Department) moveResult {
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

// wander applies an in-order move, after dwell, to the browsing episode and
// reports whether the shopper is now browsing. A focus ends the episode, and
// a new one begins with the last move in the focused department; so does a
// new visit. After a browsing event nothing more is counted until then.
func (s *shopper) wander(b *BrowsingRule, gap time.Duration, first bool, ts int64, x, y int) bool {
	moved := !first && (int32(x) != s.x || int32(y) != s.y)
	s.x, s.y = int32(x), int32(y)
	switch {
	case first || s.focused:
		s.wanderFrom, s.movedAt, s.steps, s.alerted = ts, ts, 0, false
		return false
	case s.alerted:
		return false
	case seconds(ts-s.movedAt) > gap: // a pause: what came before it was not browsing
		s.wanderFrom, s.movedAt, s.steps = ts, ts, 0
		return false
	}
	if moved {
		s.movedAt = ts
		if s.steps < math.MaxUint16 {
			s.steps++
		}
	}
	if int(s.steps) >= b.Moves && seconds(ts-s.wanderFrom) >= b.After {
		s.alerted = true
		return true
	}
	return false
}

func seconds(n int64) time.Duration { return time.Duration(n) * time.Second }
