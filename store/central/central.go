// Package central owns the central's HTTP API, the shop's catalog served
// over HTTP: the server that answers it from any store.Source, the client
// that asks a remote central (CENTRAL_URL) and is itself a store.Source, and
// the wire forms between them.
package central

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/storeflow/storeflow/internal/breaker"
	"github.com/storeflow/storeflow/internal/clip"
	"github.com/storeflow/storeflow/internal/peerhttp"
	"github.com/storeflow/storeflow/internal/redact"
	"github.com/storeflow/storeflow/store"
)

// The central's HTTP API, as Server serves it and Client asks it:
//
//	GET /central/customers/{id}                            → a customer_info row
//	GET /central/departments/{dep}/coupons?date=YYYY-MM-DD → {"department", "date", "coupons": [coupon_info rows]}
//	GET /central/coupons/{id}/products[?limit=N]           → {"coupon_id", "products": [product_info rows]}
//
// Rows carry the CSV column names. A coupon's products come in the coupon's
// order, the first N of them with ?limit=N (a positive integer), every one
// without. Errors are {"error": "..."}: 404 for an unknown customer,
// department or coupon, 400 for a malformed id, date or limit, 503 when the
// source behind the server cannot answer.
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
)

// ---------------------------------------------------------------------------
// The server

// Server answers the central's API from a Source, so that any
// storeflow can be the central of others. It is safe for concurrent use.
type Server struct {
	src                          store.Source
	log                          *slog.Logger
	customers, coupons, products routeCounters
}

// NewServer returns a server answering from src. log is used as given
// (the caller names the component); nil discards. The answers are counted in
// storeflow_central_server_requests_total{route,outcome}, registered with
// reg (nil: a private registry).
func NewServer(src store.Source, log *slog.Logger, reg prometheus.Registerer) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "storeflow_central_server_requests_total",
		Help: "Requests to this process's central API, by route and outcome.",
	}, []string{"route", "outcome"})
	reg.MustRegister(requests)
	return &Server{
		src:       src,
		log:       log,
		customers: newRouteCounters(requests, "customers"),
		coupons:   newRouteCounters(requests, "coupons"),
		products:  newRouteCounters(requests, "products"),
	}
}

// Register adds the central's routes to mux.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET "+centralCustomerPath+"{id}", s.handleCustomer)
	// An empty id does not match {id}; without this route it would get the
	// mux's plain-text 404, which a client must not read as "no such customer".
	mux.HandleFunc("GET "+centralCustomerPath+"{$}", s.handleCustomer)
	mux.HandleFunc("GET "+centralDepartmentPath+"{dep}/coupons", s.handleCoupons)
	mux.HandleFunc("GET "+centralCouponPath+"{id}/products", s.handleProducts)
}

// routeCounters count one route's answers by outcome.
type routeCounters struct {
	ok          prometheus.Counter // 200
	notFound    prometheus.Counter // 404: unknown customer, department or coupon
	badRequest  prometheus.Counter // 400: malformed id or date
	unavailable prometheus.Counter // 503: the source could not answer
}

func newRouteCounters(requests *prometheus.CounterVec, route string) routeCounters {
	return routeCounters{
		ok:          requests.WithLabelValues(route, "ok"),
		notFound:    requests.WithLabelValues(route, "not_found"),
		badRequest:  requests.WithLabelValues(route, "bad_request"),
		unavailable: requests.WithLabelValues(route, "unavailable"),
	}
}

func (c *routeCounters) count(status int) {
	switch status {
	case http.StatusOK:
		c.ok.Inc()
	case http.StatusNotFound:
		c.notFound.Inc()
	case http.StatusBadRequest:
		c.badRequest.Inc()
	default:
		c.unavailable.Inc()
	}
}

func (s *Server) handleCustomer(w http.ResponseWriter, r *http.Request) {
	rc := &s.customers
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
	s.reply(w, r, rc, http.StatusOK, cu.Row())
}

