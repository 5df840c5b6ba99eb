package world

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/storeflow/storeflow/store"
)

// Config sizes a generated catalog. Zero values take the reference sizes.
type Config struct {
	Seed      int64     // same seed + same Reference → same catalog
	Reference time.Time // "today": coupons run around this date
	Customers int       // default 997
	Products  int       // default 3000 (about 600 per department)
	Coupons   int       // default 971
	Days      int       // days of redemption history before Reference (Generate); default 180
}

// Reference sizes of the original demo data (PRODUCT.md §2).
const (
	refCustomers = 997
	refProducts  = 3000
	refCoupons   = 971
	refLinks     = 17515 // coupon_product rows
)

// Upper bounds keep a mistyped size from eating the machine. The coupon bound
// is lower because coupons are laid end to end in time: at about three running
// per department, 100,000 coupons already span a few centuries.
const (
	maxGenCustomers = 1_000_000
	maxGenProducts  = 1_000_000
	maxGenCoupons   = 100_000
)

// minGenProducts gives every department two products, the least a buy_all
// coupon can ask for.
const minGenProducts = 2 * len(store.Departments)

// Every table draws from its own PCG stream, so resizing one table leaves the
// others as they were for the same seed.
const (
	streamCustomers uint64 = 0x9e3779b97f4a7c15
	streamProducts  uint64 = 0xbf58476d1ce4e5b9
	streamCoupons   uint64 = 0x94d049bb133111eb
	streamPrefs     uint64 = 0xd6e8feb86659fd93
	streamHistory   uint64 = 0xa0761d6478bd642f
)

// lanesPerDepartment is how many coupons of a department run at once: each
// lane is a chain of coupons, one after the other.
const lanesPerDepartment = 3

// GenerateCatalog builds a catalog in the seed's four tables: customers, coupons,
// products and the coupon_product links. The same config always yields the
// same catalog; nothing depends on the clock or on map order.
func GenerateCatalog(cfg Config) (*store.Catalog, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	seed := uint64(cfg.Seed)
	customers := genCustomers(rand.New(rand.NewPCG(seed, streamCustomers)), cfg.Customers)
	products := genProducts(rand.New(rand.NewPCG(seed, streamProducts)), cfg.Products)
	ref := store.DayOf(cfg.Reference.Unix())
	coupons, links := genCoupons(rand.New(rand.NewPCG(seed, streamCoupons)), cfg.Coupons, ref, products)
	return store.NewCatalog(customers, coupons, products, links)
}

// normalize fills in the reference sizes and refuses configs whose output would
// be unusable: negative or absurd sizes, and dates the wire format (YYYY-MM-DD)
// cannot carry.
func (cfg Config) normalize() (Config, error) {
	cfg.Customers = cmp.Or(cfg.Customers, refCustomers)
	cfg.Products = cmp.Or(cfg.Products, refProducts)
	cfg.Coupons = cmp.Or(cfg.Coupons, refCoupons)
	cfg.Days = cmp.Or(cfg.Days, defaultHistoryDays)
	var errs []error
	check := func(name string, v, lo, hi int) {
		if v < lo || v > hi {
			errs = append(errs, fmt.Errorf("%s = %d, want %d..%d", name, v, lo, hi))
		}
	}
	check("customers", cfg.Customers, 1, maxGenCustomers)
	check("products", cfg.Products, minGenProducts, maxGenProducts)
	check("coupons", cfg.Coupons, 1, maxGenCoupons)
	check("days", cfg.Days, 1, maxHistoryDays)
	// A zero Reference would silently put every coupon in year 1; the years
	// allowed leave room for the longest schedule on both sides.
	if cfg.Reference.IsZero() {
		errs = append(errs, errors.New("reference date is not set"))
	} else if y := cfg.Reference.UTC().Year(); y < 1000 || y > 9000 {
		errs = append(errs, fmt.Errorf("reference year %d, want 1000..9000", y))
	}
	if len(errs) > 0 {
		return cfg, fmt.Errorf("world: generate: %w", errors.Join(errs...))
	}
	return cfg, nil
}

