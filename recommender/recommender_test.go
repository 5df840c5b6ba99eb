package recommender

import (
	"context"
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

func TestHeuristicUsesFeatures(t *testing.T) {
	base := store.Customer{ID: "1", Gender: "F", Age: 35, MeanBuyPrice: 20, TotalCouponsUsed: 10,
		MeanDiscountReceived: 20, UniqueProductsBought: 80, UniqueProductsBoughtWithCoupons: 8, TotalItemsBought: 100}
	coupon := store.Coupon{ID: 1, Type: store.JustDiscount, Department: store.Women, Discount: 20, HowMany: 1, ProductMeanPrice: 20, ProductsAvailable: 3}
	score := func(c store.Customer, cp store.Coupon) float64 {
		out := make([]float64, 1)
		if err := (Heuristic{}).Score(context.Background(), &c, []store.Coupon{cp}, out); err != nil {
			t.Fatal(err)
		}
		if out[0] <= 0 || out[0] >= 1 {
			t.Fatalf("probability %v out of (0,1)", out[0])
		}
		return out[0]
	}
	p0 := score(base, coupon)
	tests := map[string]struct {
		c      func(*store.Customer)
		cp     func(*store.Coupon)
		higher bool
	}{
		"deeper discount is more attractive": {nil, func(c *store.Coupon) { c.Discount = 40 }, true},
		"coupon users use coupons":           {func(c *store.Customer) { c.TotalCouponsUsed = 40 }, nil, true},
		"price far from the usual is less":   {nil, func(c *store.Coupon) { c.ProductMeanPrice = 80 }, false},
		"buy five is a harder sell":          {nil, func(c *store.Coupon) { c.Type, c.HowMany = store.BuyMore, 5 }, false},
		"men rarely shop Women":              {func(c *store.Customer) { c.Gender = "M" }, nil, false},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			c, cp := base, coupon
			if tt.c != nil {
				tt.c(&c)
			}
			if tt.cp != nil {
				tt.cp(&cp)
			}
			if p := score(c, cp); (p > p0) != tt.higher {
				t.Fatalf("p=%.3f vs base %.3f, want higher=%v", p, p0, tt.higher)
			}
		})
	}
}