func (s *Server) handleCoupons(w http.ResponseWriter, r *http.Request) {
	rc := &s.coupons
	q := r.URL.Query()
	if !q.Has("date") {
		s.badRequest(w, r, rc, "date is required (?date=YYYY-MM-DD)")
		return
	}
	day, err := store.ParseDay(q.Get("date"))
	if err != nil {
		s.badRequest(w, r, rc, err.Error())
		return
	}
	name := r.PathValue("dep")
	dep, ok := store.ParseDepartment(name)
	if !ok {
		s.reply(w, r, rc, http.StatusNotFound, centralError{Error: fmt.Sprintf("department %q: %v", name, store.ErrNotFound)})
		return
	}
	list, err := s.src.ValidCoupons(r.Context(), dep, day, nil)
	if err != nil {
		s.sourceFailed(w, r, rc, err)
		return
	}
	out := wireCoupons{Department: dep.String(), Date: day.String(), Coupons: make([]store.CouponRow, len(list))}
	for i := range list {
		out.Coupons[i] = list[i].Row()
	}
	s.reply(w, r, rc, http.StatusOK, out)
}

func (s *Server) handleProducts(w http.ResponseWriter, r *http.Request) {
	rc := &s.products
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil {
		s.badRequest(w, r, rc, "coupon id must be an integer")
		return
	}
	limit := store.AllProducts
	if q := r.URL.Query(); q.Has("limit") {
		if limit, err = strconv.Atoi(q.Get("limit")); err != nil || limit < 1 {
			s.badRequest(w, r, rc, "limit must be a positive integer, the number of products wanted")
			return
		}
	}
	list, err := s.src.CouponProducts(r.Context(), id, limit)
	if err != nil {
		s.sourceFailed(w, r, rc, err)
		return
	}
	out := wireProducts{CouponID: id, Products: make([]store.ProductRow, len(list))}
	for i := range list {
		out.Products[i] = list[i].Row()
	}
	s.reply(w, r, rc, http.StatusOK, out)
}

func (s *Server) badRequest(w http.ResponseWriter, r *http.Request, rc *routeCounters, msg string) {
	s.log.Debug("bad request", "path", r.URL.Path, "reason", msg)
	s.reply(w, r, rc, http.StatusBadRequest, centralError{Error: msg})
}

// sourceFailed answers a Source error: ErrNotFound is 404, anything else
// means this central could not answer, 503.
func (s *Server) sourceFailed(w http.ResponseWriter, r *http.Request, rc *routeCounters, err error) {
	if errors.Is(err, store.ErrNotFound) {
		s.reply(w, r, rc, http.StatusNotFound, centralError{Error: err.Error()})
		return
	}
	s.log.Warn("source failed", "path", r.URL.Path, "error", err)
	s.reply(w, r, rc, http.StatusServiceUnavailable, centralError{Error: "the central could not answer: " + err.Error()})
}

