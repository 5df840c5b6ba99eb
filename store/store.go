// Package store owns the shop's domain: its plan (the floor, the departments,
// the entrance and the exit); its records — customers, coupons, products and
// the links between coupons and products, each with one row form (the seed's
// columns) and one set of rules (Validate) that every reader holds them to,
// and the two tables only a generated shop has, a customer's hidden
// preferences and the redemption history; the Catalog that indexes them (the
// data the seed documents call "the central"); and Source, what the focus
// path reads them through.
//
// What is built on the domain has a room of its own below: store/central (the
// central's HTTP API, server and client), store/cache (Redis or an
// in-process cache in front of a Source), store/csvdir (the tables as a
// directory of CSV files) and store/world (the synthetic shop: generated
// catalog, ground truth, history). The rooms import store, never each other.
package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// ErrNotFound is returned when a customer, department, coupon or product is not
// in the catalog. Callers count it and go on; it is never fatal.
var ErrNotFound = errors.New("store: not found")

// Department is one of the shop's five departments.
type Department uint8

// The departments, in the order the seed lists them. NoDepartment is the zero
// value: an aisle, the entrance or the exit.
const (
	NoDepartment Department = iota
	Boys
	Girls
	Men
	Sports
	Women
)

// Departments lists every real department, in a stable order.
var Departments = [...]Department{Boys, Girls, Men, Sports, Women}

var departmentNames = [...]string{"", "Boys", "Girls", "Men", "Sports", "Women"}

// DepartmentSlots is the length of an array indexed by Department; slot 0,
// NoDepartment, stays unused.
const DepartmentSlots = len(departmentNames)

// Valid reports whether d is one of the five departments.
func (d Department) Valid() bool { return d != NoDepartment && int(d) < len(departmentNames) }

// String returns the department's wire name ("Sports", never the alias "Sport").
func (d Department) String() string {
	if int(d) < len(departmentNames) {
		return departmentNames[d]
	}
	return fmt.Sprintf("Department(%d)", uint8(d))
}

// ParseDepartment maps a wire name to a Department. The original demo data
// spells Sports as "Sport"; both are accepted.
func ParseDepartment(s string) (Department, bool) {
	switch s {
	case "Boys":
		return Boys, true
	case "Girls":
		return Girls, true
	case "Men":
		return Men, true
	case "Sports", "Sport":
		return Sports, true
	case "Women":
		return Women, true
	}
	return NoDepartment, false
}

// Day is a calendar day in UTC, counted from the unix epoch. Coupons are valid
// on whole days, so comparing days is all the date logic the hot path needs.
type Day int32

// DayOf returns the UTC day that holds unix second ts.
func DayOf(ts int64) Day {
	if ts < 0 {
		return Day((ts - 86399) / 86400)
	}
	return Day(ts / 86400)
}

// ParseDay parses a YYYY-MM-DD date.
func ParseDay(s string) (Day, error) {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return 0, fmt.Errorf("date %q is not YYYY-MM-DD", s)
	}
	return DayOf(t.Unix()), nil
}

// String formats the day as YYYY-MM-DD, the wire format of coupon dates.
func (d Day) String() string {
	return time.Unix(int64(d)*86400, 0).UTC().Format(time.DateOnly)
}

// Customer is one row of customer_info: who the shopper is, as the model sees it.
type Customer struct {
	ID                              string  // customer_id
	Gender                          string  // "M" or "F"
	Age                             int     // 18–90 in the reference data
	MeanBuyPrice                    float64 // mean price of items bought
	TotalCouponsUsed                int     //
	MeanDiscountReceived            float64 // percent
	UniqueProductsBought            int     //
	UniqueProductsBoughtWithCoupons int     //
	TotalItemsBought                int     //
}

// CouponType is the kind of deal a coupon offers.
type CouponType string

// The coupon types of the seed.
const (
	BuyMore      CouponType = "buy_more"      // how_many items of the same product
	BuyAll       CouponType = "buy_all"       // all how_many products of the list
	JustDiscount CouponType = "just_discount" // how_many is always 1
	DeptCoupon   CouponType = "department"    // how_many is always -1
)

// ParseCouponType validates a coupon type name.
func ParseCouponType(s string) (CouponType, bool) {
	switch t := CouponType(s); t {
	case BuyMore, BuyAll, JustDiscount, DeptCoupon:
		return t, true
	}
	return "", false
}

