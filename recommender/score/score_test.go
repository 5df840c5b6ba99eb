package score

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/storeflow/storeflow/recommender"
	"github.com/storeflow/storeflow/recommender/internal/fixture"
	"github.com/storeflow/storeflow/recommender/protocol"
	"github.com/storeflow/storeflow/store"
)

func newTestMux(model recommender.RowScorer) (*protocol.ServerMetrics, *http.ServeMux) {
	return fixture.Mux(model, nil, Register)
}

// scoreJSON is a valid /score request as a generic value, for cases to break.
func scoreJSON() map[string]any { return fixture.ScoreJSON(EncodeRequest) }

func TestScore(t *testing.T) {
	sorted := func(c store.Customer, coupons []store.Coupon) []result {
		probs := fixture.WantProbs(&c, coupons)
		res := make([]result, len(coupons))
		for i := range coupons {
			res[i] = result{CouponID: coupons[i].ID, CustomerID: c.ID, Prediction: probs[i]}
		}
		return res
	}
	all := sorted(fixture.Customer, fixture.Coupons())
	byID := func(ids ...int) []result {
		out := make([]result, len(ids))
		for i, id := range ids {
			out[i] = all[slices.IndexFunc(all, func(r result) bool { return r.CouponID == id })]
		}
		return out
	}
	numeric := fixture.Customer
	numeric.ID = "1234"

	tests := map[string]struct {
		body func() map[string]any
		want []result
	}{
		// Sports 40 % (tie: 2 before 4), Women 25, Men 10, Boys 5.
		"sorted by prediction, ties by coupon id": {scoreJSON, byID(2, 4, 9, 7, 5)},
		"empty coupon list": {func() map[string]any {
			m := scoreJSON()
			m["coupons"] = []any{}
			return m
		}, []result{}},
		"numeric customer_id is echoed as a string": {func() map[string]any {
			m := scoreJSON()
			fixture.CustomerOf(m)["customer_id"] = json.Number("1234")
			m["coupons"] = m["coupons"].([]any)[:1]
			return m
		}, sorted(numeric, fixture.Coupons()[:1])},
		"Sport is Sports": {func() map[string]any {
			m := scoreJSON()
			fixture.CouponOf(m, 1)["department"] = "Sport"
			return m
		}, byID(2, 4, 9, 7, 5)},
		"coupon_id as a numeric string": {func() map[string]any {
			m := scoreJSON()
			for i := range 5 {
				c := fixture.CouponOf(m, i)
				c["coupon_id"] = fmt.Sprint(c["coupon_id"])
			}
			return m
		}, byID(2, 4, 9, 7, 5)},
		"coupon dates are accepted": {func() map[string]any {
			m := scoreJSON()
			fixture.CouponOf(m, 0)["start_date"] = "2010-01-01"
			fixture.CouponOf(m, 0)["end_date"] = "2010-01-09"
			fixture.CouponOf(m, 1)["start_date"] = nil
			return m
		}, byID(2, 4, 9, 7, 5)},
		"unknown fields are ignored": {func() map[string]any {
			m := scoreJSON()
			m["store"] = 1
			fixture.CustomerOf(m)["nickname"] = "x"
			fixture.CouponOf(m, 2)["colour"] = []any{"red"}
			return m
		}, byID(2, 4, 9, 7, 5)},
		"whole-number floats are integers": {func() map[string]any {
			m := scoreJSON()
			fixture.CustomerOf(m)["age"] = json.Number("35.0")
			fixture.CouponOf(m, 0)["discount"] = json.Number("1e1")
			return m
		}, byID(2, 4, 9, 7, 5)},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, mux := newTestMux(fixture.Scorer{})
			status, body := fixture.Serve(t, mux, "POST", "/score", fixture.MustJSON(t, tt.body()))
			if status != http.StatusOK {
				t.Fatalf("status %d: %s", status, body)
			}
			var got []result
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
	_, mux := newTestMux(fixture.Scorer{})
	m := scoreJSON()
	m["coupons"] = []any{}
	if status, body := fixture.Serve(t, mux, "POST", "/score", fixture.MustJSON(t, m)); status != 200 || string(body) != "[]" {
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
		list := make([]any, protocol.MaxRows+1)
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
		"missing customer":            {edit(func(m map[string]any) { delete(m, "customer") }), "customer"},
		"missing coupons":             {edit(func(m map[string]any) { delete(m, "coupons") }), "coupons"},
		"customer not an object":      {edit(func(m map[string]any) { m["customer"] = "c-42" }), "customer"},
		"coupons not a list":          {edit(func(m map[string]any) { m["coupons"] = map[string]any{} }), "coupons"},
		"coupons null":                {edit(func(m map[string]any) { m["coupons"] = nil }), "coupons"},
		"too many coupons":            {manyCoupons, "coupons"},
		"missing customer field":      {edit(func(m map[string]any) { delete(fixture.CustomerOf(m), "age") }), "customer.age"},
		"age as a string":             {edit(func(m map[string]any) { fixture.CustomerOf(m)["age"] = "35" }), "customer.age"},
		"age with a fraction":         {edit(func(m map[string]any) { fixture.CustomerOf(m)["age"] = 35.5 }), "customer.age"},
		"age null":                    {edit(func(m map[string]any) { fixture.CustomerOf(m)["age"] = nil }), "customer.age"},
		"gender not M or F":           {edit(func(m map[string]any) { fixture.CustomerOf(m)["gender"] = "X" }), "customer.gender"},
		"negative coupons used":       {edit(func(m map[string]any) { fixture.CustomerOf(m)["total_coupons_used"] = -1 }), "customer.total_coupons_used"},
		"negative mean price":         {edit(func(m map[string]any) { fixture.CustomerOf(m)["mean_buy_price"] = -0.5 }), "customer.mean_buy_price"},
		"discount received over 100":  {edit(func(m map[string]any) { fixture.CustomerOf(m)["mean_discount_received"] = 101 }), "customer.mean_discount_received"},
		"customer_id null":            {edit(func(m map[string]any) { fixture.CustomerOf(m)["customer_id"] = nil }), "customer.customer_id"},
		"customer_id empty":           {edit(func(m map[string]any) { fixture.CustomerOf(m)["customer_id"] = "" }), "customer.customer_id"},
		"customer_id an object":       {edit(func(m map[string]any) { fixture.CustomerOf(m)["customer_id"] = map[string]any{} }), "customer.customer_id"},
		"coupon null":                 {edit(func(m map[string]any) { m["coupons"].([]any)[0] = nil }), "coupons[0]"},
		"discount as a string":        {edit(func(m map[string]any) { fixture.CouponOf(m, 2)["discount"] = "25" }), "coupons[2].discount"},
		"discount over 100":           {edit(func(m map[string]any) { fixture.CouponOf(m, 2)["discount"] = 120 }), "coupons[2].discount"},
		"number out of range":         {strings.Replace(valid, `"product_mean_price":19`, `"product_mean_price":1e400`, 1), "coupons[2].product_mean_price"},
		"price beyond float32":        {edit(func(m map[string]any) { fixture.CouponOf(m, 2)["product_mean_price"] = 1e39 }), "coupons[2].product_mean_price"},
		"fractional coupon_id":        {edit(func(m map[string]any) { fixture.CouponOf(m, 1)["coupon_id"] = 1.5 }), "coupons[1].coupon_id"},
		"coupon_id a fraction string": {edit(func(m map[string]any) { fixture.CouponOf(m, 1)["coupon_id"] = "1.5" }), "coupons[1].coupon_id"},
		"coupon_id a word":            {edit(func(m map[string]any) { fixture.CouponOf(m, 1)["coupon_id"] = "seven" }), "coupons[1].coupon_id"},
		"coupon_id negative string":   {edit(func(m map[string]any) { fixture.CouponOf(m, 1)["coupon_id"] = "-3" }), "coupons[1].coupon_id"},
		"coupon_id a list":            {edit(func(m map[string]any) { fixture.CouponOf(m, 1)["coupon_id"] = []any{7} }), "coupons[1].coupon_id"},
		"start_date a number":         {edit(func(m map[string]any) { fixture.CouponOf(m, 1)["start_date"] = 20100101 }), "coupons[1].start_date"},
		"end_date an object":          {edit(func(m map[string]any) { fixture.CouponOf(m, 3)["end_date"] = map[string]any{} }), "coupons[3].end_date"},
		"unknown field next to a missing one": {edit(func(m map[string]any) {
			fixture.CustomerOf(m)["nickname"] = "x"
			delete(fixture.CustomerOf(m), "age")
		}), "customer.nickname"},
		"unknown coupon type":         {edit(func(m map[string]any) { fixture.CouponOf(m, 1)["coupon_type"] = "bogus" }), "coupons[1].coupon_type"},
		"unknown department":          {edit(func(m map[string]any) { fixture.CouponOf(m, 0)["department"] = "Shoes" }), "coupons[0].department"},
		"lower-case department":       {edit(func(m map[string]any) { fixture.CouponOf(m, 0)["department"] = "men" }), "coupons[0].department"},
		"negative products available": {edit(func(m map[string]any) { fixture.CouponOf(m, 4)["products_available"] = -1 }), "coupons[4].products_available"},
		"-1 on a buy_more coupon":     {edit(func(m map[string]any) { fixture.CouponOf(m, 0)["how_many_products_required"] = -1 }), "coupons[0].how_many_products_required"},
		"how_many below -1":           {edit(func(m map[string]any) { fixture.CouponOf(m, 4)["how_many_products_required"] = -2 }), "coupons[4].how_many_products_required"},
		"missing coupon field":        {edit(func(m map[string]any) { delete(fixture.CouponOf(m, 3), "discount") }), "coupons[3].discount"},
		"misspelt coupon field": {edit(func(m map[string]any) {
			c := fixture.CouponOf(m, 3)
			c["discont"] = c["discount"]
			delete(c, "discount")
		}), "coupons[3].discont"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			m, mux := newTestMux(fixture.Scorer{})
			status, body := fixture.Serve(t, mux, "POST", "/score", tt.body)
			if status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", status, body)
			}
			var got protocol.ErrorBody
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			if got.Field != tt.wantField || got.Error == "" {
				t.Fatalf("got %s, want field %q", body, tt.wantField)
			}
			if got, rows := fixture.RouteCounts(t, m, "score"), testutil.ToFloat64(m.Rows); !maps.Equal(got, map[string]float64{"bad_request": 1}) || rows != 0 {
				t.Fatalf("counts %v, %v rows; want one bad request and no rows", got, rows)
			}
		})
	}
}

