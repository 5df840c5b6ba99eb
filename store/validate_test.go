package store

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
)

// fieldsOf lists the fields of err's FieldErrors, in order.
func fieldsOf(err error) []string {
	var out []string
	for _, fe := range FieldErrors(err) {
		out = append(out, fe.Field)
	}
	return out
}

func TestValidate(t *testing.T) {
	customer := Customer{ID: "7", Gender: "F", Age: 30, MeanBuyPrice: 20.5, TotalCouponsUsed: 3, MeanDiscountReceived: 12.5,
		UniqueProductsBought: 10, UniqueProductsBoughtWithCoupons: 2, TotalItemsBought: 14}
	coupon := Coupon{ID: 1, Type: BuyMore, Department: Men, Discount: 20, HowMany: 2, Start: 100, End: 110,
		ProductMeanPrice: 9.5, ProductsAvailable: 3}
	product := Product{ID: 1, Name: "Shirt", BuyPrice: 9, Department: Men}
	tests := []struct {
		name   string
		record interface{ Validate() error }
		fields []string // the fields refused, in column order; none: valid
		want   string   // in the error
	}{
		{"customer", &customer, nil, ""},
		{"customer without an id", edit(customer, func(c *Customer) { c.ID = "" }), []string{"customer_id"}, `customer_id "": must not be empty`},
		{"customer's gender", edit(customer, func(c *Customer) { c.Gender = "X" }), []string{"gender"}, `gender "X": must be M or F`},
		{"negative age", edit(customer, func(c *Customer) { c.Age = -1 }), []string{"age"}, `age "-1": must not be negative`},
		{"negative price", edit(customer, func(c *Customer) { c.MeanBuyPrice = -12.68 }), []string{"mean_buy_price"}, `mean_buy_price "-12.68": must not be negative`},
		{"NaN discount", edit(customer, func(c *Customer) { c.MeanDiscountReceived = math.NaN() }), []string{"mean_discount_received"}, `"NaN": not a finite number`},
		{"infinite price", edit(customer, func(c *Customer) { c.MeanBuyPrice = math.Inf(1) }), []string{"mean_buy_price"}, `"+Inf": not a finite number`},
		{"every count of a customer", edit(customer, func(c *Customer) {
			c.TotalItemsBought, c.Gender, c.UniqueProductsBought, c.TotalCouponsUsed, c.UniqueProductsBoughtWithCoupons = -1, "", -1, -1, -1
		}), []string{"gender", "total_coupons_used", "unique_products_bought", "unique_products_bought_with_coupons", "total_items_bought"}, ""},
		{"coupon", &coupon, nil, ""},
		{"department coupon takes -1", edit(coupon, func(c *Coupon) { c.Type, c.HowMany = DeptCoupon, -1 }), nil, ""},
		{"-1 on a buy_more", edit(coupon, func(c *Coupon) { c.HowMany = -1 }), []string{"how_many_products_required"},
			`how_many_products_required "-1": must not be negative (only a department coupon takes -1)`},
		{"-2 on a department coupon", edit(coupon, func(c *Coupon) { c.Type, c.HowMany = DeptCoupon, -2 }), []string{"how_many_products_required"}, `"-2"`},
		{"unknown type", edit(coupon, func(c *Coupon) { c.Type = "bogo" }), []string{"coupon_type"}, `coupon_type "bogo": not a coupon type`},
		{"unknown type with -1", edit(coupon, func(c *Coupon) { c.Type, c.HowMany = "bogo", -1 }), []string{"coupon_type"}, ""},
		{"no department", edit(coupon, func(c *Coupon) { c.Department = NoDepartment }), []string{"department"}, `department "": not a department`},
		{"department out of range", edit(coupon, func(c *Coupon) { c.Department = 42 }), []string{"department"}, `"Department(42)"`},
		{"ends before it starts", edit(coupon, func(c *Coupon) { c.End = 99 }), []string{"end_date"}, `end_date "1970-04-10": before start_date 1970-04-11`},
		{"every number of a coupon", edit(coupon, func(c *Coupon) {
			c.ProductsAvailable, c.ProductMeanPrice, c.Discount = -1, math.Inf(-1), -5
		}), []string{"discount", "product_mean_price", "products_available"}, ""},
		{"product", &product, nil, ""},
		{"product without a department", edit(product, func(p *Product) { p.Department = NoDepartment }), []string{"department"}, "not a department"},
		{"product's negative price", edit(product, func(p *Product) { p.BuyPrice = -1 }), []string{"buy_price"}, `buy_price "-1": must not be negative`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.record.Validate()
			if got := fieldsOf(err); !slices.Equal(got, tt.fields) {
				t.Fatalf("Validate() = %v; want the fields %v refused", err, tt.fields)
			}
			if err != nil && len(FieldErrors(err)) != len(strings.Split(err.Error(), "\n")) {
				t.Errorf("Validate() = %q: something besides FieldErrors", err)
			}
			if tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("Validate() = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func edit[T any](v T, change func(*T)) *T {
	change(&v)
	return &v
}

// The row conversions parse what the rows carry as text and hold the record
// to the same rules; a rule across fields is left out when a field it reads
// did not parse.
func TestRowConversions(t *testing.T) {
	good := CouponRow{CouponID: 5, CouponType: "buy_more", Department: "Sport", Discount: 20, HowMany: 2,
		StartDate: "2026-11-20", EndDate: "2026-11-30", ProductMeanPrice: 19.99, ProductsAvailable: 4}
	tests := []struct {
		name   string
		row    CouponRow
		fields []string
	}{
		{"good, with the Sport alias", good, nil},
		{"unknown type, -1", func() CouponRow { r := good; r.CouponType, r.HowMany = "bogo", -1; return r }(), []string{"coupon_type"}},
		{"bad date, end before it", func() CouponRow { r := good; r.StartDate, r.EndDate = "2026-11-31", "2026-01-01"; return r }(), []string{"start_date"}},
		{"bad department, negative discount", func() CouponRow { r := good; r.Department, r.Discount = "Toys", -1; return r }(), []string{"department", "discount"}},
		{"end before start", func() CouponRow { r := good; r.EndDate = "2026-11-19"; return r }(), []string{"end_date"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tt.row.Coupon()
			if got := fieldsOf(err); !slices.Equal(got, tt.fields) {
				t.Fatalf("Coupon() = %v; want the fields %v refused", err, tt.fields)
			}
			if err != nil {
				return
			}
			if c.Department != Sports || c.Row().Department != "Sports" {
				t.Errorf("department %v, row %q: want Sports", c.Department, c.Row().Department)
			}
			want := good
			want.Department = "Sports"
			if back := c.Row(); back != want {
				t.Errorf("Row() = %+v", back)
			}
		})
	}

	cu := Customer{ID: "1", Gender: "M"}
	row := cu.Row()
	if got, err := row.Customer(); err != nil || got != cu {
		t.Errorf("customer round trip = %+v, %v", got, err)
	}
	row.Gender = "m"
	if _, err := row.Customer(); fieldsOf(err) == nil || !errors.As(err, new(*FieldError)) {
		t.Errorf("customer row with gender m: %v, want a FieldError", err)
	}
	p := Product{ID: 3, Name: "Cap", BuyPrice: 4, Department: Boys}
	prow := p.Row()
	if got, err := prow.Product(); err != nil || got != p {
		t.Errorf("product round trip = %+v, %v", got, err)
	}
	prow.Department = "Kids"
	if _, err := prow.Product(); !slices.Equal(fieldsOf(err), []string{"department"}) {
		t.Errorf("product row of Kids: %v, want the department refused", err)
	}
}

// A value quoted in an error is cut short.
func TestFieldErrorClipsTheValue(t *testing.T) {
	fe := &FieldError{Field: "department", Value: strings.Repeat("ä", 100), Reason: "not a department"}
	if want := `department "` + strings.Repeat("ä", 32) + `…": not a department`; fe.Error() != want {
		t.Errorf("Error() = %q, want %q", fe.Error(), want)
	}
}