// CouponTypes lists the coupon types in their feature order (alphabetical, as
// a label encoder sorts them). TypeIndex maps a type to its place here.
var CouponTypes = [...]CouponType{BuyAll, BuyMore, DeptCoupon, JustDiscount}

// TypeIndex returns the type's index in CouponTypes, or -1.
func TypeIndex(t CouponType) int {
	switch t {
	case BuyAll:
		return 0
	case BuyMore:
		return 1
	case DeptCoupon:
		return 2
	case JustDiscount:
		return 3
	}
	return -1
}

// Coupon is one row of coupon_info.
type Coupon struct {
	ID                int        // coupon_id
	Type              CouponType // coupon_type
	Department        Department // department
	Discount          int        // percent
	HowMany           int        // how_many_products_required
	Start             Day        // start_date, inclusive
	End               Day        // end_date, inclusive
	ProductMeanPrice  float64    // product_mean_price
	ProductsAvailable int        // products_available
}

// ValidOn reports whether the coupon can be used on day d.
func (c *Coupon) ValidOn(d Day) bool { return c.Start <= d && d <= c.End }

// Product is one row of product_info (products.csv).
type Product struct {
	ID          int        // product_id
	Name        string     //
	Category    string     //
	Sizes       string     //
	Vendor      string     //
	Description string     //
	BuyPrice    float64    // regular item price
	Department  Department //
}

// Config holds the shop's settings.
type Config struct {
	Plan        string `env:"STORE_PLAN" envDefault:"grid"` // grid or original
	Width       int    `env:"STORE_WIDTH" envDefault:"6"`   // grid plan cells across
	Height      int    `env:"STORE_HEIGHT" envDefault:"10"` // grid plan cells deep
	CatalogSeed int64  `env:"CATALOG_SEED" envDefault:"1"`  // seed of the generated demo catalog
	DataDir     string `env:"DATA_DIR"`                     // load the catalog from CSV files here instead of generating it

	// What the catalog's coupon dates become at start: auto, shift or keep (CouponDateShift).
	CouponDates string `env:"COUPON_DATES" envDefault:"auto"`

	// The central and the cache in front of it (issue 5).
	CentralURL     string        `env:"CENTRAL_URL"`                          // fetch context from this central over HTTP; empty: the in-process catalog
	CentralTimeout time.Duration `env:"CENTRAL_TIMEOUT" envDefault:"1s"`      // per request to the central
	RedisURL       string        `env:"REDIS_URL"`                            // redis:// or rediss://; empty: a bounded in-process cache
	RedisPassword  string        `env:"REDIS_PASSWORD"`                       // used when REDIS_URL carries none; never logged
	RedisCluster   bool          `env:"REDIS_CLUSTER" envDefault:"false"`     // REDIS_URL names (some) nodes of a Redis Cluster
	CacheTTL       time.Duration `env:"CACHE_TTL" envDefault:"1h"`            // how long cached context, coupons and products live
	CachePrefix    string        `env:"CACHE_PREFIX" envDefault:"storeflow:"` // prefix of every Redis key
	CacheMaxItems  int           `env:"CACHE_MAX_ITEMS" envDefault:"100000"`  // entries of the in-process cache, at most

	// What storeflow may ask of a remote central (CentralLimits).
	CentralMaxRPS          int           `env:"CENTRAL_MAX_RPS" envDefault:"200"`         // requests a second, at most; 0: no bound
	CentralBreakerFailures int           `env:"CENTRAL_BREAKER_FAILURES" envDefault:"5"`  // failed requests in a row that open the breaker; 0: never open
	CentralBreakerCooldown time.Duration `env:"CENTRAL_BREAKER_COOLDOWN" envDefault:"1s"` // open this long before a probe
}

// The COUPON_DATES settings: what a catalog's coupon dates become at start.
const (
	CouponDatesAuto  = "auto"  // shift a catalog whose coupons all ended before today; keep any other
	CouponDatesShift = "shift" // always shift
	CouponDatesKeep  = "keep"  // the dates as the data has them
)

