package recommender

import (
	"context"
	"math"

	"github.com/storeflow/storeflow/store"
)

// Heuristic is the in-process scorer used until a trained model is loaded: a
// logistic function of hand-set weights over the customer's context and the
// coupon's features — the same inputs a trained model gets (PRODUCT.md §4).
// It encodes plain shop sense: coupon users use coupons, bargain hunters like
// deep discounts, people buy near their usual price, multi-item deals are a
// harder sell, and departments suit some shoppers more than others.
type Heuristic struct{}

// Score implements Scorer.
func (Heuristic) Score(_ context.Context, c *store.Customer, coupons []store.Coupon, out []float64) error {
	usage := float64(c.TotalCouponsUsed) / math.Max(1, float64(c.TotalItemsBought))
	for i := range coupons {
		out[i] = sigmoid(logit(c, &coupons[i], usage))
	}
	return nil
}

func logit(c *store.Customer, cp *store.Coupon, usage float64) float64 {
	z := -1.6
	z += 4 * usage // habitual coupon users
	// Discount appeal grows with how much discount the shopper is used to.
	z += 0.05 * float64(cp.Discount-20) * (0.5 + c.MeanDiscountReceived/40)
	// Price fit: the further from the shopper's usual price, the less likely.
	if c.MeanBuyPrice > 0 && cp.ProductMeanPrice > 0 {
		z -= 1.2 * math.Abs(math.Log(cp.ProductMeanPrice/c.MeanBuyPrice))
	}
	switch cp.Type {
	case store.JustDiscount:
		z += 0.3
	case store.DeptCoupon:
		z += 0.2
	case store.BuyMore, store.BuyAll:
		z -= 0.25 * float64(max(cp.HowMany, 1)-1)
	}
	z += departmentAffinity(c, cp.Department)
	return z
}

func departmentAffinity(c *store.Customer, d store.Department) float64 {
	switch d {
	case store.Women:
		if c.Gender == "M" {
			return -0.8
		}
		return 0.3
	case store.Men:
		if c.Gender == "F" {
			return -0.8
		}
		return 0.3
	case store.Boys, store.Girls: // parents of young children
		if c.Age >= 25 && c.Age <= 50 {
			return 0.3
		}
		return -0.4
	case store.Sports:
		if c.Age < 40 {
			return 0.3
		}
		return -0.2
	}
	return 0
}

func sigmoid(z float64) float64 { return 1 / (1 + math.Exp(-z)) }
