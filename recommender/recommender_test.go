package recommender

import (
	"math"
	"testing"

	"github.com/storeflow/storeflow/store"
)

func TestBest(t *testing.T) {
	coupons := []store.Coupon{{ID: 7}, {ID: 3}, {ID: 9}, {ID: 4}}
	tests := map[string]struct {
		probs     []float64
		threshold float64
		skip      []int
		wantID    int // 0 = none
	}{
		"highest score wins":            {[]float64{0.3, 0.9, 0.5, 0.1}, 0.2, nil, 3},
		"below threshold gives none":    {[]float64{0.1, 0.15, 0.19, 0}, 0.2, nil, 0},
		"threshold itself qualifies":    {[]float64{0.2, 0.1, 0.1, 0.1}, 0.2, nil, 7},
		"tie goes to the lower id":      {[]float64{0.5, 0.5, 0.5, 0.1}, 0.2, nil, 3},
		"skipped coupon is passed over": {[]float64{0.3, 0.9, 0.5, 0.1}, 0.2, []int{3}, 9},
		"all qualifying skipped":        {[]float64{0.3, 0.9, 0.1, 0.1}, 0.2, []int{3, 7}, 0},
		"NaN never qualifies":           {[]float64{math.NaN(), 0.1, 0.1, 0.1}, 0, nil, 3},
		"threshold zero takes the best": {[]float64{0, 0, 0.01, 0}, 0, nil, 9},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			skip := func(id int) bool {
				for _, s := range tt.skip {
					if s == id {
						return true
					}
				}
				return false
			}
			i, ok := Best(coupons, tt.probs, tt.threshold, skip)
			switch {
			case tt.wantID == 0 && ok:
				t.Fatalf("got coupon %d, want none", coupons[i].ID)
			case tt.wantID != 0 && !ok:
				t.Fatalf("got none, want coupon %d", tt.wantID)
			case ok && coupons[i].ID != tt.wantID:
				t.Fatalf("got coupon %d, want %d", coupons[i].ID, tt.wantID)
			}
		})
	}
}

func TestBestEmpty(t *testing.T) {
	if _, ok := Best(nil, nil, 0.2, nil); ok {
		t.Fatal("an empty coupon list must give no coupon, without a crash")
	}
}
