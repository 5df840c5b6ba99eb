package world

import (
	"fmt"
	"math"

	"github.com/storeflow/storeflow/store"
)

// Population-wide terms of the ground truth, the same for every customer.
const (
	// EffortPerItem is the log-odds lost per item beyond the first that a
	// buy_more or buy_all coupon asks for.
	EffortPerItem = 0.35
	// ChoicePerLogProduct is the log-odds gained per unit of ln(products
	// covered): more to choose from, more likely something fits.
	ChoicePerLogProduct = 0.15
)

// Logit is the ground truth's log-odds that customer c, with preferences p,
// uses coupon cp when offered it:
//
//	Propensity + Department[dep] + Type[type]
//	  + DiscountSensitivity × (discount − 20) / 10
//	  − PriceTolerance × |ln(product_mean_price / mean_buy_price)|
//	  − EffortPerItem × (how_many − 1)            (buy_more, buy_all)
//	  + ChoicePerLogProduct × ln(products_available)
func Logit(p *store.Preferences, c *store.Customer, cp *store.Coupon) float64 {
	z := p.Propensity
	if int(cp.Department) < len(p.Department) {
		z += p.Department[cp.Department]
	}
	if t := store.TypeIndex(cp.Type); t >= 0 {
		z += p.Type[t]
	}
	z += p.DiscountSensitivity * float64(cp.Discount-20) / 10
	if c.MeanBuyPrice > 0 && cp.ProductMeanPrice > 0 {
		z -= p.PriceTolerance * math.Abs(math.Log(cp.ProductMeanPrice/c.MeanBuyPrice))
	}
	if (cp.Type == store.BuyMore || cp.Type == store.BuyAll) && cp.HowMany > 1 {
		z -= EffortPerItem * float64(cp.HowMany-1)
	}
	if cp.ProductsAvailable > 0 {
		z += ChoicePerLogProduct * math.Log(float64(cp.ProductsAvailable))
	}
	return z
}

// Probability is the ground-truth probability that customer c, with
// preferences p, uses coupon cp when offered it: the logistic function of
// Logit.
func Probability(p *store.Preferences, c *store.Customer, cp *store.Coupon) float64 {
	return 1 / (1 + math.Exp(-Logit(p, c, cp)))
}

// Truth holds every customer's preferences, by customer id.
type Truth struct {
	prefs []store.Preferences
	idx   map[string]int
}

// NewTruth indexes preferences by customer id; a duplicate id is an error.
func NewTruth(prefs []store.Preferences) (*Truth, error) {
	t := &Truth{prefs: prefs, idx: make(map[string]int, len(prefs))}
	for i := range prefs {
		if _, dup := t.idx[prefs[i].CustomerID]; dup {
			return nil, fmt.Errorf("world: preferences: duplicate customer_id %s", prefs[i].CustomerID)
		}
		t.idx[prefs[i].CustomerID] = i
	}
	return t, nil
}

// Preferences returns the customer's preferences, or false when the customer
// has none on record.
func (t *Truth) Preferences(customerID string) (*store.Preferences, bool) {
	i, ok := t.idx[customerID]
	if !ok {
		return nil, false
	}
	return &t.prefs[i], true
}

// All returns every customer's preferences. The slice is shared: do not modify it.
func (t *Truth) All() []store.Preferences { return t.prefs }
