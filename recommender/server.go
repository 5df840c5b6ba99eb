package recommender

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"runtime/debug"
	"slices"
	"strconv"
	"sync/atomic"

	"github.com/storeflow/storeflow/store"
)

// The model as the Open Inference Protocol (KServe V2) names it: one input
// tensor of n feature rows, one output tensor of n probabilities.
const (
	ModelName    = "coupon"      // the model in /v2/models/{name}
	ModelVersion = "1"           // the only version served
	InputName    = "features"    // FP32 [n, NumFeatures], rows in FeatureNames order
	OutputName   = "probability" // FP32 [n], the chance the coupon is used
)

// Limits of one request, on both APIs.
const (
	MaxRows         = 1000    // coupons of one /score request, rows of one infer request
	MaxRequestBytes = 1 << 20 // request body; larger gets 413
)

const (
	serverName     = "storeflow"
	modelPlatform  = "storeflow"
	datatypeFP32   = "FP32"
	datatypeFP64   = "FP64"
	msgNoModel     = "model not loaded"
	maxEchoedBytes = 40 // of a bad value quoted back in an error
)

// Server answers prediction requests for one RowScorer over HTTP: the
// original POST /score API and the Open Inference Protocol (KServe V2).
// Both encode their rows the same way (Encode), so they agree on every
// probability, up to the FP32 rounding of the V2 output.
type Server struct {
	model   RowScorer // nil: not ready, every scoring request gets 503
	log     *slog.Logger
	version string
	stats   serverCounters
}

// NewServer returns a server for model. A nil model makes a server that is
// live but not ready, so it can be mounted before the model is loaded.
func NewServer(model RowScorer, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	version := "dev"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		version = bi.Main.Version
	}
	return &Server{model: model, log: log.With("component", "prediction_server"), version: version}
}

// Register adds the server's routes to mux. The versioned V2 paths
// (/v2/models/coupon/versions/1/...) are served too, as the protocol asks.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /score", s.handleScore)
	mux.HandleFunc("GET /v2/health/live", s.handleLive)
	mux.HandleFunc("GET /v2/health/ready", s.handleReady)
	mux.HandleFunc("GET /v2", s.handleServerMetadata)
	for _, base := range []string{"/v2/models/{model}", "/v2/models/{model}/versions/{version}"} {
		mux.HandleFunc("GET "+base, s.handleModelMetadata)
		mux.HandleFunc("GET "+base+"/ready", s.handleModelReady)
		mux.HandleFunc("POST "+base+"/infer", s.handleInfer)
	}
}

// ServerStats counts the server's requests by route and outcome since it
// was made.
type ServerStats struct {
	Score    RouteStats // POST /score
	Infer    RouteStats // POST /v2/models/{name}/infer
	Health   RouteStats // the V2 liveness and readiness routes
	Metadata RouteStats // the V2 server and model metadata routes
	Rows     uint64     // feature rows scored, both APIs
}

// RouteStats counts one route's answers by outcome.
type RouteStats struct {
	OK          uint64 // 2xx
	BadRequest  uint64 // 400: the body is wrong; the reason is logged at debug
	NotFound    uint64 // 404: unknown model or version
	TooLarge    uint64 // 413: body over MaxRequestBytes
	Unavailable uint64 // 503: no model loaded
	Failed      uint64 // 500: the model gave a non-finite probability
}

// Stats returns the counts so far.
func (s *Server) Stats() ServerStats {
	return ServerStats{
		Score:    s.stats.score.load(),
		Infer:    s.stats.infer.load(),
		Health:   s.stats.health.load(),
		Metadata: s.stats.metadata.load(),
		Rows:     s.stats.rows.Load(),
	}
}

type serverCounters struct {
	score, infer, health, metadata routeCounters
	rows                           atomic.Uint64
}

type routeCounters struct {
	ok, badRequest, notFound, tooLarge, unavailable, failed atomic.Uint64
}

func (c *routeCounters) count(status int) {
	switch {
	case status < 300:
		c.ok.Add(1)
	case status == http.StatusNotFound:
		c.notFound.Add(1)
	case status == http.StatusRequestEntityTooLarge:
		c.tooLarge.Add(1)
	case status == http.StatusServiceUnavailable:
		c.unavailable.Add(1)
	case status < 500:
		c.badRequest.Add(1)
	default:
		c.failed.Add(1)
	}
}