// round2 rounds to cents, the precision of every price and percentage.
func round2(x float64) float64 { return math.Round(x*100) / 100 }

func clampF(x, lo, hi float64) float64 { return max(lo, min(hi, x)) }

// between returns a uniform integer in [lo, hi].
func between(r *rand.Rand, lo, hi int) int { return lo + r.IntN(hi-lo+1) }

// pick returns a uniform element of a non-empty list.
func pick[T any](r *rand.Rand, list []T) T { return list[r.IntN(len(list))] }

// genCustomers draws customers from one latent trait, their coupon affinity,
// so that the stats hang together: coupon hunters use more coupons, get bigger
// discounts and buy cheaper items.
func genCustomers(r *rand.Rand, n int) []store.Customer {
	out := make([]store.Customer, n)
	for i := range out {
		c := &out[i]
		c.ID = strconv.Itoa(i + 1)
		c.Gender = "M"
		if r.Float64() < 0.55 {
			c.Gender = "F"
		}
		c.Age = int(clampF(math.Round(r.NormFloat64()*15+42), 18, 90))

		// Purchase volume is long-tailed: most shoppers buy a few dozen
		// products, a few buy hundreds.
		c.UniqueProductsBought = int(clampF(math.Round(math.Exp(r.NormFloat64()*0.8+3.2)), 1, 400))
		c.TotalItemsBought = c.UniqueProductsBought + int(math.Round(float64(c.UniqueProductsBought)*r.Float64()*1.5))

		affinity := 0.0 // share of items bought with a coupon
		if r.Float64() >= 0.12 {
			u := r.Float64()
			affinity = u * u * 0.6
		}
		c.TotalCouponsUsed = int(math.Round(float64(c.TotalItemsBought) * affinity))
		if c.TotalCouponsUsed > 0 {
			w := int(math.Round(float64(c.TotalCouponsUsed) * (0.4 + 0.6*r.Float64())))
			c.UniqueProductsBoughtWithCoupons = max(1, min(w, c.UniqueProductsBought, c.TotalCouponsUsed))
			c.MeanDiscountReceived = round2(clampF(r.NormFloat64()*6+18+20*affinity, 5, 50))
		}

		price := math.Exp(r.NormFloat64()*0.45 + 3.0) // median about 20
		price *= 1 - 0.5*affinity
		price *= 0.85 + 0.3*float64(c.Age-18)/72 // older shoppers spend a little more
		c.MeanBuyPrice = round2(clampF(price, 5, 60))
	}
	return out
}

// productKind is one category of a department's assortment.
type productKind struct {
	category string
	sizes    []string
	lo, hi   float64  // price range
	audience []string // who it is "for"
}

var (
	forWomen = []string{"Women"}
	forMen   = []string{"Men"}
	forBoys  = []string{"Boys"}
	forGirls = []string{"Girls"}
	forAdult = []string{"Women", "Men"}
	forAll   = []string{"Women", "Men", "Kids"}
	kidSizes = []string{"2-12Y", "4-14Y", "2-8Y"}
	oneSize  = []string{"One size"}
)

