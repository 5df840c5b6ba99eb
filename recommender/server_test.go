package recommender

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/storeflow/storeflow/store"
)

// testScorer is a RowScorer whose probability is a fixed logistic function
// of the discount and department columns, so tests can compute what any
// server or client should answer.
type testScorer struct{}

func (testScorer) ScoreRows(rows []float32, out []float64) {
	for i := range out {
		out[i] = testProb(rows[i*NumFeatures : (i+1)*NumFeatures])
	}
}

func testProb(row []float32) float64 {
	z := 0.05*float64(row[fDiscount]-20) + 0.3*float64(row[fDepartment]) - 0.5
	return 1 / (1 + math.Exp(-z))
}

// nanScorer is a broken model.
type nanScorer struct{}

func (nanScorer) ScoreRows(_ []float32, out []float64) {
	for i := range out {
		out[i] = math.NaN()
	}
}

var testCustomer = store.Customer{ID: "c-42", Gender: "F", Age: 35, MeanBuyPrice: 21.5, TotalCouponsUsed: 12,
	MeanDiscountReceived: 18.25, UniqueProductsBought: 80, UniqueProductsBoughtWithCoupons: 9, TotalItemsBought: 130}

// testCoupons has a tie: coupons 4 and 2 share department and discount.
func testCoupons() []store.Coupon {
	return []store.Coupon{
		{ID: 7, Type: store.BuyMore, Department: store.Men, Discount: 10, HowMany: 3, ProductMeanPrice: 30.5, ProductsAvailable: 1},
		{ID: 4, Type: store.JustDiscount, Department: store.Sports, Discount: 40, HowMany: 1, ProductMeanPrice: 12.25, ProductsAvailable: 1},
		{ID: 9, Type: store.DeptCoupon, Department: store.Women, Discount: 25, HowMany: -1, ProductMeanPrice: 19, ProductsAvailable: 40},
		{ID: 2, Type: store.JustDiscount, Department: store.Sports, Discount: 40, HowMany: 1, ProductMeanPrice: 55, ProductsAvailable: 1},
		{ID: 5, Type: store.BuyAll, Department: store.Boys, Discount: 5, HowMany: 2, ProductMeanPrice: 8, ProductsAvailable: 2},
	}
}

// wantProbs is what testScorer gives for c and coupons.
func wantProbs(c *store.Customer, coupons []store.Coupon) []float64 {
	out := make([]float64, len(coupons))
	row := make([]float32, NumFeatures)
	for i := range coupons {
		Encode(c, &coupons[i], row)
		out[i] = testProb(row)
	}
	return out
}

func testRows(c *store.Customer, coupons []store.Coupon) [][]float32 {
	rows := make([][]float32, len(coupons))
	for i := range coupons {
		rows[i] = make([]float32, NumFeatures)
		Encode(c, &coupons[i], rows[i])
	}
	return rows
}

func newTestMux(model RowScorer) (*Server, *http.ServeMux) {
	s := NewServer(model, slog.New(slog.DiscardHandler))
	mux := http.NewServeMux()
	s.Register(mux)
	return s, mux
}

func serve(t testing.TB, h http.Handler, method, path, body string) (int, []byte) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if ct := rec.Header().Get("Content-Type"); rec.Code != http.StatusMethodNotAllowed && ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q, want application/json", method, path, ct)
	}
	return rec.Code, rec.Body.Bytes()
}

