package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/storeflow/storeflow/internal/breaker"
	"github.com/storeflow/storeflow/internal/peerhttp"
)

// The central's HTTP API, as CentralServer serves it and CentralClient asks it:
//
//	GET /central/customers/{id}                            → a customer_info row
//	GET /central/departments/{dep}/coupons?date=YYYY-MM-DD → {"department", "date", "coupons": [coupon_info rows]}
//	GET /central/coupons/{id}/products                     → {"coupon_id", "products": [product_info rows]}
//
// Rows carry the CSV column names. Errors are {"error": "..."}: 404 for an
// unknown customer, department or coupon, 400 for a malformed id or date, 503
// when the source behind the server cannot answer.
const (
	centralCustomerPath   = "/central/customers/"
	centralDepartmentPath = "/central/departments/"
	centralCouponPath     = "/central/coupons/"
)

// Limits of the central's API.
const (
	// MaxCustomerIDBytes is the longest customer id the central's API
	// carries; the server refuses longer ones with 400, and the client does
	// not ask for them.
	MaxCustomerIDBytes = 64

	centralMaxResponseBytes = 8 << 20 // an answer's body; larger is a bad response
	centralMaxErrorText     = 200     // bytes of an error answer quoted in an error
)

// ---------------------------------------------------------------------------
// The server

// CentralServer answers the central's API from a Source, so that any
// storeflow can be the central of others. It is safe for concurrent use.
type CentralServer struct {
	src   Source
	log   *slog.Logger
	stats centralServerCounters
}

// NewCentralServer returns a server answering from src. log is used as given
// (the caller names the component); nil discards.
func NewCentralServer(src Source, log *slog.Logger) *CentralServer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &CentralServer{src: src, log: log}
}

// Register adds the central's routes to mux.
func (s *CentralServer) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET "+centralCustomerPath+"{id}", s.handleCustomer)
	// An empty id does not match {id}; without this route it would get the
	// mux's plain-text 404, which a client must not read as "no such customer".
	mux.HandleFunc("GET "+centralCustomerPath+"{$}", s.handleCustomer)
	mux.HandleFunc("GET "+centralDepartmentPath+"{dep}/coupons", s.handleCoupons)
	mux.HandleFunc("GET "+centralCouponPath+"{id}/products", s.handleProducts)
}

// CentralServerStats counts the server's answers by route and outcome since
// it was made.
type CentralServerStats struct {
	Customers CentralRouteStats // GET /central/customers/{id}
	Coupons   CentralRouteStats // GET /central/departments/{dep}/coupons
	Products  CentralRouteStats // GET /central/coupons/{id}/products
}

// CentralRouteStats counts one route's answers by outcome.
type CentralRouteStats struct {
	OK          uint64 // 200
	NotFound    uint64 // 404: unknown customer, department or coupon
	BadRequest  uint64 // 400: malformed id or date
	Unavailable uint64 // 503: the source could not answer
}

// Stats returns the counts so far.
func (s *CentralServer) Stats() CentralServerStats {
	return CentralServerStats{
		Customers: s.stats.customers.load(),
		Coupons:   s.stats.coupons.load(),
		Products:  s.stats.products.load(),
	}
}

type centralServerCounters struct {
	customers, coupons, products centralRouteCounters
}

type centralRouteCounters struct {
	ok, notFound, badRequest, unavailable atomic.Uint64
}

func (c *centralRouteCounters) count(status int) {
	switch status {
	case http.StatusOK:
		c.ok.Add(1)
	case http.StatusNotFound:
		c.notFound.Add(1)
	case http.StatusBadRequest:
		c.badRequest.Add(1)
	default:
		c.unavailable.Add(1)
	}
}

func (c *centralRouteCounters) load() CentralRouteStats {
	return CentralRouteStats{
		OK: c.ok.Load(), NotFound: c.notFound.Load(), BadRequest: c.badRequest.Load(), Unavailable: c.unavailable.Load(),
	}
}

func (s *CentralServer) handleCustomer(w http.ResponseWriter, r *http.Request) {
	rc := &s.stats.customers
	id := r.PathValue("id")
	if !validCustomerID(id) {
		s.badRequest(w, r, rc, fmt.Sprintf("customer id must be 1 to %d bytes of UTF-8", MaxCustomerIDBytes))
		return
	}
	cu, err := s.src.Customer(r.Context(), id)
	if err != nil {
		s.sourceFailed(w, r, rc, err)
		return
	}
	s.reply(w, r, rc, http.StatusOK, customerToWire(&cu))
}