// assortment lists each department's categories, indexed by Department.
var assortment = [store.DepartmentSlots][]productKind{
	store.Women: {
		{"Dresses", []string{"XS-L", "S-XL"}, 15, 70, forWomen},
		{"Denim cut-offs", []string{"S-XL", "24-32"}, 8, 35, forWomen},
		{"Blouses", []string{"XS-L", "S-XL"}, 10, 45, forWomen},
		{"Skirts", []string{"XS-L", "S-XL"}, 10, 45, forWomen},
		{"Cardigans", []string{"S-XL"}, 15, 60, forWomen},
		{"Leggings", []string{"XS-L", "S-XL"}, 5, 25, forWomen},
		{"Jeans", []string{"24-32", "26-34"}, 15, 60, forWomen},
		{"Sandals", []string{"36-41"}, 10, 50, forWomen},
		{"Handbags", oneSize, 12, 80, forWomen},
		{"Scarves", oneSize, 4, 25, forWomen},
	},
	store.Men: {
		{"T-shirts", []string{"S-XL", "S-XXL"}, 4, 25, forMen},
		{"Shirts", []string{"S-XL", "S-XXL"}, 12, 50, forMen},
		{"Chinos", []string{"28-36", "30-38"}, 15, 55, forMen},
		{"Jeans", []string{"28-36", "30-38"}, 15, 60, forMen},
		{"Hoodies", []string{"S-XL", "S-XXL"}, 15, 55, forMen},
		{"Blazers", []string{"S-XL"}, 30, 80, forMen},
		{"Sneakers", []string{"40-46"}, 20, 75, forMen},
		{"Belts", oneSize, 5, 30, forMen},
		{"Swim shorts", []string{"S-XL"}, 8, 30, forMen},
		{"Sweaters", []string{"S-XL", "S-XXL"}, 15, 60, forMen},
	},
	store.Boys: {
		{"T-shirts", kidSizes, 3, 18, forBoys},
		{"Shorts", kidSizes, 4, 20, forBoys},
		{"Hoodies", kidSizes, 8, 35, forBoys},
		{"Jeans", kidSizes, 8, 35, forBoys},
		{"Pyjamas", kidSizes, 5, 25, forBoys},
		{"Sneakers", []string{"28-38"}, 10, 45, forBoys},
		{"Caps", oneSize, 3, 15, forBoys},
		{"Jackets", kidSizes, 15, 60, forBoys},
	},
	store.Girls: {
		{"Dresses", kidSizes, 6, 40, forGirls},
		{"Leggings", kidSizes, 3, 15, forGirls},
		{"Tops", kidSizes, 3, 20, forGirls},
		{"Skirts", kidSizes, 5, 25, forGirls},
		{"Pyjamas", kidSizes, 5, 25, forGirls},
		{"Cardigans", kidSizes, 8, 35, forGirls},
		{"Sandals", []string{"26-36"}, 6, 35, forGirls},
		{"Hair accessories", oneSize, 2, 10, forGirls},
	},
	store.Sports: {
		{"Running shoes", []string{"36-46"}, 25, 80, forAdult},
		{"Yoga mats", oneSize, 8, 40, forAll},
		{"Track jackets", []string{"XS-XL", "S-XL"}, 15, 60, forAll},
		{"Sports bras", []string{"XS-L"}, 8, 35, forWomen},
		{"Gym shorts", []string{"XS-XL", "S-XL"}, 5, 25, forAdult},
		{"Training tights", []string{"XS-L", "S-XL"}, 10, 40, forAdult},
		{"Swimsuits", []string{"XS-L", "S-XL"}, 10, 45, forAll},
		{"Water bottles", oneSize, 2, 15, forAll},
		{"Tennis rackets", oneSize, 20, 80, forAdult},
		{"Cycling gloves", []string{"S-XL"}, 5, 25, forAdult},
	},
}

var (
	brands = []string{
		"NGESNEALAND", "VORLUNDE", "KASTELMIR", "ORBENFJELL", "TALISKARO",
		"MEVANTI", "BROLLSTAD", "QUINVERA", "SOLTRAKKA", "FENWORTH",
		"DAVENLY", "ISKARDO", "PELLMORA", "RUNEVIK", "ZANTORI",
		"HOLMBRAE", "ALVERETTE", "KORVAAN", "LINDQUARA", "MARESTO",
	}
	colours = []string{
		"Deep taupe", "Navy blue", "Charcoal", "Off white", "Burgundy",
		"Olive green", "Sky blue", "Coral", "Mustard", "Sand beige",
		"Dusty pink", "Forest green", "Slate grey", "Black", "Ivory",
		"Rust", "Teal", "Lavender", "Denim blue", "Cherry red",
		"Mint", "Camel", "Plum", "Stone",
	}
	vendors = []string{
		"TinyCottons", "NorthLoom Trading", "Brightstitch Co.", "Pellworth Textiles",
		"Marigold Apparel", "Fernhill Outfitters", "Quayside Garments", "Sunfold Fabrics",
		"Kestrel Sportswear", "Bluewren Supply", "Oakmere Clothing", "Tidewater Knits",
		"Copperline Goods", "Harbourlight Wear", "Silverbirch Textiles", "Meadowlark Kids",
		"Stonebridge Denim", "Ravenfield Leather", "Clearpeak Athletics", "Willowmere Fashion",
	}
	materials = []string{
		"Soft cotton", "Organic cotton", "Recycled polyester", "Stretch fabric",
		"Breathable mesh", "Merino wool blend", "Lightweight linen", "Durable nylon",
	}
	finishes = []string{
		"with a relaxed fit", "in a slim cut", "for everyday wear", "made to last",
		"that is easy to wash", "with reinforced seams", "in a classic style", "for all seasons",
	}
)

