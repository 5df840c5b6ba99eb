package recommender

import "github.com/storeflow/storeflow/store"

// NumFeatures is the width of one feature row: the customer's 8 context
// features followed by the coupon's 6 (PRODUCT.md §4).
const NumFeatures = 14

// FeatureNames is the feature order of a row, as the model, the /score server
// and the Open Inference Protocol input all use it.
var FeatureNames = [NumFeatures]string{
	"gender", // 0 = F, 1 = M
	"age",
	"mean_buy_price",
	"total_coupons_used",
	"mean_discount_received",
	"unique_products_bought",
	"unique_products_bought_with_coupons",
	"total_items_bought",
	"coupon_type", // store.CouponTypes order: 0 buy_all, 1 buy_more, 2 department, 3 just_discount
	"department",  // 0 Boys, 1 Girls, 2 Men, 3 Sports, 4 Women
	"discount",
	"how_many_products_required",
	"product_mean_price",
	"products_available",
}

// Feature indexes, for code that reads a row.
const (
	fGender = iota
	fAge
	fMeanBuyPrice
	fTotalCouponsUsed
	fMeanDiscountReceived
	fUniqueProductsBought
	fUniqueProductsBoughtWithCoupons
	fTotalItemsBought
	fCouponType
	fDepartment
	fDiscount
	fHowMany
	fProductMeanPrice
	fProductsAvailable
)

// EncodeCustomer writes the customer's 8 features into row[0:8]. Amounts
// beyond float32's range (a catalog may hold any finite number) saturate, so a
// row of a finite customer and coupon is finite.
func EncodeCustomer(c *store.Customer, row []float32) {
	_ = row[fTotalItemsBought]
	row[fGender] = 0
	if c.Gender == "M" {
		row[fGender] = 1
	}
	row[fAge] = float32(c.Age)
	row[fMeanBuyPrice] = toFloat32(c.MeanBuyPrice)
	row[fTotalCouponsUsed] = float32(c.TotalCouponsUsed)
	row[fMeanDiscountReceived] = toFloat32(c.MeanDiscountReceived)
	row[fUniqueProductsBought] = float32(c.UniqueProductsBought)
	row[fUniqueProductsBoughtWithCoupons] = float32(c.UniqueProductsBoughtWithCoupons)
	row[fTotalItemsBought] = float32(c.TotalItemsBought)
}

// EncodeCoupon writes the coupon's 6 features into row[8:14], saturating as
// EncodeCustomer does.
func EncodeCoupon(cp *store.Coupon, row []float32) {
	_ = row[fProductsAvailable]
	row[fCouponType] = float32(store.TypeIndex(cp.Type))
	row[fDepartment] = float32(int(cp.Department) - 1)
	row[fDiscount] = float32(cp.Discount)
	row[fHowMany] = float32(cp.HowMany)
	row[fProductMeanPrice] = toFloat32(cp.ProductMeanPrice)
	row[fProductsAvailable] = float32(cp.ProductsAvailable)
}

// Encode writes one full feature row for customer c and coupon cp into row,
// which must hold NumFeatures values.
func Encode(c *store.Customer, cp *store.Coupon, row []float32) {
	EncodeCustomer(c, row)
	EncodeCoupon(cp, row)
}