func (s *CentralServer) handleCoupons(w http.ResponseWriter, r *http.Request) {
	rc := &s.stats.coupons
	q := r.URL.Query()
	if !q.Has("date") {
		s.badRequest(w, r, rc, "date is required (?date=YYYY-MM-DD)")
		return
	}
	day, err := ParseDay(q.Get("date"))
	if err != nil {
		s.badRequest(w, r, rc, err.Error())
		return
	}
	name := r.PathValue("dep")
	dep, ok := ParseDepartment(name)
	if !ok {
		s.reply(w, r, rc, http.StatusNotFound, centralError{Error: fmt.Sprintf("department %q: %v", name, ErrNotFound)})
		return
	}
	list, err := s.src.ValidCoupons(r.Context(), dep, day, nil)
	if err != nil {
		s.sourceFailed(w, r, rc, err)
		return
	}
	out := wireCoupons{Department: dep.String(), Date: day.String(), Coupons: make([]wireCoupon, len(list))}
	for i := range list {
		out.Coupons[i] = couponToWire(&list[i])
	}
	s.reply(w, r, rc, http.StatusOK, out)
}

func (s *CentralServer) handleProducts(w http.ResponseWriter, r *http.Request) {
	rc := &s.stats.products
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil {
		s.badRequest(w, r, rc, "coupon id must be an integer")
		return
	}
	list, err := s.src.CouponProducts(r.Context(), id)
	if err != nil {
		s.sourceFailed(w, r, rc, err)
		return
	}
	out := wireProducts{CouponID: id, Products: make([]wireProduct, len(list))}
	for i := range list {
		out.Products[i] = productToWire(&list[i])
	}
	s.reply(w, r, rc, http.StatusOK, out)
}

func (s *CentralServer) badRequest(w http.ResponseWriter, r *http.Request, rc *centralRouteCounters, msg string) {
	s.log.Debug("bad request", "path", r.URL.Path, "reason", msg)
	s.reply(w, r, rc, http.StatusBadRequest, centralError{Error: msg})
}

// sourceFailed answers a Source error: ErrNotFound is 404, anything else
// means this central could not answer, 503.
func (s *CentralServer) sourceFailed(w http.ResponseWriter, r *http.Request, rc *centralRouteCounters, err error) {
	if errors.Is(err, ErrNotFound) {
		s.reply(w, r, rc, http.StatusNotFound, centralError{Error: err.Error()})
		return
	}
	s.log.Warn("source failed", "path", r.URL.Path, "err", err)
	s.reply(w, r, rc, http.StatusServiceUnavailable, centralError{Error: "the central could not answer: " + err.Error()})
}

func (s *CentralServer) reply(w http.ResponseWriter, r *http.Request, rc *centralRouteCounters, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil { // a NaN or infinite float from the source: JSON cannot carry it
		s.log.Warn("source answer not encodable", "path", r.URL.Path, "err", err)
		status = http.StatusServiceUnavailable
		body, _ = json.Marshal(centralError{Error: "the central could not answer: " + err.Error()})
	}
	rc.count(status) // before the answer leaves, so a client that has it sees it counted
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n')) // the peer may be gone; nothing to do about it
}

// validCustomerID reports whether the central's API can carry id.
func validCustomerID(id string) bool {
	return id != "" && len(id) <= MaxCustomerIDBytes && utf8.ValidString(id)
}

// ---------------------------------------------------------------------------
// The wire

type centralError struct {
	Error string `json:"error"`
}

