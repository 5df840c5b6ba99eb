package pipeline

import (
	"testing"
	"time"

	"github.com/storeflow/storeflow/store"
)

// The focus rule's cases, run through the in-memory detector here and
// through the Redis script in TestSharedRuleMatchesMemory.
var (
	dwellRule  = DwellRule{Dwell: 10 * time.Second, Gap: 20 * time.Second, Cooldown: time.Minute}
	dwellCases = map[string][]dwellStep{
		"focus once the dwell is reached": {
			{100, B, moveOK}, {105, B, moveOK}, {109, B, moveOK}, {110, B, moveFocus}, {111, B, moveOK},
		},
		"one focus per stay": {
			{100, B, moveOK}, {110, B, moveFocus}, {120, B, moveOK}, {130, B, moveOK}, {150, B, moveOK},
		},
		"passing through never focuses": {
			{100, A, moveOK}, {101, B, moveOK}, {102, B, moveOK}, {103, A, moveOK}, {115, A, moveOK},
		},
		"a gap restarts the dwell": {
			{100, B, moveOK}, {105, B, moveOK}, {126, B, moveOK}, {135, B, moveOK}, {136, B, moveFocus},
		},
		"a gap equal to FOCUS_GAP does not": {
			{100, B, moveOK}, {105, B, moveOK}, {110, B, moveFocus},
		},
		"leaving re-arms": {
			{100, B, moveOK}, {110, B, moveFocus}, {111, A, moveOK}, {112, B, moveOK}, {122, B, moveFocus},
		},
		"another department has its own dwell": {
			{100, B, moveOK}, {109, B, moveOK}, {110, G, moveOK}, {119, G, moveOK}, {120, G, moveFocus},
		},
		"cooldown allows another focus after a new dwell": {
			{100, B, moveOK}, {110, B, moveFocus}, {150, B, moveOK}, {170, B, moveOK}, {175, B, moveOK}, {180, B, moveFocus},
		},
		"out of order moves are ignored": {
			{100, B, moveOK}, {105, B, moveOK}, {90, B, moveOutOfOrder}, {110, B, moveFocus},
		},
		"replayed old timestamps work (event time, not server time)": {
			{192322800, B, moveOK}, {192322805, B, moveOK}, {192322810, B, moveFocus},
		},
		"equal timestamps count as in order": {
			{100, B, moveOK}, {100, B, moveOK}, {110, B, moveFocus},
		},
	}
)

// dwellStep is one move of a focus test.
type dwellStep struct {
	ts   int64
	dep  store.Department
	want moveResult
}

const B, G, A = store.Boys, store.Girls, store.NoDepartment

func TestShopperMove(t *testing.T) {
	rule := dwellRule
	for name, steps := range dwellCases {
		t.Run(name, func(t *testing.T) {
			var s shopper
			for i, st := range steps {
				if got := s.move(&rule, &BrowsingRule{}, st.ts, 0, 0, st.dep); got != st.want {
					t.Fatalf("step %d (ts=%d dep=%s): got %d, want %d", i, st.ts, st.dep, got, st.want)
				}
			}
		})
	}
}

func TestShopperMoveNoCooldown(t *testing.T) {
	rule := DwellRule{Dwell: 10 * time.Second, Gap: 20 * time.Second}
	var s shopper
	focuses := 0
	for ts := int64(100); ts < 100+3600; ts += 5 {
		if s.move(&rule, &BrowsingRule{}, ts, 0, 0, store.Men) == moveFocus {
			focuses++
		}
	}
	if focuses != 1 {
		t.Fatalf("an hour in Men with FOCUS_COOLDOWN=0 gave %d focus events, want 1", focuses)
	}
}

func BenchmarkShopperMove(b *testing.B) {
	rule := DwellRule{Dwell: 10 * time.Second, Gap: 20 * time.Second, Cooldown: time.Minute}
	browsing := BrowsingRule{After: 20 * time.Second, Moves: 20}
	plan, _ := store.GridPlan(6, 10)
	var s shopper
	ts := int64(1)
	b.ReportAllocs()
	for b.Loop() {
		ts++
		x, y := int(ts%6), int(ts%10)
		s.move(&rule, &browsing, ts, x, y, plan.DepartmentAt(x, y))
	}
}

// wanderStep is one move of a browsing test.
type wanderStep struct {
	ts   int64
	x, y int
	dep  store.Department
	want moveResult
}

// walk is n moves one second apart from ts along the row y, each to a new
// position, in dep; the last one expects last, the others moveOK.
func walk(ts int64, n, y int, dep store.Department, last moveResult) []wanderStep {
	out := make([]wanderStep, n)
	for i := range out {
		out[i] = wanderStep{ts + int64(i), i, y, dep, moveOK}
	}
	out[n-1].want = last
	return out
}

// stand is n moves one second apart from ts at one position.
func stand(ts int64, n, x, y int, dep store.Department, last moveResult) []wanderStep {
	out := make([]wanderStep, n)
	for i := range out {
		out[i] = wanderStep{ts + int64(i), x, y, dep, moveOK}
	}
	out[n-1].want = last
	return out
}