func TestScoreTooLarge(t *testing.T) {
	m := scoreJSON()
	fixture.CustomerOf(m)["customer_id"] = strings.Repeat("x", protocol.MaxRequestBytes)
	metrics, mux := newTestMux(fixture.Scorer{})
	status, body := fixture.Serve(t, mux, "POST", "/score", fixture.MustJSON(t, m))
	if status != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), "request body over") {
		t.Fatalf("got %d %s, want 413", status, body)
	}
	if got := testutil.ToFloat64(metrics.Requests.WithLabelValues("score", "too_large")); got != 1 {
		t.Fatalf("too_large = %v, want 1", got)
	}
}

func TestScoreWrongMethod(t *testing.T) {
	_, mux := newTestMux(fixture.Scorer{})
	if status, _ := fixture.Serve(t, mux, "GET", "/score", ""); status != http.StatusMethodNotAllowed {
		t.Fatalf("GET /score: %d, want 405", status)
	}
}

// FuzzDecodeScoreRequest checks the /score decoder on any body: no panic,
// and what it accepts is in range and survives the client's encoding.
func FuzzDecodeScoreRequest(f *testing.F) {
	valid, _ := EncodeRequest(&fixture.Customer, fixture.Coupons())
	f.Add(valid)
	f.Add([]byte(`{"customer":{"customer_id":7,"gender":"M","age":1,"mean_buy_price":0,"total_coupons_used":0,` +
		`"mean_discount_received":0,"unique_products_bought":0,"unique_products_bought_with_coupons":0,"total_items_bought":0},"coupons":[]}`))
	for _, name := range []string{"readme_request.json", "test_request.json"} { // the client's are large
		if b, err := os.ReadFile(filepath.Join("testdata", "original", name)); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"customer":null,"coupons":[{}]}`))
	f.Add([]byte(`{"coupons":[1e400]}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeRequest(bytes.NewReader(body))
		req.unknown = unknownFields{} // re-encoding drops them
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if len(req.coupons) > protocol.MaxRows || req.customer.ID == "" || (req.customer.Gender != "M" && req.customer.Gender != "F") {
			t.Fatalf("accepted %+v", req)
		}
		for _, cp := range req.coupons {
			if store.TypeIndex(cp.Type) < 0 || cp.Department == store.NoDepartment || cp.Discount < 0 || cp.ProductsAvailable < 0 {
				t.Fatalf("accepted coupon %+v", cp)
			}
		}
		again, err := EncodeRequest(&req.customer, req.coupons)
		if err != nil {
			t.Fatal(err)
		}
		req2, err := decodeRequest(bytes.NewReader(again))
		if err != nil {
			t.Fatalf("re-encoded request refused: %v\n%s", err, again)
		}
		if !reflect.DeepEqual(req, req2) {
			t.Fatalf("round trip changed the request:\n%+v\n%+v", req, req2)
		}
	})
}

func BenchmarkServerScore(b *testing.B) {
	for _, n := range []int{5, 50} {
		b.Run(fmt.Sprintf("coupons=%d", n), func(b *testing.B) {
			body, err := EncodeRequest(&fixture.Customer, fixture.ManyCoupons(n))
			if err != nil {
				b.Fatal(err)
			}
			_, mux := newTestMux(fixture.Scorer{})
			fixture.ServeLoop(b, mux, "/score", body)
		})
	}
}

func TestScoreNoModel(t *testing.T) {
	_, mux := newTestMux(nil)
	status, body := fixture.Serve(t, mux, "POST", "/score", fixture.MustJSON(t, scoreJSON()))
	if want := `{"error":"model not loaded"}`; status != 503 || string(body) != want {
		t.Fatalf("got %d %s\nwant 503 %s", status, body, want)
	}
}
