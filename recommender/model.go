package recommender

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"

	"github.com/storeflow/storeflow/store"
)

// Model is a trained gradient-boosted tree ensemble (logistic loss) over the
// 14 features of a row plus a few it derives from them (derivedNames). It is
// immutable once built and safe for concurrent use.
type Model struct {
	Format   string    `json:"format"`   // modelFormat
	Version  int       `json:"version"`  // modelVersion
	Features []string  `json:"features"` // FeatureNames, then derivedNames: checked on load
	Base     float64   `json:"base"`     // log-odds before the first tree, without Linear
	Linear   *Linear   `json:"linear"`   // when set, the trees start from its log-odds instead of Base
	Trees    []Tree    `json:"trees"`    //
	Info     TrainInfo `json:"info"`     // how it was trained, for people
}

// Tree is one regression tree in flat arrays: node i is a leaf when
// Feature[i] < 0, with log-odds Value[i]; otherwise a row goes to Left[i]
// when its feature value is <= Threshold[i] (or is NaN: never, rows are
// validated) and to Right[i] otherwise. Children always have higher indexes
// than their parent, so a walk always ends.
type Tree struct {
	Feature   []int16   `json:"feature"`
	Threshold []float32 `json:"threshold"`
	Left      []int32   `json:"left"`
	Right     []int32   `json:"right"`
	Value     []float32 `json:"value"`
}

// TrainInfo records how a model was trained.
type TrainInfo struct {
	Rows         int     `json:"rows"`
	Positives    int     `json:"positives"`
	LearningRate float64 `json:"learning_rate"`
	MaxDepth     int     `json:"max_depth"`
	Seed         uint64  `json:"seed"`
}

const (
	modelFormat  = "storeflow-gbt"
	modelVersion = 1
)

// derivedNames are the features the model computes from a row before the
// trees see it: ratios that a tree would otherwise need many splits to
// approximate.
var derivedNames = [...]string{
	"coupon_share",         // total_coupons_used / total_items_bought
	"coupon_product_share", // unique_products_bought_with_coupons / unique_products_bought
	"log_price_ratio",      // ln(product_mean_price / mean_buy_price)
	"abs_log_price_ratio",  // |ln(product_mean_price / mean_buy_price)|
	"discount_gap",         // discount − mean_discount_received
}

// Width is the length of a row once the derived features are appended
// (Extend): what the trees and the linear part read.
const Width = NumFeatures + len(derivedNames)

// modelFeatures is the Features list of every model this build writes and reads.
func modelFeatures() []string {
	return append(slices.Clone(FeatureNames[:]), derivedNames[:]...)
}

// NewModel returns a model of this build's format with no trees yet: what
// training starts from.
func NewModel(base float64, info TrainInfo) *Model {
	return &Model{Format: modelFormat, Version: modelVersion, Features: modelFeatures(), Base: base, Info: info}
}

// Extend copies a 14-feature row into x and appends the derived features.
// For a finite row every derived feature is finite, so the model's
// probability is too: an infinite log price ratio made NaN of the linear
// part, whose terms for it and for its absolute value then cancel as
// Inf − Inf.
func Extend(row []float32, x *[Width]float32) {
	copy(x[:NumFeatures], row)
	x[NumFeatures] = row[fTotalCouponsUsed] / max(1, row[fTotalItemsBought])
	x[NumFeatures+1] = row[fUniqueProductsBoughtWithCoupons] / max(1, row[fUniqueProductsBought])
	lr := float32(0)
	if row[fProductMeanPrice] > 0 && row[fMeanBuyPrice] > 0 {
		lr = logRatio(row[fProductMeanPrice], row[fMeanBuyPrice])
	}
	x[NumFeatures+2] = lr
	x[NumFeatures+3] = float32(math.Abs(float64(lr)))
	// In float64, then saturated: the float32 difference of two large
	// features of opposite sign is ±Inf. Where it is finite the two agree
	// bit for bit (float64 holds more than twice float32's precision).
	x[NumFeatures+4] = toFloat32(float64(row[fDiscount]) - float64(row[fMeanDiscountReceived]))
}

// logRatio is ln(a/b) for positive a and b. The quotient is taken in float32,
// as every model so far was trained, unless it leaves float32's range there:
// a mean_buy_price of 1e-38 against a product of 40 gave +Inf, a tiny price
// against a huge one 0 and a log of -Inf. Then the logs are subtracted in
// float64, where any two positive float32s give a finite result (|ln| < 104).
func logRatio(a, b float32) float32 {
	if q := a / b; q > 0 && q <= math.MaxFloat32 {
		return float32(math.Log(float64(q)))
	}
	return float32(math.Log(float64(a)) - math.Log(float64(b)))
}

// toFloat32 converts v saturating: beyond float32's range it gives float32's
// largest magnitude, not ±Inf.
func toFloat32(v float64) float32 {
	return float32(max(-math.MaxFloat32, min(v, math.MaxFloat32)))
}

// logit returns the model's log-odds for an extended row.
func (m *Model) logit(x *[Width]float32) float64 {
	z := m.Base
	if m.Linear != nil {
		z = m.Linear.Logit(x)
	}
	for t := range m.Trees {
		z += m.Trees[t].Leaf(x)
	}
	return z
}

