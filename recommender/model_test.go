package recommender_test

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/storeflow/storeflow/internal/modeltest"
	. "github.com/storeflow/storeflow/recommender"
	"github.com/storeflow/storeflow/store"
	"github.com/storeflow/storeflow/store/world"
)

// testModel is the model the held-out evaluation trains on the reference
// world, once per test binary: a full-size training is the slowest thing
// these tests do under the race detector.
func testModel(t testing.TB) *Model {
	t.Helper()
	return modeltest.Reference(t).Model
}

func testWorld(t testing.TB) *world.World {
	t.Helper()
	return modeltest.World(t)
}

// The trained model must have learned the shop's sense from the history
// alone: the directions the ground truth builds in.
func TestModelLearnedTheShop(t *testing.T) {
	m := testModel(t)
	base := store.Customer{ID: "1", Gender: "F", Age: 35, MeanBuyPrice: 20, TotalCouponsUsed: 20,
		MeanDiscountReceived: 25, UniqueProductsBought: 80, UniqueProductsBoughtWithCoupons: 15, TotalItemsBought: 100}
	coupon := store.Coupon{ID: 1, Type: store.JustDiscount, Department: store.Women, Discount: 20, HowMany: 1, ProductMeanPrice: 20, ProductsAvailable: 3}
	score := func(c store.Customer, cp store.Coupon) float64 {
		out := make([]float64, 1)
		if err := m.Score(context.Background(), &c, []store.Coupon{cp}, out); err != nil {
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
		"a deeper discount is more attractive": {nil, func(c *store.Coupon) { c.Discount = 45 }, true},
		"coupon users use coupons":             {func(c *store.Customer) { c.TotalCouponsUsed = 60 }, nil, true},
		"a price far from the usual puts off":  {nil, func(c *store.Coupon) { c.ProductMeanPrice = 80 }, false},
		"buy five is a harder sell":            {nil, func(c *store.Coupon) { c.Type, c.HowMany = store.BuyMore, 5 }, false},
		"men rarely shop Women":                {func(c *store.Customer) { c.Gender = "M" }, nil, false},
		"never used a coupon": {func(c *store.Customer) {
			c.TotalCouponsUsed, c.UniqueProductsBoughtWithCoupons, c.MeanDiscountReceived = 0, 0, 0
		}, nil, false},
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

func TestModelSaveLoad(t *testing.T) {
	m := testModel(t)
	path := filepath.Join(t.TempDir(), "model.json")
	if err := m.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := LoadModel(path)
	if err != nil {
		t.Fatal(err)
	}
	w := testWorld(t)
	var row [NumFeatures]float32
	ctx := context.Background()
	for _, o := range w.History[:500] {
		c, _ := w.Catalog.Customer(ctx, o.CustomerID)
		cp, _ := w.Catalog.Coupon(ctx, o.CouponID)
		Encode(&c, &cp, row[:])
		if a, b := m.Predict(row[:]), got.Predict(row[:]); a != b {
			t.Fatalf("loaded model predicts %v, saved one %v", b, a)
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("model file mode %v, %v; want 0644", fi.Mode().Perm(), err)
	}
}

func TestReadModelRefusesBadFiles(t *testing.T) {
	var good bytes.Buffer
	m := testModel(t)
	if err := m.Save(filepath.Join(t.TempDir(), "m.json")); err != nil {
		t.Fatal(err)
	}
	small := *m
	small.Trees = []Tree{{Feature: []int16{3, -1, -1}, Threshold: []float32{5, 0, 0}, Left: []int32{1, 0, 0}, Right: []int32{2, 0, 0}, Value: []float32{0, -0.1, 0.1}}}
	if err := json.NewEncoder(&good).Encode(&small); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		edit func(string) string
		want string
	}{
		"not json":            {func(string) string { return "{" }, "not a model file"},
		"other format":        {func(s string) string { return strings.Replace(s, `"storeflow-gbt"`, `"xgboost"`, 1) }, "format"},
		"newer version":       {func(s string) string { return strings.Replace(s, `"version":1`, `"version":9`, 1) }, "version 9"},
		"features reordered":  {func(s string) string { return strings.Replace(s, `"gender","age"`, `"age","gender"`, 1) }, "features"},
		"child before parent": {func(s string) string { return strings.Replace(s, `"left":[1,0,0]`, `"left":[0,0,0]`, 1) }, "child 0"},
		"child out of range":  {func(s string) string { return strings.Replace(s, `"right":[2,0,0]`, `"right":[7,0,0]`, 1) }, "child 7"},
		"feature out of range": {func(s string) string { return strings.Replace(s, `"feature":[3,-1,-1]`, `"feature":[99,-1,-1]`, 1) },
			"feature 99"},
		"arrays disagree": {func(s string) string { return strings.Replace(s, `"value":[0,-0.1,0.1]`, `"value":[0,-0.1]`, 1) }, "different lengths"},
		"no trees":        {func(s string) string { return s[:strings.Index(s, `"trees":`)] + `"trees":[]}` }, "no trees"},
	}
	if _, err := ReadModel(strings.NewReader(good.String())); err != nil {
		t.Fatalf("the unedited model is refused: %v", err)
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			in := tt.edit(good.String())
			if in == good.String() {
				t.Fatal("the edit changed nothing: the test is stale")
			}
			_, err := ReadModel(strings.NewReader(in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ReadModel error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestModelScoreAllocatesNothing(t *testing.T) {
	m := testModel(t)
	w := testWorld(t)
	c := w.Catalog.Customers()[0]
	coupons := w.Catalog.Coupons()[:4]
	out := make([]float64, len(coupons))
	ctx := context.Background()
	if n := testing.AllocsPerRun(100, func() { _ = m.Score(ctx, &c, coupons, out) }); n != 0 {
		t.Fatalf("Score allocates %v times per call, want 0", n)
	}
}

// Every finite input gets a probability: tiny prices once overflowed the
// price ratio to +Inf and made NaN of the linear part (/score answered 500
// for a mean_buy_price of 1e-38).
func TestModelScoreFiniteForExtremeInputs(t *testing.T) {
	m := testModel(t)
	base := store.Customer{ID: "1", Gender: "M", Age: 35, MeanBuyPrice: 12.68, TotalCouponsUsed: 20,
		MeanDiscountReceived: 25, UniqueProductsBought: 80, UniqueProductsBoughtWithCoupons: 15, TotalItemsBought: 100}
	coupon := store.Coupon{ID: 1, Type: store.JustDiscount, Department: store.Women, Discount: 20, HowMany: 1,
		ProductMeanPrice: 40.68, ProductsAvailable: 3}
	signed := slices.Clone(modeltest.ExtremeAmounts)
	for _, v := range modeltest.ExtremeAmounts {
		signed = append(signed, -v) // Score takes what it is given; negative amounts too
	}
	out := make([]float64, 1)
	check := func(c store.Customer, cp store.Coupon) {
		t.Helper()
		if err := m.Score(context.Background(), &c, []store.Coupon{cp}, out); err != nil {
			t.Fatal(err)
		}
		if !modeltest.IsProbability(out[0]) {
			t.Errorf("mean_buy_price %g, product_mean_price %g, mean_discount_received %g, discount %d, counts %d: probability %v",
				c.MeanBuyPrice, cp.ProductMeanPrice, c.MeanDiscountReceived, cp.Discount, c.TotalItemsBought, out[0])
		}
	}
	for _, buy := range signed {
		for _, product := range signed {
			c, cp := base, coupon
			c.MeanBuyPrice, cp.ProductMeanPrice = buy, product
			check(c, cp)
		}
		c, cp := base, coupon
		c.MeanDiscountReceived = buy
		check(c, cp)
		cp.Discount = math.MinInt32
		check(c, cp)
		cp.Discount = math.MaxInt32
		check(c, cp)
	}
	for _, n := range []int{0, 1, math.MaxInt32, math.MaxInt64, -1, math.MinInt64} {
		c, cp := base, coupon
		c.Age, c.TotalCouponsUsed, c.UniqueProductsBought, c.UniqueProductsBoughtWithCoupons, c.TotalItemsBought = n, n, n, n, n
		cp.HowMany, cp.ProductsAvailable = n, n
		check(c, cp)
	}
}

func FuzzReadModel(f *testing.F) {
	m := testModel(f)
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(m); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte(`{"format":"storeflow-gbt","version":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ReadModel(bytes.NewReader(b))
		if err != nil {
			return
		}
		// Whatever is accepted must predict without panicking.
		var row [NumFeatures]float32
		if p := m.Predict(row[:]); p < 0 || p > 1 {
			t.Fatalf("accepted model predicts %v", p)
		}
	})
}

func BenchmarkModelScore(b *testing.B) {
	m := testModel(b)
	w := testWorld(b)
	c := w.Catalog.Customers()[0]
	coupons := w.Catalog.Coupons()[:3] // about three run per department
	out := make([]float64, len(coupons))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_ = m.Score(ctx, &c, coupons, out)
	}
}
