package world

import (
	"cmp"
	"math"
	"slices"
	"testing"
)

// rocAUC is the probability that a random used offer scores above a random
// unused one (ties count half).
func rocAUC(scores []float64, used []bool) float64 {
	idx := make([]int, len(scores))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(scores[a], scores[b]) })
	var pos, neg, rankSum float64
	for i := 0; i < len(idx); {
		j := i
		for j < len(idx) && scores[idx[j]] == scores[idx[i]] {
			j++
		}
		rank := float64(i+j+1) / 2 // average 1-based rank of the tie group
		for k := i; k < j; k++ {
			if used[idx[k]] {
				pos++
				rankSum += rank
			} else {
				neg++
			}
		}
		i = j
	}
	return (rankSum - pos*(pos+1)/2) / (pos * neg)
}

func TestGenerateIsRealistic(t *testing.T) {
	w, err := Generate(Config{Seed: 1, Reference: testReference})
	if err != nil {
		t.Fatal(err)
	}
	cat := w.Catalog
	if len(w.History) < 20000 {
		t.Fatalf("history has %d offers, want at least 20,000 at the reference sizes", len(w.History))
	}
	scores := make([]float64, len(w.History))
	used := make([]bool, len(w.History))
	nUsed, sumP := 0, 0.0
	for i, o := range w.History {
		c, err := cat.Customer(t.Context(), o.CustomerID)
		if err != nil {
			t.Fatal(err)
		}
		cp, err := cat.Coupon(t.Context(), o.CouponID)
		if err != nil {
			t.Fatal(err)
		}
		if !cp.ValidOn(o.Day) {
			t.Fatalf("offer %+v: coupon not valid that day (%s..%s)", o, cp.Start, cp.End)
		}
		prefs, ok := w.Truth.Preferences(o.CustomerID)
		if !ok {
			t.Fatalf("no preferences for customer %s", o.CustomerID)
		}
		scores[i] = Probability(prefs, &c, &cp)
		sumP += scores[i]
		used[i] = o.Used
		if o.Used {
			nUsed++
		}
	}
	rate := float64(nUsed) / float64(len(w.History))
	ceiling := rocAUC(scores, used)
	t.Logf("%d offers, %.1f%% used (expected %.1f%%), ceiling ROC AUC %.3f", len(w.History), 100*rate, 100*sumP/float64(len(w.History)), ceiling)
	if rate < 0.07 || rate > 0.13 {
		t.Errorf("use rate %.3f, want about one in ten (0.07..0.13)", rate)
	}
	if ceiling < 0.7 || ceiling > 0.9 {
		t.Errorf("ceiling ROC AUC %.3f, want well below 1 but informative (0.7..0.9)", ceiling)
	}
	if math.Abs(rate-sumP/float64(len(w.History))) > 0.01 {
		t.Errorf("use rate %.3f far from the mean ground-truth probability %.3f", rate, sumP/float64(len(w.History)))
	}
}