// Leaf walks the tree for an extended row and returns its leaf's log-odds.
func (tr *Tree) Leaf(x *[Width]float32) float64 {
	i := int32(0)
	for tr.Feature[i] >= 0 {
		if x[tr.Feature[i]] <= tr.Threshold[i] {
			i = tr.Left[i]
		} else {
			i = tr.Right[i]
		}
	}
	return float64(tr.Value[i])
}

// Predict returns the probability for one 14-feature row.
func (m *Model) Predict(row []float32) float64 {
	var x [Width]float32
	Extend(row, &x)
	return Sigmoid(m.logit(&x))
}

// ScoreRows implements RowScorer.
func (m *Model) ScoreRows(rows []float32, out []float64) {
	var x [Width]float32
	for i := range out {
		Extend(rows[i*NumFeatures:(i+1)*NumFeatures], &x)
		out[i] = Sigmoid(m.logit(&x))
	}
}

// Score implements Scorer. It allocates nothing.
func (m *Model) Score(_ context.Context, c *store.Customer, coupons []store.Coupon, out []float64) error {
	var row [NumFeatures]float32
	EncodeCustomer(c, row[:])
	for i := range coupons {
		EncodeCoupon(&coupons[i], row[:])
		out[i] = m.Predict(row[:])
	}
	return nil
}

// Sigmoid turns log-odds into a probability.
func Sigmoid(z float64) float64 { return 1 / (1 + math.Exp(-z)) }

// Save writes the model as JSON to path, through a temporary file so a crash
// never leaves half a model behind.
func (m *Model) Save(path string) error {
	tmp, err := os.CreateTemp(dirOf(path), ".model-*.json")
	if err != nil {
		return fmt.Errorf("recommender: save model: %w", err)
	}
	defer os.Remove(tmp.Name())              // no-op after the rename
	if err := tmp.Chmod(0o644); err != nil { // a model is not a secret: readable like any data file
		tmp.Close()
		return fmt.Errorf("recommender: save model: %w", err)
	}
	if err := jsonEncode(tmp, m); err != nil {
		tmp.Close()
		return fmt.Errorf("recommender: save model: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("recommender: save model: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("recommender: save model: %w", err)
	}
	return nil
}

func dirOf(path string) string {
	for i := len(path) - 1; i >= 0; i-- {
		if os.IsPathSeparator(path[i]) {
			return path[:i+1]
		}
	}
	return "."
}

// MaxModelBytes bounds what a model file may hold: a real model is a few MB.
const MaxModelBytes = 256 << 20

// LoadModel reads and checks a model written by Save (storeflow train).
func LoadModel(path string) (*Model, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("recommender: MODEL_FILE: %w", err)
	}
	defer f.Close()
	m, err := ReadModel(io.LimitReader(f, MaxModelBytes+1))
	if err != nil {
		return nil, fmt.Errorf("recommender: MODEL_FILE %s: %w", path, err)
	}
	return m, nil
}

// ReadModel decodes and checks a model: its format and version, its feature
// list, and every tree's structure, so a bad file is refused at load and
// never panics at prediction time.
func ReadModel(r io.Reader) (*Model, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	if len(data) > MaxModelBytes {
		return nil, fmt.Errorf("larger than %d MiB: not a model file", MaxModelBytes>>20)
	}
	var m Model
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("not a model file: %w", err)
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	return &m, nil
}

func (m *Model) check() error {
	if m.Format != modelFormat {
		return fmt.Errorf("format %q, want %q (written by storeflow train)", m.Format, modelFormat)
	}
	if m.Version != modelVersion {
		return fmt.Errorf("version %d, this build reads version %d", m.Version, modelVersion)
	}
	if want := modelFeatures(); !slices.Equal(m.Features, want) {
		return fmt.Errorf("features %v, want %v", m.Features, want)
	}
	if !finite(m.Base) {
		return errors.New("base is not a finite number")
	}
	if m.Linear != nil {
		if err := m.Linear.check(); err != nil {
			return err
		}
	}
	if len(m.Trees) == 0 {
		return errors.New("no trees")
	}
	for t := range m.Trees {
		if err := m.Trees[t].check(); err != nil {
			return fmt.Errorf("tree %d: %w", t, err)
		}
	}
	return nil
}

func (tr *Tree) check() error {
	n := len(tr.Feature)
	if n == 0 || len(tr.Threshold) != n || len(tr.Left) != n || len(tr.Right) != n || len(tr.Value) != n {
		return errors.New("node arrays empty or of different lengths")
	}
	for i := range n {
		if tr.Feature[i] < 0 {
			if !finite(float64(tr.Value[i])) {
				return fmt.Errorf("node %d: leaf value is not finite", i)
			}
			continue
		}
		if int(tr.Feature[i]) >= Width {
			return fmt.Errorf("node %d: feature %d out of range", i, tr.Feature[i])
		}
		if !finite(float64(tr.Threshold[i])) {
			return fmt.Errorf("node %d: threshold is not finite", i)
		}
		for _, c := range [2]int32{tr.Left[i], tr.Right[i]} {
			if int(c) <= i || int(c) >= n {
				return fmt.Errorf("node %d: child %d must come after its parent and exist", i, c)
			}
		}
	}
	return nil
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

func jsonEncode(w io.Writer, m *Model) error { return json.NewEncoder(w).Encode(m) }
