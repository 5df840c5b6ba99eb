package world

import (
	"context"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/storeflow/storeflow/store"
)

// testReference is "today" for generated catalogs; its time of day is not
// midnight on purpose, so the tests catch a schedule centred on the wrong day.
var testReference = time.Date(2024, 5, 15, 13, 45, 0, 0, time.UTC)

func generate(t testing.TB, cfg Config) *store.Catalog {
	t.Helper()
	if cfg.Reference.IsZero() {
		cfg.Reference = testReference
	}
	c, err := GenerateCatalog(cfg)
	if err != nil {
		t.Fatalf("GenerateCatalog(%+v): %v", cfg, err)
	}
	return c
}

// linkRows lists the coupon_product table of a catalog in coupon id order.
func linkRows(t testing.TB, c *store.Catalog) []store.CouponProduct {
	t.Helper()
	var rows []store.CouponProduct
	for _, cp := range c.Coupons() {
		ps, err := c.CouponProducts(context.Background(), cp.ID, store.AllProducts)
		if err != nil {
			t.Fatalf("CouponProducts(%d): %v", cp.ID, err)
		}
		for _, p := range ps {
			rows = append(rows, store.CouponProduct{CouponID: cp.ID, ProductID: p.ID})
		}
	}
	return rows
}

func isCents(x float64) bool { return math.Abs(x*100-math.Round(x*100)) < 1e-6 }

func TestGenerateSizes(t *testing.T) {
	c := generate(t, Config{Seed: 1})
	customers, coupons, products, links := c.Sizes()
	if customers != refCustomers || coupons != refCoupons || products != refProducts {
		t.Errorf("sizes = %d customers, %d coupons, %d products; want %d, %d, %d",
			customers, coupons, products, refCustomers, refCoupons, refProducts)
	}
	if lo, hi := refLinks*85/100, refLinks*115/100; links < lo || links > hi {
		t.Errorf("coupon_product rows = %d, want %d..%d", links, lo, hi)
	}
	if got := len(linkRows(t, c)); got != links {
		t.Errorf("CouponProducts yields %d rows, Sizes says %d", got, links)
	}
	var perDept [store.DepartmentSlots]int
	for _, p := range c.Products() {
		perDept[p.Department]++
	}
	for _, d := range store.Departments {
		if perDept[d] != refProducts/len(store.Departments) {
			t.Errorf("%s has %d products, want %d", d, perDept[d], refProducts/len(store.Departments))
		}
	}
}

func TestGenerateDeterministic(t *testing.T) {
	a := generate(t, Config{Seed: 7})
	b := generate(t, Config{Seed: 7})
	if !slices.Equal(a.Customers(), b.Customers()) {
		t.Error("customer_info differs between two runs with the same seed")
	}
	if !slices.Equal(a.Coupons(), b.Coupons()) {
		t.Error("coupon_info differs between two runs with the same seed")
	}
	if !slices.Equal(a.Products(), b.Products()) {
		t.Error("product_info differs between two runs with the same seed")
	}
	if !slices.Equal(linkRows(t, a), linkRows(t, b)) {
		t.Error("coupon_product differs between two runs with the same seed")
	}

	other := generate(t, Config{Seed: 8})
	if slices.Equal(a.Customers(), other.Customers()) {
		t.Error("customer_info is the same for seeds 7 and 8")
	}
	if slices.Equal(a.Coupons(), other.Coupons()) {
		t.Error("coupon_info is the same for seeds 7 and 8")
	}
	if slices.Equal(a.Products(), other.Products()) {
		t.Error("product_info is the same for seeds 7 and 8")
	}
}

// Each table has its own random stream, so resizing one leaves the others be.
func TestGenerateTablesIndependent(t *testing.T) {
	a := generate(t, Config{Seed: 3})
	b := generate(t, Config{Seed: 3, Customers: 10})
	if !slices.Equal(a.Products(), b.Products()) || !slices.Equal(a.Coupons(), b.Coupons()) {
		t.Error("changing the number of customers changed products or coupons")
	}
	if !slices.Equal(a.Customers()[:10], b.Customers()) {
		t.Error("the first customers changed with the number of customers")
	}
}

