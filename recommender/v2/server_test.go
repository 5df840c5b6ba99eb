package v2

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/storeflow/storeflow/recommender"
	"github.com/storeflow/storeflow/recommender/internal/fixture"
	"github.com/storeflow/storeflow/recommender/protocol"
)

func newTestMux(model recommender.RowScorer) (*protocol.ServerMetrics, *http.ServeMux) {
	return fixture.Mux(model, nil, Register)
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
			_, mux := newTestMux(fixture.Scorer{})
			status, body := fixture.Serve(t, mux, tt.method, tt.path, "")
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
		"infer":       {"POST", "/v2/models/coupon/infer", fixture.InferJSON(t, "FP32", 1, fixture.Flat(fixture.Rows(&fixture.Customer, fixture.Coupons()[:1]))), 503, `{"error":"model not loaded"}`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, mux := newTestMux(nil)
			status, body := fixture.Serve(t, mux, tt.method, tt.path, tt.body)
			if status != tt.wantStatus || string(body) != tt.want {
				t.Fatalf("got %d %s\nwant %d %s", status, body, tt.wantStatus, tt.want)
			}
		})
	}
}

func TestV2Infer(t *testing.T) {
	coupons := fixture.Coupons()
	rows := fixture.Rows(&fixture.Customer, coupons)
	want := make([]float32, len(coupons))
	for i, p := range fixture.WantProbs(&fixture.Customer, coupons) {
		want[i] = float32(p)
	}
	rows64 := make([]float64, 0, len(rows)*recommender.NumFeatures)
	for _, v := range fixture.Flat(rows) {
		rows64 = append(rows64, float64(v))
	}
	n := len(rows)

	tests := map[string]struct {
		path, body string
		want       []float32
	}{
		"flat FP32":          {"/v2/models/coupon/infer", fixture.InferJSON(t, "FP32", n, fixture.Flat(rows)), want},
		"nested FP32":        {"/v2/models/coupon/infer", fixture.InferJSON(t, "FP32", n, rows), want},
		"flat FP64":          {"/v2/models/coupon/infer", fixture.InferJSON(t, "FP64", n, rows64), want},
		"versioned path":     {"/v2/models/coupon/versions/1/infer", fixture.InferJSON(t, "FP32", n, fixture.Flat(rows)), want},
		"no rows":            {"/v2/models/coupon/infer", fixture.InferJSON(t, "FP32", 0, []float32{}), []float32{}},
		"requested output":   {"/v2/models/coupon/infer", strings.Replace(fixture.InferJSON(t, "FP32", n, rows), `"id"`, `"outputs":[{"name":"probability"}],"id"`, 1), want},
		"extension fields":   {"/v2/models/coupon/infer", strings.Replace(fixture.InferJSON(t, "FP32", n, rows), `"id"`, `"parameters":{"x":1},"trace":true,"id"`, 1), want},
		"whitespace in data": {"/v2/models/coupon/infer", strings.NewReplacer(",", " ,\n ", "[", "[ ", "]", " ]").Replace(fixture.InferJSON(t, "FP32", n, rows)), want},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			m, mux := newTestMux(fixture.Scorer{})
			status, body := fixture.Serve(t, mux, "POST", tt.path, tt.body)
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
			if ok, rows := testutil.ToFloat64(m.Requests.WithLabelValues("infer", "ok")), testutil.ToFloat64(m.Rows); ok != 1 || rows != float64(len(tt.want)) {
				t.Fatalf("%v ok, %v rows", ok, rows)
			}
		})
	}
}

