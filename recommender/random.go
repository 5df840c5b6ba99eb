package recommender

import (
	"context"
	"math/rand/v2"

	"github.com/storeflow/storeflow/store"
)

// Random scores every coupon with a uniform random number: with
// PREDICTION_THRESHOLD=0 it picks uniformly among the valid coupons. It is the
// yardstick the model's acceptance rate is measured against (SCORER=random).
type Random struct{}

// Score implements Scorer.
func (Random) Score(_ context.Context, _ *store.Customer, coupons []store.Coupon, out []float64) error {
	for i := range coupons {
		out[i] = rand.Float64()
	}
	return nil
}
