package store

// The row forms are the seed's tables as JSON carries them (the central API,
// the cache in Redis) and as CSV lays them out: one field per column, named
// and ordered as the column, names and dates as text. Each record has one
// conversion to its row and one back.

// CustomerColumns, CouponColumns, ProductColumns and CouponProductColumns are
// the tables' columns in the seed's order: the CSV header and the JSON
// field names of the rows.
var (
	CustomerColumns = []string{
		"customer_id", "gender", "age", "mean_buy_price", "total_coupons_used", "mean_discount_received",
		"unique_products_bought", "unique_products_bought_with_coupons", "total_items_bought",
	}
	CouponColumns = []string{
		"coupon_id", "coupon_type", "department", "discount", "how_many_products_required",
		"start_date", "end_date", "product_mean_price", "products_available",
	}
	ProductColumns       = []string{"product_id", "name", "category", "sizes", "vendor", "description", "buy_price", "department"}
	CouponProductColumns = []string{"coupon_id", "product_id"}
)

// CustomerRow is a customer_info row.
type CustomerRow struct {
	CustomerID                      string  `json:"customer_id"`
	Gender                          string  `json:"gender"`
	Age                             int     `json:"age"`
	MeanBuyPrice                    float64 `json:"mean_buy_price"`
	TotalCouponsUsed                int     `json:"total_coupons_used"`
	MeanDiscountReceived            float64 `json:"mean_discount_received"`
	UniqueProductsBought            int     `json:"unique_products_bought"`
	UniqueProductsBoughtWithCoupons int     `json:"unique_products_bought_with_coupons"`
	TotalItemsBought                int     `json:"total_items_bought"`
}

// CouponRow is a coupon_info row.
type CouponRow struct {
	CouponID          int     `json:"coupon_id"`
	CouponType        string  `json:"coupon_type"`
	Department        string  `json:"department"`
	Discount          int     `json:"discount"`
	HowMany           int     `json:"how_many_products_required"`
	StartDate         string  `json:"start_date"`
	EndDate           string  `json:"end_date"`
	ProductMeanPrice  float64 `json:"product_mean_price"`
	ProductsAvailable int     `json:"products_available"`
}

// ProductRow is a product_info row.
type ProductRow struct {
	ProductID   int     `json:"product_id"`
	Name        string  `json:"name"`
	Category    string  `json:"category"`
	Sizes       string  `json:"sizes"`
	Vendor      string  `json:"vendor"`
	Description string  `json:"description"`
	BuyPrice    float64 `json:"buy_price"`
	Department  string  `json:"department"`
}

// Row returns the customer's row.
func (c *Customer) Row() CustomerRow {
	return CustomerRow{
		CustomerID: c.ID, Gender: c.Gender, Age: c.Age, MeanBuyPrice: c.MeanBuyPrice,
		TotalCouponsUsed: c.TotalCouponsUsed, MeanDiscountReceived: c.MeanDiscountReceived,
		UniqueProductsBought: c.UniqueProductsBought, UniqueProductsBoughtWithCoupons: c.UniqueProductsBoughtWithCoupons,
		TotalItemsBought: c.TotalItemsBought,
	}
}

// Row returns the coupon's row.
func (c *Coupon) Row() CouponRow {
	return CouponRow{
		CouponID: c.ID, CouponType: string(c.Type), Department: c.Department.String(), Discount: c.Discount,
		HowMany: c.HowMany, StartDate: c.Start.String(), EndDate: c.End.String(),
		ProductMeanPrice: c.ProductMeanPrice, ProductsAvailable: c.ProductsAvailable,
	}
}

// Row returns the product's row.
func (p *Product) Row() ProductRow {
	return ProductRow{
		ProductID: p.ID, Name: p.Name, Category: p.Category, Sizes: p.Sizes, Vendor: p.Vendor,
		Description: p.Description, BuyPrice: p.BuyPrice, Department: p.Department.String(),
	}
}

// Customer returns the row's customer, held to Validate.
func (r *CustomerRow) Customer() (Customer, error) {
	c := Customer{
		ID: r.CustomerID, Gender: r.Gender, Age: r.Age, MeanBuyPrice: r.MeanBuyPrice,
		TotalCouponsUsed: r.TotalCouponsUsed, MeanDiscountReceived: r.MeanDiscountReceived,
		UniqueProductsBought: r.UniqueProductsBought, UniqueProductsBoughtWithCoupons: r.UniqueProductsBoughtWithCoupons,
		TotalItemsBought: r.TotalItemsBought,
	}
	if err := c.Validate(); err != nil {
		return Customer{}, err
	}
	return c, nil
}

// Coupon parses the row's type, department and dates and returns its
// coupon, held to Validate.
func (r *CouponRow) Coupon() (Coupon, error) {
	var p problems
	typ, typeKnown := ParseCouponType(r.CouponType)
	if !typeKnown {
		p.add("coupon_type", r.CouponType, reasonCouponType)
	}
	start, startKnown := p.day("start_date", r.StartDate)
	end, endKnown := p.day("end_date", r.EndDate)
	c := Coupon{
		ID: r.CouponID, Type: typ, Department: p.department(r.Department), Discount: r.Discount, HowMany: r.HowMany,
		Start: start, End: end, ProductMeanPrice: r.ProductMeanPrice, ProductsAvailable: r.ProductsAvailable,
	}
	c.checkRules(&p, typeKnown, startKnown && endKnown)
	if err := p.err(CouponColumns); err != nil {
		return Coupon{}, err
	}
	return c, nil
}

// Product parses the row's department and returns its product, held to
// Validate.
func (r *ProductRow) Product() (Product, error) {
	var p problems
	pr := Product{
		ID: r.ProductID, Name: r.Name, Category: r.Category, Sizes: r.Sizes, Vendor: r.Vendor,
		Description: r.Description, BuyPrice: r.BuyPrice, Department: p.department(r.Department),
	}
	p.amount("buy_price", pr.BuyPrice)
	if err := p.err(ProductColumns); err != nil {
		return Product{}, err
	}
	return pr, nil
}