func (s *Server) reply(w http.ResponseWriter, r *http.Request, rc *routeCounters, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil { // a NaN or infinite float from the source: JSON cannot carry it
		s.log.Warn("source answer not encodable", "path", r.URL.Path, "error", err)
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

type wireCoupons struct {
	Department string            `json:"department"`
	Date       string            `json:"date"`
	Coupons    []store.CouponRow `json:"coupons"`
}

type wireProducts struct {
	CouponID int                `json:"coupon_id"`
	Products []store.ProductRow `json:"products"`
}

// The client decodes the rows into the store's row forms and checks that
// each carries every column: an answer without "discount" is a mismatch, not
// a 0 % coupon. Unknown fields are passed over, so a newer central may add
// some.

type answerCoupons struct {
	Department *string           `json:"department"`
	Date       *string           `json:"date"`
	Coupons    []store.CouponRow `json:"coupons"`
}

type answerProducts struct {
	CouponID *int               `json:"coupon_id"`
	Products []store.ProductRow `json:"products"`
}

// answerColumns reads the rows of an answer (under key "" for a single
// row) as JSON objects, to see which columns each carries. It is called on
// a body that has decoded already, so it cannot fail.
func answerColumns(body []byte, key string) []map[string]json.RawMessage {
	if key == "" {
		var row map[string]json.RawMessage
		_ = json.Unmarshal(body, &row)
		return []map[string]json.RawMessage{row}
	}
	var answer map[string]json.RawMessage
	var rows []map[string]json.RawMessage
	_ = json.Unmarshal(body, &answer)
	_ = json.Unmarshal(answer[key], &rows)
	return rows
}

// missingColumn checks the i-th row of rows for every column; a missing or
// null one is an error naming it, after at (the row's place in the answer).
func missingColumn(rows []map[string]json.RawMessage, i int, at string, columns []string) error {
	var row map[string]json.RawMessage
	if i < len(rows) {
		row = rows[i]
	}
	for _, c := range columns {
		if v, ok := row[c]; !ok || string(v) == "null" {
			return fmt.Errorf("%s%s: missing", at, c)
		}
	}
	return nil
}

// brokenRule is the first rule a row broke, after at.
func brokenRule(at string, err error) error {
	if fes := store.FieldErrors(err); len(fes) > 0 {
		return fmt.Errorf("%s%w", at, fes[0])
	}
	return err
}

// decodeCustomer reads and checks the answer to GET /central/customers/{id}.
func decodeCustomer(body []byte, id string) (store.Customer, error) {
	var row store.CustomerRow
	if err := json.Unmarshal(body, &row); err != nil {
		return store.Customer{}, fmt.Errorf("not a customer_info row: %v", err)
	}
	if err := missingColumn(answerColumns(body, ""), 0, "", store.CustomerColumns); err != nil {
		return store.Customer{}, err
	}
	if row.CustomerID != id {
		return store.Customer{}, fmt.Errorf("customer_id: %s, asked for %s", quoteAnswer(row.CustomerID), quoteAnswer(id))
	}
	c, err := row.Customer()
	if err != nil {
		return store.Customer{}, brokenRule("", err)
	}
	return c, nil
}

// decodeCoupons reads and checks the answer to GET
// /central/departments/{dep}/coupons?date=day and appends its coupons to dst.
// Every coupon must be of dep and valid on day. On error dst is returned as
// it came.
func decodeCoupons(body []byte, dep store.Department, day store.Day, dst []store.Coupon) ([]store.Coupon, error) {
	var in answerCoupons
	if err := json.Unmarshal(body, &in); err != nil {
		return dst, fmt.Errorf("not a coupon list: %v", err)
	}
	switch {
	case in.Department == nil:
		return dst, errors.New("department: missing")
	case !sameDepartment(*in.Department, dep):
		return dst, fmt.Errorf("department: %s, asked for %s", quoteAnswer(*in.Department), dep)
	case in.Date == nil:
		return dst, errors.New("date: missing")
	case !sameDay(*in.Date, day):
		return dst, fmt.Errorf("date: %s, asked for %s", quoteAnswer(*in.Date), day)
	case in.Coupons == nil: // [] when there are none, never null
		return dst, errors.New("coupons: missing")
	}
	columns := answerColumns(body, "coupons")
	n := len(dst)
	for i := range in.Coupons {
		at := "coupons[" + strconv.Itoa(i) + "]."
		if err := missingColumn(columns, i, at, store.CouponColumns); err != nil {
			return dst[:n], err
		}
		c, err := in.Coupons[i].Coupon()
		switch {
		case err != nil:
			return dst[:n], brokenRule(at, err)
		case c.Department != dep:
			return dst[:n], fmt.Errorf("%sdepartment: %s, asked for %s", at, c.Department, dep)
		case !c.ValidOn(day):
			return dst[:n], fmt.Errorf("%sstart_date: coupon %d runs %s to %s, not on %s", at, c.ID, c.Start, c.End, day)
		}
		dst = append(dst, c)
	}
	return dst, nil
}

func sameDepartment(name string, dep store.Department) bool {
	d, ok := store.ParseDepartment(name)
	return ok && d == dep
}

func sameDay(date string, day store.Day) bool {
	d, err := store.ParseDay(date)
	return err == nil && d == day
}

// decodeProducts reads and checks the answer to GET
// /central/coupons/{id}/products.
func decodeProducts(body []byte, couponID, limit int) ([]store.Product, error) {
	var in answerProducts
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, fmt.Errorf("not a product list: %v", err)
	}
	switch {
	case in.CouponID == nil:
		return nil, errors.New("coupon_id: missing")
	case *in.CouponID != couponID:
		return nil, fmt.Errorf("coupon_id: %d, asked for %d", *in.CouponID, couponID)
	case in.Products == nil:
		return nil, errors.New("products: missing")
	}
	if limit > 0 && len(in.Products) > limit {
		// A central older than ?limit answers with every product: the
		// first ones are the same.
		in.Products = in.Products[:limit]
	}
	columns := answerColumns(body, "products")
	out := make([]store.Product, len(in.Products))
	for i := range in.Products {
		at := "products[" + strconv.Itoa(i) + "]."
		if err := missingColumn(columns, i, at, store.ProductColumns); err != nil {
			return nil, err
		}
		var err error
		if out[i], err = in.Products[i].Product(); err != nil {
			return nil, brokenRule(at, err)
		}
	}
	return out, nil
}

// quoteAnswer quotes a value from an answer for an error message: short, on
// one line, whatever the peer sent.
func quoteAnswer(s string) string {
	return clip.Quote(s, 64)
}

// ---------------------------------------------------------------------------
// The client

// Client is a Source that asks a central over HTTP (CENTRAL_URL).
//
// Every call is one request and is never retried: the caller decides what a
// failure costs (the focus path counts it and moves on, a cache may serve
// what it has), and a retry would spend the focus path's deadline on a
// central that has just failed. Each call has its own deadline, the client's
// timeout, on top of the caller's context. It is safe for concurrent use.
//
// It protects the central (store.CentralLimits): at most CENTRAL_MAX_RPS
// requests a second (a call beyond is store.ErrLimited, no request made), and
// a circuit breaker that stops asking a central that keeps failing (a call is
// then store.ErrUnavailable wrapping breaker.ErrOpen, no request made).
type Client struct {
	base    string // the URL requests start with, user info kept for basic auth
	shown   string // the base as errors show it (redact.URL)
	timeout time.Duration
	http    *peerhttp.Client
	budget  *requestBudget // nil: no bound
	breaker *breaker.Breaker
	calls   clientCounters
}

// NewClient checks baseURL (CENTRAL_URL: http or https, with a host,
// optionally a path prefix) and timeout (CENTRAL_TIMEOUT, per request) and
// builds the client; it makes no request. Every call is counted, by outcome,
// in storeflow_central_client_calls_total{outcome}, registered with reg (nil:
// a private registry).
func NewClient(baseURL string, timeout time.Duration, limits store.CentralLimits, reg prometheus.Registerer) (*Client, error) {
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
	if err := limits.Validate(); err != nil {
		return nil, err
	}
	u.RawPath = ""
	u.Path = strings.TrimRight(u.Path, "/")
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	calls := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "storeflow_central_client_calls_total",
		Help: "Calls to CENTRAL_URL, by outcome.",
	}, []string{"outcome"})
	reg.MustRegister(calls)
	br := breaker.New(limits.BreakerFailures, limits.BreakerCooldown)
	br.Register(reg, "central")
	return &Client{
		base:    u.String(),
		shown:   redact.URL(u.String()),
		timeout: timeout,
		http:    peerhttp.New(16, 0),
		budget:  newRequestBudget(limits.MaxRPS),
		breaker: br,
		calls: clientCounters{
			ok:          calls.WithLabelValues("ok"),
			notFound:    calls.WithLabelValues("not_found"),
			canceled:    calls.WithLabelValues("canceled"),
			timeout:     calls.WithLabelValues("timeout"),
			transport:   calls.WithLabelValues("transport"),
			http5xx:     calls.WithLabelValues("http_5xx"),
			badResponse: calls.WithLabelValues("bad_response"),
			limited:     calls.WithLabelValues("limited"),
			breakerOpen: calls.WithLabelValues("breaker_open"),
		},
	}, nil
}

