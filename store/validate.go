package store

import (
	"errors"
	"math"
	"slices"
	"strconv"

	"github.com/storeflow/storeflow/internal/clip"
)

// The rules of the seed's tables are written here once: the CSV directory,
// the central's client, the cache's reads from Redis, the catalog and the
// /score decoder all hold records to them.

// A FieldError is a field of a record that breaks a rule of its table.
// Validate and the row conversions return every broken rule as a
// *FieldError, joined (errors.Join) in column order.
type FieldError struct {
	Field  string // the column: "how_many_products_required"
	Value  string // the field's value as text
	Reason string // what is wrong: "must not be negative"
}

func (e *FieldError) Error() string {
	return e.Field + " " + clip.Quote(e.Value, maxValueBytes) + ": " + e.Reason
}

// maxValueBytes is how much of a value an error quotes: a runaway field (a
// missing quote can swallow a whole file) must not swallow the message too.
const maxValueBytes = 64

// The reasons, as every reader of the tables words them.
const (
	reasonEmpty      = "must not be empty"
	reasonNegative   = "must not be negative"
	reasonHowMany    = "must not be negative (only a department coupon takes -1)"
	reasonNotFinite  = "not a finite number"
	reasonGender     = "must be M or F"
	reasonDepartment = "not a department (Boys, Girls, Men, Sports or Women)"
	reasonCouponType = "not a coupon type (buy_all, buy_more, department or just_discount)"
	reasonDate       = "not a YYYY-MM-DD date"
)

// problems collects the broken rules of one record.
type problems []error

func (p *problems) add(field, value, reason string) {
	*p = append(*p, &FieldError{Field: field, Value: value, Reason: reason})
}

func (p *problems) count(field string, v int) {
	if v < 0 {
		p.add(field, strconv.Itoa(v), reasonNegative)
	}
}

// amount checks a price, a mean or a percentage: finite, not negative.
func (p *problems) amount(field string, x float64) {
	switch {
	case math.IsNaN(x) || math.IsInf(x, 0):
		p.add(field, strconv.FormatFloat(x, 'g', -1, 64), reasonNotFinite)
	case x < 0:
		p.add(field, strconv.FormatFloat(x, 'g', -1, 64), reasonNegative)
	}
}

// department parses a department's name, noting a name it does not know.
func (p *problems) department(name string) Department {
	d, ok := ParseDepartment(name)
	if !ok {
		p.add("department", name, reasonDepartment)
	}
	return d
}

// day parses a YYYY-MM-DD date, noting one that is not; ok reports whether
// it parsed.
func (p *problems) day(field, date string) (d Day, ok bool) {
	d, err := ParseDay(date)
	if err != nil {
		p.add(field, date, reasonDate)
	}
	return d, err == nil
}

// err joins the problems in the order of columns.
func (p problems) err(columns []string) error {
	slices.SortStableFunc(p, func(a, b error) int {
		return slices.Index(columns, a.(*FieldError).Field) - slices.Index(columns, b.(*FieldError).Field)
	})
	return errors.Join(p...)
}

// Validate checks c against the rules of customer_info: an id, a gender of
// M or F, counts and amounts that are not negative, amounts finite.
func (c *Customer) Validate() error {
	var p problems
	if c.ID == "" {
		p.add("customer_id", c.ID, reasonEmpty)
	}
	if c.Gender != "M" && c.Gender != "F" {
		p.add("gender", c.Gender, reasonGender)
	}
	p.count("age", c.Age)
	p.amount("mean_buy_price", c.MeanBuyPrice)
	p.count("total_coupons_used", c.TotalCouponsUsed)
	p.amount("mean_discount_received", c.MeanDiscountReceived)
	p.count("unique_products_bought", c.UniqueProductsBought)
	p.count("unique_products_bought_with_coupons", c.UniqueProductsBoughtWithCoupons)
	p.count("total_items_bought", c.TotalItemsBought)
	return p.err(CustomerColumns)
}

// Validate checks c against the rules of coupon_info: a known type and
// department, counts that are not negative (how_many_products_required is
// -1 on a department coupon and only there), a finite product_mean_price,
// and an end_date no earlier than the start_date.
func (c *Coupon) Validate() error {
	var p problems
	_, typeKnown := ParseCouponType(string(c.Type))
	if !typeKnown {
		p.add("coupon_type", string(c.Type), reasonCouponType)
	}
	if !c.Department.Valid() {
		p.add("department", c.Department.String(), reasonDepartment)
	}
	c.checkRules(&p, typeKnown, true)
	return p.err(CouponColumns)
}

// checkRules checks what Validate checks beyond the type and department.
// A rule across fields is left out when a field it reads is unknown: the
// type for how_many_products_required, the dates for their order.
func (c *Coupon) checkRules(p *problems, typeKnown, datesKnown bool) {
	p.count("discount", c.Discount)
	if typeKnown && c.HowMany < 0 && !(c.HowMany == -1 && c.Type == DeptCoupon) {
		p.add("how_many_products_required", strconv.Itoa(c.HowMany), reasonHowMany)
	}
	if datesKnown && c.End < c.Start {
		p.add("end_date", c.End.String(), "before start_date "+c.Start.String())
	}
	p.amount("product_mean_price", c.ProductMeanPrice)
	p.count("products_available", c.ProductsAvailable)
}

// Validate checks p against the rules of product_info: a known department
// and a finite buy_price that is not negative.
func (p *Product) Validate() error {
	var ps problems
	if !p.Department.Valid() {
		ps.add("department", p.Department.String(), reasonDepartment)
	}
	ps.amount("buy_price", p.BuyPrice)
	return ps.err(ProductColumns)
}

// FieldErrors lists the broken rules in err, as Validate and the row
// conversions return them.
func FieldErrors(err error) []*FieldError {
	var out []*FieldError
	var walk func(error)
	walk = func(err error) {
		switch e := err.(type) {
		case *FieldError:
			out = append(out, e)
		case interface{ Unwrap() []error }:
			for _, e := range e.Unwrap() {
				walk(e)
			}
		}
	}
	walk(err)
	return out
}