func (c *routeCounters) load() RouteStats {
	return RouteStats{
		OK: c.ok.Load(), BadRequest: c.badRequest.Load(), NotFound: c.notFound.Load(),
		TooLarge: c.tooLarge.Load(), Unavailable: c.unavailable.Load(), Failed: c.failed.Load(),
	}
}

// errorBody is every error answer. Field names the offending JSON field on
// /score (e.g. "coupons[2].discount"); the V2 routes leave it out, as the
// protocol's error shape is {"error": "..."}.
type errorBody struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

// scoreResult is one entry of the /score answer. CustomerID is always a
// string: a numeric customer_id is echoed as its JSON text ("1234"), so
// clients read one type whatever they sent.
type scoreResult struct {
	CouponID   int     `json:"coupon_id"`
	CustomerID string  `json:"customer_id"`
	Prediction float64 `json:"prediction"`
}

func (s *Server) handleScore(w http.ResponseWriter, r *http.Request) {
	rc := &s.stats.score
	if s.model == nil {
		s.reply(w, rc, http.StatusServiceUnavailable, errorBody{Error: msgNoModel})
		return
	}
	req, err := decodeScoreRequest(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
	if err != nil {
		s.badRequest(w, rc, "score", err, true)
		return
	}
	n := len(req.coupons)
	rows := make([]float32, n*NumFeatures)
	for i := range req.coupons {
		Encode(&req.customer, &req.coupons[i], rows[i*NumFeatures:(i+1)*NumFeatures])
	}
	probs, ok := s.scoreRows(rows, n)
	if !ok {
		s.reply(w, rc, http.StatusInternalServerError, errorBody{Error: "model gave a non-finite probability"})
		return
	}
	results := make([]scoreResult, n) // never nil: no coupons answer [], not null
	for i := range results {
		results[i] = scoreResult{CouponID: req.coupons[i].ID, CustomerID: req.customer.ID, Prediction: probs[i]}
	}
	slices.SortFunc(results, func(a, b scoreResult) int {
		if c := cmp.Compare(b.Prediction, a.Prediction); c != 0 {
			return c
		}
		return cmp.Compare(a.CouponID, b.CouponID)
	})
	s.reply(w, rc, http.StatusOK, results)
}

// scoreRows runs the model over n rows; ok is false if it gave NaN or ±Inf,
// which JSON cannot carry and no caller could use.
func (s *Server) scoreRows(rows []float32, n int) (probs []float64, ok bool) {
	probs = make([]float64, n)
	if n == 0 {
		return probs, true
	}
	s.model.ScoreRows(rows, probs)
	s.stats.rows.Add(uint64(n))
	for _, p := range probs {
		if math.IsNaN(p) || math.IsInf(p, 0) {
			s.log.Error("model gave a non-finite probability", "rows", n)
			return nil, false
		}
	}
	return probs, true
}

func (s *Server) handleLive(w http.ResponseWriter, _ *http.Request) {
	s.reply(w, &s.stats.health, http.StatusOK, map[string]bool{"live": true})
}

func (s *Server) handleReady(w http.ResponseWriter, _ *http.Request) {
	s.replyReady(w, &s.stats.health)
}

func (s *Server) replyReady(w http.ResponseWriter, rc *routeCounters) {
	if s.model == nil {
		s.reply(w, rc, http.StatusServiceUnavailable, map[string]bool{"ready": false})
		return
	}
	s.reply(w, rc, http.StatusOK, map[string]bool{"ready": true})
}

func (s *Server) handleServerMetadata(w http.ResponseWriter, _ *http.Request) {
	s.reply(w, &s.stats.metadata, http.StatusOK, serverMetadata{Name: serverName, Version: s.version, Extensions: []string{}})
}

type serverMetadata struct {
	Name       string   `json:"name"`
	Version    string   `json:"version"`
	Extensions []string `json:"extensions"`
}

type modelMetadata struct {
	Name     string           `json:"name"`
	Versions []string         `json:"versions"`
	Platform string           `json:"platform"`
	Inputs   []tensorMetadata `json:"inputs"`
	Outputs  []tensorMetadata `json:"outputs"`
}

type tensorMetadata struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

func (s *Server) handleModelMetadata(w http.ResponseWriter, r *http.Request) {
	rc := &s.stats.metadata
	if !s.knownModel(w, r, rc) {
		return
	}
	s.reply(w, rc, http.StatusOK, modelMetadata{
		Name:     ModelName,
		Versions: []string{ModelVersion},
		Platform: modelPlatform,
		Inputs:   []tensorMetadata{{Name: InputName, Datatype: datatypeFP32, Shape: []int64{-1, NumFeatures}}},
		Outputs:  []tensorMetadata{{Name: OutputName, Datatype: datatypeFP32, Shape: []int64{-1}}},
	})
}

func (s *Server) handleModelReady(w http.ResponseWriter, r *http.Request) {
	if s.knownModel(w, r, &s.stats.health) {
		s.replyReady(w, &s.stats.health)
	}
}

// knownModel answers 404 unless the path names this model (and, if it names
// a version, this version).
func (s *Server) knownModel(w http.ResponseWriter, r *http.Request, rc *routeCounters) bool {
	if name := r.PathValue("model"); name != ModelName {
		s.reply(w, rc, http.StatusNotFound, errorBody{Error: "unknown model " + quoteShort(name)})
		return false
	}
	if v := r.PathValue("version"); v != "" && v != ModelVersion {
		s.reply(w, rc, http.StatusNotFound, errorBody{Error: "unknown version " + quoteShort(v) + " of model " + ModelName})
		return false
	}
	return true
}

// inferResponse is the V2 infer answer; ID echoes the request's id.
type inferResponse struct {
	ModelName    string         `json:"model_name"`
	ModelVersion string         `json:"model_version"`
	ID           string         `json:"id,omitempty"`
	Outputs      []outputTensor `json:"outputs"`
}

type outputTensor struct {
	Name     string    `json:"name"`
	Datatype string    `json:"datatype"`
	Shape    []int     `json:"shape"`
	Data     []float32 `json:"data"`
}

func (s *Server) handleInfer(w http.ResponseWriter, r *http.Request) {
	rc := &s.stats.infer
	if !s.knownModel(w, r, rc) {
		return
	}
	if s.model == nil {
		s.reply(w, rc, http.StatusServiceUnavailable, errorBody{Error: msgNoModel})
		return
	}
	call, err := decodeInferRequest(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
	if err != nil {
		s.badRequest(w, rc, "infer", err, false)
		return
	}
	probs, ok := s.scoreRows(call.rows, call.n)
	if !ok {
		s.reply(w, rc, http.StatusInternalServerError, errorBody{Error: "model gave a non-finite probability"})
		return
	}
	data := make([]float32, call.n) // never nil: no rows answer "data":[]
	for i, p := range probs {
		data[i] = float32(p)
	}
	s.reply(w, rc, http.StatusOK, inferResponse{
		ModelName:    ModelName,
		ModelVersion: ModelVersion,
		ID:           call.id,
		Outputs:      []outputTensor{{Name: OutputName, Datatype: datatypeFP32, Shape: []int{call.n}, Data: data}},
	})
}

// badRequest answers a decoding error: 413 for a body over the limit, 400
// otherwise. The reason is logged at debug, never the body: it is the
// caller's data and may be large.
func (s *Server) badRequest(w http.ResponseWriter, rc *routeCounters, route string, err error, withField bool) {
	var re *requestError
	if !errors.As(err, &re) {
		re = &requestError{status: http.StatusBadRequest, msg: err.Error()}
	}
	s.log.Debug("bad request", "route", route, "status", re.status, "field", re.field, "reason", re.msg)
	body := errorBody{Error: re.Error()}
	if withField {
		body.Field = re.field
	}
	s.reply(w, rc, re.status, body)
}

func (s *Server) reply(w http.ResponseWriter, rc *routeCounters, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil { // only our own types get here; a failure is a bug
		s.log.Error("encode response", "err", err)
		status, body = http.StatusInternalServerError, []byte(`{"error":"encode response"}`)
	}
	rc.count(status) // before the answer leaves, so a client that has it sees it counted
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body) // the peer may be gone; nothing to do about it
}

// requestError is what is wrong with a request body.
type requestError struct {
	status int    // 400 or 413
	field  string // JSON path of the bad field, "" for the body as a whole
	msg    string
}

func (e *requestError) Error() string {
	if e.field == "" {
		return e.msg
	}
	return e.field + ": " + e.msg
}

func badField(field, format string, args ...any) *requestError {
	return &requestError{status: http.StatusBadRequest, field: field, msg: fmt.Sprintf(format, args...)}
}

// decodeJSON decodes the one JSON value of a request body into v.
func decodeJSON(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	err := dec.Decode(v)
	if err == nil {
		// One value per body: trailing data is a client bug worth reporting.
		if _, err = dec.Token(); err == io.EOF {
			return nil
		} else if err == nil {
			err = errors.New("data after the JSON value")
		}
	}
	var tooLarge *http.MaxBytesError
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooLarge):
		return &requestError{status: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("request body over %d bytes", tooLarge.Limit)}
	case err == io.EOF:
		return &requestError{status: http.StatusBadRequest, msg: "empty body: want a JSON object"}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &requestError{status: http.StatusBadRequest, msg: "invalid JSON: unexpected end of body"}
	case errors.As(err, &syntax):
		return &requestError{status: http.StatusBadRequest, msg: fmt.Sprintf("invalid JSON at byte %d: %v", syntax.Offset, err)}
	case errors.As(err, &typ):
		if typ.Field == "" {
			return &requestError{status: http.StatusBadRequest, msg: "want a JSON object, got " + typ.Value}
		}
		return badField(typ.Field, "got a JSON %s", typ.Value)
	}
	return &requestError{status: http.StatusBadRequest, msg: "invalid JSON: " + err.Error()}
}

