package store

import (
	"fmt"
	"math"
)

// Preferences are one customer's hidden tastes: the generator's ground truth of
// who uses which coupon. The catalog never shows them; customer_info only
// hints at them (gender, age, how often and how deeply the customer used
// coupons before), so a model trained on customer_info can approach the truth
// but never see it.
type Preferences struct {
	CustomerID string
	// Propensity is the customer's baseline appetite for coupons, in log-odds.
	Propensity float64
	// Department shifts the log-odds per department, indexed by Department
	// (index 0, NoDepartment, is unused).
	Department [len(departmentNames)]float64
	// Type shifts the log-odds per coupon type, indexed by TypeIndex.
	Type [len(CouponTypes)]float64
	// DiscountSensitivity is the log-odds gained per 10 points of discount
	// above 20 %.
	DiscountSensitivity float64
	// PriceTolerance is the log-odds lost per unit of |ln(price / usual price)|:
	// how much a coupon on goods far from the customer's usual price puts
	// them off.
	PriceTolerance float64
}

// CouponTypes lists the coupon types in their feature order (alphabetical, as
// a label encoder sorts them). TypeIndex maps a type to its place here.
var CouponTypes = [...]CouponType{BuyAll, BuyMore, DeptCoupon, JustDiscount}

// TypeIndex returns the type's index in CouponTypes, or -1.
func TypeIndex(t CouponType) int {
	switch t {
	case BuyAll:
		return 0
	case BuyMore:
		return 1
	case DeptCoupon:
		return 2
	case JustDiscount:
		return 3
	}
	return -1
}

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
func (p *Preferences) Logit(c *Customer, cp *Coupon) float64 {
	z := p.Propensity
	if int(cp.Department) < len(p.Department) {
		z += p.Department[cp.Department]
	}
	if t := TypeIndex(cp.Type); t >= 0 {
		z += p.Type[t]
	}
	z += p.DiscountSensitivity * float64(cp.Discount-20) / 10
	if c.MeanBuyPrice > 0 && cp.ProductMeanPrice > 0 {
		z -= p.PriceTolerance * math.Abs(math.Log(cp.ProductMeanPrice/c.MeanBuyPrice))
	}
	if (cp.Type == BuyMore || cp.Type == BuyAll) && cp.HowMany > 1 {
		z -= EffortPerItem * float64(cp.HowMany-1)
	}
	if cp.ProductsAvailable > 0 {
		z += ChoicePerLogProduct * math.Log(float64(cp.ProductsAvailable))
	}
	return z
}

// Probability is the ground-truth probability that customer c uses coupon cp
// when offered it: the logistic function of Logit.
func (p *Preferences) Probability(c *Customer, cp *Coupon) float64 {
	return 1 / (1 + math.Exp(-p.Logit(c, cp)))
}

// Truth holds every customer's preferences, by customer id.
type Truth struct {
	prefs []Preferences
	idx   map[string]int
}

// NewTruth indexes preferences by customer id; a duplicate id is an error.
func NewTruth(prefs []Preferences) (*Truth, error) {
	t := &Truth{prefs: prefs, idx: make(map[string]int, len(prefs))}
	for i := range prefs {
		if _, dup := t.idx[prefs[i].CustomerID]; dup {
			return nil, fmt.Errorf("store: preferences: duplicate customer_id %s", prefs[i].CustomerID)
		}
		t.idx[prefs[i].CustomerID] = i
	}
	return t, nil
}

// Preferences returns the customer's preferences, or false when the customer
// has none on record.
func (t *Truth) Preferences(customerID string) (*Preferences, bool) {
	i, ok := t.idx[customerID]
	if !ok {
		return nil, false
	}
	return &t.prefs[i], true
}

// All returns every customer's preferences. The slice is shared: do not modify it.
func (t *Truth) All() []Preferences { return t.prefs }

// Offer is one row of the redemption history: a coupon offered to a customer
// on a day, and whether the customer used it.
type Offer struct {
	CustomerID string
	CouponID   int
	Day        Day
	Used       bool
}

// World is a generated (or loaded) shop: the central's catalog and, when
// known, the ground truth behind it and the history to train a model on.
type World struct {
	Catalog *Catalog
	Truth   *Truth  // nil when the data comes without ground truth
	History []Offer // empty when the data comes without history
}