// scoreJSON is a valid /score request as a generic value, for cases to break.
func scoreJSON() map[string]any {
	b, err := scoreBody(&testCustomer, testCoupons())
	if err != nil {
		panic(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		panic(err)
	}
	return m
}

func customerOf(m map[string]any) map[string]any { return m["customer"].(map[string]any) }
func couponOf(m map[string]any, i int) map[string]any {
	return m["coupons"].([]any)[i].(map[string]any)
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestScore(t *testing.T) {
	sorted := func(c store.Customer, coupons []store.Coupon) []scoreResult {
		probs := wantProbs(&c, coupons)
		res := make([]scoreResult, len(coupons))
		for i := range coupons {
			res[i] = scoreResult{CouponID: coupons[i].ID, CustomerID: c.ID, Prediction: probs[i]}
		}
		return res
	}
	all := sorted(testCustomer, testCoupons())
	byID := func(ids ...int) []scoreResult {
		out := make([]scoreResult, len(ids))
		for i, id := range ids {
			out[i] = all[slices.IndexFunc(all, func(r scoreResult) bool { return r.CouponID == id })]
		}
		return out
	}
	numeric := testCustomer
	numeric.ID = "1234"

	tests := map[string]struct {
		body func() map[string]any
		want []scoreResult
	}{
		// Sports 40 % (tie: 2 before 4), Women 25, Men 10, Boys 5.
		"sorted by prediction, ties by coupon id": {scoreJSON, byID(2, 4, 9, 7, 5)},
		"empty coupon list": {func() map[string]any {
			m := scoreJSON()
			m["coupons"] = []any{}
			return m
		}, []scoreResult{}},
		"numeric customer_id is echoed as a string": {func() map[string]any {
			m := scoreJSON()
			customerOf(m)["customer_id"] = json.Number("1234")
			m["coupons"] = m["coupons"].([]any)[:1]
			return m
		}, sorted(numeric, testCoupons()[:1])},
		"Sport is Sports": {func() map[string]any {
			m := scoreJSON()
			couponOf(m, 1)["department"] = "Sport"
			return m
		}, byID(2, 4, 9, 7, 5)},
		"whole-number floats are integers": {func() map[string]any {
			m := scoreJSON()
			customerOf(m)["age"] = json.Number("35.0")
			couponOf(m, 0)["discount"] = json.Number("1e1")
			return m
		}, byID(2, 4, 9, 7, 5)},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, mux := newTestMux(testScorer{})
			status, body := serve(t, mux, "POST", "/score", mustJSON(t, tt.body()))
			if status != http.StatusOK {
				t.Fatalf("status %d: %s", status, body)
			}
			var got []scoreResult
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			if got == nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestScoreEmptyIsAList(t *testing.T) {
	_, mux := newTestMux(testScorer{})
	m := scoreJSON()
	m["coupons"] = []any{}
	if status, body := serve(t, mux, "POST", "/score", mustJSON(t, m)); status != 200 || string(body) != "[]" {
		t.Fatalf("got %d %s, want 200 []", status, body)
	}
}

func TestScoreBadBody(t *testing.T) {
	edit := func(f func(m map[string]any)) string {
		m := scoreJSON()
		f(m)
		b, _ := json.Marshal(m)
		return string(b)
	}
	valid := edit(func(map[string]any) {})
	manyCoupons := edit(func(m map[string]any) {
		one := m["coupons"].([]any)[0]
		list := make([]any, MaxRows+1)
		for i := range list {
			list[i] = one
		}
		m["coupons"] = list
	})

	tests := map[string]struct {
		body      string
		wantField string
	}{
		"empty body":                  {"", ""},
		"invalid JSON":                {`{"customer":`, ""},
		"NaN is not JSON":             {strings.Replace(valid, `"discount":10`, `"discount":NaN`, 1), ""},
		"not an object":               {`[1,2]`, ""},
		"null":                        {`null`, ""},
		"data after the object":       {valid + `{}`, ""},
		"unknown top-level field":     {edit(func(m map[string]any) { m["store"] = 1 }), "store"},
		"missing customer":            {edit(func(m map[string]any) { delete(m, "customer") }), "customer"},
		"missing coupons":             {edit(func(m map[string]any) { delete(m, "coupons") }), "coupons"},
		"customer not an object":      {edit(func(m map[string]any) { m["customer"] = "c-42" }), "customer"},
		"coupons not a list":          {edit(func(m map[string]any) { m["coupons"] = map[string]any{} }), "coupons"},
		"coupons null":                {edit(func(m map[string]any) { m["coupons"] = nil }), "coupons"},
		"too many coupons":            {manyCoupons, "coupons"},
		"unknown customer field":      {edit(func(m map[string]any) { customerOf(m)["nickname"] = "x" }), "customer.nickname"},
		"missing customer field":      {edit(func(m map[string]any) { delete(customerOf(m), "age") }), "customer.age"},
		"age as a string":             {edit(func(m map[string]any) { customerOf(m)["age"] = "35" }), "customer.age"},
		"age with a fraction":         {edit(func(m map[string]any) { customerOf(m)["age"] = 35.5 }), "customer.age"},
		"age null":                    {edit(func(m map[string]any) { customerOf(m)["age"] = nil }), "customer.age"},
		"gender not M or F":           {edit(func(m map[string]any) { customerOf(m)["gender"] = "X" }), "customer.gender"},
		"negative coupons used":       {edit(func(m map[string]any) { customerOf(m)["total_coupons_used"] = -1 }), "customer.total_coupons_used"},
		"negative mean price":         {edit(func(m map[string]any) { customerOf(m)["mean_buy_price"] = -0.5 }), "customer.mean_buy_price"},
		"discount received over 100":  {edit(func(m map[string]any) { customerOf(m)["mean_discount_received"] = 101 }), "customer.mean_discount_received"},
		"customer_id null":            {edit(func(m map[string]any) { customerOf(m)["customer_id"] = nil }), "customer.customer_id"},
		"customer_id empty":           {edit(func(m map[string]any) { customerOf(m)["customer_id"] = "" }), "customer.customer_id"},
		"customer_id an object":       {edit(func(m map[string]any) { customerOf(m)["customer_id"] = map[string]any{} }), "customer.customer_id"},
		"coupon null":                 {edit(func(m map[string]any) { m["coupons"].([]any)[0] = nil }), "coupons[0]"},
		"discount as a string":        {edit(func(m map[string]any) { couponOf(m, 2)["discount"] = "25" }), "coupons[2].discount"},
		"discount over 100":           {edit(func(m map[string]any) { couponOf(m, 2)["discount"] = 120 }), "coupons[2].discount"},
		"number out of range":         {strings.Replace(valid, `"product_mean_price":19`, `"product_mean_price":1e400`, 1), "coupons[2].product_mean_price"},
		"price beyond float32":        {edit(func(m map[string]any) { couponOf(m, 2)["product_mean_price"] = 1e39 }), "coupons[2].product_mean_price"},
		"fractional coupon_id":        {edit(func(m map[string]any) { couponOf(m, 1)["coupon_id"] = 1.5 }), "coupons[1].coupon_id"},
		"unknown coupon type":         {edit(func(m map[string]any) { couponOf(m, 1)["coupon_type"] = "bogus" }), "coupons[1].coupon_type"},
		"unknown department":          {edit(func(m map[string]any) { couponOf(m, 0)["department"] = "Shoes" }), "coupons[0].department"},
		"lower-case department":       {edit(func(m map[string]any) { couponOf(m, 0)["department"] = "men" }), "coupons[0].department"},
		"negative products available": {edit(func(m map[string]any) { couponOf(m, 4)["products_available"] = -1 }), "coupons[4].products_available"},
		"how_many below -1":           {edit(func(m map[string]any) { couponOf(m, 4)["how_many_products_required"] = -2 }), "coupons[4].how_many_products_required"},
		"-1 on a buy_more coupon":     {edit(func(m map[string]any) { couponOf(m, 0)["how_many_products_required"] = -1 }), "coupons[0].how_many_products_required"},
		"missing coupon field":        {edit(func(m map[string]any) { delete(couponOf(m, 3), "discount") }), "coupons[3].discount"},
		"misspelt coupon field": {edit(func(m map[string]any) {
			c := couponOf(m, 3)
			c["discont"] = c["discount"]
			delete(c, "discount")
		}), "coupons[3].discont"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			s, mux := newTestMux(testScorer{})
			status, body := serve(t, mux, "POST", "/score", tt.body)
			if status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", status, body)
			}
			var got errorBody
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			if got.Field != tt.wantField || got.Error == "" {
				t.Fatalf("got %s, want field %q", body, tt.wantField)
			}
			if st := s.Stats(); st.Score.BadRequest != 1 || st.Rows != 0 {
				t.Fatalf("stats %+v, want one bad request and no rows", st)
			}
		})
	}
}

func TestScoreTooLarge(t *testing.T) {
	m := scoreJSON()
	customerOf(m)["customer_id"] = strings.Repeat("x", MaxRequestBytes)
	s, mux := newTestMux(testScorer{})
	status, body := serve(t, mux, "POST", "/score", mustJSON(t, m))
	if status != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), "request body over") {
		t.Fatalf("got %d %s, want 413", status, body)
	}
	if got := s.Stats().Score.TooLarge; got != 1 {
		t.Fatalf("TooLarge = %d, want 1", got)
	}
}

