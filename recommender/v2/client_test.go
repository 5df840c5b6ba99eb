package v2

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/storeflow/storeflow/recommender/internal/fixture"
	"github.com/storeflow/storeflow/recommender/protocol"
)

func newTestClient(t testing.TB, url string) (*protocol.Client, *protocol.ClientMetrics) {
	t.Helper()
	return fixture.Client(t, Codec, url, nil)
}

// storeflowPeer is storeflow's own server of the protocol over fixture.Scorer.
func storeflowPeer(t testing.TB) *httptest.Server {
	t.Helper()
	_, mux := newTestMux(fixture.Scorer{})
	return fixture.Peer(t, mux)
}

// v2Peer plays a model server of the protocol: it checks the request is what the
// protocol asks for, scores its rows with testScorer and answers with
// respond.
func v2Peer(t testing.TB, respond func(w http.ResponseWriter, probs []float64)) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "POST" || r.URL.Path != "/v2/models/coupon/infer" || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("got %s %s (Content-Type %q)", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
		}
		var req struct {
			Inputs []struct {
				Name     string    `json:"name"`
				Shape    []int     `json:"shape"`
				Datatype string    `json:"datatype"`
				Data     []float32 `json:"data"`
			} `json:"inputs"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Inputs) != 1 {
			t.Errorf("request: %v, %d inputs", err, len(req.Inputs))
			w.WriteHeader(400)
			return
		}
		in := req.Inputs[0]
		if in.Name != "features" || in.Datatype != "FP32" || len(in.Shape) != 2 || in.Shape[1] != 14 || len(in.Data) != in.Shape[0]*14 {
			t.Errorf("input %s %s %v with %d values", in.Name, in.Datatype, in.Shape, len(in.Data))
		}
		probs := make([]float64, in.Shape[0])
		fixture.Scorer{}.ScoreRows(in.Data, probs)
		w.Header().Set("Content-Type", "application/json")
		respond(w, probs)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestClientV2Peers(t *testing.T) {
	coupons := fixture.Coupons()
	probs := fixture.WantProbs(&fixture.Customer, coupons)
	fp32 := func(p float64) float64 { return float64(float32(p)) }
	write := func(w http.ResponseWriter, v any) { _ = json.NewEncoder(w).Encode(v) }

	tests := map[string]struct {
		respond func(w http.ResponseWriter, probs []float64)
		round   func(float64) float64 // what the wire does to a probability
	}{
		"KServe: flat FP32 [n] named output-0": {func(w http.ResponseWriter, probs []float64) {
			data := make([]float32, len(probs))
			for i, p := range probs {
				data[i] = float32(p)
			}
			write(w, map[string]any{"model_name": "coupon", "id": "5d1c", "outputs": []any{
				map[string]any{"name": "output-0", "datatype": "FP32", "shape": []int{len(data)}, "data": data}}})
		}, fp32},
		"MLServer: sklearn predict_proba FP64 [n,2] nested, with parameters": {func(w http.ResponseWriter, probs []float64) {
			data := make([][]float64, len(probs))
			for i, p := range probs {
				data[i] = []float64{1 - p, p}
			}
			write(w, map[string]any{"model_name": "coupon", "model_version": "v0.1.0", "id": "a9e2c3",
				"parameters": map[string]any{"content_type": "np", "headers": map[string]any{}},
				"outputs": []any{
					map[string]any{"name": "predict", "datatype": "INT64", "shape": []int{len(probs), 1}, "data": make([]int, len(probs))},
					map[string]any{"name": "predict_proba", "datatype": "FP64", "shape": []int{len(probs), 2},
						"parameters": map[string]any{"content_type": "np"}, "data": data},
				}})
		}, func(p float64) float64 { return p }},
		"MLServer: sklearn with predict_fn=predict_proba, FP64 [n,2] flat": {func(w http.ResponseWriter, probs []float64) {
			data := make([]float64, 0, 2*len(probs))
			for _, p := range probs {
				data = append(data, 1-p, p)
			}
			write(w, map[string]any{"model_name": "coupon", "id": "7f0b", "parameters": map[string]any{},
				"outputs": []any{map[string]any{"name": "predict_proba", "datatype": "FP64", "shape": []int{len(probs), 2},
					"parameters": map[string]any{"content_type": "np"}, "data": data}}})
		}, func(p float64) float64 { return p }},
		"Triton: OUTPUT0 FP32 [n,1] flat": {func(w http.ResponseWriter, probs []float64) {
			data := make([]float32, len(probs))
			for i, p := range probs {
				data[i] = float32(p)
			}
			write(w, map[string]any{"model_name": "coupon", "model_version": "1", "outputs": []any{
				map[string]any{"name": "OUTPUT1", "datatype": "INT64", "shape": []int{len(data), 1}, "data": make([]int, len(data))},
				map[string]any{"name": "OUTPUT0", "datatype": "FP32", "shape": []int{len(data), 1}, "data": data}}})
		}, fp32},
		"only float output, any name, id a number": {func(w http.ResponseWriter, probs []float64) {
			write(w, map[string]any{"id": 17, "extra": true, "outputs": []any{
				map[string]any{"name": "label", "datatype": "INT64", "shape": []int{len(probs)}, "data": make([]int, len(probs))},
				map[string]any{"name": "score", "datatype": "FP64", "shape": []int{len(probs)}, "data": probs}}})
		}, func(p float64) float64 { return p }},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			c, _ := newTestClient(t, v2Peer(t, tt.respond).URL)
			out := make([]float64, len(coupons))
			if err := c.Score(context.Background(), &fixture.Customer, coupons, out); err != nil {
				t.Fatal(err)
			}
			for i, p := range probs {
				if out[i] != tt.round(p) {
					t.Fatalf("coupon %d: got %v, want %v", coupons[i].ID, out[i], tt.round(p))
				}
			}
		})
	}
}

// An sklearn classifier served with its default method answers class labels
// (MLServer: "predict" INT64 [n,1]; KServe's sklearn server: "output-0"
// INT64 [n]). They are no probabilities: every call fails as a bad response
// whose error names the output and what would be taken (the README's
// MLServer and KServe set-ups quote it).
func TestClientV2ClassLabelsAreNoProbabilities(t *testing.T) {
	coupons := fixture.Coupons()
	tests := map[string]struct {
		output  map[string]any
		wantErr string
	}{
		"MLServer default predict": {map[string]any{"name": "predict", "datatype": "INT64", "shape": []int{len(coupons), 1}, "data": make([]int, len(coupons))},
			`no probability output among ["predict" "INT64"]: want a float output named probability, predict_proba, output-0, output0, OUTPUT0 or the only float output`},
		"KServe sklearn default predict": {map[string]any{"name": "output-0", "datatype": "INT64", "shape": []int{len(coupons)}, "data": make([]int, len(coupons))},
			`no probability output among ["output-0" "INT64"]`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			peer := v2Peer(t, func(w http.ResponseWriter, _ []float64) {
				_ = json.NewEncoder(w).Encode(map[string]any{"model_name": "coupon", "outputs": []any{tt.output}})
			})
			c, m := newTestClient(t, peer.URL)
			err := c.Score(context.Background(), &fixture.Customer, coupons, make([]float64, len(coupons)))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want …%s", err, tt.wantErr)
			}
			if got := fixture.CallCounts(t, m); got["bad_response"] != 1 || len(got) != 1 {
				t.Fatalf("calls %v, want one bad_response", got)
			}
			if err := c.BreakerErr(); err != nil {
				t.Fatalf("breaker: %v", err)
			}
		})
	}
}

// FuzzParseInferReply checks the V2 answer decoder on any body: no panic,
// and what it accepts is a probability for every row.
func FuzzParseInferReply(f *testing.F) {
	f.Add([]byte(`{"outputs":[{"name":"probability","datatype":"FP32","shape":[2],"data":[0.1,0.9]}]}`), 2)
	f.Add([]byte(`{"outputs":[{"name":"predict_proba","datatype":"FP64","shape":[2,2],"data":[[0.9,0.1],[0.2,0.8]]}]}`), 2)
	f.Add([]byte(`{"outputs":[{"name":"OUTPUT0","datatype":"FP32","shape":[1,1],"data":[[[0.5]]]}]}`), 1)
	f.Add([]byte(`{"outputs":[{"name":"x","datatype":"FP16","shape":[9223372036854775807,2],"data":[]}]}`), 3)
	f.Fuzz(func(t *testing.T, body []byte, n int) {
		if n < 0 || n > protocol.MaxRows {
			return
		}
		out := make([]float64, n)
		if err := parseInferReply(body, n, out); err != nil {
			return
		}
		for i, p := range out {
			if !(p >= 0 && p <= 1) {
				t.Fatalf("row %d: accepted %v", i, p)
			}
		}
	})
}

func BenchmarkClientV2(b *testing.B) {
	for _, n := range []int{5, 50} {
		b.Run(fmt.Sprintf("coupons=%d", n), func(b *testing.B) {
			coupons := fixture.ManyCoupons(n)
			c, _ := newTestClient(b, storeflowPeer(b).URL)
			out := make([]float64, n)
			b.ReportAllocs()
			for b.Loop() {
				if err := c.Score(context.Background(), &fixture.Customer, coupons, out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
