package store_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/storeflow/storeflow/store"
	"github.com/storeflow/storeflow/store/world"
)

// The catalog's methods on a generated catalog, at the reference sizes where
// it matters. They live outside package store because the generator is
// built on it.

func TestCatalogLinksGenerated(t *testing.T) {
	cat, err := world.GenerateCatalog(world.Config{Seed: 3, Reference: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), Customers: 10, Products: 50, Coupons: 40})
	if err != nil {
		t.Fatal(err)
	}
	var rows []store.CouponProduct
	for _, cp := range cat.Coupons() {
		ps, err := cat.CouponProducts(context.Background(), cp.ID, store.AllProducts)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			rows = append(rows, store.CouponProduct{CouponID: cp.ID, ProductID: p.ID})
		}
	}
	_, _, _, n := cat.Sizes()
	if got := cat.Links(); !slices.Equal(got, rows) || len(got) != n {
		t.Errorf("Links() has %d rows, want the %d of CouponProducts", len(got), n)
	}
}

func BenchmarkValidCoupons(b *testing.B) {
	reference := time.Date(2024, 5, 15, 13, 45, 0, 0, time.UTC)
	c, err := world.GenerateCatalog(world.Config{Seed: 1, Reference: reference})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	day := store.DayOf(reference.Unix())
	dst := make([]store.Coupon, 0, 16)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		dst, err = c.ValidCoupons(ctx, store.Women, day, dst[:0])
		if err != nil {
			b.Fatal(err)
		}
	}
}
