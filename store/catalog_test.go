package store

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// fixture is a small consistent catalog: coupon 1 runs on days 100..102 in
// Women, coupon 2 on day 101 only in Women, coupon 3 in Men.
type fixture struct {
	customers []Customer
	coupons   []Coupon
	products  []Product
	links     []CouponProduct
}

func newFixture() fixture {
	return fixture{
		customers: []Customer{
			{ID: "1", Gender: "F", Age: 30},
			{ID: "2", Gender: "M", Age: 60},
		},
		coupons: []Coupon{
			{ID: 2, Type: BuyAll, Department: Women, Discount: 20, HowMany: 2, Start: 101, End: 101},
			{ID: 1, Type: JustDiscount, Department: Women, Discount: 10, HowMany: 1, Start: 100, End: 102},
			{ID: 3, Type: DeptCoupon, Department: Men, Discount: 5, HowMany: -1, Start: 90, End: 120},
		},
		products: []Product{
			{ID: 10, Name: "a", BuyPrice: 5, Department: Women},
			{ID: 11, Name: "b", BuyPrice: 7, Department: Women},
			{ID: 20, Name: "c", BuyPrice: 9, Department: Men},
		},
		links: []CouponProduct{{1, 10}, {2, 11}, {2, 10}, {3, 20}},
	}
}

func (f fixture) catalog(t testing.TB) *Catalog {
	t.Helper()
	c, err := NewCatalog(f.customers, f.coupons, f.products, f.links)
	if err != nil {
		t.Fatalf("NewCatalog: %v", err)
	}
	return c
}

func TestNewCatalog(t *testing.T) {
	f := newFixture()
	c := f.catalog(t)
	if cu, co, pr, li := c.Sizes(); cu != 2 || co != 3 || pr != 3 || li != 4 {
		t.Errorf("Sizes() = %d, %d, %d, %d; want 2, 3, 3, 4", cu, co, pr, li)
	}
	if ids := couponIDs(c.Coupons()); !slices.Equal(ids, []int{1, 2, 3}) {
		t.Errorf("Coupons() ids %v, want sorted by id", ids)
	}
	// The catalog keeps its own copy: the caller's slices stay theirs.
	f.customers[0].ID = "changed"
	if _, err := c.Customer(context.Background(), "1"); err != nil {
		t.Errorf("catalog shares the caller's customer slice: %v", err)
	}
}

