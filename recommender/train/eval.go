package train

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"time"

	"github.com/storeflow/storeflow/recommender"
	"github.com/storeflow/storeflow/store"
	"github.com/storeflow/storeflow/store/world"
)

// Split shares, by customer: a customer's offers all land in one part, so the
// held-out figures say how the model does on shoppers it has never seen.
const (
	testPercent  = 20 // held out for the report
	validPercent = 10 // early stopping
)

// part returns which part a customer belongs to: 0 train, 1 valid, 2 test.
func part(customerID string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(customerID))
	switch b := h.Sum32() % 100; {
	case b < testPercent:
		return 2
	case b < testPercent+validPercent:
		return 1
	}
	return 0
}

// Quality is a ranking's area under the ROC curve and under the
// precision-recall curve (average precision).
type Quality struct {
	ROC, PR float64
}

// Report is what training and its held-out evaluation measured.
type Report struct {
	Offers, Used       int // the whole history
	Customers          int // customers with offers
	TestCustomers      int // held out
	TestOffers         int
	TestUsed           int
	Trees              int
	Took               time.Duration // training time
	Model, Baseline    Quality       // on the held-out offers
	Ceiling            Quality       // the ground truth's own probabilities; NaN without ground truth
	CeilingKnown       bool
	ModelVsCeilingNote string
}

// World trains a model on a world's redemption history. With evaluate,
// a fifth of the customers is held out and the report compares, on their
// offers, the model with a popularity baseline and with the ground truth (the
// ceiling); without, every customer but the early-stopping tenth trains.
func World(w *world.World, opts Options, evaluate bool) (*recommender.Model, *Report, error) {
	if len(w.History) == 0 {
		return nil, nil, errors.New("recommender: train: the data has no redemption history (coupon_history.csv)")
	}
	var train, valid, test Dataset
	var testOffers []store.HistoryEntry
	rep := &Report{Offers: len(w.History)}
	customers, testCustomers := map[string]bool{}, map[string]bool{}
	var row [recommender.NumFeatures]float32
	ctx := context.Background()
	for i, o := range w.History {
		if err := encodeOffer(w, i, row[:]); err != nil {
			return nil, nil, err
		}
		customers[o.CustomerID] = true
		if o.Used {
			rep.Used++
		}
		switch p := part(o.CustomerID); {
		case p == 2 && evaluate:
			test.Add(row[:], o.Used)
			testOffers = append(testOffers, o)
			testCustomers[o.CustomerID] = true
		case p == 1:
			valid.Add(row[:], o.Used)
		default:
			train.Add(row[:], o.Used)
		}
	}
	rep.Customers, rep.TestCustomers, rep.TestOffers = len(customers), len(testCustomers), test.Len()
	start := time.Now()
	m, err := Fit(&train, &valid, opts)
	if err != nil {
		return nil, nil, err
	}
	rep.Took, rep.Trees = time.Since(start), len(m.Trees)
	m.Info.Rows, m.Info.Positives = train.Len(), countTrue(train.Labels)
	if !evaluate {
		return m, rep, nil
	}
	if test.Len() == 0 || countTrue(test.Labels) == 0 || countTrue(test.Labels) == test.Len() {
		return nil, nil, errors.New("recommender: train: the held-out customers' offers are all used or all unused: too little history to evaluate")
	}
	rep.TestUsed = countTrue(test.Labels)

	scores := make([]float64, test.Len())
	m.ScoreRows(test.Rows, scores)
	rep.Model = quality(scores, test.Labels)

	// Popularity: each coupon's use rate among the training offers,
	// shrunk toward the overall rate so rarely offered coupons do not
	// swing to 0 or 1.
	type tally struct{ offers, used float64 }
	pop := map[int]*tally{}
	all := tally{}
	for _, o := range w.History {
		if part(o.CustomerID) == 2 {
			continue
		}
		t := pop[o.CouponID]
		if t == nil {
			t = &tally{}
			pop[o.CouponID] = t
		}
		t.offers++
		all.offers++
		if o.Used {
			t.used++
			all.used++
		}
	}
	const shrink = 20
	overall := all.used / all.offers
	for i, o := range testOffers {
		scores[i] = overall
		if t := pop[o.CouponID]; t != nil {
			scores[i] = (t.used + shrink*overall) / (t.offers + shrink)
		}
	}
	rep.Baseline = quality(scores, test.Labels)

	rep.Ceiling = Quality{ROC: math.NaN(), PR: math.NaN()}
	if w.Truth != nil {
		known := true
		for i, o := range testOffers {
			prefs, ok := w.Truth.Preferences(o.CustomerID)
			if !ok {
				known = false
				break
			}
			c, _ := w.Catalog.Customer(ctx, o.CustomerID)
			cp, _ := w.Catalog.Coupon(ctx, o.CouponID)
			scores[i] = world.Probability(prefs, &c, &cp)
		}
		if known {
			rep.Ceiling, rep.CeilingKnown = quality(scores, test.Labels), true
		}
	}
	return m, rep, nil
}