func TestScoreNonFiniteModel(t *testing.T) {
	s, mux := newTestMux(nanScorer{})
	if status, body := serve(t, mux, "POST", "/score", mustJSON(t, scoreJSON())); status != http.StatusInternalServerError {
		t.Fatalf("got %d %s, want 500", status, body)
	}
	if got := s.Stats().Score.Failed; got != 1 {
		t.Fatalf("Failed = %d, want 1", got)
	}
}

func TestV2Endpoints(t *testing.T) {
	tests := map[string]struct {
		method, path string
		wantStatus   int
		want         string // the exact body
	}{
		"live":                   {"GET", "/v2/health/live", 200, `{"live":true}`},
		"ready":                  {"GET", "/v2/health/ready", 200, `{"ready":true}`},
		"server metadata":        {"GET", "/v2", 200, `{"name":"storeflow","version":"dev","extensions":[]}`},
		"model ready":            {"GET", "/v2/models/coupon/ready", 200, `{"ready":true}`},
		"model version ready":    {"GET", "/v2/models/coupon/versions/1/ready", 200, `{"ready":true}`},
		"unknown model ready":    {"GET", "/v2/models/other/ready", 404, `{"error":"unknown model \"other\""}`},
		"unknown version ready":  {"GET", "/v2/models/coupon/versions/2/ready", 404, `{"error":"unknown version \"2\" of model coupon"}`},
		"unknown model metadata": {"GET", "/v2/models/other", 404, `{"error":"unknown model \"other\""}`},
		"model metadata": {"GET", "/v2/models/coupon", 200, `{"name":"coupon","versions":["1"],"platform":"storeflow",` +
			`"inputs":[{"name":"features","datatype":"FP32","shape":[-1,14]}],` +
			`"outputs":[{"name":"probability","datatype":"FP32","shape":[-1]}]}`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, mux := newTestMux(testScorer{})
			status, body := serve(t, mux, tt.method, tt.path, "")
			if status != tt.wantStatus || string(body) != tt.want {
				t.Fatalf("got %d %s\nwant %d %s", status, body, tt.wantStatus, tt.want)
			}
		})
	}
}