// genProducts fills the departments in equal blocks of consecutive ids
// (1..600 Boys, 601..1200 Girls, … at the reference size).
func genProducts(r *rand.Rand, n int) []store.Product {
	out := make([]store.Product, n)
	for i := range out {
		dep := store.Departments[i*len(store.Departments)/n]
		kind := pick(r, assortment[dep])
		name := fmt.Sprintf("%s - %s %s for %s", pick(r, brands), pick(r, colours), kind.category, pick(r, kind.audience))
		// Squaring the uniform draw puts more products at the cheap end of
		// a category's range, as in a real shop.
		u := r.Float64()
		price := kind.lo + (kind.hi-kind.lo)*u*u
		out[i] = store.Product{
			ID:          i + 1,
			Name:        name,
			Category:    kind.category,
			Sizes:       pick(r, kind.sizes),
			Vendor:      pick(r, vendors),
			Description: fmt.Sprintf("%s. %s %s.", name, pick(r, materials), pick(r, finishes)),
			BuyPrice:    round2(clampF(price, 2, 80)),
			Department:  dep,
		}
	}
	return out
}

// couponTypeShares is the type mix of the reference data, in a fixed order so
// that the rounding below is deterministic.
var couponTypeShares = [...]struct {
	t     store.CouponType
	share float64
}{
	{store.JustDiscount, 0.34},
	{store.BuyMore, 0.32},
	{store.BuyAll, 0.31},
	{store.DeptCoupon, 0.03},
}

// typeCounts splits n coupons over the types by the largest remainder, so the
// counts add up to n and sit as close to the shares as integers can.
func typeCounts(n int) [len(couponTypeShares)]int {
	var counts [len(couponTypeShares)]int
	var rem [len(couponTypeShares)]float64
	left := n
	for i, s := range couponTypeShares {
		x := s.share * float64(n)
		counts[i] = int(x)
		rem[i] = x - float64(counts[i])
		left -= counts[i]
	}
	order := []int{0, 1, 2, 3}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(rem[b], rem[a]) })
	for i := 0; left > 0; i++ {
		counts[order[i%len(order)]]++
		left--
	}
	return counts
}

// draft is a coupon before it gets its id: ids follow the start date, which is
// only known once every department is scheduled.
type draft struct {
	store.Coupon
	lane  int
	prods []int // indexes into products
}