func TestGenerateTypeMix(t *testing.T) {
	for _, seed := range []int64{1, 2, 3} {
		c := generate(t, Config{Seed: seed})
		count := map[store.CouponType]int{}
		for _, cp := range c.Coupons() {
			count[cp.Type]++
		}
		n := float64(len(c.Coupons()))
		for _, s := range couponTypeShares {
			if got := float64(count[s.t]) / n; math.Abs(got-s.share) > 0.02 {
				t.Errorf("seed %d: %s share = %.3f, want %.2f ± 0.02", seed, s.t, got, s.share)
			}
		}
	}
}

func TestTypeCounts(t *testing.T) {
	for _, n := range []int{1, 2, 3, 4, 5, 10, 99, 100, 971, 1000, 12345} {
		counts := typeCounts(n)
		sum := 0
		for i, s := range couponTypeShares {
			sum += counts[i]
			if d := math.Abs(float64(counts[i]) - s.share*float64(n)); d >= 1 {
				t.Errorf("n=%d: %d %s coupons, %.2f off the share", n, counts[i], s.t, d)
			}
		}
		if sum != n {
			t.Errorf("n=%d: counts %v add up to %d", n, counts, sum)
		}
	}
}

// Around the reference day every department has a few coupons running, never
// none, and about three on average.
func TestGenerateSchedule(t *testing.T) {
	ctx := context.Background()
	for _, seed := range []int64{1, 2, 42, -5} {
		c := generate(t, Config{Seed: seed})
		ref := store.DayOf(testReference.Unix())
		var dst []store.Coupon
		for _, dep := range store.Departments {
			total, days := 0, 0
			for day := ref - 60; day <= ref+60; day++ {
				var err error
				dst, err = c.ValidCoupons(ctx, dep, day, dst[:0])
				if err != nil {
					t.Fatalf("ValidCoupons(%s, %s): %v", dep, day, err)
				}
				if len(dst) < 1 || len(dst) > 6 {
					t.Errorf("seed %d: %s has %d coupons valid on %s, want 1..6", seed, dep, len(dst), day)
				}
				total += len(dst)
				days++
			}
			if avg := float64(total) / float64(days); avg < 2 || avg > 4 {
				t.Errorf("seed %d: %s averages %.2f valid coupons a day, want 2..4", seed, dep, avg)
			}
		}

		past := 0
		for _, cp := range c.Coupons() {
			if cp.End < ref {
				past++
			}
		}
		if share := float64(past) / float64(len(c.Coupons())); share < 0.4 || share > 0.6 {
			t.Errorf("seed %d: %.2f of the coupons ended before the reference day, want about half", seed, share)
		}
	}
}