type wireCustomer struct {
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

type wireCoupons struct {
	Department string       `json:"department"`
	Date       string       `json:"date"`
	Coupons    []wireCoupon `json:"coupons"`
}

type wireCoupon struct {
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

type wireProducts struct {
	CouponID int           `json:"coupon_id"`
	Products []wireProduct `json:"products"`
}

type wireProduct struct {
	ProductID   int     `json:"product_id"`
	Name        string  `json:"name"`
	Category    string  `json:"category"`
	Sizes       string  `json:"sizes"`
	Vendor      string  `json:"vendor"`
	Description string  `json:"description"`
	BuyPrice    float64 `json:"buy_price"`
	Department  string  `json:"department"`
}

func customerToWire(c *Customer) wireCustomer {
	return wireCustomer{
		CustomerID: c.ID, Gender: c.Gender, Age: c.Age, MeanBuyPrice: c.MeanBuyPrice,
		TotalCouponsUsed: c.TotalCouponsUsed, MeanDiscountReceived: c.MeanDiscountReceived,
		UniqueProductsBought: c.UniqueProductsBought, UniqueProductsBoughtWithCoupons: c.UniqueProductsBoughtWithCoupons,
		TotalItemsBought: c.TotalItemsBought,
	}
}

func couponToWire(c *Coupon) wireCoupon {
	return wireCoupon{
		CouponID: c.ID, CouponType: string(c.Type), Department: c.Department.String(), Discount: c.Discount,
		HowMany: c.HowMany, StartDate: c.Start.String(), EndDate: c.End.String(),
		ProductMeanPrice: c.ProductMeanPrice, ProductsAvailable: c.ProductsAvailable,
	}
}

func productToWire(p *Product) wireProduct {
	return wireProduct{
		ProductID: p.ID, Name: p.Name, Category: p.Category, Sizes: p.Sizes, Vendor: p.Vendor,
		Description: p.Description, BuyPrice: p.BuyPrice, Department: p.Department.String(),
	}
}

func (w *wireCustomer) customer() Customer {
	return Customer{
		ID: w.CustomerID, Gender: w.Gender, Age: w.Age, MeanBuyPrice: w.MeanBuyPrice,
		TotalCouponsUsed: w.TotalCouponsUsed, MeanDiscountReceived: w.MeanDiscountReceived,
		UniqueProductsBought: w.UniqueProductsBought, UniqueProductsBoughtWithCoupons: w.UniqueProductsBoughtWithCoupons,
		TotalItemsBought: w.TotalItemsBought,
	}
}

// coupon parses the row's names and dates; range checks are the caller's.
func (w *wireCoupon) coupon() (Coupon, error) {
	typ, ok := ParseCouponType(w.CouponType)
	if !ok {
		return Coupon{}, fmt.Errorf("coupon %d: coupon_type %q", w.CouponID, w.CouponType)
	}
	dep, ok := ParseDepartment(w.Department)
	if !ok {
		return Coupon{}, fmt.Errorf("coupon %d: department %q", w.CouponID, w.Department)
	}
	start, err := ParseDay(w.StartDate)
	if err != nil {
		return Coupon{}, fmt.Errorf("coupon %d: start_date: %w", w.CouponID, err)
	}
	end, err := ParseDay(w.EndDate)
	if err != nil {
		return Coupon{}, fmt.Errorf("coupon %d: end_date: %w", w.CouponID, err)
	}
	return Coupon{
		ID: w.CouponID, Type: typ, Department: dep, Discount: w.Discount, HowMany: w.HowMany,
		Start: start, End: end, ProductMeanPrice: w.ProductMeanPrice, ProductsAvailable: w.ProductsAvailable,
	}, nil
}

// product parses the row's department; range checks are the caller's.
func (w *wireProduct) product() (Product, error) {
	dep, ok := ParseDepartment(w.Department)
	if !ok {
		return Product{}, fmt.Errorf("product %d: department %q", w.ProductID, w.Department)
	}
	return Product{
		ID: w.ProductID, Name: w.Name, Category: w.Category, Sizes: w.Sizes, Vendor: w.Vendor,
		Description: w.Description, BuyPrice: w.BuyPrice, Department: dep,
	}, nil
}

// The client decodes into pointers, so that a missing or null field is told
// from a zero: an answer without "discount" is a mismatch, not a 0 % coupon.
// Unknown fields are passed over, so a newer central may add some.

type answerCustomer struct {
	CustomerID                      *string  `json:"customer_id"`
	Gender                          *string  `json:"gender"`
	Age                             *int     `json:"age"`
	MeanBuyPrice                    *float64 `json:"mean_buy_price"`
	TotalCouponsUsed                *int     `json:"total_coupons_used"`
	MeanDiscountReceived            *float64 `json:"mean_discount_received"`
	UniqueProductsBought            *int     `json:"unique_products_bought"`
	UniqueProductsBoughtWithCoupons *int     `json:"unique_products_bought_with_coupons"`
	TotalItemsBought                *int     `json:"total_items_bought"`
}

type answerCoupons struct {
	Department *string        `json:"department"`
	Date       *string        `json:"date"`
	Coupons    []answerCoupon `json:"coupons"`
}

type answerCoupon struct {
	CouponID          *int     `json:"coupon_id"`
	CouponType        *string  `json:"coupon_type"`
	Department        *string  `json:"department"`
	Discount          *int     `json:"discount"`
	HowMany           *int     `json:"how_many_products_required"`
	StartDate         *string  `json:"start_date"`
	EndDate           *string  `json:"end_date"`
	ProductMeanPrice  *float64 `json:"product_mean_price"`
	ProductsAvailable *int     `json:"products_available"`
}

type answerProducts struct {
	CouponID *int            `json:"coupon_id"`
	Products []answerProduct `json:"products"`
}

type answerProduct struct {
	ProductID   *int     `json:"product_id"`
	Name        *string  `json:"name"`
	Category    *string  `json:"category"`
	Sizes       *string  `json:"sizes"`
	Vendor      *string  `json:"vendor"`
	Description *string  `json:"description"`
	BuyPrice    *float64 `json:"buy_price"`
	Department  *string  `json:"department"`
}

// answerCheck collects the first thing wrong with an answer, checking each
// field the way the CSV loader checks a column.
type answerCheck struct {
	row string // "", "coupons[2]", …
	err error
}

func (a *answerCheck) failf(field, format string, args ...any) {
	if a.err != nil {
		return
	}
	if a.row != "" {
		field = a.row + "." + field
	}
	a.err = fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...))
}