// scoreRequest is a decoded, validated /score request.
type scoreRequest struct {
	customer store.Customer
	coupons  []store.Coupon
}

var (
	scoreFields    = []string{"customer", "coupons"}
	customerFields = []string{"customer_id", "gender", "age", "mean_buy_price", "total_coupons_used",
		"mean_discount_received", "unique_products_bought", "unique_products_bought_with_coupons", "total_items_bought"}
	couponFields = []string{"coupon_id", "coupon_type", "department", "discount", "how_many_products_required",
		"product_mean_price", "products_available"}
)

// Bounds of the /score fields. Counts are non-negative; how_many is -1 on
// department coupons; everything must survive the float32 of a feature row.
const (
	maxCount = math.MaxInt32
	maxFloat = math.MaxFloat32
)

// decodeScoreRequest reads a /score body strictly: every field present,
// none unknown, each of the right type and range. Errors name the field as a
// JSON path (customer.age, coupons[2].discount).
//
// It decodes objects into maps of raw values rather than structs because
// encoding/json's errors neither give array indexes nor tell a missing
// field from a zero.
func decodeScoreRequest(r io.Reader) (scoreRequest, error) {
	var top json.RawMessage
	if err := decodeJSON(r, &top); err != nil {
		return scoreRequest{}, err
	}
	m, err := object(top, "", scoreFields)
	if err != nil {
		return scoreRequest{}, err
	}
	var req scoreRequest
	if req.customer, err = decodeCustomer(m["customer"]); err != nil {
		return scoreRequest{}, err
	}
	raw := m["coupons"]
	if raw[0] != '[' {
		return scoreRequest{}, badField("coupons", "want a list, got %s", jsonKind(raw))
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return scoreRequest{}, badField("coupons", "%v", err)
	}
	if len(list) > MaxRows {
		return scoreRequest{}, badField("coupons", "%d coupons: at most %d per request", len(list), MaxRows)
	}
	req.coupons = make([]store.Coupon, len(list))
	for i, raw := range list {
		if req.coupons[i], err = decodeCoupon(raw, "coupons["+strconv.Itoa(i)+"]"); err != nil {
			return scoreRequest{}, err
		}
	}
	return req, nil
}

