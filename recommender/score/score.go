// Package score is the original prediction API, both ends: POST /score
// takes a customer and the candidate coupons, each with its features, and
// answers a probability per coupon, sorted highest first. Here are the
// server's handler and its strict decoder, the client's codec, and the wire
// forms they share.
package score

import (
	"cmp"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"

	"github.com/storeflow/storeflow/event"
	"github.com/storeflow/storeflow/recommender"
	"github.com/storeflow/storeflow/recommender/protocol"
	"github.com/storeflow/storeflow/store"
)

// Register adds POST /score, answered by s, to mux.
func Register(mux *http.ServeMux, s *protocol.Server) {
	mux.HandleFunc("POST /score", func(w http.ResponseWriter, r *http.Request) { handle(s, w, r) })
}

// result is one entry of the /score answer. CustomerID is always a
// string: a numeric customer_id is echoed as its JSON text ("1234"), so
// clients read one type whatever they sent.
type result struct {
	CouponID   int     `json:"coupon_id"`
	CustomerID string  `json:"customer_id"`
	Prediction float64 `json:"prediction"`
}

func handle(s *protocol.Server, w http.ResponseWriter, r *http.Request) {
	if !s.Ready() {
		s.NoModel(w, protocol.RouteScore)
		return
	}
	req, err := decodeRequest(protocol.Body(w, r))
	if err != nil {
		s.Refuse(w, protocol.RouteScore, err, true)
		return
	}
	if req.unknown.n > 0 {
		s.Ignored(protocol.RouteScore, req.unknown.n, req.unknown.first)
	}
	n := len(req.coupons)
	rows := make([]float32, n*recommender.NumFeatures)
	for i := range req.coupons {
		recommender.Encode(&req.customer, &req.coupons[i], rows[i*recommender.NumFeatures:(i+1)*recommender.NumFeatures])
	}
	probs, bad := s.Score(rows, n)
	if bad >= 0 {
		s.NonFinite(w, protocol.RouteScore, "coupons["+strconv.Itoa(bad)+"]", rows[bad*recommender.NumFeatures:(bad+1)*recommender.NumFeatures], true)
		return
	}
	results := make([]result, n) // never nil: no coupons answer [], not null
	for i := range results {
		results[i] = result{CouponID: req.coupons[i].ID, CustomerID: req.customer.ID, Prediction: probs[i]}
	}
	slices.SortFunc(results, func(a, b result) int {
		if c := cmp.Compare(b.Prediction, a.Prediction); c != 0 {
			return c
		}
		return cmp.Compare(a.CouponID, b.CouponID)
	})
	s.Reply(w, protocol.RouteScore, http.StatusOK, results)
}

// request is a decoded, validated /score request.
type request struct {
	customer store.Customer
	coupons  []store.Coupon
	unknown  unknownFields
}

// unknownFields are the fields of a request that no version of the API
// knows: they are ignored, as the original service ignored them.
type unknownFields struct {
	n     int
	first string // JSON path of the first one, for the log
}

// The fields of each object: required ones, and optional ones the original
// clients send that do not enter the features. The original recommendation
// service sends every coupon_info column, start_date and end_date included.
var (
	scoreFields    = shape{required: []string{"customer", "coupons"}}
	customerFields = shape{required: []string{"customer_id", "gender", "age", "mean_buy_price", "total_coupons_used",
		"mean_discount_received", "unique_products_bought", "unique_products_bought_with_coupons", "total_items_bought"}}
	couponFields = shape{required: []string{"coupon_id", "coupon_type", "department", "discount", "how_many_products_required",
		"product_mean_price", "products_available"}, optional: []string{"start_date", "end_date"}}
)

// shape is what object expects of a JSON object.
type shape struct{ required, optional []string }

// Bounds of the /score fields. Counts are non-negative; how_many is -1 on
// department coupons; everything must survive the float32 of a feature row.
const (
	maxCount = math.MaxInt32
	maxFloat = math.MaxFloat32
)

// decodeRequest reads a /score body strictly: every field present, each
// of the right type and range. Unknown fields are ignored and counted in
// req.unknown: the original service ignored them, and its clients send some.
// Errors name the field as a JSON path (customer.age, coupons[2].discount).
//
// It decodes objects into maps of raw values rather than structs because
// encoding/json's errors neither give array indexes nor tell a missing
// field from a zero.
func decodeRequest(r io.Reader) (request, error) {
	var top json.RawMessage
	if err := protocol.DecodeJSON(r, &top); err != nil {
		return request{}, err
	}
	var req request
	m, err := object(top, "", scoreFields, &req.unknown)
	if err != nil {
		return request{}, err
	}
	if req.customer, err = decodeCustomer(m["customer"], &req.unknown); err != nil {
		return request{}, err
	}
	raw := m["coupons"]
	if event.Kind(raw) != event.KindList {
		return request{}, protocol.BadField("coupons", "want a list, got %s", event.Kind(raw))
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return request{}, protocol.BadField("coupons", "%v", err)
	}
	if len(list) > protocol.MaxRows {
		return request{}, protocol.BadField("coupons", "%d coupons: at most %d per request", len(list), protocol.MaxRows)
	}
	req.coupons = make([]store.Coupon, len(list))
	for i, raw := range list {
		if req.coupons[i], err = decodeCoupon(raw, "coupons["+strconv.Itoa(i)+"]", &req.unknown); err != nil {
			return request{}, err
		}
	}
	return req, nil
}