// Close closes idle connections. The client stays usable; it is safe to
// call more than once.
func (c *Client) Close() {
	c.http.CloseIdleConnections()
}

// clientCounters count the client's calls by outcome: every call ends in
// exactly one.
type clientCounters struct {
	ok       prometheus.Counter
	notFound prometheus.Counter // unknown customer, department or coupon (404, or an id the API cannot carry)
	canceled prometheus.Counter // the caller's context was cancelled

	// The central could not answer (ErrUnavailable), by kind.
	timeout     prometheus.Counter // CENTRAL_TIMEOUT or the caller's deadline passed
	transport   prometheus.Counter // no answer: connection refused, reset, TLS failure
	http5xx     prometheus.Counter // the central failed
	badResponse prometheus.Counter // an answer that cannot be used: 4xx other than a JSON 404, 1xx/3xx, not JSON, invalid, too large
	breakerOpen prometheus.Counter // not asked: the circuit breaker is open

	limited prometheus.Counter // not asked: CENTRAL_MAX_RPS spent (store.ErrLimited)
}

// BreakerErr is nil while the circuit breaker is closed, else why it is
// not, for a readiness probe.
func (c *Client) BreakerErr() error { return c.breaker.Err() }

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

// Customer implements Source.
func (c *Client) Customer(ctx context.Context, id string) (store.Customer, error) {
	if !validCustomerID(id) {
		// The central would refuse it with 400, which would read as the
		// central failing; an id no customer can have is simply not found.
		c.calls.notFound.Inc()
		return store.Customer{}, fmt.Errorf("customer %s: %w", quoteAnswer(id), store.ErrNotFound)
	}
	path := centralCustomerPath + url.PathEscape(id)
	body, err := c.get(ctx, path)
	if err != nil {
		return store.Customer{}, err
	}
	cu, err := decodeCustomer(body, id)
	if err != nil {
		return store.Customer{}, c.fail(c.calls.badResponse, path, err)
	}
	c.calls.ok.Inc()
	return cu, nil
}