func decodeCustomer(raw json.RawMessage) (store.Customer, error) {
	m, err := object(raw, "customer", customerFields)
	if err != nil {
		return store.Customer{}, err
	}
	f := fields{path: "customer", m: m}
	c := store.Customer{
		ID:                              f.customerID("customer_id"),
		Gender:                          f.enum("gender", `"M" or "F"`, func(s string) bool { return s == "M" || s == "F" }),
		Age:                             f.int("age", 0, 150),
		MeanBuyPrice:                    f.float("mean_buy_price", 0, maxFloat),
		TotalCouponsUsed:                f.int("total_coupons_used", 0, maxCount),
		MeanDiscountReceived:            f.float("mean_discount_received", 0, 100),
		UniqueProductsBought:            f.int("unique_products_bought", 0, maxCount),
		UniqueProductsBoughtWithCoupons: f.int("unique_products_bought_with_coupons", 0, maxCount),
		TotalItemsBought:                f.int("total_items_bought", 0, maxCount),
	}
	return c, f.validate(c.Validate())
}

func decodeCoupon(raw json.RawMessage, path string) (store.Coupon, error) {
	m, err := object(raw, path, couponFields)
	if err != nil {
		return store.Coupon{}, err
	}
	f := fields{path: path, m: m}
	cp := store.Coupon{
		ID:                f.int("coupon_id", 0, maxCount),
		Discount:          f.int("discount", 0, 100),
		HowMany:           f.int("how_many_products_required", -1, maxCount),
		ProductMeanPrice:  f.float("product_mean_price", 0, maxFloat),
		ProductsAvailable: f.int("products_available", 0, maxCount),
	}
	cp.Type = store.CouponType(f.enum("coupon_type", `"buy_more", "buy_all", "just_discount" or "department"`,
		func(s string) bool { _, ok := store.ParseCouponType(s); return ok }))
	dept := f.enum("department", `"Boys", "Girls", "Men", "Sports" or "Women"`,
		func(s string) bool { _, ok := store.ParseDepartment(s); return ok })
	cp.Department, _ = store.ParseDepartment(dept)
	return cp, f.validate(cp.Validate())
}

