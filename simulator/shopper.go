package simulator

import (
	"math/rand/v2"
	"time"

	"github.com/storeflow/storeflow/store"
)

// passThroughChance is how often a visit also walks through one department
// without stopping, so that the dwell detector sees passers-by as well as
// shoppers who linger.
const passThroughChance = 0.4

// maxStops is the longest itinerary: three departments to linger in and one
// passed through.
const maxStops = 4

// stop is one department on a shopper's itinerary.
type stop struct {
	dep  store.Department
	pass bool // walked through, not lingered in
}

// shopper is one customer in the store and where the visit stands. Its next
// move is either the next position of path, or, while lingering, a random step
// inside the department.
type shopper struct {
	id   string
	cust int32 // index into the customer list
	pos  int32 // lattice node of the last move

	stops  [maxStops]stop
	nStops int
	next   int  // the stop being walked to or stayed in; nStops = the exit
	inside bool // at stops[next], not walking to it

	path   []int32 // moves to come, reused from visit to visit
	pathAt int
	linger int  // random steps left inside the department
	done   bool // the last move was the exit
}

// walker turns itineraries into moves on the lattice.
type walker struct {
	lat                *lattice
	lingerLo, lingerHi int // steps inside a department a lingering shopper takes after the first
	passMax            int // most moves inside a department passed through
}

func newWalker(lat *lattice, dwell time.Duration) *walker {
	// Lingering lasts 1.5–3 dwells and always at least dwell+3 s, so the dwell
	// detector fires whatever the rounding; passing through takes at most a
	// third of a dwell, well under it.
	dwellSteps := int((dwell + time.Second - 1) / time.Second)
	lo := int((dwell*3/2 + time.Second - 1) / time.Second)
	hi := int(dwell * 3 / time.Second)
	lo = max(lo, dwellSteps+3)
	return &walker{
		lat:      lat,
		lingerLo: lo,
		lingerHi: max(hi, lo),
		passMax:  max(1, int(dwell/time.Second)/3),
	}
}

// begin starts a visit at the entrance with a fresh itinerary; the shopper's
// first move is the entrance itself.
func (w *walker) begin(sh *shopper, rng *rand.Rand) {
	sh.pos = w.lat.entrance
	sh.path = sh.path[:0]
	sh.pathAt = 0
	sh.linger = 0
	sh.done = false

	// 1–3 distinct departments to linger in: a partial shuffle of the usable ones.
	var pick [256]store.Department
	n := copy(pick[:], w.lat.usable)
	k := min(1+rng.IntN(3), n)
	for i := range k {
		j := i + rng.IntN(n-i)
		pick[i], pick[j] = pick[j], pick[i]
		sh.stops[i] = stop{dep: pick[i]}
	}
	sh.nStops = k
	if rng.Float64() < passThroughChance && n > k {
		j := k + rng.IntN(n-k)
		at := rng.IntN(k + 1)
		copy(sh.stops[at+1:k+1], sh.stops[at:k])
		sh.stops[at] = stop{dep: pick[j], pass: true}
		sh.nStops = k + 1
	}
	// Leaving the entrance is leaving a (non-)stop: next becomes 0.
	sh.next = -1
	sh.inside = true
	w.prepare(sh, rng)
}

// step makes the shopper's next move and reports whether it was the last one,
// at the exit.
func (w *walker) step(sh *shopper, rng *rand.Rand) (last bool) {
	switch {
	case sh.pathAt < len(sh.path):
		sh.pos = sh.path[sh.pathAt]
		sh.pathAt++
	case sh.linger > 0:
		sh.pos = w.wander(sh.pos, rng)
		sh.linger--
	}
	w.prepare(sh, rng)
	return sh.done
}

// prepare makes sure the shopper has a next move, or marks the visit done.
func (w *walker) prepare(sh *shopper, rng *rand.Rand) {
	for !sh.done && sh.pathAt >= len(sh.path) && sh.linger == 0 {
		if !sh.inside {
			// Arrived: at the exit, or at the first position of a department.
			if sh.next >= sh.nStops {
				sh.done = true
				return
			}
			sh.inside = true
			if sh.stops[sh.next].pass {
				w.passThrough(sh, rng)
			} else {
				sh.linger = w.lingerLo + rng.IntN(w.lingerHi-w.lingerLo+1)
			}
			continue
		}
		// Done inside a stop (or at the entrance): walk to the next stop.
		leaveThrough := sh.next < 0 || !sh.stops[sh.next].pass
		sh.next++
		sh.path = sh.path[:0]
		sh.pathAt = 0
		var ok bool
		if sh.next >= sh.nStops {
			sh.path, ok = w.lat.route(sh.path, sh.pos, store.NoDepartment, true, false, leaveThrough, rng.IntN(4))
			if !ok { // cannot happen on a plan newLattice accepted; end the visit where it stands
				sh.done = true
				return
			}
		} else {
			st := sh.stops[sh.next]
			sh.path, ok = w.lat.route(sh.path, sh.pos, st.dep, false, st.pass, leaveThrough, rng.IntN(4))
			if !ok {
				continue // unreachable from here (cannot happen either): skip the stop
			}
		}
		sh.inside = false
	}
}

// wander is one random step to a neighbouring position of the same department;
// a shopper in a department of one position stays in place.
func (w *walker) wander(n int32, rng *rand.Rand) int32 {
	var cand [4]int32
	k := 0
	d := w.lat.dept[n]
	for _, m := range w.lat.nbr[n] {
		if m != none && w.lat.dept[m] == d {
			cand[k] = m
			k++
		}
	}
	if k == 0 {
		return n
	}
	return cand[rng.IntN(k)]
}

// passThrough fills the shopper's path with a short walk inside the department
// it has just entered at a door, ending at a door so that it can leave straight
// into the aisles: 1 to passMax moves inside in all.
func (w *walker) passThrough(sh *shopper, rng *rand.Rand) {
	l := w.lat
	sh.path = sh.path[:0]
	sh.pathAt = 0
	cur := sh.pos
	d := l.dept[cur]
	var cand [4]int32
	for left := rng.IntN(w.passMax); left > 0; left-- {
		k := 0
		for _, m := range l.nbr[cur] {
			if m != none && l.dept[m] == d && l.doorDist[m] != none && int(l.doorDist[m]) <= left-1 {
				cand[k] = m
				k++
			}
		}
		if k == 0 {
			break
		}
		cur = cand[rng.IntN(k)]
		sh.path = append(sh.path, cur)
	}
	for l.doorDist[cur] > 0 {
		for _, m := range l.nbr[cur] {
			if m != none && l.dept[m] == d && l.doorDist[m] == l.doorDist[cur]-1 {
				cur = m
				break
			}
		}
		sh.path = append(sh.path, cur)
	}
}