// encodeOffer encodes the i-th offer of w's history into row.
func encodeOffer(w *world.World, i int, row []float32) error {
	ctx := context.Background()
	o := &w.History[i]
	c, err := w.Catalog.Customer(ctx, o.CustomerID)
	if err != nil {
		return fmt.Errorf("recommender: train: history row %d: %w", i+1, err)
	}
	cp, err := w.Catalog.Coupon(ctx, o.CouponID)
	if err != nil {
		return fmt.Errorf("recommender: train: history row %d: %w", i+1, err)
	}
	recommender.Encode(&c, &cp, row)
	return nil
}

// HeldOut ranks, with m, the offers of the customers World holds out of
// w's history, and returns the quality of that ranking: for a model trained
// elsewhere, the figure World's report gives the model it trains, on the
// same offers.
func HeldOut(w *world.World, m recommender.RowScorer) (Quality, error) {
	var test Dataset
	var row [recommender.NumFeatures]float32
	for i, o := range w.History {
		if part(o.CustomerID) != 2 {
			continue
		}
		if err := encodeOffer(w, i, row[:]); err != nil {
			return Quality{}, err
		}
		test.Add(row[:], o.Used)
	}
	scores := make([]float64, test.Len())
	m.ScoreRows(test.Rows, scores)
	return quality(scores, test.Labels), nil
}

func countTrue(b []bool) int {
	n := 0
	for _, v := range b {
		if v {
			n++
		}
	}
	return n
}

func quality(scores []float64, labels []bool) Quality {
	return Quality{ROC: ROCAUC(scores, labels), PR: AveragePrecision(scores, labels)}
}

// byScore returns the row indexes ordered by score, highest first.
func byScore(scores []float64) []int {
	idx := make([]int, len(scores))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(scores[b], scores[a]) })
	return idx
}

// ROCAUC is the probability that a random positive row scores above a random
// negative one, ties counting half (the Mann–Whitney statistic). NaN when
// either class is empty.
func ROCAUC(scores []float64, labels []bool) float64 {
	idx := byScore(scores)
	var pos, neg, above float64 // above: negatives ranked above the positives seen
	for i := 0; i < len(idx); {
		j := i
		var p, n float64
		for j < len(idx) && scores[idx[j]] == scores[idx[i]] {
			if labels[idx[j]] {
				p++
			} else {
				n++
			}
			j++
		}
		// Positives in this tie group beat every negative below them:
		// counted when those negatives come; here, they lose to the
		// negatives already seen and tie with n.
		above += p * (neg + n/2)
		pos += p
		neg += n
		i = j
	}
	if pos == 0 || neg == 0 {
		return math.NaN()
	}
	return 1 - above/(pos*neg)
}

// AveragePrecision is the area under the precision-recall curve as the mean
// of the precision at each positive, tie groups taken whole. NaN without
// positives.
func AveragePrecision(scores []float64, labels []bool) float64 {
	idx := byScore(scores)
	var tp, seen, sum, pos float64
	for _, l := range labels {
		if l {
			pos++
		}
	}
	if pos == 0 {
		return math.NaN()
	}
	for i := 0; i < len(idx); {
		j := i
		var p float64
		for j < len(idx) && scores[idx[j]] == scores[idx[i]] {
			if labels[idx[j]] {
				p++
			}
			j++
		}
		seen += float64(j - i)
		tp += p
		sum += p * tp / seen
		i = j
	}
	return sum / pos
}