// object parses raw as a JSON object whose keys are exactly want. An unknown
// key is reported before a missing one: a misspelt name is both, and
// "unknown" points at the typo.
func object(raw json.RawMessage, path string, want []string) (map[string]json.RawMessage, error) {
	if raw[0] != '{' {
		if path == "" {
			return nil, &requestError{status: http.StatusBadRequest, msg: "want a JSON object, got " + jsonKind(raw)}
		}
		return nil, badField(path, "want an object, got %s", jsonKind(raw))
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, badField(path, "%v", err)
	}
	var unknown []string
	for k := range m {
		if !slices.Contains(want, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		return nil, badField(join(path, slices.Min(unknown)), "unknown field")
	}
	for _, k := range want {
		if _, ok := m[k]; !ok {
			return nil, badField(join(path, k), "missing")
		}
	}
	return m, nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// fields reads the values of one decoded object; the first error sticks and
// later reads return zero values.
type fields struct {
	path string
	m    map[string]json.RawMessage
	err  error
}

func (f *fields) fail(key, format string, args ...any) {
	if f.err == nil {
		f.err = badField(join(f.path, key), format, args...)
	}
}

// validate holds a decoded record to the store's rules for it.
func (f *fields) validate(err error) error {
	if fe := store.FieldErrors(err); len(fe) > 0 {
		f.fail(fe[0].Field, "%s", fe[0].Reason)
	}
	return f.err
}

func (f *fields) number(key string) (float64, bool) {
	if f.err != nil {
		return 0, false
	}
	raw := f.m[key]
	if !isNumber(raw) {
		f.fail(key, "want a number, got %s", jsonKind(raw))
		return 0, false
	}
	v, err := strconv.ParseFloat(string(raw), 64)
	if err != nil {
		f.fail(key, "number out of range")
		return 0, false
	}
	return v, true
}

func (f *fields) float(key string, lo, hi float64) float64 {
	v, ok := f.number(key)
	if ok && (v < lo || v > hi) {
		f.fail(key, "%v is out of range [%v, %v]", v, lo, hi)
		return 0
	}
	return v
}

func (f *fields) int(key string, lo, hi int) int {
	v, ok := f.number(key)
	switch {
	case !ok:
		return 0
	case v != math.Trunc(v):
		f.fail(key, "want a whole number, got %v", v)
		return 0
	case v < float64(lo) || v > float64(hi):
		f.fail(key, "%v is out of range [%d, %d]", v, lo, hi)
		return 0
	}
	return int(v)
}

func (f *fields) str(key string) (string, bool) {
	if f.err != nil {
		return "", false
	}
	raw := f.m[key]
	var s string
	if raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		f.fail(key, "want a string, got %s", jsonKind(raw))
		return "", false
	}
	return s, true
}

func (f *fields) enum(key, want string, valid func(string) bool) string {
	s, ok := f.str(key)
	if ok && !valid(s) {
		f.fail(key, "want %s, got %s", want, quoteShort(s))
		return ""
	}
	return s
}

// customerID takes a string or a number; a number is kept as its JSON text.
func (f *fields) customerID(key string) string {
	if f.err != nil {
		return ""
	}
	if raw := f.m[key]; isNumber(raw) {
		return string(raw)
	}
	s, ok := f.str(key)
	if ok && s == "" {
		f.fail(key, "must not be empty")
	}
	return s
}

func isNumber(raw json.RawMessage) bool {
	return len(raw) > 0 && (raw[0] == '-' || ('0' <= raw[0] && raw[0] <= '9'))
}

// jsonKind names the kind of a valid JSON value, for error messages.
func jsonKind(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "a list"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// quoteShort quotes a caller's value for an error message, cut short: the
// message must stay small whatever was sent.
func quoteShort(s string) string {
	if len(s) > maxEchoedBytes {
		s = s[:maxEchoedBytes] + "…"
	}
	return strconv.Quote(s)
}

// inferCall is a decoded, validated V2 infer request.
type inferCall struct {
	id   string
	n    int
	rows []float32 // n rows of NumFeatures
}

type inferRequest struct {
	ID         string                     `json:"id"`
	Parameters map[string]json.RawMessage `json:"parameters"`
	Inputs     []inferInput               `json:"inputs"`
	Outputs    []requestedOutput          `json:"outputs"`
}

type inferInput struct {
	Name       string                     `json:"name"`
	Shape      []int64                    `json:"shape"`
	Datatype   string                     `json:"datatype"`
	Parameters map[string]json.RawMessage `json:"parameters"`
	Data       json.RawMessage            `json:"data"`
}

type requestedOutput struct {
	Name       string                     `json:"name"`
	Parameters map[string]json.RawMessage `json:"parameters"`
}

// decodeInferRequest reads a V2 infer body. Unknown fields are ignored, as
// protocol extensions add some; the one input must be InputName, FP32 or
// FP64, shape [n, NumFeatures] with n <= MaxRows, its data flat (row-major)
// or nested [[...], ...].
func decodeInferRequest(r io.Reader) (inferCall, error) {
	var req inferRequest
	if err := decodeJSON(r, &req); err != nil {
		return inferCall{}, err
	}
	if len(req.Inputs) != 1 {
		return inferCall{}, badField("inputs", "got %d inputs; model %s takes one, named %q", len(req.Inputs), ModelName, InputName)
	}
	for _, out := range req.Outputs {
		if out.Name != OutputName {
			return inferCall{}, badField("outputs", "unknown output %s; model %s has one, named %q", quoteShort(out.Name), ModelName, OutputName)
		}
		if string(out.Parameters["binary_data"]) == "true" {
			return inferCall{}, badField("outputs", "binary_data is not supported; outputs are JSON")
		}
	}
	in := req.Inputs[0]
	field := "inputs[0]"
	switch {
	case in.Name != InputName:
		return inferCall{}, badField(field+".name", "unknown input %s; model %s takes one, named %q", quoteShort(in.Name), ModelName, InputName)
	case in.Datatype != datatypeFP32 && in.Datatype != datatypeFP64:
		return inferCall{}, badField(field+".datatype", "%s: want FP32 or FP64", quoteShort(in.Datatype))
	case in.Parameters["binary_data_size"] != nil:
		return inferCall{}, badField(field+".parameters", "binary tensor data is not supported; send JSON data")
	case len(in.Shape) != 2 || in.Shape[1] != NumFeatures || in.Shape[0] < 0:
		return inferCall{}, badField(field+".shape", "%v: want [n, %d]", in.Shape, NumFeatures)
	case in.Shape[0] > MaxRows:
		return inferCall{}, badField(field+".shape", "%d rows: at most %d per request", in.Shape[0], MaxRows)
	case len(in.Data) == 0 || string(in.Data) == "null":
		return inferCall{}, badField(field+".data", "missing")
	}
	n := int(in.Shape[0])
	values, err := tensorData(in.Data, in.Shape, bitSize(in.Datatype), make([]float64, 0, n*NumFeatures))
	if err != nil {
		return inferCall{}, badField(field+".data", "%v", err)
	}
	rows := make([]float32, len(values))
	for i, v := range values {
		if math.Abs(v) > maxFloat {
			return inferCall{}, badField(field+".data", "value %d (%v) does not fit FP32", i, v)
		}
		rows[i] = float32(v)
	}
	return inferCall{id: req.ID, n: n, rows: rows}, nil
}

// tensorData appends to dst the numbers of a tensor's "data", row-major.
// The protocol lets data be flat or nested to the tensor's shape; nested
// data must match the shape exactly, flat data must hold the shape's
// product of values. Numbers are parsed at bits precision (32 for FP32, so
// the value is the sender's float32 exactly). raw must be valid JSON (it
// comes from a decoder).
func tensorData(raw []byte, shape []int64, bits int, dst []float64) ([]float64, error) {
	p := scanner{b: raw, bits: bits}
	p.space()
	if !p.is('[') {
		return nil, errors.New("want a list of numbers")
	}
	want := int64(1)
	for _, d := range shape {
		if d < 0 {
			return nil, fmt.Errorf("shape %v: negative dimension", shape)
		}
		if d > 0 && want > int64(len(raw))/d { // every value takes a byte at least
			return nil, fmt.Errorf("shape %v: more values than the data could hold", shape)
		}
		want *= d
	}
	start := len(dst)
	var err error
	if p.nested() {
		dst, err = p.nestedList(shape, dst)
	} else {
		dst, err = p.flatList(dst)
	}
	if err != nil {
		return nil, err
	}
	if got := int64(len(dst) - start); got != want {
		return nil, fmt.Errorf("%d values for shape %v (want %d)", got, shape, want)
	}
	return dst, nil
}

// scanner reads lists of numbers from valid JSON without building a value
// per number: a 1000-row request has 14000 of them.
type scanner struct {
	b    []byte
	i    int
	bits int // 32 or 64
}

func (p *scanner) space() {
	for p.i < len(p.b) && (p.b[p.i] == ' ' || p.b[p.i] == '\t' || p.b[p.i] == '\n' || p.b[p.i] == '\r') {
		p.i++
	}
}

func (p *scanner) is(c byte) bool { return p.i < len(p.b) && p.b[p.i] == c }

// nested reports whether the list at p starts with a list.
func (p *scanner) nested() bool {
	q := scanner{b: p.b, i: p.i + 1, bits: p.bits}
	q.space()
	return q.is('[')
}

// list calls elem for each element of the list at p.
func (p *scanner) list(elem func(i int) error) error {
	p.i++ // '['
	p.space()
	if p.is(']') {
		p.i++
		return nil
	}
	for i := 0; ; i++ {
		p.space()
		if err := elem(i); err != nil {
			return err
		}
		p.space()
		switch {
		case p.is(','):
			p.i++
		case p.is(']'):
			p.i++
			return nil
		default:
			return errors.New("malformed list")
		}
	}
}

func (p *scanner) flatList(dst []float64) ([]float64, error) {
	err := p.list(func(i int) error {
		v, err := p.number()
		if err != nil {
			return fmt.Errorf("value %d: %w", i, err)
		}
		dst = append(dst, v)
		return nil
	})
	return dst, err
}

func (p *scanner) nestedList(shape []int64, dst []float64) ([]float64, error) {
	if len(shape) == 0 {
		return nil, errors.New("nested deeper than the shape")
	}
	if len(shape) == 1 {
		return p.flatListOf(shape[0], dst)
	}
	count := int64(0)
	err := p.list(func(i int) error {
		if !p.is('[') {
			return fmt.Errorf("element %d: want a list, as the shape has %d dimensions", i, len(shape))
		}
		var err error
		dst, err = p.nestedList(shape[1:], dst)
		count++
		return err
	})
	if err == nil && count != shape[0] {
		err = fmt.Errorf("nested data has %d lists where the shape says %d", count, shape[0])
	}
	return dst, err
}

func (p *scanner) flatListOf(want int64, dst []float64) ([]float64, error) {
	start := len(dst)
	dst, err := p.flatList(dst)
	if err == nil && int64(len(dst)-start) != want {
		err = fmt.Errorf("a nested list has %d values where the shape says %d", len(dst)-start, want)
	}
	return dst, err
}

func (p *scanner) number() (float64, error) {
	start := p.i
	for p.i < len(p.b) && isNumberByte(p.b[p.i]) {
		p.i++
	}
	if start == p.i {
		return 0, fmt.Errorf("want a number, got %s", jsonKind(p.b[start:]))
	}
	v, err := strconv.ParseFloat(string(p.b[start:p.i]), p.bits)
	if err != nil {
		return 0, errors.New("number out of range")
	}
	return v, nil
}

// bitSize is the float precision of a V2 datatype.
func bitSize(datatype string) int {
	if datatype == datatypeFP64 {
		return 64
	}
	return 32
}

func isNumberByte(c byte) bool {
	return ('0' <= c && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}