func (a *answerCheck) present(field string, ok bool) bool {
	if !ok {
		a.failf(field, "missing")
	}
	return ok
}

func (a *answerCheck) text(field string, v *string) string {
	if !a.present(field, v != nil) {
		return ""
	}
	return *v
}

func (a *answerCheck) int(field string, v *int) int {
	if !a.present(field, v != nil) {
		return 0
	}
	return *v
}

// count is a whole number that must not be negative.
func (a *answerCheck) count(field string, v *int) int {
	n := a.int(field, v)
	if n < 0 {
		a.failf(field, "%d is negative", n)
	}
	return n
}

// amount is a finite number that must not be negative.
func (a *answerCheck) amount(field string, v *float64) float64 {
	if !a.present(field, v != nil) {
		return 0
	}
	x := *v
	if math.IsNaN(x) || math.IsInf(x, 0) || x < 0 {
		a.failf(field, "%v is not a finite number ≥ 0", x)
	}
	return x
}

func (a *answerCheck) department(field string, v *string) Department {
	s := a.text(field, v)
	d, ok := ParseDepartment(s)
	if v != nil && !ok {
		a.failf(field, "%s is not a department", quoteAnswer(s))
	}
	return d
}

func (a *answerCheck) day(field string, v *string) Day {
	s := a.text(field, v)
	d, err := ParseDay(s)
	if v != nil && err != nil {
		a.failf(field, "%s is not a YYYY-MM-DD date", quoteAnswer(s))
	}
	return d
}

// decodeCustomer reads and checks the answer to GET /central/customers/{id}.
func decodeCustomer(body []byte, id string) (Customer, error) {
	var in answerCustomer
	if err := json.Unmarshal(body, &in); err != nil {
		return Customer{}, fmt.Errorf("not a customer_info row: %v", err)
	}
	var a answerCheck
	c := Customer{
		ID:                              a.text("customer_id", in.CustomerID),
		Gender:                          a.text("gender", in.Gender),
		Age:                             a.count("age", in.Age),
		MeanBuyPrice:                    a.amount("mean_buy_price", in.MeanBuyPrice),
		TotalCouponsUsed:                a.count("total_coupons_used", in.TotalCouponsUsed),
		MeanDiscountReceived:            a.amount("mean_discount_received", in.MeanDiscountReceived),
		UniqueProductsBought:            a.count("unique_products_bought", in.UniqueProductsBought),
		UniqueProductsBoughtWithCoupons: a.count("unique_products_bought_with_coupons", in.UniqueProductsBoughtWithCoupons),
		TotalItemsBought:                a.count("total_items_bought", in.TotalItemsBought),
	}
	if in.CustomerID != nil && c.ID != id {
		a.failf("customer_id", "%s, asked for %s", quoteAnswer(c.ID), quoteAnswer(id))
	}
	if in.Gender != nil && c.Gender != "M" && c.Gender != "F" {
		a.failf("gender", "%s is not M or F", quoteAnswer(c.Gender))
	}
	if a.err != nil {
		return Customer{}, a.err
	}
	return c, nil
}

