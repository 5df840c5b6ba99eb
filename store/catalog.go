package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
)

// CouponProduct is one row of coupon_product: a product the coupon covers.
// It is its own row form.
type CouponProduct struct {
	CouponID  int `json:"coupon_id"`
	ProductID int `json:"product_id"`
}

// Catalog is the central's data held in memory, indexed for the focus path:
// customers by id, each department's coupons by start day, each coupon's
// products. It is immutable after NewCatalog and safe for concurrent use.
type Catalog struct {
	customers   []Customer
	customerIdx map[string]int
	coupons     []Coupon // by ID
	couponIdx   map[int]int
	byDept      [DepartmentSlots][]int // indexes into coupons, by Start
	products    []Product
	productIdx  map[int]int
	links       map[int][]int // coupon id → indexes into products
	nLinks      int
}

// NewCatalog indexes the four tables and checks them: every record held to
// its Validate, unique ids, and every coupon_product row naming a coupon and
// a product that exist. A catalog that fails any check is refused as a
// whole.
func NewCatalog(customers []Customer, coupons []Coupon, products []Product, links []CouponProduct) (*Catalog, error) {
	c := &Catalog{
		customers:   slices.Clone(customers),
		customerIdx: make(map[string]int, len(customers)),
		coupons:     slices.Clone(coupons),
		couponIdx:   make(map[int]int, len(coupons)),
		products:    slices.Clone(products),
		productIdx:  make(map[int]int, len(products)),
		links:       make(map[int][]int, len(coupons)),
		nLinks:      len(links),
	}
	var errs []error
	for i, cu := range c.customers {
		if err := cu.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("customer_info row %d: %w", i+1, err))
			continue
		}
		if _, dup := c.customerIdx[cu.ID]; dup {
			errs = append(errs, fmt.Errorf("customer_info row %d: duplicate customer_id %s", i+1, cu.ID))
			continue
		}
		c.customerIdx[cu.ID] = i
	}
	slices.SortFunc(c.coupons, func(a, b Coupon) int { return cmp.Compare(a.ID, b.ID) })
	for i, cp := range c.coupons {
		if i > 0 && c.coupons[i-1].ID == cp.ID {
			errs = append(errs, fmt.Errorf("coupon_info: duplicate coupon_id %d", cp.ID))
			continue
		}
		if err := cp.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("coupon_info: coupon %d: %w", cp.ID, err))
			continue
		}
		c.couponIdx[cp.ID] = i
		c.byDept[cp.Department] = append(c.byDept[cp.Department], i)
	}
	for d := range c.byDept {
		slices.SortStableFunc(c.byDept[d], func(a, b int) int { return cmp.Compare(c.coupons[a].Start, c.coupons[b].Start) })
	}
	for i, p := range c.products {
		if err := p.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("product_info: product %d: %w", p.ID, err))
			continue
		}
		if _, dup := c.productIdx[p.ID]; dup {
			errs = append(errs, fmt.Errorf("product_info: duplicate product_id %d", p.ID))
			continue
		}
		c.productIdx[p.ID] = i
	}
	for i, l := range links {
		pi, okP := c.productIdx[l.ProductID]
		_, okC := c.couponIdx[l.CouponID]
		if !okP || !okC {
			errs = append(errs, fmt.Errorf("coupon_product row %d: coupon %d or product %d does not exist", i+1, l.CouponID, l.ProductID))
			continue
		}
		c.links[l.CouponID] = append(c.links[l.CouponID], pi)
	}
	if len(errs) > 0 {
		if len(errs) > 10 {
			errs = append(errs[:10], fmt.Errorf("… and %d more", len(errs)-10))
		}
		return nil, fmt.Errorf("store: catalog refused: %w", errors.Join(errs...))
	}
	return c, nil
}

// Sizes reports the number of rows in each of the four tables.
func (c *Catalog) Sizes() (customers, coupons, products, links int) {
	return len(c.customers), len(c.coupons), len(c.products), c.nLinks
}

// Customers returns every customer. The slice is shared: do not modify it.
func (c *Catalog) Customers() []Customer { return c.customers }

// Coupons returns every coupon, by id. The slice is shared: do not modify it.
func (c *Catalog) Coupons() []Coupon { return c.coupons }

// Products returns every product. The slice is shared: do not modify it.
func (c *Catalog) Products() []Product { return c.products }

// Links returns the coupon_product table by coupon id, each coupon's rows in
// the order NewCatalog was given them. The slice is built on every call.
func (c *Catalog) Links() []CouponProduct {
	out := make([]CouponProduct, 0, c.nLinks)
	for _, cp := range c.coupons {
		for _, pi := range c.links[cp.ID] {
			out = append(out, CouponProduct{CouponID: cp.ID, ProductID: c.products[pi].ID})
		}
	}
	return out
}

// Customer returns the customer with the given id, or ErrNotFound.
func (c *Catalog) Customer(_ context.Context, id string) (Customer, error) {
	i, ok := c.customerIdx[id]
	if !ok {
		return Customer{}, fmt.Errorf("customer %q: %w", id, ErrNotFound)
	}
	return c.customers[i], nil
}

// ValidCoupons appends to dst the department's coupons valid on day and returns it.
// An empty result is not an error: a department may have nothing running.
func (c *Catalog) ValidCoupons(_ context.Context, dep Department, day Day, dst []Coupon) ([]Coupon, error) {
	if !dep.Valid() {
		return dst, fmt.Errorf("department %d: %w", dep, ErrNotFound)
	}
	for _, i := range c.byDept[dep] {
		cp := &c.coupons[i]
		if cp.Start > day {
			break // sorted by start: nothing later can be valid yet
		}
		if cp.End >= day {
			dst = append(dst, *cp)
		}
	}
	return dst, nil
}

// Coupon returns the coupon with the given id, or ErrNotFound.
func (c *Catalog) Coupon(_ context.Context, id int) (Coupon, error) {
	i, ok := c.couponIdx[id]
	if !ok {
		return Coupon{}, fmt.Errorf("coupon %d: %w", id, ErrNotFound)
	}
	return c.coupons[i], nil
}

// CouponProducts returns the first limit products a coupon covers (every
// one for AllProducts), or ErrNotFound for an unknown coupon.
func (c *Catalog) CouponProducts(_ context.Context, couponID, limit int) ([]Product, error) {
	if _, ok := c.couponIdx[couponID]; !ok {
		return nil, fmt.Errorf("coupon %d: %w", couponID, ErrNotFound)
	}
	idx := c.links[couponID]
	if limit > 0 {
		idx = idx[:min(len(idx), limit)]
	}
	out := make([]Product, len(idx))
	for i, pi := range idx {
		out[i] = c.products[pi]
	}
	return out, nil
}

// CouponPeriod returns the days the catalog's coupons cover, from the first
// start to the last end; ok is false for a catalog without coupons.
func (c *Catalog) CouponPeriod() (first, last Day, ok bool) {
	for i, cp := range c.coupons {
		if i == 0 || cp.Start < first {
			first = cp.Start
		}
		if i == 0 || cp.End > last {
			last = cp.End
		}
	}
	return first, last, len(c.coupons) > 0
}

// ShiftCouponDates returns the catalog with every coupon's start and end
// moved by days: each coupon keeps its length, and the coupons their order.
// The rest of the catalog is shared with c, which stays as it was.
func (c *Catalog) ShiftCouponDates(days Day) *Catalog {
	out := *c
	out.coupons = slices.Clone(c.coupons)
	for i := range out.coupons {
		out.coupons[i].Start += days
		out.coupons[i].End += days
	}
	return &out
}