func TestGenerateCoupons(t *testing.T) {
	ctx := context.Background()
	c := generate(t, Config{Seed: 1})
	for i, cp := range c.Coupons() {
		if cp.ID != i+1 {
			t.Fatalf("coupon %d at position %d: ids must run 1..N", cp.ID, i)
		}
		if i > 0 && cp.Start < c.Coupons()[i-1].Start {
			t.Errorf("coupon %d starts %s, before coupon %d: ids should follow start dates", cp.ID, cp.Start, cp.ID-1)
		}
		if days := cp.End - cp.Start + 1; days < 7 || days > 30 {
			t.Errorf("coupon %d lasts %d days, want 7..30", cp.ID, days)
		}
		if cp.Discount < 5 || cp.Discount > 50 {
			t.Errorf("coupon %d discount %d%%, want 5..50", cp.ID, cp.Discount)
		}
		ps, err := c.CouponProducts(ctx, cp.ID, store.AllProducts)
		if err != nil {
			t.Fatalf("CouponProducts(%d): %v", cp.ID, err)
		}
		if cp.ProductsAvailable != len(ps) {
			t.Errorf("coupon %d products_available = %d, covers %d products", cp.ID, cp.ProductsAvailable, len(ps))
		}
		sum := 0.0
		seen := map[int]bool{}
		for _, p := range ps {
			sum += p.BuyPrice
			if p.Department != cp.Department {
				t.Errorf("coupon %d (%s) covers product %d of %s", cp.ID, cp.Department, p.ID, p.Department)
			}
			if seen[p.ID] {
				t.Errorf("coupon %d covers product %d twice", cp.ID, p.ID)
			}
			seen[p.ID] = true
		}
		if len(ps) > 0 {
			if want := math.Round(sum/float64(len(ps))*100) / 100; math.Abs(cp.ProductMeanPrice-want) > 1e-9 {
				t.Errorf("coupon %d product_mean_price = %v, products average %v", cp.ID, cp.ProductMeanPrice, want)
			}
		}

		switch cp.Type {
		case store.JustDiscount:
			if cp.HowMany != 1 || len(ps) < 1 || len(ps) > 10 {
				t.Errorf("just_discount coupon %d: how_many %d, %d products; want 1 and 1..10", cp.ID, cp.HowMany, len(ps))
			}
		case store.BuyMore:
			if cp.HowMany < 2 || cp.HowMany > 5 || len(ps) < 1 || len(ps) > 5 {
				t.Errorf("buy_more coupon %d: how_many %d, %d products; want 2..5 and 1..5", cp.ID, cp.HowMany, len(ps))
			}
		case store.BuyAll:
			if cp.HowMany != len(ps) || cp.HowMany < 2 || cp.HowMany > 5 {
				t.Errorf("buy_all coupon %d: how_many %d, %d products; want equal, 2..5", cp.ID, cp.HowMany, len(ps))
			}
		case store.DeptCoupon:
			if cp.HowMany != -1 || len(ps) < 50 {
				t.Errorf("department coupon %d: how_many %d, %d products; want -1 and at least 50", cp.ID, cp.HowMany, len(ps))
			}
		default:
			t.Errorf("coupon %d has type %q", cp.ID, cp.Type)
		}
	}
}

func TestGenerateProducts(t *testing.T) {
	c := generate(t, Config{Seed: 1})
	vendorsSeen := map[string]bool{}
	for i, p := range c.Products() {
		if p.ID != i+1 {
			t.Fatalf("product %d at position %d: ids must run 1..N", p.ID, i)
		}
		if p.BuyPrice < 2 || p.BuyPrice > 80 || !isCents(p.BuyPrice) {
			t.Errorf("product %d buy_price %v, want 2..80 in cents", p.ID, p.BuyPrice)
		}
		if !slices.ContainsFunc(assortment[p.Department], func(k productKind) bool { return k.category == p.Category }) {
			t.Errorf("product %d: category %q is not sold in %s", p.ID, p.Category, p.Department)
		}
		brand, rest, ok := strings.Cut(p.Name, " - ")
		if !ok || brand != strings.ToUpper(brand) || !strings.Contains(rest, " "+p.Category+" for ") {
			t.Errorf("product %d name %q, want \"BRAND - Colour %s for Audience\"", p.ID, p.Name, p.Category)
		}
		if !strings.HasPrefix(p.Description, p.Name) || len(p.Description) > 256 || len(p.Name) > 256 {
			t.Errorf("product %d description %q does not start with its name or is too long", p.ID, p.Description)
		}
		if p.Sizes == "" || len(p.Sizes) > 50 || len(p.Category) > 50 || len(p.Vendor) > 50 {
			t.Errorf("product %d: sizes %q, category %q, vendor %q", p.ID, p.Sizes, p.Category, p.Vendor)
		}
		vendorsSeen[p.Vendor] = true
	}
	if len(vendorsSeen) < 15 {
		t.Errorf("only %d vendors in 3000 products", len(vendorsSeen))
	}
}