// genCoupons schedules the coupons and picks their products.
//
// Each department runs lanesPerDepartment chains of coupons; a chain's next
// coupon starts around the day after the previous one ends, a few days early
// or late. Lane 0 never leaves a gap, so a department always has at least one
// coupon running within its span, and each chain is centred on ref, which puts
// about half of the coupons in the past.
func genCoupons(r *rand.Rand, n int, ref store.Day, products []store.Product) ([]store.Coupon, []store.CouponProduct) {
	counts := typeCounts(n)
	types := make([]store.CouponType, 0, n)
	for i, s := range couponTypeShares {
		for range counts[i] {
			types = append(types, s.t)
		}
	}
	r.Shuffle(len(types), func(i, j int) { types[i], types[j] = types[j], types[i] })

	// pools[d] holds the indexes of department d's products. Sampling
	// permutes a pool in place, which keeps later samples uniform.
	var pools [store.DepartmentSlots][]int
	for i, p := range products {
		pools[p.Department] = append(pools[p.Department], i)
	}
	sample := func(d store.Department, k int) []int {
		pool := pools[d]
		k = min(k, len(pool))
		for i := range k {
			j := i + r.IntN(len(pool)-i)
			pool[i], pool[j] = pool[j], pool[i]
		}
		return slices.Sorted(slices.Values(pool[:k]))
	}

	drafts := make([]draft, 0, n)
	var deptDrafts []int // drafts of department coupons, sized in a second pass
	links := 0
	for k, dep := range store.Departments {
		var laneDay [lanesPerDepartment]store.Day // next start, relative to the lane's first coupon
		first := len(drafts)
		for m, j := 0, k; j < n; m, j = m+1, j+len(store.Departments) {
			lane := m % lanesPerDepartment
			start := laneDay[lane]
			end := start + store.Day(between(r, 7, 30)) - 1
			slip := between(r, -3, 3)
			if lane == 0 {
				slip = between(r, -2, 0)
			}
			laneDay[lane] = end + 1 + store.Day(slip)

			d := draft{Coupon: store.Coupon{Type: types[j], Department: dep, Start: start, End: end}, lane: lane}
			switch d.Type {
			case store.JustDiscount:
				d.Discount = between(r, 5, 30)
				d.HowMany = 1
				d.prods = sample(dep, between(r, 1, 6))
			case store.BuyMore:
				d.Discount = between(r, 10, 40)
				d.HowMany = between(r, 2, 5)
				size := 1
				if r.IntN(2) == 1 {
					size = between(r, 2, 4)
				}
				d.prods = sample(dep, size)
			case store.BuyAll:
				d.Discount = between(r, 15, 50)
				d.prods = sample(dep, between(r, 2, 5))
				d.HowMany = len(d.prods)
			case store.DeptCoupon:
				d.Discount = between(r, 5, 25)
				d.HowMany = -1
				deptDrafts = append(deptDrafts, len(drafts))
			}
			links += len(d.prods)
			drafts = append(drafts, d)
		}
		// Centre every lane on ref: shift it by half its length.
		var shift [lanesPerDepartment]store.Day
		for lane, length := range laneDay {
			shift[lane] = ref - length/2
		}
		for i := first; i < len(drafts); i++ {
			drafts[i].Start += shift[drafts[i].lane]
			drafts[i].End += shift[drafts[i].lane]
		}
	}

	// Department coupons take up the rows the others leave of the reference
	// ratio (about 18 rows a coupon), so the link table lands near its
	// reference size; at the reference sizes that is most of a department.
	if len(deptDrafts) > 0 {
		target := int(math.Round(float64(refLinks) * float64(n) / refCoupons))
		per := float64(target-links) / float64(len(deptDrafts))
		for _, i := range deptDrafts {
			d := &drafts[i]
			size := len(pools[d.Department])
			want := int(math.Round(per * (0.85 + 0.3*r.Float64())))
			d.prods = sample(d.Department, max(want, min(50, size)))
		}
	}

	// Ids follow the calendar; (start, department, lane) is unique because a
	// lane's starts strictly increase.
	slices.SortFunc(drafts, func(a, b draft) int {
		return cmp.Or(cmp.Compare(a.Start, b.Start), cmp.Compare(a.Department, b.Department), cmp.Compare(a.lane, b.lane))
	})
	coupons := make([]store.Coupon, len(drafts))
	var rows []store.CouponProduct
	for i := range drafts {
		d := &drafts[i]
		d.ID = i + 1
		d.ProductsAvailable = len(d.prods)
		if len(d.prods) > 0 {
			sum := 0.0
			for _, pi := range d.prods {
				sum += products[pi].BuyPrice
			}
			d.ProductMeanPrice = round2(sum / float64(len(d.prods)))
		}
		coupons[i] = d.Coupon
		for _, pi := range d.prods {
			rows = append(rows, store.CouponProduct{CouponID: d.ID, ProductID: products[pi].ID})
		}
	}
	return coupons, rows
}