// ValidCoupons implements Source: it appends to dst the department's coupons
// valid on day. On error dst is returned as it came.
func (c *Client) ValidCoupons(ctx context.Context, dep store.Department, day store.Day, dst []store.Coupon) ([]store.Coupon, error) {
	if !dep.Valid() {
		c.calls.notFound.Inc()
		return dst, fmt.Errorf("department %d: %w", dep, store.ErrNotFound)
	}
	date := day.String()
	if d, err := store.ParseDay(date); err != nil || d != day {
		// A day outside years 0–9999 has no YYYY-MM-DD form, so no coupon
		// (whose dates have one) can run on it: nothing, as the Catalog says.
		c.calls.ok.Inc()
		return dst, nil
	}
	path := centralDepartmentPath + dep.String() + "/coupons?date=" + date
	body, err := c.get(ctx, path)
	if err != nil {
		return dst, err
	}
	dst, err = decodeCoupons(body, dep, day, dst)
	if err != nil {
		return dst, c.fail(c.calls.badResponse, path, err)
	}
	c.calls.ok.Inc()
	return dst, nil
}

// CouponProducts implements Source: it asks for the first limit products
// only (?limit=N), every one for store.AllProducts.
func (c *Client) CouponProducts(ctx context.Context, couponID, limit int) ([]store.Product, error) {
	path := centralCouponPath + strconv.Itoa(couponID) + "/products"
	if limit > 0 {
		path += "?limit=" + strconv.Itoa(limit)
	}
	body, err := c.get(ctx, path)
	if err != nil {
		return nil, err
	}
	list, err := decodeProducts(body, couponID, limit)
	if err != nil {
		return nil, c.fail(c.calls.badResponse, path, err)
	}
	c.calls.ok.Inc()
	return list, nil
}