// decodeCoupons reads and checks the answer to GET
// /central/departments/{dep}/coupons?date=day and appends its coupons to dst.
// Every coupon must be of dep and valid on day. On error dst is returned as
// it came.
func decodeCoupons(body []byte, dep Department, day Day, dst []Coupon) ([]Coupon, error) {
	var in answerCoupons
	if err := json.Unmarshal(body, &in); err != nil {
		return dst, fmt.Errorf("not a coupon list: %v", err)
	}
	var a answerCheck
	if d := a.department("department", in.Department); in.Department != nil && a.err == nil && d != dep {
		a.failf("department", "%s, asked for %s", quoteAnswer(*in.Department), dep)
	}
	if d := a.day("date", in.Date); in.Date != nil && a.err == nil && d != day {
		a.failf("date", "%s, asked for %s", quoteAnswer(*in.Date), day)
	}
	a.present("coupons", in.Coupons != nil) // [] when there are none, never null
	if a.err != nil {
		return dst, a.err
	}
	n := len(dst)
	for i := range in.Coupons {
		cp := &in.Coupons[i]
		a.row = "coupons[" + strconv.Itoa(i) + "]"
		c := Coupon{
			ID:                a.int("coupon_id", cp.CouponID),
			Type:              CouponType(a.text("coupon_type", cp.CouponType)),
			Department:        a.department("department", cp.Department),
			Discount:          a.count("discount", cp.Discount),
			HowMany:           a.int("how_many_products_required", cp.HowMany),
			Start:             a.day("start_date", cp.StartDate),
			End:               a.day("end_date", cp.EndDate),
			ProductMeanPrice:  a.amount("product_mean_price", cp.ProductMeanPrice),
			ProductsAvailable: a.count("products_available", cp.ProductsAvailable),
		}
		if a.err != nil {
			return dst[:n], a.err
		}
		switch _, ok := ParseCouponType(string(c.Type)); {
		case !ok:
			a.failf("coupon_type", "%s is not a coupon type", quoteAnswer(string(c.Type)))
		case c.HowMany < 0 && !(c.HowMany == -1 && c.Type == DeptCoupon):
			a.failf("how_many_products_required", "%d is negative (only a department coupon takes -1)", c.HowMany)
		case c.End < c.Start:
			a.failf("end_date", "%s before start_date %s", c.End, c.Start)
		case c.Department != dep:
			a.failf("department", "%s, asked for %s", c.Department, dep)
		case !c.ValidOn(day):
			a.failf("start_date", "coupon %d runs %s to %s, not on %s", c.ID, c.Start, c.End, day)
		}
		if a.err != nil {
			return dst[:n], a.err
		}
		dst = append(dst, c)
	}
	return dst, nil
}

// decodeProducts reads and checks the answer to GET
// /central/coupons/{id}/products.
func decodeProducts(body []byte, couponID int) ([]Product, error) {
	var in answerProducts
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, fmt.Errorf("not a product list: %v", err)
	}
	var a answerCheck
	if id := a.int("coupon_id", in.CouponID); in.CouponID != nil && id != couponID {
		a.failf("coupon_id", "%d, asked for %d", id, couponID)
	}
	a.present("products", in.Products != nil)
	if a.err != nil {
		return nil, a.err
	}
	out := make([]Product, len(in.Products))
	for i := range in.Products {
		p := &in.Products[i]
		a.row = "products[" + strconv.Itoa(i) + "]"
		out[i] = Product{
			ID:          a.int("product_id", p.ProductID),
			Name:        a.text("name", p.Name),
			Category:    a.text("category", p.Category),
			Sizes:       a.text("sizes", p.Sizes),
			Vendor:      a.text("vendor", p.Vendor),
			Description: a.text("description", p.Description),
			BuyPrice:    a.amount("buy_price", p.BuyPrice),
			Department:  a.department("department", p.Department),
		}
		if a.err != nil {
			return nil, a.err
		}
	}
	return out, nil
}

// quoteAnswer quotes a value from an answer for an error message: short, on
// one line, whatever the peer sent.
func quoteAnswer(s string) string {
	return strconv.Quote(clipText(s, 64))
}

// clipText cuts s to at most n bytes, on a rune boundary, marking the cut.
func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// ---------------------------------------------------------------------------
// The client

// CentralClient is a Source that asks a central over HTTP (CENTRAL_URL).
//
// Every call is one request and is never retried: the caller decides what a
// failure costs (the focus path counts it and moves on, a cache may serve
// what it has), and a retry would spend the focus path's deadline on a
// central that has just failed. Each call has its own deadline, the client's
// timeout, on top of the caller's context. It is safe for concurrent use.
//
// It protects the central (CentralLimits): at most MaxRPS requests a second
// (a call beyond is ErrLimited, no request made), and a circuit breaker
// that stops asking a central that keeps failing (a call is then
// ErrUnavailable wrapping breaker.ErrOpen, no request made).
type CentralClient struct {
	base      string // the URL requests start with, user info kept for basic auth
	shown     string // the base as errors show it: no user info
	timeout   time.Duration
	transport *http.Transport
	http      *http.Client
	budget    *requestBudget // nil: no bound
	breaker   *breaker.Breaker
	stats     centralClientCounters
}