func TestNewCatalogRefuses(t *testing.T) {
	tests := []struct {
		name   string
		change func(*fixture)
		want   []string // substrings of the error
	}{
		{"duplicate customer", func(f *fixture) { f.customers[1].ID = "1" }, []string{"customer_info row 2", "duplicate customer_id 1"}},
		{"empty customer id", func(f *fixture) { f.customers[0].ID = "" }, []string{"customer_info row 1", "empty"}},
		{"duplicate coupon", func(f *fixture) { f.coupons[2].ID = 1 }, []string{"duplicate coupon_id 1"}},
		{"duplicate product", func(f *fixture) { f.products[2].ID = 10 }, []string{"duplicate product_id 10"}},
		{"unknown coupon in link", func(f *fixture) { f.links[2].CouponID = 99 }, []string{"coupon_product row 3", "coupon 99"}},
		{"unknown product in link", func(f *fixture) { f.links[0].ProductID = 77 }, []string{"coupon_product row 1", "product 77"}},
		{"end before start", func(f *fixture) { f.coupons[0].End = 99 }, []string{"coupon 2", `end_date "1970-04-10"`, "start_date 1970-04-12"}},
		{"no department", func(f *fixture) { f.coupons[1].Department = NoDepartment }, []string{"coupon 1", "department"}},
		{"department out of range", func(f *fixture) { f.coupons[1].Department = 42 }, []string{"coupon 1", "department"}},
		{"unknown type", func(f *fixture) { f.coupons[2].Type = "bogo" }, []string{"coupon 3", `"bogo"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture()
			tt.change(&f)
			c, err := NewCatalog(f.customers, f.coupons, f.products, f.links)
			if err == nil {
				t.Fatalf("NewCatalog accepted the catalog: %v", c)
			}
			if c != nil {
				t.Error("NewCatalog returned a catalog with its error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// Many bad rows make one error, cut short instead of listing them all.
func TestNewCatalogManyErrors(t *testing.T) {
	f := newFixture()
	for i := range 25 {
		f.links = append(f.links, CouponProduct{CouponID: 100 + i, ProductID: 10})
	}
	_, err := NewCatalog(f.customers, f.coupons, f.products, f.links)
	if err == nil || !strings.Contains(err.Error(), "and 15 more") {
		t.Errorf("error = %v, want the first 10 and a count of the rest", err)
	}
}

func TestCatalogCustomer(t *testing.T) {
	ctx := context.Background()
	c := newFixture().catalog(t)
	cu, err := c.Customer(ctx, "2")
	if err != nil || cu.Age != 60 {
		t.Errorf("Customer(2) = %+v, %v", cu, err)
	}
	for _, id := range []string{"3", "", "01"} {
		if _, err := c.Customer(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Customer(%q) error = %v, want ErrNotFound", id, err)
		}
	}
}

func TestCatalogCoupon(t *testing.T) {
	ctx := context.Background()
	c := newFixture().catalog(t)
	if cp, err := c.Coupon(ctx, 2); err != nil || cp.Type != BuyAll {
		t.Errorf("Coupon(2) = %+v, %v", cp, err)
	}
	if _, err := c.Coupon(ctx, 4); !errors.Is(err, ErrNotFound) {
		t.Errorf("Coupon(4) error = %v, want ErrNotFound", err)
	}
}

func couponIDs(cs []Coupon) []int {
	ids := make([]int, len(cs))
	for i, c := range cs {
		ids[i] = c.ID
	}
	slices.Sort(ids)
	return ids
}

func TestValidCoupons(t *testing.T) {
	ctx := context.Background()
	c := newFixture().catalog(t)
	tests := []struct {
		dep  Department
		day  Day
		want []int
	}{
		{Women, 99, nil},
		{Women, 100, []int{1}}, // first day of coupon 1
		{Women, 101, []int{1, 2}},
		{Women, 102, []int{1}}, // last day of coupon 1
		{Women, 103, nil},
		{Men, 90, []int{3}},
		{Men, 120, []int{3}},
		{Men, 121, nil},
		{Boys, 101, nil}, // nothing running is not an error
	}
	for _, tt := range tests {
		got, err := c.ValidCoupons(ctx, tt.dep, tt.day, nil)
		if err != nil {
			t.Errorf("ValidCoupons(%s, %d): %v", tt.dep, tt.day, err)
			continue
		}
		if ids := couponIDs(got); !slices.Equal(ids, tt.want) {
			t.Errorf("ValidCoupons(%s, %d) = %v, want %v", tt.dep, tt.day, ids, tt.want)
		}
		for _, cp := range got {
			if !cp.ValidOn(tt.day) || cp.Department != tt.dep {
				t.Errorf("ValidCoupons(%s, %d) returned coupon %+v", tt.dep, tt.day, cp)
			}
		}
	}

	// dst is appended to, not replaced.
	dst := []Coupon{{ID: 42}}
	dst, err := c.ValidCoupons(ctx, Men, 100, dst)
	if err != nil || len(dst) != 2 || dst[0].ID != 42 || dst[1].ID != 3 {
		t.Errorf("ValidCoupons with dst = %v, %v", dst, err)
	}

	for _, dep := range []Department{NoDepartment, Department(6), Department(255)} {
		if _, err := c.ValidCoupons(ctx, dep, 100, nil); !errors.Is(err, ErrNotFound) {
			t.Errorf("ValidCoupons(%d) error = %v, want ErrNotFound", dep, err)
		}
	}
}

func TestCouponProducts(t *testing.T) {
	ctx := context.Background()
	f := newFixture()
	f.coupons = append(f.coupons, Coupon{ID: 4, Type: JustDiscount, Department: Boys, HowMany: 1, Start: 1, End: 2})
	c := f.catalog(t)
	tests := []struct {
		coupon, limit int
		want          []int // product ids, in coupon_product order
	}{
		{1, AllProducts, []int{10}},
		{2, AllProducts, []int{11, 10}},
		{2, 1, []int{11}}, // the first ones
		{2, 2, []int{11, 10}},
		{2, 5, []int{11, 10}},
		{2, -1, []int{11, 10}}, // below 1: every one
		{3, AllProducts, []int{20}},
		{4, AllProducts, nil}, // known coupon without products
		{4, 3, nil},
	}
	for _, tt := range tests {
		ps, err := c.CouponProducts(ctx, tt.coupon, tt.limit)
		if err != nil {
			t.Errorf("CouponProducts(%d, %d): %v", tt.coupon, tt.limit, err)
			continue
		}
		var ids []int
		for _, p := range ps {
			ids = append(ids, p.ID)
		}
		if !slices.Equal(ids, tt.want) {
			t.Errorf("CouponProducts(%d, %d) = %v, want %v", tt.coupon, tt.limit, ids, tt.want)
		}
	}
	if _, err := c.CouponProducts(ctx, 99, AllProducts); !errors.Is(err, ErrNotFound) {
		t.Errorf("CouponProducts(99) error = %v, want ErrNotFound", err)
	}
}

func TestParseDepartment(t *testing.T) {
	tests := []struct {
		in   string
		want Department
		ok   bool
	}{
		{"Boys", Boys, true},
		{"Girls", Girls, true},
		{"Men", Men, true},
		{"Sports", Sports, true},
		{"Sport", Sports, true}, // the original demo's spelling
		{"Women", Women, true},
		{"women", NoDepartment, false},
		{"", NoDepartment, false},
		{"Kids", NoDepartment, false},
	}
	for _, tt := range tests {
		if got, ok := ParseDepartment(tt.in); got != tt.want || ok != tt.ok {
			t.Errorf("ParseDepartment(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
	for _, d := range Departments {
		if got, ok := ParseDepartment(d.String()); !ok || got != d {
			t.Errorf("ParseDepartment(%s.String()) = %v, %v", d, got, ok)
		}
	}
	if s := Department(9).String(); s != "Department(9)" {
		t.Errorf("Department(9).String() = %q", s)
	}
}

func TestParseCouponType(t *testing.T) {
	for _, s := range []string{"buy_more", "buy_all", "just_discount", "department"} {
		if got, ok := ParseCouponType(s); !ok || string(got) != s {
			t.Errorf("ParseCouponType(%q) = %q, %v", s, got, ok)
		}
	}
	for _, s := range []string{"", "Buy_more", "discount"} {
		if _, ok := ParseCouponType(s); ok {
			t.Errorf("ParseCouponType(%q) accepted", s)
		}
	}
}

func TestDay(t *testing.T) {
	tests := []struct {
		ts   int64
		want string
	}{
		{0, "1970-01-01"},
		{86399, "1970-01-01"},
		{86400, "1970-01-02"},
		{-1, "1969-12-31"},
		{-86399, "1969-12-31"},
		{-86400, "1969-12-31"},
		{-86401, "1969-12-30"},
		{1715780700, "2024-05-15"},
		{-2208988800, "1900-01-01"},
	}
	for _, tt := range tests {
		d := DayOf(tt.ts)
		if got := d.String(); got != tt.want {
			t.Errorf("DayOf(%d) = %s, want %s", tt.ts, got, tt.want)
		}
		if want := time.Unix(tt.ts, 0).UTC().Format(time.DateOnly); d.String() != want {
			t.Errorf("DayOf(%d) = %s, but time says %s", tt.ts, d, want)
		}
		back, err := ParseDay(tt.want)
		if err != nil || back != d {
			t.Errorf("ParseDay(%q) = %d, %v; want %d", tt.want, back, err, d)
		}
	}
	for _, s := range []string{"", "2024-13-01", "15.05.2024", "2024-05-15T00:00:00Z"} {
		if _, err := ParseDay(s); err == nil || !strings.Contains(err.Error(), s) {
			t.Errorf("ParseDay(%q) error = %v, want one quoting the input", s, err)
		}
	}
}

func TestCatalogLinks(t *testing.T) {
	f := newFixture()
	f.links = []CouponProduct{{2, 11}, {3, 20}, {1, 10}, {2, 10}}
	got := f.catalog(t).Links()
	want := []CouponProduct{{1, 10}, {2, 11}, {2, 10}, {3, 20}}
	if !slices.Equal(got, want) {
		t.Errorf("Links() = %v, want %v", got, want)
	}
}

// The fixture's coupons cover days 90 to 120; shifting keeps every coupon's
// length, the order of their starts and what is valid on which day, moved by
// the same days, and leaves the original catalog as it was.
func TestShiftCouponDates(t *testing.T) {
	c := newFixture().catalog(t)
	first, last, ok := c.CouponPeriod()
	if !ok || first != 90 || last != 120 {
		t.Fatalf("CouponPeriod() = %d, %d, %v; want 90, 120, true", first, last, ok)
	}
	const days = 20000
	s := c.ShiftCouponDates(days)
	if first, last, _ := s.CouponPeriod(); first != 90+days || last != 120+days {
		t.Errorf("shifted CouponPeriod() = %d, %d; want %d, %d", first, last, 90+days, 120+days)
	}
	for i, cp := range s.Coupons() {
		was := c.Coupons()[i]
		if cp.ID != was.ID || cp.Start != was.Start+days || cp.End != was.End+days {
			t.Errorf("coupon %d runs %d..%d shifted, %d..%d before", cp.ID, cp.Start, cp.End, was.Start, was.End)
		}
	}
	ctx := context.Background()
	for day := Day(89); day <= 121; day++ {
		for _, dep := range Departments {
			before, _ := c.ValidCoupons(ctx, dep, day, nil)
			after, _ := s.ValidCoupons(ctx, dep, day+days, nil)
			if !slices.Equal(couponIDs(before), couponIDs(after)) {
				t.Errorf("%s on day %d: %v valid before, %v on day %d shifted", dep, day, couponIDs(before), couponIDs(after), day+days)
			}
		}
	}
	if got, _ := s.Coupon(ctx, 1); got.Start != 100+days {
		t.Errorf("shifted Coupon(1) starts on %d, want %d", got.Start, 100+days)
	}
	if got, _ := c.Coupon(ctx, 1); got.Start != 100 {
		t.Errorf("the original catalog's coupon 1 starts on %d after the shift, want 100", got.Start)
	}
	empty, err := NewCatalog(nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := empty.CouponPeriod(); ok {
		t.Error("CouponPeriod of a catalog without coupons: ok")
	}
}

func TestCouponDateShift(t *testing.T) {
	const today = 1000
	tests := []struct {
		name        string
		mode        string
		first, last Day
		want        Day
	}{
		{"auto: all in the past, centred on today", CouponDatesAuto, 100, 300, 800},
		{"auto: ended yesterday", CouponDatesAuto, 990, 999, 6},
		{"auto: ends today, kept", CouponDatesAuto, 900, today, 0},
		{"auto: runs today, kept", CouponDatesAuto, 900, 1100, 0},
		{"auto: all in the future, kept", CouponDatesAuto, 1100, 1200, 0},
		{"shift: in the future", CouponDatesShift, 1100, 1200, -150},
		{"shift: already centred", CouponDatesShift, 900, 1100, 0},
		{"shift: covering today, centred", CouponDatesShift, 990, 1100, -45},
		{"keep: in the past", CouponDatesKeep, 100, 300, 0},
		{"one day", CouponDatesAuto, 5, 5, 995},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := CouponDateShift(tc.mode, tc.first, tc.last, today)
			if got != tc.want {
				t.Fatalf("CouponDateShift(%s, %d, %d, %d) = %d, want %d", tc.mode, tc.first, tc.last, today, got, tc.want)
			}
			if (got != 0 || tc.mode == CouponDatesShift) && (tc.first+got > today || tc.last+got < today) {
				t.Errorf("shifted period %d..%d does not cover today", tc.first+got, tc.last+got)
			}
		})
	}
}