// get asks for path and returns the 200 answer's body. Its errors are
// counted already and wrap ErrNotFound (a JSON 404) or ErrUnavailable. The
// call itself follows the peer policy (peerhttp.Call): the client's own
// deadline, a bounded answer, one outcome per call.
func (c *Client) get(ctx context.Context, path string) ([]byte, error) {
	probe, err := c.breaker.Allow()
	if err != nil {
		c.calls.breakerOpen.Inc()
		return nil, fmt.Errorf("%w: %s%s: %w", store.ErrUnavailable, c.shown, path, err)
	}
	if !c.budget.take() {
		c.breaker.Record(probe, breaker.Neutral, nil)
		c.calls.limited.Inc()
		return nil, fmt.Errorf("%s%s: %w", c.shown, path, store.ErrLimited)
	}
	body, status, err := c.request(ctx, path)
	c.breaker.Record(probe, breaker.ResultOf(status, err), err)
	return body, err
}

// request is get's one request, through the peer policy; it also returns
// the answer's status (0: none) for the breaker.
func (c *Client) request(ctx context.Context, path string) ([]byte, int, error) {
	ctx, cancel := peerhttp.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil { // the base was checked and the path escaped: a bug if it happens
		return nil, 0, c.fail(c.calls.transport, path, fmt.Errorf("cannot build the request: %w", err))
	}
	req.Header.Set("Accept", "application/json")
	r := c.http.Call(req, centralMaxResponseBytes)
	switch {
	case r.Outcome == peerhttp.HTTP4xx && r.Status == http.StatusNotFound:
		// Only the central's own JSON 404 means "no such thing": a plain
		// 404 is a wrong CENTRAL_URL path or a proxy, and reading it as
		// "not found" would hide the outage behind a stream of unknown
		// customers.
		var e centralError
		if !isJSON(r.Header) || json.Unmarshal(r.Body, &e) != nil || e.Error == "" {
			return nil, r.Status, c.fail(c.calls.badResponse, path, fmt.Errorf("404 Not Found that is not the central's: %s", peerhttp.ErrorText(r.Body)))
		}
		c.calls.notFound.Inc()
		return nil, r.Status, fmt.Errorf("central %s%s: %s: %w", c.shown, path, peerhttp.ErrorText(r.Body), store.ErrNotFound)
	case r.Outcome == peerhttp.OK && r.Status != http.StatusOK:
		return nil, r.Status, c.fail(c.calls.badResponse, path, fmt.Errorf("unexpected %d %s", r.Status, http.StatusText(r.Status)))
	case r.Outcome != peerhttp.OK:
		// A 400 means client and central disagree on the API: not the
		// caller's fault, and not "not found".
		return nil, r.Status, c.fail(c.counter(r.Outcome), path, r.Err)
	}
	return r.Body, r.Status, nil
}

// counter is the count of a failed call's outcome: a refusal other than the
// central's 404 is an answer that cannot be used.
func (c *Client) counter(o peerhttp.Outcome) prometheus.Counter {
	switch o {
	case peerhttp.Timeout:
		return c.calls.timeout
	case peerhttp.Canceled:
		return c.calls.canceled
	case peerhttp.Transport:
		return c.calls.transport
	case peerhttp.HTTP5xx:
		return c.calls.http5xx
	}
	return c.calls.badResponse
}

// fail counts an error of one kind and wraps it with where it happened:
// "store: central unavailable: http://host/central/customers/7: <err>". err
// is wrapped so callers can test for it.
func (c *Client) fail(kind prometheus.Counter, path string, err error) error {
	kind.Inc()
	return fmt.Errorf("%w: %s%s: %w", store.ErrUnavailable, c.shown, path, err)
}

func isJSON(h http.Header) bool {
	ct, _, _ := strings.Cut(h.Get("Content-Type"), ";")
	return strings.EqualFold(strings.TrimSpace(ct), "application/json")
}
