// Package world owns the synthetic shop: a generated catalog in the seed's
// four tables, the hidden ground truth behind it (every customer's
// preferences and the rule that turns them into the probability of using a
// coupon) and a redemption history played with that rule. The demo runs on
// it, the model trains on its history, and the simulated shoppers decide with
// its truth. The same config always yields the same world.
package world

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/storeflow/storeflow/store"
)

// World is a generated (or loaded) shop: the central's catalog and, when
// known, the ground truth behind it and the history to train a model on.
type World struct {
	Catalog *store.Catalog
	Truth   *Truth               // nil when the data comes without ground truth
	History []store.HistoryEntry // empty when the data comes without history
}

// New puts a world together from its tables, as a catalog directory gives
// them: prefs nil means no ground truth, history nil no history.
func New(cat *store.Catalog, prefs []store.Preferences, history []store.HistoryEntry) (*World, error) {
	w := &World{Catalog: cat, History: history}
	if prefs != nil {
		var err error
		if w.Truth, err = NewTruth(prefs); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// Preferences returns every customer's preferences, nil without ground truth.
func (w *World) Preferences() []store.Preferences {
	if w.Truth == nil {
		return nil
	}
	return w.Truth.All()
}

// History sizes: at the reference sizes, 180 days give about 72,000 offers,
// enough to train on in a second and to evaluate on a held-out fifth.
const (
	defaultHistoryDays = 180
	maxHistoryDays     = 3650
)

// Generate builds the catalog exactly as GenerateCatalog does, then the ground
// truth behind it (every customer's Preferences) and a redemption history:
// over cfg.Days days before the reference day, each customer visits the shop
// now and then, lingers in one to three departments (the ones they like
// more often), is shown every coupon of that department valid that day, and
// uses each with the ground-truth probability. The same config always yields
// the same world.
func Generate(cfg Config) (*World, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	cat, err := GenerateCatalog(cfg)
	if err != nil {
		return nil, err
	}
	seed := uint64(cfg.Seed)
	prefs := genPreferences(rand.New(rand.NewPCG(seed, streamPrefs)), cat.Customers())
	truth, err := NewTruth(prefs)
	if err != nil {
		return nil, err
	}
	ref := store.DayOf(cfg.Reference.Unix())
	history := genHistory(rand.New(rand.NewPCG(seed, streamHistory)), cat, truth, ref-store.Day(cfg.Days), ref)
	return &World{Catalog: cat, Truth: truth, History: history}, nil
}

// round4 keeps preferences short in CSV and exact through a round trip.
func round4(x float64) float64 { return math.Round(x*1e4) / 1e4 }

// typeBase is the population's taste for each coupon type, in CouponTypes
// order: a plain discount is the easiest sell, "buy all of these" the hardest.
var typeBase = [len(store.CouponTypes)]float64{-0.3, -0.1, 0.2, 0.3}

// departmentBase is the demographic part of a customer's department taste:
// who shops for whom.
func departmentBase(c *store.Customer, d store.Department) float64 {
	female := c.Gender == "F"
	switch d {
	case store.Women:
		if female {
			return 0.6
		}
		return -1.2
	case store.Men:
		if female {
			return -0.5 // some shop for a partner
		}
		return 0.6
	case store.Boys, store.Girls:
		switch {
		case c.Age >= 28 && c.Age <= 48: // parents of young children
			return 0.5
		case c.Age >= 55 && c.Age <= 75: // grandparents
			return -0.1
		}
		return -0.9
	case store.Sports:
		return clampF(0.6-0.03*float64(c.Age-30), -0.8, 0.6)
	}
	return 0
}

// genPreferences derives each customer's hidden tastes from what the shop
// knows of them plus individual noise the shop cannot see. The noise is what
// keeps any model trained on customer_info below the ground truth's ceiling;
// the Bernoulli draw of each use keeps the ceiling itself well below 1.
//
//	Propensity          = −3.2 + 4.5 × coupon share (total_coupons_used / total_items_bought)
//	                      − 0.8 if the customer never used a coupon, + N(0, 0.2)
//	Department[d]       = demographic base (gender, age) + N(0, 0.2)
//	Type[t]             = population base (just_discount +0.3 … buy_all −0.3) + N(0, 0.2)
//	DiscountSensitivity = (0.25 + 0.5 × clamp((mean_discount_received − 10) / 20, 0, 1.5)) × e^N(0, 0.15)
//	                      (0.3 × e^N(0, 0.15) for customers who never used a coupon)
//	PriceTolerance      = 0.8 × e^N(0, 0.2)
func genPreferences(r *rand.Rand, customers []store.Customer) []store.Preferences {
	out := make([]store.Preferences, len(customers))
	for i := range customers {
		c := &customers[i]
		p := &out[i]
		p.CustomerID = c.ID
		share := float64(c.TotalCouponsUsed) / math.Max(1, float64(c.TotalItemsBought))
		p.Propensity = -3.2 + 4.5*share + r.NormFloat64()*0.15
		if c.TotalCouponsUsed == 0 {
			p.Propensity -= 0.8
		}
		for _, d := range store.Departments {
			p.Department[d] = round4(departmentBase(c, d) + r.NormFloat64()*0.15)
		}
		for t := range p.Type {
			p.Type[t] = round4(typeBase[t] + r.NormFloat64()*0.1)
		}
		sens := 0.3
		if c.TotalCouponsUsed > 0 {
			sens = 0.25 + 0.5*clampF((c.MeanDiscountReceived-10)/20, 0, 1.5)
		}
		p.DiscountSensitivity = round4(sens * math.Exp(r.NormFloat64()*0.1))
		p.PriceTolerance = round4(0.8 * math.Exp(r.NormFloat64()*0.15))
		p.Propensity = round4(p.Propensity)
	}
	return out
}

// genHistory plays the customers' past visits in [from, to) and records every
// coupon shown and whether it was used. Rows come out by customer, then day.
func genHistory(r *rand.Rand, cat *store.Catalog, truth *Truth, from, to store.Day) []store.HistoryEntry {
	var out []store.HistoryEntry
	var valid []store.Coupon
	days := int(to - from)
	var weights [len(store.Departments)]float64
	for _, c := range cat.Customers() {
		prefs, _ := truth.Preferences(c.ID)
		// Busier shoppers visit more: from about once a month to twice a week.
		rate := 0.03 + 0.25*math.Min(1, float64(c.TotalItemsBought)/300)
		visits := poisson(r, rate*float64(days))
		visitDays := make([]store.Day, visits)
		for v := range visitDays {
			visitDays[v] = from + store.Day(r.IntN(days))
		}
		slices.Sort(visitDays)
		for _, day := range visitDays {
			for k, d := range store.Departments {
				weights[k] = math.Exp(prefs.Department[d])
			}
			lingers := 1
			if u := r.Float64(); u < 0.15 {
				lingers = 3
			} else if u < 0.5 {
				lingers = 2
			}
			for range lingers {
				k := drawWeighted(r, weights[:])
				weights[k] = 0 // one linger per department and visit
				valid, _ = cat.ValidCoupons(context.Background(), store.Departments[k], day, valid[:0])
				for i := range valid {
					p := Probability(prefs, &c, &valid[i])
					out = append(out, store.HistoryEntry{CustomerID: c.ID, CouponID: valid[i].ID, Day: day, Used: r.Float64() < p})
				}
			}
		}
	}
	return out
}

// drawWeighted returns an index with probability proportional to its weight;
// at least one weight must be positive.
func drawWeighted(r *rand.Rand, w []float64) int {
	sum := 0.0
	for _, x := range w {
		sum += x
	}
	u := r.Float64() * sum
	for i, x := range w {
		if u < x {
			return i
		}
		u -= x
	}
	for i := len(w) - 1; i >= 0; i-- {
		if w[i] > 0 {
			return i
		}
	}
	return 0
}

// poisson draws a Poisson count with mean lambda (Knuth's method for small
// means, a rounded normal above 30, where it is close enough).
func poisson(r *rand.Rand, lambda float64) int {
	if lambda > 30 {
		return max(0, int(math.Round(lambda+math.Sqrt(lambda)*r.NormFloat64())))
	}
	l, k, p := math.Exp(-lambda), 0, 1.0
	for {
		p *= r.Float64()
		if p <= l {
			return k
		}
		k++
	}
}
