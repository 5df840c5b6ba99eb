package pipeline

import (
	"testing"
	"time"

	"github.com/storeflow/storeflow/store"
)

func TestShopperMove(t *testing.T) {
	rule := DwellRule{Dwell: 10 * time.Second, Gap: 20 * time.Second, Cooldown: time.Minute}
	type step struct {
		ts   int64
		dep  store.Department
		want moveResult
	}
	const B, G, A = store.Boys, store.Girls, store.NoDepartment
	tests := map[string][]step{
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
	for name, steps := range tests {
		t.Run(name, func(t *testing.T) {
			var s shopper
			for i, st := range steps {
				if got := s.move(&rule, st.ts, st.dep); got != st.want {
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
		if s.move(&rule, ts, store.Men) == moveFocus {
			focuses++
		}
	}
	if focuses != 1 {
		t.Fatalf("an hour in Men with FOCUS_COOLDOWN=0 gave %d focus events, want 1", focuses)
	}
}

func BenchmarkShopperMove(b *testing.B) {
	rule := DwellRule{Dwell: 10 * time.Second, Gap: 20 * time.Second, Cooldown: time.Minute}
	plan, _ := store.GridPlan(6, 10)
	var s shopper
	ts := int64(1)
	b.ReportAllocs()
	for b.Loop() {
		ts++
		s.move(&rule, ts, plan.DepartmentAt(int(ts%6), int(ts%10)))
	}
}