// CentralLimits are what storeflow may ask of a remote central. Zero values
// turn each off.
type CentralLimits struct {
	MaxRPS          int           // CENTRAL_MAX_RPS: requests a second, at most, in bursts of up to as many
	BreakerFailures int           // CENTRAL_BREAKER_FAILURES: failed requests in a row that open the breaker
	BreakerCooldown time.Duration // CENTRAL_BREAKER_COOLDOWN: how long it stays open before a probe
}

// CentralLimits are the configured limits on a remote central.
func (c Config) CentralLimits() CentralLimits {
	return CentralLimits{MaxRPS: c.CentralMaxRPS, BreakerFailures: c.CentralBreakerFailures, BreakerCooldown: c.CentralBreakerCooldown}
}

func (l CentralLimits) validate() error {
	var errs []error
	if l.MaxRPS < 0 || l.MaxRPS > 1_000_000 {
		errs = append(errs, fmt.Errorf("CENTRAL_MAX_RPS=%d: must be between 0 (no bound) and 1000000", l.MaxRPS))
	}
	if l.BreakerFailures < 0 || l.BreakerFailures > 10000 {
		errs = append(errs, fmt.Errorf("CENTRAL_BREAKER_FAILURES=%d: must be between 0 (never open) and 10000", l.BreakerFailures))
	} else if l.BreakerFailures > 0 && l.BreakerCooldown <= 0 {
		errs = append(errs, fmt.Errorf("CENTRAL_BREAKER_COOLDOWN=%s: must be positive", l.BreakerCooldown))
	}
	return errors.Join(errs...)
}

// NewCentralClient checks baseURL (CENTRAL_URL: http or https, with a host,
// optionally a path prefix), timeout (CENTRAL_TIMEOUT, per request) and
// limits, and builds the client; it makes no request.
func NewCentralClient(baseURL string, timeout time.Duration, limits CentralLimits) (*CentralClient, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		// The URL may carry a password: it is not echoed.
		return nil, errors.New("CENTRAL_URL: want an http:// or https:// URL with a host")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("CENTRAL_URL: want a URL without a query or a fragment")
	}
	if timeout <= 0 {
		return nil, fmt.Errorf("CENTRAL_TIMEOUT=%s: must be positive", timeout)
	}
	if err := limits.validate(); err != nil {
		return nil, err
	}
	u.RawPath = ""
	u.Path = strings.TrimRight(u.Path, "/")
	shown := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}

	httpClient, transport := peerhttp.New(16, 0)
	return &CentralClient{
		base:      u.String(),
		shown:     shown.String(),
		timeout:   timeout,
		transport: transport,
		http:      httpClient,
		budget:    newRequestBudget(limits.MaxRPS),
		breaker:   breaker.New(limits.BreakerFailures, limits.BreakerCooldown),
	}, nil
}

// Close closes idle connections. The client stays usable; it is safe to
// call more than once.
func (c *CentralClient) Close() {
	c.transport.CloseIdleConnections()
}

// CentralClientStats counts the client's calls since it was made. Every call
// ends in exactly one of OK, NotFound, Canceled, Limited or a kind of
// unavailability.
type CentralClientStats struct {
	Calls    uint64 // Customer, ValidCoupons and CouponProducts calls
	OK       uint64 //
	NotFound uint64 // unknown customer, department or coupon (404, or an id the API cannot carry)
	Canceled uint64 // the caller's context was cancelled
	Limited  uint64 // not asked: CENTRAL_MAX_RPS spent (ErrLimited)

	// The central could not answer (ErrUnavailable), by kind.
	Timeout     uint64 // CENTRAL_TIMEOUT or the caller's deadline passed
	Transport   uint64 // no answer: connection refused, reset, TLS failure
	HTTP5xx     uint64 // the central failed
	BadResponse uint64 // an answer that cannot be used: 4xx other than a JSON 404, 1xx/3xx, not JSON, invalid, too large
	BreakerOpen uint64 // not asked: the circuit breaker is open

	BreakerOpened uint64 // times the circuit breaker opened
}

// Unavailable is the number of calls the central could not answer.
func (s CentralClientStats) Unavailable() uint64 {
	return s.Timeout + s.Transport + s.HTTP5xx + s.BadResponse + s.BreakerOpen
}

// Stats returns the counts so far.
func (c *CentralClient) Stats() CentralClientStats {
	s := &c.stats
	return CentralClientStats{
		Calls: s.calls.Load(), OK: s.ok.Load(), NotFound: s.notFound.Load(), Canceled: s.canceled.Load(),
		Limited: s.limited.Load(), Timeout: s.timeout.Load(), Transport: s.transport.Load(), HTTP5xx: s.http5xx.Load(),
		BadResponse: s.badResponse.Load(), BreakerOpen: c.breaker.Refused(), BreakerOpened: c.breaker.Opened(),
	}
}