func TestV2NoModel(t *testing.T) {
	tests := map[string]struct {
		method, path, body string
		wantStatus         int
		want               string
	}{
		"live":        {"GET", "/v2/health/live", "", 200, `{"live":true}`},
		"ready":       {"GET", "/v2/health/ready", "", 503, `{"ready":false}`},
		"model ready": {"GET", "/v2/models/coupon/ready", "", 503, `{"ready":false}`},
		"infer":       {"POST", "/v2/models/coupon/infer", inferJSON(t, "FP32", 1, flat(testRows(&testCustomer, testCoupons()[:1]))), 503, `{"error":"model not loaded"}`},
		"score":       {"POST", "/score", mustJSON(t, scoreJSON()), 503, `{"error":"model not loaded"}`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, mux := newTestMux(nil)
			status, body := serve(t, mux, tt.method, tt.path, tt.body)
			if status != tt.wantStatus || string(body) != tt.want {
				t.Fatalf("got %d %s\nwant %d %s", status, body, tt.wantStatus, tt.want)
			}
		})
	}
}

func flat(rows [][]float32) []float32 {
	var out []float32
	for _, r := range rows {
		out = append(out, r...)
	}
	return out
}

// inferJSON is a V2 infer request body with one features input.
func inferJSON(t testing.TB, datatype string, n int, data any) string {
	t.Helper()
	return mustJSON(t, map[string]any{
		"id":     "req-1",
		"inputs": []any{map[string]any{"name": InputName, "shape": []int{n, NumFeatures}, "datatype": datatype, "data": data}},
	})
}

