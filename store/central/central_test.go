package central

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/storeflow/storeflow/internal/breaker"
	"github.com/storeflow/storeflow/store"
	"github.com/storeflow/storeflow/store/world"
)

// centralReference is "today" of the generated catalog the central tests serve.
var centralReference = time.Date(2026, 11, 22, 9, 30, 0, 0, time.UTC)

func centralGenerated(t testing.TB) *store.Catalog {
	t.Helper()
	c, err := world.GenerateCatalog(world.Config{Seed: 7, Reference: centralReference, Customers: 25, Products: 60, Coupons: 45})
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return c
}

func centralDay(t testing.TB, s string) store.Day {
	t.Helper()
	d, err := store.ParseDay(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// centralSmall is a hand-made catalog whose JSON is spelled out in the tests,
// with the awkward values: ids that need escaping, floats that do not print
// short, a department coupon, an empty coupon.
func centralSmall(t testing.TB) *store.Catalog {
	t.Helper()
	customers := []store.Customer{
		{ID: "1", Gender: "F", Age: 28, MeanBuyPrice: 12.68, TotalCouponsUsed: 22, MeanDiscountReceived: 30.61,
			UniqueProductsBought: 59, UniqueProductsBoughtWithCoupons: 19, TotalItemsBought: 123},
		{ID: "a/b c?d#e%f&é", Gender: "M", Age: 90, MeanBuyPrice: 0.30000000000000004, MeanDiscountReceived: 1.0 / 3},
		{ID: strings.Repeat("x", MaxCustomerIDBytes), Gender: "M", MeanBuyPrice: math.MaxFloat64, MeanDiscountReceived: 5e-324},
	}
	coupons := []store.Coupon{
		{ID: 5, Type: store.BuyMore, Department: store.Sports, Discount: 20, HowMany: 2, Start: centralDay(t, "2026-11-20"),
			End: centralDay(t, "2026-11-30"), ProductMeanPrice: 19.99, ProductsAvailable: 1},
		{ID: 6, Type: store.DeptCoupon, Department: store.Sports, Discount: 10, HowMany: -1, Start: centralDay(t, "2026-11-22"),
			End: centralDay(t, "2026-11-22"), ProductMeanPrice: 1e-7, ProductsAvailable: 0},
		{ID: -3, Type: store.JustDiscount, Department: store.Girls, Discount: 0, HowMany: 1, Start: centralDay(t, "2026-01-01"),
			End: centralDay(t, "2026-12-31"), ProductMeanPrice: 0, ProductsAvailable: 0},
	}
	products := []store.Product{
		{ID: 7, Name: "Runner", Category: "Shoes", Sizes: "40-45", Vendor: "Acme", Description: `Light "fast" shoe`,
			BuyPrice: 59.9, Department: store.Sports},
	}
	cat, err := store.NewCatalog(customers, coupons, products, []store.CouponProduct{{CouponID: 5, ProductID: 7}})
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

// centralBroken is a Source that cannot answer, or answers what JSON cannot carry.
type centralBroken struct {
	err error // nil: answer a customer with a NaN
}

func (b centralBroken) Customer(context.Context, string) (store.Customer, error) {
	if b.err == nil {
		return store.Customer{ID: "1", Gender: "F", MeanBuyPrice: math.NaN()}, nil
	}
	return store.Customer{}, b.err
}

func (b centralBroken) ValidCoupons(_ context.Context, _ store.Department, _ store.Day, dst []store.Coupon) ([]store.Coupon, error) {
	if b.err == nil {
		return append(dst, store.Coupon{ID: 1, Type: store.BuyAll, Department: store.Boys, ProductMeanPrice: math.Inf(1)}), nil
	}
	return dst, b.err
}

func (b centralBroken) CouponProducts(context.Context, int, int) ([]store.Product, error) {
	if b.err == nil {
		return []store.Product{{ID: 1, Department: store.Boys, BuyPrice: math.NaN()}}, nil
	}
	return nil, b.err
}

// routeCount is what one route's counters of a Server hold.
type routeCount struct{ OK, NotFound, BadRequest, Unavailable float64 }

// serverCount is storeflow_central_server_requests_total of a Server, by route.
type serverCount struct{ Customers, Coupons, Products routeCount }

func countServer(s *Server) serverCount {
	route := func(r *routeCounters) routeCount {
		return routeCount{testutil.ToFloat64(r.ok), testutil.ToFloat64(r.notFound),
			testutil.ToFloat64(r.badRequest), testutil.ToFloat64(r.unavailable)}
	}
	return serverCount{route(&s.customers), route(&s.coupons), route(&s.products)}
}

// clientCount is storeflow_central_client_calls_total of a Client, by outcome.
type clientCount struct {
	OK, NotFound, Canceled, Timeout, Transport, HTTP5xx, BadResponse, Limited, BreakerOpen float64
}

func countClient(c *Client) clientCount {
	n := &c.calls
	return clientCount{testutil.ToFloat64(n.ok), testutil.ToFloat64(n.notFound), testutil.ToFloat64(n.canceled),
		testutil.ToFloat64(n.timeout), testutil.ToFloat64(n.transport), testutil.ToFloat64(n.http5xx),
		testutil.ToFloat64(n.badResponse), testutil.ToFloat64(n.limited), testutil.ToFloat64(n.breakerOpen)}
}

// calls is every call counted: each ends in exactly one outcome.
func (n clientCount) calls() float64 {
	return n.OK + n.NotFound + n.Canceled + n.Limited + n.unavailable()
}

// unavailable is the calls the central could not answer.
func (n clientCount) unavailable() float64 {
	return n.Timeout + n.Transport + n.HTTP5xx + n.BadResponse + n.BreakerOpen
}

// centralServe starts src's central on a loopback server.
func centralServe(t testing.TB, src store.Source) (*Server, *httptest.Server) {
	t.Helper()
	s := NewServer(src, nil, nil)
	mux := http.NewServeMux()
	s.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return s, srv
}

func centralClient(t testing.TB, url string, timeout time.Duration) *Client {
	t.Helper()
	c, err := NewClient(url, timeout, store.CentralLimits{}, nil)
	if err != nil {
		t.Fatalf("NewClient(%q, %s): %v", url, timeout, err)
	}
	t.Cleanup(c.Close)
	return c
}

func centralGet(t *testing.T, url string) (status int, header http.Header, body []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading: %v", url, err)
	}
	return resp.StatusCode, resp.Header, body
}

func centralCheckHeaders(t *testing.T, h http.Header) {
	t.Helper()
	if got := h.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", got)
	}
	if got := h.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
}

// centralStrict decodes body into v, refusing unknown fields and trailing data.
func centralStrict(t *testing.T, body []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	if dec.More() {
		t.Fatalf("trailing data after the answer: %s", body)
	}
}

func TestCentralServerWireFormat(t *testing.T) {
	_, srv := centralServe(t, centralSmall(t))
	tests := []struct {
		name string
		path string
		want string
	}{
		{"customer", "/central/customers/1",
			`{"customer_id":"1","gender":"F","age":28,"mean_buy_price":12.68,"total_coupons_used":22,"mean_discount_received":30.61,"unique_products_bought":59,"unique_products_bought_with_coupons":19,"total_items_bought":123}`},
		{"customer escaped id, floats that print long", "/central/customers/a%2Fb%20c%3Fd%23e%25f&%C3%A9",
			`{"customer_id":"a/b c?d#e%f\u0026é","gender":"M","age":90,"mean_buy_price":0.30000000000000004,"total_coupons_used":0,"mean_discount_received":0.3333333333333333,"unique_products_bought":0,"unique_products_bought_with_coupons":0,"total_items_bought":0}`},
		{"coupons by the alias Sport", "/central/departments/Sport/coupons?date=2026-11-22",
			`{"department":"Sports","date":"2026-11-22","coupons":[` +
				`{"coupon_id":5,"coupon_type":"buy_more","department":"Sports","discount":20,"how_many_products_required":2,"start_date":"2026-11-20","end_date":"2026-11-30","product_mean_price":19.99,"products_available":1},` +
				`{"coupon_id":6,"coupon_type":"department","department":"Sports","discount":10,"how_many_products_required":-1,"start_date":"2026-11-22","end_date":"2026-11-22","product_mean_price":1e-7,"products_available":0}]}`},
		{"no coupons is an empty list", "/central/departments/Boys/coupons?date=2026-11-22",
			`{"department":"Boys","date":"2026-11-22","coupons":[]}`},
		{"products", "/central/coupons/5/products",
			`{"coupon_id":5,"products":[{"product_id":7,"name":"Runner","category":"Shoes","sizes":"40-45","vendor":"Acme","description":"Light \"fast\" shoe","buy_price":59.9,"department":"Sports"}]}`},
		{"no products is an empty list", "/central/coupons/6/products",
			`{"coupon_id":6,"products":[]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, h, body := centralGet(t, srv.URL+tt.path)
			if status != http.StatusOK {
				t.Fatalf("status %d, body %s", status, body)
			}
			centralCheckHeaders(t, h)
			if got := strings.TrimSuffix(string(body), "\n"); got != tt.want {
				t.Errorf("body\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestCentralServerCatalog(t *testing.T) {
	cat := centralGenerated(t)
	s, srv := centralServe(t, cat)
	ctx := context.Background()

	for _, cu := range cat.Customers() {
		status, h, body := centralGet(t, srv.URL+"/central/customers/"+cu.ID)
		if status != http.StatusOK {
			t.Fatalf("customer %s: status %d, body %s", cu.ID, status, body)
		}
		centralCheckHeaders(t, h)
		var got store.CustomerRow
		centralStrict(t, body, &got)
		if want := cu.Row(); got != want {
			t.Errorf("customer %s:\n got %+v\nwant %+v", cu.ID, got, want)
		}
	}

	ref := store.DayOf(centralReference.Unix())
	found := 0
	for _, dep := range store.Departments {
		for day := ref - 60; day <= ref+60; day += 6 {
			want, err := cat.ValidCoupons(ctx, dep, day, nil)
			if err != nil {
				t.Fatal(err)
			}
			found += len(want)
			status, _, body := centralGet(t, srv.URL+"/central/departments/"+dep.String()+"/coupons?date="+day.String())
			if status != http.StatusOK {
				t.Fatalf("%s on %s: status %d, body %s", dep, day, status, body)
			}
			var got wireCoupons
			centralStrict(t, body, &got)
			if got.Department != dep.String() || got.Date != day.String() || got.Coupons == nil {
				t.Errorf("%s on %s: answered for %q on %q, coupons %v", dep, day, got.Department, got.Date, got.Coupons)
			}
			wantWire := make([]store.CouponRow, len(want))
			for i := range want {
				wantWire[i] = want[i].Row()
			}
			if !slices.Equal(got.Coupons, wantWire) {
				t.Errorf("%s on %s:\n got %+v\nwant %+v", dep, day, got.Coupons, wantWire)
			}
		}
	}
	if found == 0 {
		t.Fatal("no coupon was valid on any day asked: the test asks the wrong days")
	}

	for _, cp := range cat.Coupons() {
		want, err := cat.CouponProducts(ctx, cp.ID, store.AllProducts)
		if err != nil {
			t.Fatal(err)
		}
		status, _, body := centralGet(t, fmt.Sprintf("%s/central/coupons/%d/products", srv.URL, cp.ID))
		if status != http.StatusOK {
			t.Fatalf("coupon %d: status %d, body %s", cp.ID, status, body)
		}
		var got wireProducts
		centralStrict(t, body, &got)
		wantWire := make([]store.ProductRow, len(want))
		for i := range want {
			wantWire[i] = want[i].Row()
		}
		if got.CouponID != cp.ID || !slices.Equal(got.Products, wantWire) {
			t.Errorf("coupon %d:\n got %d %+v\nwant %+v", cp.ID, got.CouponID, got.Products, wantWire)
		}
	}

	nCust, nCoup, _, _ := cat.Sizes()
	want := serverCount{
		Customers: routeCount{OK: float64(nCust)},
		Coupons:   routeCount{OK: float64(len(store.Departments) * 21)},
		Products:  routeCount{OK: float64(nCoup)},
	}
	if got := countServer(s); got != want {
		t.Errorf("counts = %+v, want %+v", got, want)
	}
}

func TestCentralServerErrors(t *testing.T) {
	cat := centralSmall(t)
	customers := func(s serverCount) routeCount { return s.Customers }
	coupons := func(s serverCount) routeCount { return s.Coupons }
	products := func(s serverCount) routeCount { return s.Products }
	tests := []struct {
		name    string
		src     store.Source
		path    string
		status  int
		wantMsg string
		route   func(serverCount) routeCount
	}{
		{"unknown customer", cat, "/central/customers/2", 404, `customer "2": store: not found`, customers},
		{"customer id too long", cat, "/central/customers/" + strings.Repeat("x", MaxCustomerIDBytes+1), 400, "customer id must be", customers},
		{"customer id empty", cat, "/central/customers/", 400, "customer id must be", customers},
		{"customer id not UTF-8", cat, "/central/customers/%FF", 400, "customer id must be", customers},
		{"unknown department", cat, "/central/departments/Toys/coupons?date=2026-11-22", 404, `department "Toys": store: not found`, coupons},
		{"department in lower case", cat, "/central/departments/boys/coupons?date=2026-11-22", 404, "not found", coupons},
		{"date missing", cat, "/central/departments/Boys/coupons", 400, "date is required", coupons},
		{"date empty", cat, "/central/departments/Boys/coupons?date=", 400, "not YYYY-MM-DD", coupons},
		{"date no such day", cat, "/central/departments/Boys/coupons?date=2026-02-30", 400, "not YYYY-MM-DD", coupons},
		{"date day first", cat, "/central/departments/Boys/coupons?date=22-11-2026", 400, "not YYYY-MM-DD", coupons},
		{"date with a time", cat, "/central/departments/Boys/coupons?date=2026-11-22T10:00:00Z", 400, "not YYYY-MM-DD", coupons},
		{"unknown coupon", cat, "/central/coupons/99/products", 404, "coupon 99: store: not found", products},
		{"coupon id not a number", cat, "/central/coupons/abc/products", 400, "coupon id must be an integer", products},
		{"coupon id a fraction", cat, "/central/coupons/1.5/products", 400, "coupon id must be an integer", products},
		{"coupon id out of range", cat, "/central/coupons/99999999999999999999/products", 400, "coupon id must be an integer", products},
		{"limit zero", cat, "/central/coupons/5/products?limit=0", 400, "limit must be a positive integer", products},
		{"limit negative", cat, "/central/coupons/5/products?limit=-1", 400, "limit must be a positive integer", products},
		{"limit empty", cat, "/central/coupons/5/products?limit=", 400, "limit must be a positive integer", products},
		{"limit not a number", cat, "/central/coupons/5/products?limit=all", 400, "limit must be a positive integer", products},
		{"limit a fraction", cat, "/central/coupons/5/products?limit=1.5", 400, "limit must be a positive integer", products},
		{"limit out of range", cat, "/central/coupons/5/products?limit=99999999999999999999", 400, "limit must be a positive integer", products},
		{"source unavailable, customer", centralBroken{err: store.ErrUnavailable}, "/central/customers/1", 503,
			"the central could not answer: store: central unavailable", customers},
		{"source unavailable, coupons", centralBroken{err: store.ErrUnavailable}, "/central/departments/Men/coupons?date=2026-11-22", 503,
			"the central could not answer: store: central unavailable", coupons},
		{"source unavailable, products", centralBroken{err: store.ErrUnavailable}, "/central/coupons/1/products", 503,
			"the central could not answer: store: central unavailable", products},
		{"source fails otherwise", centralBroken{err: errors.New("disk on fire")}, "/central/customers/1", 503,
			"the central could not answer: disk on fire", customers},
		{"source gives a NaN", centralBroken{}, "/central/customers/1", 503, "the central could not answer", customers},
		{"source gives an infinity", centralBroken{}, "/central/departments/Boys/coupons?date=2026-11-22", 503, "the central could not answer", coupons},
		{"source gives a NaN price", centralBroken{}, "/central/coupons/1/products", 503, "the central could not answer", products},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, srv := centralServe(t, tt.src)
			status, h, body := centralGet(t, srv.URL+tt.path)
			if status != tt.status {
				t.Fatalf("status %d, want %d; body %s", status, tt.status, body)
			}
			centralCheckHeaders(t, h)
			var e centralError
			centralStrict(t, body, &e)
			if !strings.Contains(e.Error, tt.wantMsg) {
				t.Errorf("error %q, want it to contain %q", e.Error, tt.wantMsg)
			}
			var want routeCount
			switch tt.status {
			case 400:
				want.BadRequest = 1
			case 404:
				want.NotFound = 1
			case 503:
				want.Unavailable = 1
			}
			if got := tt.route(countServer(s)); got != want {
				t.Errorf("route stats %+v, want %+v", got, want)
			}
		})
	}
}

func TestCentralClientRoundTrip(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		cat  *store.Catalog
		days []store.Day
	}{
		{"generated", centralGenerated(t), nil},
		{"awkward", centralSmall(t), []store.Day{centralDay(t, "2026-11-21"), centralDay(t, "2026-11-22"), centralDay(t, "2026-11-23")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, srv := centralServe(t, tt.cat)
			c := centralClient(t, srv.URL+"/", time.Minute) // a trailing slash is no second slash
			days := tt.days
			if days == nil {
				ref := store.DayOf(centralReference.Unix())
				for d := ref - 60; d <= ref+60; d += 5 {
					days = append(days, d)
				}
			}
			calls := 0

			for _, want := range tt.cat.Customers() {
				calls++
				got, err := c.Customer(ctx, want.ID)
				if err != nil {
					t.Fatalf("Customer(%q): %v", want.ID, err)
				}
				if got != want {
					t.Errorf("Customer(%q)\n got %+v\nwant %+v", want.ID, got, want)
				}
			}

			sentinel := store.Coupon{ID: -99}
			for _, dep := range store.Departments {
				for _, day := range days {
					calls++
					want, _ := tt.cat.ValidCoupons(ctx, dep, day, []store.Coupon{sentinel})
					got, err := c.ValidCoupons(ctx, dep, day, []store.Coupon{sentinel})
					if err != nil {
						t.Fatalf("ValidCoupons(%s, %s): %v", dep, day, err)
					}
					if !slices.Equal(got, want) {
						t.Errorf("ValidCoupons(%s, %s)\n got %+v\nwant %+v", dep, day, got, want)
					}
				}
			}

			for _, cp := range tt.cat.Coupons() {
				calls++
				want, _ := tt.cat.CouponProducts(ctx, cp.ID, store.AllProducts)
				got, err := c.CouponProducts(ctx, cp.ID, store.AllProducts)
				if err != nil {
					t.Fatalf("CouponProducts(%d): %v", cp.ID, err)
				}
				if !slices.Equal(got, want) {
					t.Errorf("CouponProducts(%d)\n got %+v\nwant %+v", cp.ID, got, want)
				}
			}

			want := clientCount{OK: float64(calls)}
			if got := countClient(c); got != want {
				t.Errorf("counts = %+v, want %+v", got, want)
			}
			c.Close()
			c.Close()
		})
	}
}

func TestCentralClientConcurrent(t *testing.T) {
	cat := centralGenerated(t)
	_, srv := centralServe(t, cat)
	c := centralClient(t, srv.URL, time.Minute)
	const workers = 8
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for _, want := range cat.Customers() {
				got, err := c.Customer(context.Background(), want.ID)
				if err != nil || got != want {
					errs <- fmt.Errorf("Customer(%q) = %+v, %v; want %+v", want.ID, got, err, want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	n := float64(workers * len(cat.Customers()))
	if got := countClient(c); got.calls() != n || got.OK != n {
		t.Errorf("counts = %+v, want %v calls, all OK", got, n)
	}
}

func TestCentralClientNotFound(t *testing.T) {
	s, srv := centralServe(t, centralSmall(t))
	c := centralClient(t, srv.URL, time.Minute)
	ctx := context.Background()
	tests := []struct {
		name  string
		call  func() error
		asked bool // whether the central is asked at all
	}{
		{"unknown customer", func() error { _, err := c.Customer(ctx, "2"); return err }, true},
		{"unknown coupon", func() error { _, err := c.CouponProducts(ctx, 99, store.AllProducts); return err }, true},
		{"empty customer id", func() error { _, err := c.Customer(ctx, ""); return err }, false},
		{"customer id too long", func() error { _, err := c.Customer(ctx, strings.Repeat("x", MaxCustomerIDBytes+1)); return err }, false},
		{"customer id not UTF-8", func() error { _, err := c.Customer(ctx, "\xff"); return err }, false},
		{"no department", func() error { _, err := c.ValidCoupons(ctx, store.NoDepartment, 0, nil); return err }, false},
		{"department out of range", func() error { _, err := c.ValidCoupons(ctx, store.Department(200), 0, nil); return err }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, beforeServer := countClient(c), countServer(s)
			err := tt.call()
			if !errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrUnavailable) {
				t.Fatalf("err = %v, want ErrNotFound and not ErrUnavailable", err)
			}
			after := countClient(c)
			if after.calls()-before.calls() != 1 || after.NotFound-before.NotFound != 1 || after.unavailable() != before.unavailable() {
				t.Errorf("stats went from %+v to %+v, want one call not found", before, after)
			}
			asked := countServer(s) != beforeServer
			if asked != tt.asked {
				t.Errorf("the central was asked: %v, want %v", asked, tt.asked)
			}
		})
	}
}

// The canned answers of a central for customer "1", Boys on 2026-11-22 and
// coupon 5, which the hostile peers spoil.
const (
	centralGoodCustomer = `{"customer_id":"1","gender":"F","age":28,"mean_buy_price":12.68,"total_coupons_used":22,` +
		`"mean_discount_received":30.61,"unique_products_bought":59,"unique_products_bought_with_coupons":19,"total_items_bought":123}`
	centralGoodCoupons = `{"department":"Boys","date":"2026-11-22","coupons":[{"coupon_id":5,"coupon_type":"buy_more",` +
		`"department":"Boys","discount":20,"how_many_products_required":2,"start_date":"2026-11-20","end_date":"2026-11-30",` +
		`"product_mean_price":19.99,"products_available":4}]}`
	centralGoodProducts = `{"coupon_id":5,"products":[{"product_id":7,"name":"Runner","category":"Shoes","sizes":"40-45",` +
		`"vendor":"Acme","description":"Light","buy_price":59.9,"department":"Boys"}]}`
)

// centralAsk makes one call of the given kind against the canned questions.
func centralAsk(ctx context.Context, c *Client, kind string) error {
	var err error
	switch kind {
	case "customer":
		_, err = c.Customer(ctx, "1")
	case "coupons":
		var day store.Day
		if day, err = store.ParseDay("2026-11-22"); err == nil {
			_, err = c.ValidCoupons(ctx, store.Boys, day, nil)
		}
	case "products":
		_, err = c.CouponProducts(ctx, 5, store.AllProducts)
	default:
		panic("unknown call " + kind)
	}
	return err
}

func TestCentralClientCannedAnswers(t *testing.T) {
	for _, tt := range []struct{ kind, body string }{
		{"customer", centralGoodCustomer}, {"coupons", centralGoodCoupons}, {"products", centralGoodProducts},
	} {
		t.Run(tt.kind, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				_, _ = io.WriteString(w, tt.body) // no Content-Type: a 200 is judged by its body
			}))
			t.Cleanup(srv.Close)
			c := centralClient(t, srv.URL, time.Minute)
			if err := centralAsk(context.Background(), c, tt.kind); err != nil {
				t.Fatalf("the canned answer is refused: %v", err)
			}
		})
	}
}

func TestCentralClientHostilePeers(t *testing.T) {
	answer := func(status int, contentType, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			if contentType != "" {
				w.Header().Set("Content-Type", contentType)
			}
			w.WriteHeader(status)
			_, _ = io.WriteString(w, body)
		}
	}
	ok := func(body string) http.HandlerFunc { return answer(200, "application/json", body) }
	edit := func(body, old, new string) string {
		if !strings.Contains(body, old) {
			panic("canned answer has no " + old)
		}
		return strings.Replace(body, old, new, 1)
	}
	http5xx := func(s clientCount) float64 { return s.HTTP5xx }
	bad := func(s clientCount) float64 { return s.BadResponse }

	tests := []struct {
		name    string
		kind    string // customer, coupons or products
		handler http.HandlerFunc
		wantErr string
		counted func(clientCount) float64
	}{
		{"500 with the central's error", "customer", answer(500, "application/json", `{"error":"boom"}`), "500 Internal Server Error: boom", http5xx},
		{"503 from the central", "coupons", answer(503, "application/json", `{"error":"the central could not answer: redis down"}`),
			"503 Service Unavailable: the central could not answer: redis down", http5xx},
		{"502 page from a proxy", "products", answer(502, "text/html", "<html>\n<h1>Bad Gateway</h1></html>"), "502 Bad Gateway: <html> <h1>Bad Gateway</h1></html>", http5xx},
		{"500 with an empty body", "customer", answer(500, "", ""), "(empty body)", http5xx},
		{"400 from the central", "coupons", answer(400, "application/json", `{"error":"date is required (?date=YYYY-MM-DD)"}`),
			"400 Bad Request: date is required", bad},
		{"401 from a proxy", "customer", answer(401, "text/plain", "login first"), "401 Unauthorized: login first", bad},
		{"404 that is not the central's", "customer", answer(404, "text/plain; charset=utf-8", "404 page not found\n"),
			"404 Not Found that is not the central's: 404 page not found", bad},
		{"404 JSON without an error", "products", answer(404, "application/json", `{}`), "not the central's", bad},
		{"redirect", "customer", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://example.com/login", http.StatusFound)
		}, "302 Found", bad},
		{"no content", "products", answer(204, "", ""), "204 No Content", bad},
		{"oversize body", "coupons", func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, strings.Repeat(" ", centralMaxResponseBytes)+centralGoodCoupons)
		}, "answer over 8388608 bytes", bad},
		{"truncated JSON", "customer", ok(centralGoodCustomer[:40]), "not a customer_info row", bad},
		{"trailing garbage", "customer", ok(centralGoodCustomer + "x"), "not a customer_info row", bad},
		{"HTML with 200", "products", answer(200, "text/html", "<html>hello</html>"), "not a product list", bad},
		{"a list for a customer", "customer", ok("[]"), "not a customer_info row", bad},
		{"customer: another customer", "customer", ok(edit(centralGoodCustomer, `"customer_id":"1"`, `"customer_id":"2"`)),
			`customer_id: "2", asked for "1"`, bad},
		{"customer: gender X", "customer", ok(edit(centralGoodCustomer, `"F"`, `"X"`)), `gender "X": must be M or F`, bad},
		{"customer: negative age", "customer", ok(edit(centralGoodCustomer, `"age":28`, `"age":-1`)), `age "-1": must not be negative`, bad},
		{"customer: fractional age", "customer", ok(edit(centralGoodCustomer, `"age":28`, `"age":28.5`)), "not a customer_info row", bad},
		{"customer: age as text", "customer", ok(edit(centralGoodCustomer, `"age":28`, `"age":"28"`)), "not a customer_info row", bad},
		{"customer: float out of range", "customer", ok(edit(centralGoodCustomer, `12.68`, `1e400`)), "not a customer_info row", bad},
		{"customer: negative price", "customer", ok(edit(centralGoodCustomer, `12.68`, `-12.68`)), `mean_buy_price "-12.68": must not be negative`, bad},
		{"customer: field missing", "customer", ok(edit(centralGoodCustomer, `,"total_items_bought":123`, ``)), "total_items_bought: missing", bad},
		{"customer: field null", "customer", ok(edit(centralGoodCustomer, `"gender":"F"`, `"gender":null`)), "gender: missing", bad},
		{"coupons: unknown department", "coupons", ok(edit(centralGoodCoupons, `"department":"Boys","discount"`, `"department":"Toys","discount"`)),
			`coupons[0].department "Toys": not a department`, bad},
		{"coupons: another department's", "coupons", ok(edit(centralGoodCoupons, `"department":"Boys","discount"`, `"department":"Men","discount"`)),
			"coupons[0].department: Men, asked for Boys", bad},
		{"coupons: answered for another department", "coupons", ok(edit(centralGoodCoupons, `{"department":"Boys"`, `{"department":"Girls"`)),
			`department: "Girls", asked for Boys`, bad},
		{"coupons: answered for another date", "coupons", ok(edit(centralGoodCoupons, `"date":"2026-11-22"`, `"date":"2026-11-23"`)),
			`date: "2026-11-23", asked for 2026-11-22`, bad},
		{"coupons: unknown type", "coupons", ok(edit(centralGoodCoupons, `"buy_more"`, `"bogo"`)), `coupons[0].coupon_type "bogo": not a coupon type`, bad},
		{"coupons: no such day", "coupons", ok(edit(centralGoodCoupons, `"2026-11-20"`, `"2026-11-31"`)),
			`coupons[0].start_date "2026-11-31": not a YYYY-MM-DD date`, bad},
		{"coupons: date with a time", "coupons", ok(edit(centralGoodCoupons, `"2026-11-30"`, `"2026-11-30T00:00:00Z"`)),
			"coupons[0].end_date", bad},
		{"coupons: ends before it starts", "coupons", ok(edit(centralGoodCoupons, `"2026-11-30"`, `"2026-11-19"`)),
			`coupons[0].end_date "2026-11-19": before start_date 2026-11-20`, bad},
		{"coupons: not running on the day", "coupons", ok(edit(centralGoodCoupons, `"2026-11-20"`, `"2026-11-23"`)),
			"coupon 5 runs 2026-11-23 to 2026-11-30, not on 2026-11-22", bad},
		{"coupons: -1 on a buy_more", "coupons", ok(edit(centralGoodCoupons, `"how_many_products_required":2`, `"how_many_products_required":-1`)),
			`coupons[0].how_many_products_required "-1": must not be negative (only a department coupon takes -1)`, bad},
		{"coupons: negative discount", "coupons", ok(edit(centralGoodCoupons, `"discount":20`, `"discount":-20`)), `coupons[0].discount "-20": must not be negative`, bad},
		{"coupons: null list", "coupons", ok(edit(centralGoodCoupons, `"coupons":[`, `"coupons":null,"x":[`)), "coupons: missing", bad},
		{"products: another coupon's", "products", ok(edit(centralGoodProducts, `"coupon_id":5`, `"coupon_id":6`)), "coupon_id: 6, asked for 5", bad},
		{"products: unknown department", "products", ok(edit(centralGoodProducts, `"Boys"`, `"Sport "`)), `products[0].department "Sport ": not a department`, bad},
		{"products: negative price", "products", ok(edit(centralGoodProducts, `59.9`, `-1`)), "products[0].buy_price", bad},
		{"products: name missing", "products", ok(edit(centralGoodProducts, `"name":"Runner",`, ``)), "products[0].name: missing", bad},
		{"products: no list", "products", ok(`{"coupon_id":5}`), "products: missing", bad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			t.Cleanup(srv.Close)
			c := centralClient(t, strings.Replace(srv.URL, "http://", "http://reader:secret@", 1), time.Minute)
			err := centralAsk(context.Background(), c, tt.kind)
			if !errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrNotFound) {
				t.Fatalf("err = %v, want ErrUnavailable and not ErrNotFound", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.wantErr) {
				t.Errorf("err = %q, want it to contain %q", msg, tt.wantErr)
			}
			if !strings.Contains(msg, "/central/") {
				t.Errorf("err = %q names no path", msg)
			}
			if strings.Contains(msg, "secret") || strings.Contains(msg, "reader") {
				t.Errorf("err = %q shows the URL's user info", msg)
			}
			st := countClient(c)
			if st.calls() != 1 || tt.counted(st) != 1 || st.unavailable() != 1 {
				t.Errorf("counts = %+v, want one call counted in its kind", st)
			}
		})
	}
}

// centralStall is a peer that takes the request and then answers nothing
// more until the client goes away or the test ends; before it stalls it may
// send the status line and part of the body.
func centralStall(t *testing.T, partial string, arrived chan<- struct{}) *httptest.Server {
	t.Helper()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if partial != "" {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, partial)
			w.(http.Flusher).Flush()
		}
		if arrived != nil {
			arrived <- struct{}{}
		}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs first: Close waits for the handler
	return srv
}

func TestCentralClientContext(t *testing.T) {
	const timeout = 150 * time.Millisecond
	tests := []struct {
		name    string
		partial string        // sent before the peer stalls
		timeout time.Duration // the client's
		ctx     func(arrived <-chan struct{}) (context.Context, context.CancelFunc)
		wantErr string
		want    error
		counted func(clientCount) float64
	}{
		{"peer sends nothing", "", timeout, nil, "timed out after 150ms", context.DeadlineExceeded,
			func(s clientCount) float64 { return s.Timeout }},
		{"peer stalls in the body", centralGoodCustomer[:30], timeout, nil, "timed out after 150ms reading the answer", context.DeadlineExceeded,
			func(s clientCount) float64 { return s.Timeout }},
		{"caller's deadline first", "", time.Minute, func(<-chan struct{}) (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), timeout)
		}, "the caller's deadline passed", context.DeadlineExceeded, func(s clientCount) float64 { return s.Timeout }},
		{"caller cancels", "", time.Minute, func(arrived <-chan struct{}) (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				<-arrived // the peer has the request: cancel it in flight
				cancel()
			}()
			return ctx, cancel
		}, "canceled", context.Canceled, func(s clientCount) float64 { return s.Canceled }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			arrived := make(chan struct{}, 1)
			srv := centralStall(t, tt.partial, arrived)
			c := centralClient(t, srv.URL, tt.timeout)
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if tt.ctx != nil {
				ctx, cancel = tt.ctx(arrived)
			}
			defer cancel()

			start := time.Now()
			_, err := c.Customer(ctx, "1")
			took := time.Since(start)
			if !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want ErrUnavailable and %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %q, want it to contain %q", err, tt.wantErr)
			}
			// A bound, not a speed measurement: the call must end near its
			// deadline, not when the peer gives up.
			if took > timeout+5*time.Second {
				t.Errorf("the call took %s with a %s deadline", took, timeout)
			}
			if st := countClient(c); st.calls() != 1 || tt.counted(st) != 1 {
				t.Errorf("counts = %+v, want one call counted in its kind", st)
			}
		})
	}
}

func TestCentralClientNoPeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "http://" + ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	tlsSrv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, centralGoodCustomer)
	}))
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is the point
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)

	tests := []struct {
		name    string
		url     string
		wantErr string
	}{
		{"closed port", closedURL, "refused"},
		{"certificate not trusted", tlsSrv.URL, "certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := centralClient(t, tt.url, 5*time.Second)
			_, err := c.Customer(context.Background(), "1")
			if !errors.Is(err, store.ErrUnavailable) {
				t.Fatalf("err = %v, want ErrUnavailable", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %q, want it to contain %q", err, tt.wantErr)
			}
			if st := countClient(c); st.calls() != 1 || st.Transport != 1 {
				t.Errorf("counts = %+v, want one transport failure", st)
			}
		})
	}
}

func TestCentralClientOutOfRangeDay(t *testing.T) {
	s, srv := centralServe(t, centralSmall(t))
	c := centralClient(t, srv.URL, time.Minute)
	for _, day := range []store.Day{math.MinInt32, -800000, 3000000, math.MaxInt32} {
		got, err := c.ValidCoupons(context.Background(), store.Boys, day, []store.Coupon{{ID: 1}})
		if err != nil || len(got) != 1 || got[0].ID != 1 {
			t.Errorf("ValidCoupons(Boys, %d) = %v, %v; want dst as it came, no error", day, got, err)
		}
	}
	if got := countServer(s); got != (serverCount{}) {
		t.Errorf("the central was asked about days it cannot be told: %+v", got)
	}
}

func TestNewCentralClient(t *testing.T) {
	tests := []struct {
		name    string
		url     string
		timeout time.Duration
		wantErr string // "" for a client
	}{
		{"http", "http://central:8080", time.Second, ""},
		{"https with a path prefix", "https://central.example/storeflow/", time.Second, ""},
		{"user info", "https://reader:secret@central.example", time.Second, ""},
		{"empty", "", time.Second, "CENTRAL_URL"},
		{"no scheme", "central:8080", time.Second, "CENTRAL_URL"},
		{"other scheme", "ftp://central", time.Second, "CENTRAL_URL"},
		{"no host", "http:///central", time.Second, "CENTRAL_URL"},
		{"no host but user info", "http://reader:secret@", time.Second, "CENTRAL_URL"},
		{"not a URL", "http://reader:secret@central:port", time.Second, "CENTRAL_URL"},
		{"query", "http://reader:secret@central/?token=secret", time.Second, "CENTRAL_URL"},
		{"fragment", "http://central/#secret", time.Second, "CENTRAL_URL"},
		{"zero timeout", "http://central", 0, "CENTRAL_TIMEOUT=0s"},
		{"negative timeout", "http://central", -time.Second, "CENTRAL_TIMEOUT=-1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewClient(tt.url, tt.timeout, store.CentralLimits{}, nil)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("err = %v, want a client", err)
				}
				c.Close()
				if strings.Contains(c.shown, "secret") || strings.Contains(c.shown, "reader") {
					t.Errorf("errors would show %q", c.shown)
				}
				return
			}
			if err == nil {
				c.Close()
				t.Fatalf("got a client, want an error naming %s", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %q, want it to contain %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("err = %q shows the URL's user info", err)
			}
		})
	}
}

// centralValidCustomer and friends say what the client must never accept,
// in the words of the CSV loader's checks, written out again here.
func centralValidCustomer(c store.Customer) error {
	switch {
	case !validCustomerID(c.ID):
		return errors.New("bad id")
	case c.Gender != "M" && c.Gender != "F":
		return errors.New("bad gender")
	case c.Age < 0 || c.TotalCouponsUsed < 0 || c.UniqueProductsBought < 0 || c.UniqueProductsBoughtWithCoupons < 0 || c.TotalItemsBought < 0:
		return errors.New("negative count")
	case !centralAmount(c.MeanBuyPrice) || !centralAmount(c.MeanDiscountReceived):
		return errors.New("bad amount")
	}
	return nil
}

func centralValidCoupon(c store.Coupon, dep store.Department, day store.Day) error {
	_, typeOK := store.ParseCouponType(string(c.Type))
	switch {
	case !typeOK:
		return errors.New("bad type")
	case c.Department != dep:
		return errors.New("wrong department")
	case !c.ValidOn(day) || c.End < c.Start:
		return errors.New("not valid on the day")
	case c.Discount < 0 || c.ProductsAvailable < 0 || (c.HowMany < 0 && (c.HowMany != -1 || c.Type != store.DeptCoupon)):
		return errors.New("negative count")
	case !centralAmount(c.ProductMeanPrice):
		return errors.New("bad amount")
	}
	return nil
}

func centralValidProduct(p store.Product) error {
	if p.Department == store.NoDepartment || int(p.Department) >= store.DepartmentSlots {
		return errors.New("bad department")
	}
	if !centralAmount(p.BuyPrice) {
		return errors.New("bad amount")
	}
	return nil
}

func centralAmount(x float64) bool { return x >= 0 && !math.IsInf(x, 0) }

// FuzzCentralDecode feeds the client's decoders any answer: they must not
// panic, must leave dst alone when they refuse, and what they accept must be
// valid and survive the server's encoding unchanged.
func FuzzCentralDecode(f *testing.F) {
	f.Add([]byte(centralGoodCustomer))
	f.Add([]byte(centralGoodCoupons))
	f.Add([]byte(centralGoodProducts))
	f.Add([]byte(`{"department":"Sport","date":"2026-11-22","coupons":[]}`))
	f.Add([]byte(`{"coupon_id":5,"products":[]}`))
	f.Add([]byte(`{"customer_id":"1","gender":"M","age":1e2,"mean_buy_price":-0,"total_coupons_used":0,` +
		`"mean_discount_received":5e-324,"unique_products_bought":0,"unique_products_bought_with_coupons":0,"total_items_bought":0}`))
	f.Add([]byte(`{"coupons":[{"coupon_id":1}],"products":[{"product_id":null}]}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"CUSTOMER_ID":"1"}`))
	day := store.DayOf(centralReference.Unix())
	f.Fuzz(func(t *testing.T, body []byte) {
		if cu, err := decodeCustomer(body, "1"); err == nil {
			if err := centralValidCustomer(cu); err != nil || cu.ID != "1" {
				t.Fatalf("accepted customer %+v: %v", cu, err)
			}
			b, err := json.Marshal(cu.Row())
			if err != nil {
				t.Fatal(err)
			}
			if again, err := decodeCustomer(b, "1"); err != nil || again != cu {
				t.Fatalf("customer %+v did not survive the wire: %+v, %v", cu, again, err)
			}
		}

		dst := []store.Coupon{{ID: -1}}
		list, err := decodeCoupons(body, store.Boys, day, dst)
		switch {
		case len(list) < 1 || list[0] != (store.Coupon{ID: -1}):
			t.Fatalf("dst was not kept: %+v", list)
		case err != nil && len(list) != 1:
			t.Fatalf("refused (%v) but appended: %+v", err, list)
		case err == nil:
			out := wireCoupons{Department: store.Boys.String(), Date: day.String(), Coupons: []store.CouponRow{}}
			for _, cp := range list[1:] {
				if err := centralValidCoupon(cp, store.Boys, day); err != nil {
					t.Fatalf("accepted coupon %+v: %v", cp, err)
				}
				out.Coupons = append(out.Coupons, cp.Row())
			}
			b, err := json.Marshal(out)
			if err != nil {
				t.Fatal(err)
			}
			if again, err := decodeCoupons(b, store.Boys, day, nil); err != nil || !slices.Equal(again, list[1:]) {
				t.Fatalf("coupons %+v did not survive the wire: %+v, %v", list[1:], again, err)
			}
		}

		if ps, err := decodeProducts(body, 5, store.AllProducts); err == nil {
			out := wireProducts{CouponID: 5, Products: []store.ProductRow{}}
			for _, p := range ps {
				if err := centralValidProduct(p); err != nil {
					t.Fatalf("accepted product %+v: %v", p, err)
				}
				out.Products = append(out.Products, p.Row())
			}
			b, err := json.Marshal(out)
			if err != nil {
				t.Fatal(err)
			}
			if again, err := decodeProducts(b, 5, store.AllProducts); err != nil || !slices.Equal(again, ps) {
				t.Fatalf("products %+v did not survive the wire: %+v, %v", ps, again, err)
			}
		}
	})
}

func BenchmarkCentralClientCustomer(b *testing.B) {
	cat := centralGenerated(b)
	_, srv := centralServe(b, cat)
	c := centralClient(b, srv.URL, 5*time.Second)
	ctx := context.Background()
	customers := cat.Customers()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		id := customers[i%len(customers)].ID
		i++
		if _, err := c.Customer(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
}

// The client asks the central at most CENTRAL_MAX_RPS times a second: 1,000
// lookups of unique unknown ids in one instant make MaxRPS requests, the rest
// fail at once with ErrLimited, and the budget refills with time.
func TestCentralClientRequestBudget(t *testing.T) {
	var requests atomic.Int64
	_, central := centralServe(t, centralGenerated(t))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		central.Config.Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	const rps = 10
	c, err := NewClient(srv.URL, time.Minute, store.CentralLimits{MaxRPS: rps}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	now := time.Unix(1_800_000_000, 0)
	c.budget.now = func() time.Time { return now }
	c.budget.last = now
	ask := func(calls int) (limited int) {
		for i := range calls {
			_, err := c.Customer(context.Background(), fmt.Sprintf("unknown-%d-%d", now.Unix(), i))
			switch {
			case errors.Is(err, store.ErrLimited):
				if errors.Is(err, store.ErrUnavailable) {
					t.Fatalf("err = %v: a limited call is not the central's failure", err)
				}
				limited++
			case !errors.Is(err, store.ErrNotFound):
				t.Fatalf("err = %v, want ErrNotFound or ErrLimited", err)
			}
		}
		return limited
	}
	if limited := ask(1000); limited != 1000-rps {
		t.Fatalf("%d of 1000 calls limited, want all but the %d of the budget", limited, rps)
	}
	now = now.Add(500 * time.Millisecond)
	if limited := ask(100); limited != 100-rps/2 {
		t.Fatalf("half a second later %d of 100 calls limited, want all but %d", limited, rps/2)
	}
	if got, want := requests.Load(), int64(rps+rps/2); got != want {
		t.Errorf("the central got %d requests, want %d", got, want)
	}
	if st := countClient(c); st.Limited != 1000+100-rps-rps/2 || st.NotFound != rps+rps/2 || st.unavailable() != 0 {
		t.Errorf("counts = %+v", st)
	}
}

// A central that hangs opens the breaker after CENTRAL_BREAKER_FAILURES
// timeouts: then calls fail at once as ErrUnavailable wrapping
// breaker.ErrOpen, and no request is made.
func TestCentralClientBreaker(t *testing.T) {
	arrived := make(chan struct{}, 100)
	srv := centralStall(t, "", arrived)
	c, err := NewClient(srv.URL, 50*time.Millisecond, store.CentralLimits{BreakerFailures: 2, BreakerCooldown: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	for i := range 2 {
		if _, err := c.Customer(context.Background(), "1"); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("call %d: %v, want a timeout", i, err)
		}
	}
	if c.BreakerErr() == nil {
		t.Fatal("breaker closed after 2 timeouts")
	}
	for _, kind := range []string{"customer", "coupons", "products"} {
		err := centralAsk(context.Background(), c, kind)
		if !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, breaker.ErrOpen) {
			t.Fatalf("%s with the breaker open: %v, want ErrUnavailable and breaker.ErrOpen", kind, err)
		}
	}
	if got := len(arrived); got != 2 {
		t.Errorf("%d requests reached the central, want the 2 before the breaker opened", got)
	}
	if st := countClient(c); st.BreakerOpen != 3 || c.breaker.Opened() != 1 || st.Timeout != 2 || st.unavailable() != 5 {
		t.Errorf("counts = %+v, opened %d", st, c.breaker.Opened())
	}
}

// ?limit=N answers the first N products in the coupon's order; the client
// asks for no more than its caller wants, and takes the first ones of a
// central that answers every product (one older than ?limit).
func TestCentralProductsLimit(t *testing.T) {
	cat := centralGenerated(t)
	ctx := context.Background()
	var coupon int
	var all []store.Product
	for _, cp := range cat.Coupons() {
		if ps, _ := cat.CouponProducts(ctx, cp.ID, store.AllProducts); len(ps) > len(all) {
			coupon, all = cp.ID, ps
		}
	}
	if len(all) < 3 {
		t.Fatalf("the test catalog's largest coupon has %d products, want 3 or more", len(all))
	}
	rows := func(ps []store.Product) []store.ProductRow {
		out := make([]store.ProductRow, len(ps))
		for i := range ps {
			out[i] = ps[i].Row()
		}
		return out
	}
	_, srv := centralServe(t, cat)
	for _, limit := range []int{1, 3, len(all), len(all) + 5} {
		status, _, body := centralGet(t, fmt.Sprintf("%s/central/coupons/%d/products?limit=%d", srv.URL, coupon, limit))
		if status != http.StatusOK {
			t.Fatalf("limit %d: status %d, body %s", limit, status, body)
		}
		var got wireProducts
		centralStrict(t, body, &got)
		if want := rows(all[:min(limit, len(all))]); got.CouponID != coupon || !slices.Equal(got.Products, want) {
			t.Errorf("limit %d: %d products %+v\nwant %d %+v", limit, len(got.Products), got.Products, len(want), want)
		}
	}

	// The same central, and one that passes over the query as a central
	// older than ?limit does.
	mux := http.NewServeMux()
	NewServer(cat, nil, nil).Register(mux)
	queries := make(chan string, 8)
	for _, older := range []bool{false, true} {
		t.Run(fmt.Sprintf("older=%v", older), func(t *testing.T) {
			peer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				queries <- r.URL.RawQuery
				if older {
					r.URL.RawQuery = ""
				}
				mux.ServeHTTP(w, r)
			}))
			t.Cleanup(peer.Close)
			c := centralClient(t, peer.URL, 5*time.Second)
			for _, tt := range []struct {
				limit int
				query string
				want  []store.Product
			}{
				{3, "limit=3", all[:3]},
				{store.AllProducts, "", all},
			} {
				got, err := c.CouponProducts(ctx, coupon, tt.limit)
				if err != nil || !slices.Equal(got, tt.want) {
					t.Errorf("CouponProducts(%d, %d) = %d products, %v; want %d", coupon, tt.limit, len(got), err, len(tt.want))
				}
				if q := <-queries; q != tt.query {
					t.Errorf("CouponProducts(%d, %d) asked with query %q, want %q", coupon, tt.limit, q, tt.query)
				}
			}
		})
	}
}

// centralBodyCounter counts the body bytes a handler writes.
type centralBodyCounter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w centralBodyCounter) Write(b []byte) (int, error) {
	w.n.Add(int64(len(b)))
	return w.ResponseWriter.Write(b)
}

// The focus path's products read through a remote central, for the generated
// catalog's department coupon with the most products: body-bytes/op is what
// the central sends per read.
func BenchmarkCentralClientDepartmentProducts(b *testing.B) {
	const maxProducts = 20 // PREDICTION_MAX_PRODUCTS' default
	cat, err := world.GenerateCatalog(world.Config{Seed: 1, Reference: centralReference})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var id, most int
	for _, cp := range cat.Coupons() {
		if ps, _ := cat.CouponProducts(ctx, cp.ID, store.AllProducts); cp.Type == store.DeptCoupon && len(ps) > most {
			id, most = cp.ID, len(ps)
		}
	}
	mux := http.NewServeMux()
	NewServer(cat, nil, nil).Register(mux)
	var sent atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(centralBodyCounter{w, &sent}, r)
	}))
	b.Cleanup(srv.Close)
	c := centralClient(b, srv.URL, 5*time.Second)
	b.ReportAllocs()
	for b.Loop() {
		ps, err := c.CouponProducts(ctx, id, maxProducts)
		if err != nil || len(ps) != maxProducts {
			b.Fatalf("CouponProducts(%d): %d of %d, %v", id, len(ps), most, err)
		}
	}
	b.ReportMetric(float64(sent.Load())/float64(b.N), "body-bytes/op")
}