// The browsing rule's cases, run through the in-memory detector here and
// through the Redis script in TestSharedRuleMatchesMemory.
var (
	browsingDwellRule = DwellRule{Dwell: 10 * time.Second, Gap: 5 * time.Second, Cooldown: time.Hour}
	browsingRule      = BrowsingRule{After: 8 * time.Second, Moves: 6}
	browsingCases     = map[string][][]wanderStep{
		// The first move starts the episode: 8 s later, 8 moves to another
		// position made, the shopper is browsing.
		"browsing once both the time and the moves are reached": {
			walk(100, 8, 0, A, moveOK), walk(108, 1, 1, A, moveBrowsing),
		},
		"through departments it does not linger in": {
			walk(100, 3, 1, B, moveOK), walk(103, 3, 3, G, moveOK), walk(106, 3, 0, A, moveBrowsing),
		},
		"one browsing event per episode": {
			walk(100, 9, 0, A, moveBrowsing), walk(109, 60, 1, A, moveOK), walk(169, 60, 2, A, moveOK),
		},
		"time without the moves is not browsing": {
			{{100, 0, 0, A, moveOK}, {101, 1, 0, A, moveOK}, {104, 2, 0, A, moveOK}, {108, 3, 0, A, moveOK},
				{109, 4, 0, A, moveOK}, {110, 3, 0, A, moveOK}, {111, 4, 0, A, moveBrowsing}},
		},
		"moves without the time are not browsing": {
			{{100, 0, 0, A, moveOK}, {101, 1, 0, A, moveOK}, {101, 2, 0, A, moveOK}, {101, 3, 0, A, moveOK},
				{101, 4, 0, A, moveOK}, {101, 5, 0, A, moveOK}, {101, 6, 0, A, moveOK}, {104, 7, 0, A, moveOK},
				{107, 8, 0, A, moveOK}, {108, 9, 0, A, moveBrowsing}},
		},
		// Standing still longer than the gap is a pause: the count starts
		// again from there, so walking afterwards needs its own 8 s.
		"a pause at one position starts the episode again": {
			walk(100, 5, 0, A, moveOK), stand(105, 7, 9, 9, A, moveOK), walk(112, 7, 0, A, moveOK), walk(119, 1, 1, A, moveBrowsing),
		},
		"a pause between moves starts the episode again": {
			walk(100, 7, 0, A, moveOK), walk(113, 8, 1, A, moveOK), walk(121, 1, 0, A, moveBrowsing),
		},
		"a pause no longer than the gap does not": {
			walk(100, 4, 0, A, moveOK), walk(108, 3, 1, A, moveBrowsing),
		},
		// Lingering in a department focuses; moving about in it afterwards
		// is still the focus, not browsing. The episode begins again with
		// the last move there (here 143, so 151 is 8 s on).
		"a focus ends the episode; the next begins on leaving": {
			walk(100, 3, 0, A, moveOK), stand(103, 10, 3, 1, B, moveOK), walk(113, 1, 1, B, moveFocus),
			walk(114, 30, 2, B, moveOK), // still in Boys, focused: held
			walk(144, 7, 0, A, moveOK), walk(151, 1, 5, A, moveBrowsing),
		},
		"a focus after browsing allows another": {
			walk(100, 9, 0, A, moveBrowsing), stand(109, 10, 4, 1, B, moveOK), stand(119, 1, 4, 1, B, moveFocus),
			walk(120, 7, 0, A, moveOK), walk(127, 1, 5, A, moveBrowsing),
		},
		"a focus before the time is reached ends the episode": {
			walk(100, 4, 0, A, moveOK), stand(104, 10, 3, 1, B, moveOK), stand(114, 1, 3, 1, B, moveFocus),
			walk(115, 7, 0, A, moveOK), walk(122, 1, 1, A, moveBrowsing),
		},
		// A move older than the last is dropped before either detector
		// sees it: it is no step and no position.
		"out of order moves are ignored": {
			walk(100, 5, 0, A, moveOK), {{90, 7, 7, A, moveOutOfOrder}, {104, 4, 0, A, moveOK}},
			walk(105, 3, 1, A, moveOK), walk(108, 1, 0, A, moveBrowsing),
		},
		"equal timestamps count as in order": {
			walk(100, 8, 0, A, moveOK), {{107, 0, 5, A, moveOK}, {108, 0, 6, A, moveBrowsing}},
		},
		"replayed old timestamps work (event time, not server time)": {
			walk(192322800, 8, 0, A, moveOK), walk(192322808, 1, 1, A, moveBrowsing),
		},
	}
)

func TestShopperBrowsing(t *testing.T) {
	rule, browsing := browsingDwellRule, browsingRule
	for name, parts := range browsingCases {
		t.Run(name, func(t *testing.T) {
			var s shopper
			i := 0
			for _, steps := range parts {
				for _, st := range steps {
					if got := s.move(&rule, &browsing, st.ts, st.x, st.y, st.dep); got != st.want {
						t.Fatalf("move %d (ts=%d at %d,%d in %q): got %d, want %d", i, st.ts, st.x, st.y, st.dep, got, st.want)
					}
					i++
				}
			}
		})
	}
}

// BROWSING_AFTER=0 turns the detector off.
func TestShopperBrowsingOff(t *testing.T) {
	rule := DwellRule{Dwell: 10 * time.Second, Gap: 20 * time.Second}
	var s shopper
	for ts := int64(100); ts < 100+3600; ts++ {
		if got := s.move(&rule, &BrowsingRule{Moves: 1}, ts, int(ts%6), 0, store.NoDepartment); got != moveOK {
			t.Fatalf("ts %d: got %d with BROWSING_AFTER=0, want moveOK", ts, got)
		}
	}
}