func TestV2Infer(t *testing.T) {
	coupons := testCoupons()
	rows := testRows(&testCustomer, coupons)
	want := make([]float32, len(coupons))
	for i, p := range wantProbs(&testCustomer, coupons) {
		want[i] = float32(p)
	}
	rows64 := make([]float64, 0, len(rows)*NumFeatures)
	for _, v := range flat(rows) {
		rows64 = append(rows64, float64(v))
	}
	n := len(rows)

	tests := map[string]struct {
		path, body string
		want       []float32
	}{
		"flat FP32":          {"/v2/models/coupon/infer", inferJSON(t, "FP32", n, flat(rows)), want},
		"nested FP32":        {"/v2/models/coupon/infer", inferJSON(t, "FP32", n, rows), want},
		"flat FP64":          {"/v2/models/coupon/infer", inferJSON(t, "FP64", n, rows64), want},
		"versioned path":     {"/v2/models/coupon/versions/1/infer", inferJSON(t, "FP32", n, flat(rows)), want},
		"no rows":            {"/v2/models/coupon/infer", inferJSON(t, "FP32", 0, []float32{}), []float32{}},
		"requested output":   {"/v2/models/coupon/infer", strings.Replace(inferJSON(t, "FP32", n, rows), `"id"`, `"outputs":[{"name":"probability"}],"id"`, 1), want},
		"extension fields":   {"/v2/models/coupon/infer", strings.Replace(inferJSON(t, "FP32", n, rows), `"id"`, `"parameters":{"x":1},"trace":true,"id"`, 1), want},
		"whitespace in data": {"/v2/models/coupon/infer", strings.NewReplacer(",", " ,\n ", "[", "[ ", "]", " ]").Replace(inferJSON(t, "FP32", n, rows)), want},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			s, mux := newTestMux(testScorer{})
			status, body := serve(t, mux, "POST", tt.path, tt.body)
			if status != http.StatusOK {
				t.Fatalf("status %d: %s", status, body)
			}
			var got struct {
				ModelName    string `json:"model_name"`
				ModelVersion string `json:"model_version"`
				ID           string `json:"id"`
				Outputs      []struct {
					Name     string    `json:"name"`
					Datatype string    `json:"datatype"`
					Shape    []int     `json:"shape"`
					Data     []float32 `json:"data"`
				} `json:"outputs"`
			}
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			if got.ModelName != ModelName || got.ModelVersion != ModelVersion || got.ID != "req-1" || len(got.Outputs) != 1 {
				t.Fatalf("got %s", body)
			}
			o := got.Outputs[0]
			if o.Name != OutputName || o.Datatype != "FP32" || !slices.Equal(o.Shape, []int{len(tt.want)}) || o.Data == nil || !slices.Equal(o.Data, tt.want) {
				t.Fatalf("got output %+v, want data %v", o, tt.want)
			}
			if st := s.Stats(); st.Infer.OK != 1 || st.Rows != uint64(len(tt.want)) {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestV2InferBad(t *testing.T) {
	rows := testRows(&testCustomer, testCoupons())
	n := len(rows)
	valid := inferJSON(t, "FP32", n, flat(rows))
	short := flat(rows)[:n*NumFeatures-1]
	narrow := make([][]float32, n)
	for i := range rows {
		narrow[i] = rows[i][:NumFeatures-1]
	}
	ragged := slices.Clone(rows)
	ragged[2] = ragged[2][:5]
	input := func(fields string) string {
		return `{"inputs":[{` + fields + `}]}`
	}

	tests := map[string]struct {
		path, body string
		wantStatus int
		wantError  string // a part of the error
	}{
		"unknown model":          {"/v2/models/other/infer", valid, 404, `unknown model`},
		"unknown version":        {"/v2/models/coupon/versions/7/infer", valid, 404, `unknown version`},
		"invalid JSON":           {"/v2/models/coupon/infer", `{"inputs":[`, 400, `invalid JSON`},
		"not an object":          {"/v2/models/coupon/infer", `[]`, 400, `want a JSON object`},
		"no inputs":              {"/v2/models/coupon/infer", `{"inputs":[]}`, 400, `got 0 inputs`},
		"two inputs":             {"/v2/models/coupon/infer", strings.Replace(valid, `"inputs":[`, `"inputs":[{"name":"x"},`, 1), 400, `got 2 inputs`},
		"unknown input name":     {"/v2/models/coupon/infer", strings.Replace(valid, `"features"`, `"input-0"`, 1), 400, `unknown input "input-0"`},
		"INT64 datatype":         {"/v2/models/coupon/infer", inferJSON(t, "INT64", n, flat(rows)), 400, `want FP32 or FP64`},
		"13 features":            {"/v2/models/coupon/infer", strings.Replace(inferJSON(t, "FP32", n, narrow), `[5,14]`, `[5,13]`, 1), 400, `want [n, 14]`},
		"one-dimensional shape":  {"/v2/models/coupon/infer", strings.Replace(valid, `[5,14]`, `[70]`, 1), 400, `want [n, 14]`},
		"negative rows":          {"/v2/models/coupon/infer", strings.Replace(valid, `[5,14]`, `[-5,14]`, 1), 400, `want [n, 14]`},
		"too many rows":          {"/v2/models/coupon/infer", strings.Replace(valid, `[5,14]`, `[1001,14]`, 1), 400, `at most 1000`},
		"shape says more rows":   {"/v2/models/coupon/infer", strings.Replace(valid, `[5,14]`, `[6,14]`, 1), 400, `70 values for shape [6 14]`},
		"data one value short":   {"/v2/models/coupon/infer", inferJSON(t, "FP32", n, short), 400, `69 values`},
		"nested rows too narrow": {"/v2/models/coupon/infer", inferJSON(t, "FP32", n, narrow), 400, `13 values where the shape says 14`},
		"nested rows ragged":     {"/v2/models/coupon/infer", inferJSON(t, "FP32", n, ragged), 400, `5 values where the shape says 14`},
		"string in data":         {"/v2/models/coupon/infer", inferJSON(t, "FP32", 1, []any{"1", 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}), 400, `value 0: want a number, got a string`},
		"null in data":           {"/v2/models/coupon/infer", inferJSON(t, "FP32", 1, []any{1, 2, nil, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}), 400, `value 2: want a number, got null`},
		"beyond FP32":            {"/v2/models/coupon/infer", inferJSON(t, "FP64", 1, []any{1e39, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}), 400, `does not fit FP32`},
		"missing data":           {"/v2/models/coupon/infer", input(`"name":"features","shape":[1,14],"datatype":"FP32"`), 400, `data: missing`},
		"data not a list":        {"/v2/models/coupon/infer", input(`"name":"features","shape":[1,14],"datatype":"FP32","data":{}`), 400, `want a list`},
		"shape of strings":       {"/v2/models/coupon/infer", input(`"name":"features","shape":["1","14"],"datatype":"FP32","data":[]`), 400, `inputs.shape`},
		"binary data":            {"/v2/models/coupon/infer", input(`"name":"features","shape":[1,14],"datatype":"FP32","parameters":{"binary_data_size":56}`), 400, `binary`},
		"unknown output":         {"/v2/models/coupon/infer", strings.Replace(valid, `"id"`, `"outputs":[{"name":"label"}],"id"`, 1), 400, `unknown output "label"`},
		"id not a string":        {"/v2/models/coupon/infer", strings.Replace(valid, `"id":"req-1"`, `"id":7`, 1), 400, `id`},
		"too large":              {"/v2/models/coupon/infer", `{"id":"` + strings.Repeat("x", MaxRequestBytes) + `"}`, 413, `request body over`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, mux := newTestMux(testScorer{})
			status, body := serve(t, mux, "POST", tt.path, tt.body)
			var got map[string]any
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			msg, _ := got["error"].(string)
			if status != tt.wantStatus || len(got) != 1 || !strings.Contains(msg, tt.wantError) {
				t.Fatalf("got %d %s\nwant %d {\"error\": \"…%s…\"}", status, body, tt.wantStatus, tt.wantError)
			}
		})
	}
}

func TestServerStats(t *testing.T) {
	s, mux := newTestMux(testScorer{})
	rows := flat(testRows(&testCustomer, testCoupons()))
	serve(t, mux, "POST", "/score", mustJSON(t, scoreJSON()))
	serve(t, mux, "POST", "/score", `{}`)
	serve(t, mux, "POST", "/v2/models/coupon/infer", inferJSON(t, "FP32", 5, rows))
	serve(t, mux, "POST", "/v2/models/nope/infer", inferJSON(t, "FP32", 5, rows))
	serve(t, mux, "GET", "/v2/health/ready", "")
	serve(t, mux, "GET", "/v2/models/coupon", "")
	want := ServerStats{
		Score:    RouteStats{OK: 1, BadRequest: 1},
		Infer:    RouteStats{OK: 1, NotFound: 1},
		Health:   RouteStats{OK: 1},
		Metadata: RouteStats{OK: 1},
		Rows:     10,
	}
	if got := s.Stats(); got != want {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
}

func TestScoreWrongMethod(t *testing.T) {
	_, mux := newTestMux(testScorer{})
	if status, _ := serve(t, mux, "GET", "/score", ""); status != http.StatusMethodNotAllowed {
		t.Fatalf("GET /score: %d, want 405", status)
	}
}

// FuzzDecodeScoreRequest checks the /score decoder on any body: no panic,
// and what it accepts is in range and survives the client's encoding.
func FuzzDecodeScoreRequest(f *testing.F) {
	valid, _ := scoreBody(&testCustomer, testCoupons())
	f.Add(valid)
	f.Add([]byte(`{"customer":{"customer_id":7,"gender":"M","age":1,"mean_buy_price":0,"total_coupons_used":0,` +
		`"mean_discount_received":0,"unique_products_bought":0,"unique_products_bought_with_coupons":0,"total_items_bought":0},"coupons":[]}`))
	f.Add([]byte(`{"customer":null,"coupons":[{}]}`))
	f.Add([]byte(`{"coupons":[1e400]}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeScoreRequest(bytes.NewReader(body))
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if len(req.coupons) > MaxRows || req.customer.ID == "" || (req.customer.Gender != "M" && req.customer.Gender != "F") {
			t.Fatalf("accepted %+v", req)
		}
		for _, cp := range req.coupons {
			if store.TypeIndex(cp.Type) < 0 || cp.Department == store.NoDepartment || cp.Discount < 0 || cp.ProductsAvailable < 0 {
				t.Fatalf("accepted coupon %+v", cp)
			}
		}
		again, err := scoreBody(&req.customer, req.coupons)
		if err != nil {
			t.Fatal(err)
		}
		req2, err := decodeScoreRequest(bytes.NewReader(again))
		if err != nil {
			t.Fatalf("re-encoded request refused: %v\n%s", err, again)
		}
		if !reflect.DeepEqual(req, req2) {
			t.Fatalf("round trip changed the request:\n%+v\n%+v", req, req2)
		}
	})
}

// FuzzDecodeInferRequest checks the V2 infer decoder on any body.
func FuzzDecodeInferRequest(f *testing.F) {
	rows := testRows(&testCustomer, testCoupons())
	f.Add([]byte(inferJSON(f, "FP32", len(rows), flat(rows))))
	f.Add([]byte(inferJSON(f, "FP64", len(rows), rows)))
	f.Add([]byte(`{"inputs":[{"name":"features","shape":[0,14],"datatype":"FP32","data":[]}]}`))
	f.Add([]byte(`{"inputs":[{"name":"features","shape":[1,14],"datatype":"FP32","data":[[[1]]]}]}`))
	f.Add([]byte(`{"inputs":[{"name":"features","shape":[2,14],"datatype":"FP32","data":[[],[]]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		call, err := decodeInferRequest(bytes.NewReader(body))
		if err != nil {
			return
		}
		if call.n < 0 || call.n > MaxRows || len(call.rows) != call.n*NumFeatures {
			t.Fatalf("accepted %d rows with %d values", call.n, len(call.rows))
		}
		for _, v := range call.rows {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("accepted a non-finite value %v", v)
			}
		}
	})
}

func BenchmarkServerScore(b *testing.B) {
	for _, n := range []int{5, 50} {
		b.Run(fmt.Sprintf("coupons=%d", n), func(b *testing.B) {
			coupons := make([]store.Coupon, n)
			for i := range coupons {
				coupons[i] = testCoupons()[i%5]
				coupons[i].ID = i + 1
			}
			body, err := scoreBody(&testCustomer, coupons)
			if err != nil {
				b.Fatal(err)
			}
			_, mux := newTestMux(testScorer{})
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest("POST", "/score", bytes.NewReader(body))
				rec := httptest.NewRecorder()
				mux.ServeHTTP(rec, req)
				if rec.Code != 200 {
					b.Fatal(rec.Code)
				}
				_, _ = io.Copy(io.Discard, rec.Body)
			}
		})
	}
}
