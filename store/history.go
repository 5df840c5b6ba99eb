package store

// Preferences are one customer's hidden tastes, one row of
// customer_preferences: the ground truth of who uses which coupon, known only
// for a generated shop (store/world draws them and holds the rule that turns
// them into a probability). The catalog never shows them; customer_info only
// hints at them (gender, age, how often and how deeply the customer used
// coupons before), so a model trained on customer_info can approach the truth
// but never see it.
type Preferences struct {
	CustomerID string
	// Propensity is the customer's baseline appetite for coupons, in log-odds.
	Propensity float64
	// Department shifts the log-odds per department, indexed by Department
	// (index 0, NoDepartment, is unused).
	Department [DepartmentSlots]float64
	// Type shifts the log-odds per coupon type, indexed by TypeIndex.
	Type [len(CouponTypes)]float64
	// DiscountSensitivity is the log-odds gained per 10 points of discount
	// above 20 %.
	DiscountSensitivity float64
	// PriceTolerance is the log-odds lost per unit of |ln(price / usual price)|:
	// how much a coupon on goods far from the customer's usual price puts
	// them off.
	PriceTolerance float64
}

// HistoryEntry is one row of the redemption history (coupon_history): a coupon
// offered to a customer on a day, and whether the customer used it. It is
// what a model trains on.
type HistoryEntry struct {
	CustomerID string
	CouponID   int
	Day        Day
	Used       bool
}