// BreakerErr is nil while the circuit breaker is closed, else why it is
// not, for a readiness probe.
func (c *CentralClient) BreakerErr() error { return c.breaker.Err() }

// BreakerState is the circuit breaker's state.
func (c *CentralClient) BreakerState() breaker.State { return c.breaker.State() }

type centralClientCounters struct {
	calls, ok, notFound, canceled, limited, timeout, transport, http5xx, badResponse atomic.Uint64
}

// requestBudget is a token bucket: at most rate requests a second, in bursts
// of up to rate. In any span of t seconds it lets through at most
// rate × (1 + t) requests.
type requestBudget struct {
	rate float64
	now  func() time.Time

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

func newRequestBudget(rate int) *requestBudget {
	if rate <= 0 {
		return nil
	}
	return &requestBudget{rate: float64(rate), now: time.Now, tokens: float64(rate), last: time.Now()}
}

// take spends one request of the budget, if there is one left.
func (b *requestBudget) take() bool {
	if b == nil {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	b.tokens = min(b.rate, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// errCentralTimeout marks the client's own deadline, to tell it from the
// caller's.
var errCentralTimeout = errors.New("central timeout")

// Customer implements Source.
func (c *CentralClient) Customer(ctx context.Context, id string) (Customer, error) {
	c.stats.calls.Add(1)
	if !validCustomerID(id) {
		// The central would refuse it with 400, which would read as the
		// central failing; an id no customer can have is simply not found.
		c.stats.notFound.Add(1)
		return Customer{}, fmt.Errorf("customer %s: %w", quoteAnswer(id), ErrNotFound)
	}
	path := centralCustomerPath + url.PathEscape(id)
	body, err := c.get(ctx, path)
	if err != nil {
		return Customer{}, err
	}
	cu, err := decodeCustomer(body, id)
	if err != nil {
		return Customer{}, c.fail(&c.stats.badResponse, path, "", err)
	}
	c.stats.ok.Add(1)
	return cu, nil
}

// ValidCoupons implements Source: it appends to dst the department's coupons
// valid on day. On error dst is returned as it came.
func (c *CentralClient) ValidCoupons(ctx context.Context, dep Department, day Day, dst []Coupon) ([]Coupon, error) {
	c.stats.calls.Add(1)
	if dep == NoDepartment || int(dep) >= len(departmentNames) {
		c.stats.notFound.Add(1)
		return dst, fmt.Errorf("department %d: %w", dep, ErrNotFound)
	}
	date := day.String()
	if d, err := ParseDay(date); err != nil || d != day {
		// A day outside years 0–9999 has no YYYY-MM-DD form, so no coupon
		// (whose dates have one) can run on it: nothing, as the Catalog says.
		c.stats.ok.Add(1)
		return dst, nil
	}
	path := centralDepartmentPath + dep.String() + "/coupons?date=" + date
	body, err := c.get(ctx, path)
	if err != nil {
		return dst, err
	}
	dst, err = decodeCoupons(body, dep, day, dst)
	if err != nil {
		return dst, c.fail(&c.stats.badResponse, path, "", err)
	}
	c.stats.ok.Add(1)
	return dst, nil
}

// CouponProducts implements Source.
func (c *CentralClient) CouponProducts(ctx context.Context, couponID int) ([]Product, error) {
	c.stats.calls.Add(1)
	path := centralCouponPath + strconv.Itoa(couponID) + "/products"
	body, err := c.get(ctx, path)
	if err != nil {
		return nil, err
	}
	list, err := decodeProducts(body, couponID)
	if err != nil {
		return nil, c.fail(&c.stats.badResponse, path, "", err)
	}
	c.stats.ok.Add(1)
	return list, nil
}

// get asks for path and returns the 200 answer's body, within the request
// budget and unless the breaker is open. Its errors are counted already and
// wrap ErrNotFound (a JSON 404), ErrLimited or ErrUnavailable.
func (c *CentralClient) get(ctx context.Context, path string) ([]byte, error) {
	probe, err := c.breaker.Allow()
	if err != nil {
		return nil, fmt.Errorf("%w: %s%s: %w", ErrUnavailable, c.shown, path, err)
	}
	if !c.budget.take() {
		c.breaker.Record(probe, breaker.Neutral, nil)
		c.stats.limited.Add(1)
		return nil, fmt.Errorf("%s%s: %w", c.shown, path, ErrLimited)
	}
	body, status, err := c.request(ctx, path)
	c.breaker.Record(probe, breaker.ResultOf(status, err), err)
	return body, err
}

// request is get's one request; it also returns the answer's status (0:
// none).
func (c *CentralClient) request(ctx context.Context, path string) ([]byte, int, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, c.timeout, errCentralTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil { // the base was checked and the path escaped: a bug if it happens
		return nil, 0, c.fail(&c.stats.transport, path, "cannot build the request", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, 0, c.failCtx(ctx, path, "")
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL, user name included
		}
		return nil, 0, c.fail(&c.stats.transport, path, "", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, centralMaxResponseBytes+1))
	if err != nil {
		if ctx.Err() != nil {
			return nil, 0, c.failCtx(ctx, path, "reading the answer")
		}
		return nil, 0, c.fail(&c.stats.transport, path, "reading the answer", err)
	}
	status := strconv.Itoa(resp.StatusCode) + " " + http.StatusText(resp.StatusCode)
	switch {
	case resp.StatusCode >= 500:
		return nil, resp.StatusCode, c.fail(&c.stats.http5xx, path, status+": "+errorText(body), nil)
	case len(body) > centralMaxResponseBytes:
		return nil, resp.StatusCode, c.fail(&c.stats.badResponse, path, fmt.Sprintf("%s: answer over %d bytes", status, centralMaxResponseBytes), nil)
	case resp.StatusCode == http.StatusNotFound:
		// Only the central's own JSON 404 means "no such thing": a plain
		// 404 is a wrong CENTRAL_URL path or a proxy, and reading it as
		// "not found" would hide the outage behind a stream of unknown
		// customers.
		var e centralError
		if !isJSON(resp.Header) || json.Unmarshal(body, &e) != nil || e.Error == "" {
			return nil, resp.StatusCode, c.fail(&c.stats.badResponse, path, status+" that is not the central's: "+errorText(body), nil)
		}
		c.stats.notFound.Add(1)
		return nil, resp.StatusCode, fmt.Errorf("central %s%s: %s: %w", c.shown, path, errorText(body), ErrNotFound)
	case resp.StatusCode != http.StatusOK:
		// A 400 means client and central disagree on the API: not the
		// caller's fault, and not "not found".
		return nil, resp.StatusCode, c.fail(&c.stats.badResponse, path, status+": "+errorText(body), nil)
	}
	return body, resp.StatusCode, nil
}

// fail counts an error of one kind and wraps it with what happened:
// "store: central unavailable: http://host/central/customers/7: <what>:
// <cause>"; either may be empty. cause is wrapped so callers can test for it.
func (c *CentralClient) fail(kind *atomic.Uint64, path, what string, cause error) error {
	kind.Add(1)
	switch {
	case cause == nil:
		return fmt.Errorf("%w: %s%s: %s", ErrUnavailable, c.shown, path, what)
	case what == "":
		return fmt.Errorf("%w: %s%s: %w", ErrUnavailable, c.shown, path, cause)
	}
	return fmt.Errorf("%w: %s%s: %s: %w", ErrUnavailable, c.shown, path, what, cause)
}

// failCtx reports a call ended by its context: the client's timeout, the
// caller's deadline or the caller's cancellation.
func (c *CentralClient) failCtx(ctx context.Context, path, while string) error {
	if while != "" {
		while = " " + while
	}
	cause := context.Cause(ctx)
	switch {
	case errors.Is(cause, errCentralTimeout):
		c.stats.timeout.Add(1)
		return fmt.Errorf("%w: %s%s: timed out after %s%s: %w", ErrUnavailable, c.shown, path, c.timeout, while, context.DeadlineExceeded)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		c.stats.timeout.Add(1)
		return fmt.Errorf("%w: %s%s: the caller's deadline passed%s: %w", ErrUnavailable, c.shown, path, while, context.DeadlineExceeded)
	}
	c.stats.canceled.Add(1)
	return fmt.Errorf("%w: %s%s: canceled%s: %w", ErrUnavailable, c.shown, path, while, context.Canceled)
}

func isJSON(h http.Header) bool {
	ct, _, _ := strings.Cut(h.Get("Content-Type"), ";")
	return strings.EqualFold(strings.TrimSpace(ct), "application/json")
}

// errorText is an error answer as an error shows it: the central's "error"
// text, or else the start of the body, on one printable line.
func errorText(body []byte) string {
	var e centralError
	s := string(body)
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		s = e.Error
	}
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(clipText(s, centralMaxErrorText), "?"))
	if s = strings.TrimSpace(s); s == "" {
		return "(empty body)"
	}
	return s
}