// CouponDateShift returns the days by which mode moves the dates of coupons
// that cover first to last (the first start to the last end), given today.
// A shift centres that period on today: the coupons valid today are those of
// the period's middle, and as many days of the catalog lie ahead as behind,
// so a demo started on any day runs for half the period. auto shifts only a
// catalog wholly in the past (the original demo's coupons ran 2010 to 2013),
// never one that reaches today or later, so a shop's own current data is
// served as it is.
func CouponDateShift(mode string, first, last, today Day) Day {
	if mode == CouponDatesKeep || (mode == CouponDatesAuto && last >= today) {
		return 0
	}
	return today - (first + (last-first)/2)
}

// Source is where the focus path gets its data: the in-process Catalog, a
// remote central, or a cache in front of either. Unknown customers, coupons
// and departments are ErrNotFound; a source that cannot answer returns
// ErrUnavailable.
type Source interface {
	Customer(ctx context.Context, id string) (Customer, error)
	ValidCoupons(ctx context.Context, dep Department, day Day, dst []Coupon) ([]Coupon, error)
	// CouponProducts returns the first limit products the coupon covers,
	// in the coupon's order, or every one for AllProducts (any limit < 1):
	// a coupon message lists a few, and a department coupon covers
	// hundreds.
	CouponProducts(ctx context.Context, couponID, limit int) ([]Product, error)
}

// AllProducts is the limit of CouponProducts that asks for every product of
// the coupon.
const AllProducts = 0

// ErrUnavailable is returned when the central (or the cache's backing
// source) cannot be reached or answers with an error. Callers count it and
// go on.
var ErrUnavailable = errors.New("store: central unavailable")

// ErrLimited is returned, without asking the central, when the requests
// storeflow may make of it this second (CENTRAL_MAX_RPS) are spent. Callers
// count it and go on.
var ErrLimited = errors.New("store: central request limit reached")

// Validate checks the values; errors name the variable and the value.
func (c Config) Validate() error {
	var errs []error
	switch c.Plan {
	case PlanGrid:
		if c.Width < MinGridWidth || c.Width > 1000 {
			errs = append(errs, fmt.Errorf("STORE_WIDTH=%d: must be between %d and 1000", c.Width, MinGridWidth))
		}
		if c.Height < MinGridHeight || c.Height > 1000 {
			errs = append(errs, fmt.Errorf("STORE_HEIGHT=%d: must be between %d and 1000", c.Height, MinGridHeight))
		}
	case PlanOriginal:
	default:
		errs = append(errs, fmt.Errorf("STORE_PLAN=%q: must be %q or %q", c.Plan, PlanGrid, PlanOriginal))
	}
	switch c.CouponDates {
	case CouponDatesAuto, CouponDatesShift, CouponDatesKeep:
	default:
		errs = append(errs, fmt.Errorf("COUPON_DATES=%q: must be %q, %q or %q", c.CouponDates, CouponDatesAuto, CouponDatesShift, CouponDatesKeep))
	}
	if c.CentralURL != "" {
		if u, err := url.Parse(c.CentralURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, errors.New("CENTRAL_URL: want an http:// or https:// URL with a host"))
		}
	}
	if c.CentralTimeout <= 0 {
		errs = append(errs, fmt.Errorf("CENTRAL_TIMEOUT=%s: must be positive", c.CentralTimeout))
	}
	errs = append(errs, c.CentralLimits().Validate())
	if c.RedisURL != "" {
		// The URL may carry a password: never echo it.
		if u, err := url.Parse(c.RedisURL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
			errs = append(errs, errors.New("REDIS_URL: want redis://[user:password@]host:port[/db] or rediss://… (TLS)"))
		}
	} else if c.RedisCluster {
		errs = append(errs, errors.New("REDIS_CLUSTER=true: needs REDIS_URL, one or more nodes of the cluster (redis://host:port?addr=host2:port)"))
	}
	if c.CacheTTL < time.Second {
		errs = append(errs, fmt.Errorf("CACHE_TTL=%s: must be at least 1s", c.CacheTTL))
	}
	if c.CachePrefix == "" || len(c.CachePrefix) > 64 || strings.ContainsAny(c.CachePrefix, " \t\r\n*?[]") {
		errs = append(errs, fmt.Errorf("CACHE_PREFIX=%q: want 1 to 64 characters without spaces or glob characters", c.CachePrefix))
	}
	if c.CacheMaxItems < 1 || c.CacheMaxItems > 100_000_000 {
		errs = append(errs, fmt.Errorf("CACHE_MAX_ITEMS=%d: must be between 1 and 100000000", c.CacheMaxItems))
	}
	return errors.Join(errs...)
}