func TestV2InferBad(t *testing.T) {
	rows := fixture.Rows(&fixture.Customer, fixture.Coupons())
	n := len(rows)
	valid := fixture.InferJSON(t, "FP32", n, fixture.Flat(rows))
	short := fixture.Flat(rows)[:n*recommender.NumFeatures-1]
	narrow := make([][]float32, n)
	for i := range rows {
		narrow[i] = rows[i][:recommender.NumFeatures-1]
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
		"INT64 datatype":         {"/v2/models/coupon/infer", fixture.InferJSON(t, "INT64", n, fixture.Flat(rows)), 400, `want FP32 or FP64`},
		"13 features":            {"/v2/models/coupon/infer", strings.Replace(fixture.InferJSON(t, "FP32", n, narrow), `[5,14]`, `[5,13]`, 1), 400, `want [n, 14]`},
		"one-dimensional shape":  {"/v2/models/coupon/infer", strings.Replace(valid, `[5,14]`, `[70]`, 1), 400, `want [n, 14]`},
		"negative rows":          {"/v2/models/coupon/infer", strings.Replace(valid, `[5,14]`, `[-5,14]`, 1), 400, `want [n, 14]`},
		"too many rows":          {"/v2/models/coupon/infer", strings.Replace(valid, `[5,14]`, `[1001,14]`, 1), 400, `at most 1000`},
		"shape says more rows":   {"/v2/models/coupon/infer", strings.Replace(valid, `[5,14]`, `[6,14]`, 1), 400, `70 values for shape [6 14]`},
		"data one value short":   {"/v2/models/coupon/infer", fixture.InferJSON(t, "FP32", n, short), 400, `69 values`},
		"nested rows too narrow": {"/v2/models/coupon/infer", fixture.InferJSON(t, "FP32", n, narrow), 400, `13 values where the shape says 14`},
		"nested rows ragged":     {"/v2/models/coupon/infer", fixture.InferJSON(t, "FP32", n, ragged), 400, `5 values where the shape says 14`},
		"string in data":         {"/v2/models/coupon/infer", fixture.InferJSON(t, "FP32", 1, []any{"1", 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}), 400, `value 0: want a number, got a string`},
		"null in data":           {"/v2/models/coupon/infer", fixture.InferJSON(t, "FP32", 1, []any{1, 2, nil, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}), 400, `value 2: want a number, got null`},
		"beyond FP32":            {"/v2/models/coupon/infer", fixture.InferJSON(t, "FP64", 1, []any{1e39, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}), 400, `does not fit FP32`},
		"missing data":           {"/v2/models/coupon/infer", input(`"name":"features","shape":[1,14],"datatype":"FP32"`), 400, `data: missing`},
		"data not a list":        {"/v2/models/coupon/infer", input(`"name":"features","shape":[1,14],"datatype":"FP32","data":{}`), 400, `want a list`},
		"shape of strings":       {"/v2/models/coupon/infer", input(`"name":"features","shape":["1","14"],"datatype":"FP32","data":[]`), 400, `inputs.shape`},
		"binary data":            {"/v2/models/coupon/infer", input(`"name":"features","shape":[1,14],"datatype":"FP32","parameters":{"binary_data_size":56}`), 400, `binary`},
		"unknown output":         {"/v2/models/coupon/infer", strings.Replace(valid, `"id"`, `"outputs":[{"name":"label"}],"id"`, 1), 400, `unknown output "label"`},
		"id not a string":        {"/v2/models/coupon/infer", strings.Replace(valid, `"id":"req-1"`, `"id":7`, 1), 400, `id`},
		"too large":              {"/v2/models/coupon/infer", `{"id":"` + strings.Repeat("x", protocol.MaxRequestBytes) + `"}`, 413, `request body over`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, mux := newTestMux(fixture.Scorer{})
			status, body := fixture.Serve(t, mux, "POST", tt.path, tt.body)
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

// FuzzDecodeInferRequest checks the infer decoder on any body.
func FuzzDecodeInferRequest(f *testing.F) {
	rows := fixture.Rows(&fixture.Customer, fixture.Coupons())
	f.Add([]byte(fixture.InferJSON(f, "FP32", len(rows), fixture.Flat(rows))))
	f.Add([]byte(fixture.InferJSON(f, "FP64", len(rows), rows)))
	f.Add([]byte(`{"inputs":[{"name":"features","shape":[0,14],"datatype":"FP32","data":[]}]}`))
	f.Add([]byte(`{"inputs":[{"name":"features","shape":[1,14],"datatype":"FP32","data":[[[1]]]}]}`))
	f.Add([]byte(`{"inputs":[{"name":"features","shape":[2,14],"datatype":"FP32","data":[[],[]]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		call, err := decodeInferRequest(bytes.NewReader(body))
		if err != nil {
			return
		}
		if call.n < 0 || call.n > protocol.MaxRows || len(call.rows) != call.n*recommender.NumFeatures {
			t.Fatalf("accepted %d rows with %d values", call.n, len(call.rows))
		}
		for _, v := range call.rows {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("accepted a non-finite value %v", v)
			}
		}
	})
}

func BenchmarkServerInfer(b *testing.B) {
	for _, n := range []int{5, 50} {
		rows := fixture.Rows(&fixture.Customer, fixture.ManyCoupons(n))
		for _, form := range []string{"flat", "nested"} {
			b.Run(fmt.Sprintf("rows=%d/%s", n, form), func(b *testing.B) {
				var data any = fixture.Flat(rows)
				if form == "nested" {
					data = rows
				}
				body := []byte(fixture.InferJSON(b, "FP32", n, data))
				_, mux := newTestMux(fixture.Scorer{})
				fixture.ServeLoop(b, mux, "/v2/models/coupon/infer", body)
			})
		}
	}
}