func decodeCustomer(raw json.RawMessage, unknown *unknownFields) (store.Customer, error) {
	m, err := object(raw, "customer", customerFields, unknown)
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

func decodeCoupon(raw json.RawMessage, path string, unknown *unknownFields) (store.Coupon, error) {
	m, err := object(raw, path, couponFields, unknown)
	if err != nil {
		return store.Coupon{}, err
	}
	f := fields{path: path, m: m}
	cp := store.Coupon{
		ID:                f.id("coupon_id"),
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
	// The coupon's dates do not enter the features: the caller chose the
	// coupons valid at the focus.
	f.optionalString("start_date")
	f.optionalString("end_date")
	return cp, f.validate(cp.Validate())
}

// object parses raw as a JSON object with every required key of want. Keys
// it does not know are added to unknown. A missing key next to an unknown one
// is reported as the unknown one: a misspelt name is both, and the unknown
// name points at the typo.
func object(raw json.RawMessage, path string, want shape, unknown *unknownFields) (map[string]json.RawMessage, error) {
	if event.Kind(raw) != event.KindObject {
		if path == "" {
			return nil, &protocol.RequestError{Status: http.StatusBadRequest, Msg: "want a JSON object, got " + event.Kind(raw)}
		}
		return nil, protocol.BadField(path, "want an object, got %s", event.Kind(raw))
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, protocol.BadField(path, "%v", err)
	}
	var unknownHere []string
	for k := range m {
		if !slices.Contains(want.required, k) && !slices.Contains(want.optional, k) {
			unknownHere = append(unknownHere, k)
		}
	}
	for _, k := range want.required {
		if _, ok := m[k]; ok {
			continue
		}
		if len(unknownHere) > 0 {
			return nil, protocol.BadField(join(path, slices.Min(unknownHere)), "unknown field, and %s is missing", k)
		}
		return nil, protocol.BadField(join(path, k), "missing")
	}
	if len(unknownHere) > 0 {
		if unknown.n == 0 { // the least name: the same body logs the same one
			unknown.first = join(path, slices.Min(unknownHere))
		}
		unknown.n += len(unknownHere)
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

// validate holds a decoded record to the store's rules for it.
func (f *fields) validate(err error) error {
	if fe := store.FieldErrors(err); len(fe) > 0 {
		f.fail(fe[0].Field, "%s", fe[0].Reason)
	}
	return f.err
}

func (f *fields) fail(key, format string, args ...any) {
	if f.err == nil {
		f.err = protocol.BadField(join(f.path, key), format, args...)
	}
}

func (f *fields) number(key string) (float64, bool) {
	if f.err != nil {
		return 0, false
	}
	raw := f.m[key]
	if event.Kind(raw) != event.KindNumber {
		f.fail(key, "want a number, got %s", event.Kind(raw))
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

// id reads a non-negative whole number that may come as a JSON number or
// as a string of one: the original service took "116" for 116.
func (f *fields) id(key string) int {
	if f.err != nil {
		return 0
	}
	if event.Kind(f.m[key]) != event.KindString {
		return f.int(key, 0, maxCount)
	}
	s, _ := f.str(key)
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 || v > maxCount {
		f.fail(key, "want a whole number from 0 to %d, got %s", maxCount, protocol.Quote(s))
		return 0
	}
	return v
}

// optionalString checks that key, if present, is a string or null.
func (f *fields) optionalString(key string) {
	if raw, ok := f.m[key]; ok && f.err == nil && event.Kind(raw) != event.KindNull && event.Kind(raw) != event.KindString {
		f.fail(key, "want a string, got %s", event.Kind(raw))
	}
}

func (f *fields) str(key string) (string, bool) {
	if f.err != nil {
		return "", false
	}
	raw := f.m[key]
	var s string
	if event.Kind(raw) != event.KindString || json.Unmarshal(raw, &s) != nil {
		f.fail(key, "want a string, got %s", event.Kind(raw))
		return "", false
	}
	return s, true
}

func (f *fields) enum(key, want string, valid func(string) bool) string {
	s, ok := f.str(key)
	if ok && !valid(s) {
		f.fail(key, "want %s, got %s", want, protocol.Quote(s))
		return ""
	}
	return s
}

// customerID takes a string or a number; a number is kept as its JSON text.
func (f *fields) customerID(key string) string {
	if f.err != nil {
		return ""
	}
	if raw := f.m[key]; event.Kind(raw) == event.KindNumber {
		return string(raw)
	}
	s, ok := f.str(key)
	if ok && s == "" {
		f.fail(key, "must not be empty")
	}
	return s
}
