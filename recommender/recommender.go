// Package recommender owns the prediction: the model that scores a shopper's
// chances of using each candidate coupon, and the coupon selection rule (a
// pure function).
package recommender

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/storeflow/storeflow/store"
)

// Config holds the selection knobs.
type Config struct {
	Threshold float64 `env:"PREDICTION_THRESHOLD" envDefault:"0.2"` // a coupon must score at least this to be offered
}

// Validate checks the values; errors name the variable and the value.
func (c Config) Validate() error {
	if math.IsNaN(c.Threshold) || c.Threshold < 0 || c.Threshold > 1 {
		return fmt.Errorf("PREDICTION_THRESHOLD=%v: must be a probability between 0 and 1", c.Threshold)
	}
	return nil
}

// Scorer predicts, for each candidate coupon, the probability that the
// customer uses it. out has len(coupons) entries. Implementations must be safe
// for concurrent use.
type Scorer interface {
	Score(ctx context.Context, c *store.Customer, coupons []store.Coupon, out []float64) error
}

// ErrScore wraps every failure of a scorer, so callers can count it.
var ErrScore = errors.New("recommender: scoring failed")

// Best returns the index of the coupon to offer: the highest probability at or
// above threshold among the coupons skip does not exclude (skip may be nil);
// ties go to the lower coupon id so the choice is deterministic. ok is false
// when nothing qualifies. It allocates nothing.
func Best(coupons []store.Coupon, probs []float64, threshold float64, skip func(couponID int) bool) (idx int, ok bool) {
	idx = -1
	for i := range coupons {
		p := probs[i]
		if math.IsNaN(p) || p < threshold {
			continue
		}
		if skip != nil && skip(coupons[i].ID) {
			continue
		}
		if idx < 0 || p > probs[idx] || (p == probs[idx] && coupons[i].ID < coupons[idx].ID) {
			idx = i
		}
	}
	return idx, idx >= 0
}