func TestGenerateCustomers(t *testing.T) {
	c := generate(t, Config{Seed: 1})
	var minAge, maxAge, noCoupons = 100, 0, 0
	for i, cu := range c.Customers() {
		if want := strconv.Itoa(i + 1); cu.ID != want {
			t.Fatalf("customer at position %d has id %q, want %q", i, cu.ID, want)
		}
		if cu.Gender != "M" && cu.Gender != "F" {
			t.Errorf("customer %s gender %q", cu.ID, cu.Gender)
		}
		if cu.Age < 18 || cu.Age > 90 {
			t.Errorf("customer %s age %d, want 18..90", cu.ID, cu.Age)
		}
		minAge, maxAge = min(minAge, cu.Age), max(maxAge, cu.Age)
		if cu.MeanBuyPrice < 5 || cu.MeanBuyPrice > 60 || !isCents(cu.MeanBuyPrice) {
			t.Errorf("customer %s mean_buy_price %v, want 5..60 in cents", cu.ID, cu.MeanBuyPrice)
		}
		if cu.UniqueProductsBought < 1 || cu.TotalItemsBought < cu.UniqueProductsBought {
			t.Errorf("customer %s bought %d items, %d unique", cu.ID, cu.TotalItemsBought, cu.UniqueProductsBought)
		}
		w := cu.UniqueProductsBoughtWithCoupons
		if w < 0 || w > cu.UniqueProductsBought || w > cu.TotalCouponsUsed || cu.TotalCouponsUsed > cu.TotalItemsBought {
			t.Errorf("customer %s: %d unique with coupons, %d unique, %d coupons used, %d items",
				cu.ID, w, cu.UniqueProductsBought, cu.TotalCouponsUsed, cu.TotalItemsBought)
		}
		switch {
		case cu.TotalCouponsUsed == 0:
			noCoupons++
			if cu.MeanDiscountReceived != 0 || w != 0 {
				t.Errorf("customer %s used no coupons but has discount %v, %d products with coupons", cu.ID, cu.MeanDiscountReceived, w)
			}
		case cu.MeanDiscountReceived < 5 || cu.MeanDiscountReceived > 50 || w < 1:
			t.Errorf("customer %s used %d coupons: discount %v, %d products with coupons", cu.ID, cu.TotalCouponsUsed, cu.MeanDiscountReceived, w)
		}
	}
	if minAge > 22 || maxAge < 75 {
		t.Errorf("ages run %d..%d, want a spread over 18..90", minAge, maxAge)
	}
	if n := len(c.Customers()); noCoupons == 0 || noCoupons > n/2 {
		t.Errorf("%d of %d customers used no coupon, want some but not most", noCoupons, n)
	}
}

func TestGenerateConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string // "" for success
	}{
		{"smallest", Config{Customers: 1, Products: minGenProducts, Coupons: 1}, ""},
		{"few coupons", Config{Coupons: 7}, ""},
		{"uneven products", Config{Products: 13, Coupons: 40}, ""},
		{"negative customers", Config{Customers: -1}, "customers = -1"},
		{"negative coupons", Config{Coupons: -3}, "coupons = -3"},
		{"too few products", Config{Products: minGenProducts - 1}, "products = 9"},
		{"too many products", Config{Products: maxGenProducts + 1}, "products"},
		{"too many coupons", Config{Coupons: maxGenCoupons + 1}, "coupons"},
		{"no reference", Config{Reference: time.Time{}.Add(time.Nanosecond)}, "reference year 1"},
		{"far reference", Config{Reference: time.Date(9500, 1, 1, 0, 0, 0, 0, time.UTC)}, "reference year 9500"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			if cfg.Reference.IsZero() {
				cfg.Reference = testReference
			}
			c, err := GenerateCatalog(cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("GenerateCatalog(%+v) error = %v, want one mentioning %q", cfg, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("GenerateCatalog(%+v): %v", cfg, err)
			}
			for _, cp := range c.Coupons() {
				ps, _ := c.CouponProducts(context.Background(), cp.ID, store.AllProducts)
				if cp.Type == store.BuyAll && (cp.HowMany != len(ps) || cp.HowMany < 2) {
					t.Errorf("buy_all coupon %d: how_many %d, %d products", cp.ID, cp.HowMany, len(ps))
				}
				if len(ps) == 0 {
					t.Errorf("coupon %d covers no product", cp.ID)
				}
			}
		})
	}

	if _, err := GenerateCatalog(Config{}); err == nil || !strings.Contains(err.Error(), "reference date is not set") {
		t.Errorf("GenerateCatalog without a reference: error = %v", err)
	}
}

func BenchmarkGenerate(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := GenerateCatalog(Config{Seed: 1, Reference: testReference}); err != nil {
			b.Fatal(err)
		}
	}
}
