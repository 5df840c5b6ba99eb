package recommender

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/storeflow/storeflow/internal/breaker"
	"github.com/storeflow/storeflow/store"
)

func newTestClient(t testing.TB, url, protocol string, edit func(*Config)) *Client {
	t.Helper()
	cfg := Config{URL: url, Protocol: protocol, Model: DefaultModel, Timeout: 5 * time.Second, MaxInFlight: 4}
	if edit != nil {
		edit(&cfg)
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// storeflowPeer is storeflow's own prediction server over testScorer.
func storeflowPeer(t testing.TB) *httptest.Server {
	t.Helper()
	_, mux := newTestMux(testScorer{})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestClientAgainstServer(t *testing.T) {
	coupons := testCoupons()
	probs := wantProbs(&testCustomer, coupons)
	fp32 := make([]float64, len(probs))
	for i, p := range probs {
		fp32[i] = float64(float32(p))
	}
	tests := map[string]struct {
		protocol string
		want     []float64 // the V2 output is FP32
	}{
		"score": {ProtocolScore, probs},
		"v2":    {ProtocolV2, fp32},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			c := newTestClient(t, storeflowPeer(t).URL, tt.protocol, nil)
			out := make([]float64, len(coupons))
			if err := c.Score(context.Background(), &testCustomer, coupons, out); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(out, tt.want) {
				t.Fatalf("got  %v\nwant %v", out, tt.want)
			}
			if st := c.Stats(); st.Calls != 1 || st.OK != 1 || st.Errors() != 0 || st.InFlight != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// v2Peer plays a V2 model server: it checks the request is what the
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
		testScorer{}.ScoreRows(in.Data, probs)
		w.Header().Set("Content-Type", "application/json")
		respond(w, probs)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestClientV2Peers(t *testing.T) {
	coupons := testCoupons()
	probs := wantProbs(&testCustomer, coupons)
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
			c := newTestClient(t, v2Peer(t, tt.respond).URL, ProtocolV2, nil)
			out := make([]float64, len(coupons))
			if err := c.Score(context.Background(), &testCustomer, coupons, out); err != nil {
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

// rawPeer answers every request with status and body.
func rawPeer(t testing.TB, status int, body string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if status == http.StatusFound {
			w.Header().Set("Location", "/elsewhere")
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestClientErrors(t *testing.T) {
	coupons := testCoupons()[:3] // ids 7, 4, 9
	long := strings.Repeat("x", 1000)
	tests := map[string]struct {
		protocol  string
		status    int
		body      string
		wantKind  func(ClientStats) uint64
		wantError string // the end of the error
	}{
		"v2 400":                  {ProtocolV2, 400, `{"error":"unexpected shape for input 'features'"}`, http4xx, `: 400 Bad Request: {"error":"unexpected shape for input 'features'"}`},
		"v2 404":                  {ProtocolV2, 404, `{"error":"Model with name coupon does not exist."}`, http4xx, `: 404 Not Found: {"error":"Model with name coupon does not exist."}`},
		"v2 500":                  {ProtocolV2, 500, "Internal Server Error\n", http5xx, `: 500 Internal Server Error: Internal Server Error`},
		"v2 503":                  {ProtocolV2, 503, "no healthy upstream", http5xx, `v2/models/coupon/infer: 503 Service Unavailable: no healthy upstream`},
		"v2 503, empty body":      {ProtocolV2, 503, "", http5xx, `: 503 Service Unavailable: (empty body)`},
		"long error body is cut":  {ProtocolV2, 502, long, http5xx, ": 502 Bad Gateway: " + long[:maxErrorBody]},
		"redirect":                {ProtocolV2, 302, "", badResponse, `: unexpected 302 Found`},
		"malformed JSON":          {ProtocolV2, 200, `{"outputs":[`, badResponse, `want a V2 infer response: unexpected end of JSON input`},
		"not an object":           {ProtocolV2, 200, `[0.1,0.2,0.3]`, badResponse, `want a V2 infer response: json: cannot unmarshal array into Go value of type recommender.inferReply`},
		"no outputs":              {ProtocolV2, 200, `{"outputs":[]}`, badResponse, `no probability output among []: want a float output named probability, predict_proba, output-0, output0, OUTPUT0 or the only float output`},
		"only class labels":       {ProtocolV2, 200, `{"outputs":[{"name":"predict","datatype":"INT64","shape":[3],"data":[0,1,0]}]}`, badResponse, `no probability output among ["predict" "INT64"]`},
		"two unnamed floats":      {ProtocolV2, 200, `{"outputs":[{"name":"a","datatype":"FP32","shape":[3],"data":[0,1,0]},{"name":"b","datatype":"FP32","shape":[3],"data":[0,1,0]}]}`, badResponse, `no probability output among ["a" "FP32", "b" "FP32"]`},
		"wrong row count":         {ProtocolV2, 200, `{"outputs":[{"name":"probability","datatype":"FP32","shape":[2],"data":[0.1,0.2]}]}`, badResponse, `output "probability": 2 rows for 3 coupons`},
		"shape and data disagree": {ProtocolV2, 200, `{"outputs":[{"name":"probability","datatype":"FP32","shape":[3],"data":[0.1,0.2]}]}`, badResponse, `output "probability": 2 values for shape [3] (want 3)`},
		"three columns":           {ProtocolV2, 200, `{"outputs":[{"name":"probability","datatype":"FP32","shape":[3,3],"data":[]}]}`, badResponse, `shape [3 3]: want [n], [n,1] or [n,2]`},
		"probability over 1":      {ProtocolV2, 200, `{"outputs":[{"name":"probability","datatype":"FP32","shape":[3],"data":[0.1,1.5,0.2]}]}`, badResponse, `output "probability": row 1: 1.5 is not a probability`},
		"negative probability":    {ProtocolV2, 200, `{"outputs":[{"name":"probability","datatype":"FP64","shape":[3,1],"data":[[0.1],[0.5],[-0.2]]}]}`, badResponse, `row 2: -0.2 is not a probability`},
		"null in data":            {ProtocolV2, 200, `{"outputs":[{"name":"probability","datatype":"FP32","shape":[3],"data":[0.1,null,0.2]}]}`, badResponse, `value 1: want a number, got null`},
		"score 500":               {ProtocolScore, 500, `{"detail":"boom"}`, http5xx, `: 500 Internal Server Error: {"detail":"boom"}`},
		"score not a list":        {ProtocolScore, 200, `{"predictions":[]}`, badResponse, `want a JSON list of {coupon_id, customer_id, prediction}`},
		"score missing coupon":    {ProtocolScore, 200, `[{"coupon_id":7,"prediction":0.1},{"coupon_id":4,"prediction":0.2}]`, badResponse, `2 predictions for 3 coupons`},
		"score unknown coupon":    {ProtocolScore, 200, `[{"coupon_id":7,"prediction":0.1},{"coupon_id":4,"prediction":0.2},{"coupon_id":1,"prediction":0.2}]`, badResponse, `coupon 1 was not asked for`},
		"score duplicate coupon":  {ProtocolScore, 200, `[{"coupon_id":7,"prediction":0.1},{"coupon_id":4,"prediction":0.2},{"coupon_id":7,"prediction":0.2}]`, badResponse, `coupon 7 answered twice`},
		"score over 1":            {ProtocolScore, 200, `[{"coupon_id":7,"prediction":0.1},{"coupon_id":4,"prediction":1.2},{"coupon_id":9,"prediction":0.2}]`, badResponse, `coupon 4: prediction 1.2 is not a probability`},
		"score no prediction":     {ProtocolScore, 200, `[{"coupon_id":7,"prediction":0.1},{"coupon_id":4},{"coupon_id":9,"prediction":0.2}]`, badResponse, `prediction 1: coupon 4 has no prediction`},
		"score fractional id":     {ProtocolScore, 200, `[{"coupon_id":7.5,"prediction":0.1},{"coupon_id":4,"prediction":0.1},{"coupon_id":9,"prediction":0.2}]`, badResponse, `prediction 0: coupon_id "7.5" is not an integer`},
		"score string prediction": {ProtocolScore, 200, `[{"coupon_id":7,"prediction":"0.1"}]`, badResponse, `cannot unmarshal string`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			srv := rawPeer(t, tt.status, tt.body)
			c := newTestClient(t, srv.URL, tt.protocol, nil)
			out := make([]float64, len(coupons))
			err := c.Score(context.Background(), &testCustomer, coupons, out)
			if !errors.Is(err, ErrScore) {
				t.Fatalf("got %v, want an ErrScore", err)
			}
			path := "/score"
			if tt.protocol == ProtocolV2 {
				path = "/v2/models/coupon/infer"
			}
			prefix := "recommender: scoring failed: " + tt.protocol + " " + srv.URL + path + ": "
			if msg := err.Error(); !strings.HasPrefix(msg, prefix) || !strings.Contains(msg, tt.wantError) {
				t.Fatalf("got  %q\nwant %q…%q", msg, prefix, tt.wantError)
			}
			st := c.Stats()
			if tt.wantKind(st) != 1 || st.Errors() != 1 || st.OK != 0 || st.InFlight != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func http4xx(s ClientStats) uint64     { return s.HTTP4xx }
func http5xx(s ClientStats) uint64     { return s.HTTP5xx }
func badResponse(s ClientStats) uint64 { return s.BadResponse }

func TestClientTimeout(t *testing.T) {
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // hold the request until the client gives up
		case <-r.Context().Done():
		case <-done:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(done) }) // runs first, so Close has nothing to wait for

	const timeout = 200 * time.Millisecond
	for _, protocol := range []string{ProtocolScore, ProtocolV2} {
		t.Run(protocol, func(t *testing.T) {
			c := newTestClient(t, srv.URL, protocol, func(cfg *Config) { cfg.Timeout = timeout })
			start := time.Now()
			err := c.Score(context.Background(), &testCustomer, testCoupons(), make([]float64, 5))
			elapsed := time.Since(start)
			if !errors.Is(err, ErrScore) || !errors.Is(err, context.DeadlineExceeded) || !strings.HasSuffix(err.Error(), ": timed out after 200ms: context deadline exceeded") {
				t.Fatalf("got %v, want a timeout", err)
			}
			if elapsed > timeout+2*time.Second {
				t.Fatalf("gave up after %s, want about %s", elapsed, timeout)
			}
			if st := c.Stats(); st.Timeouts != 1 || st.Errors() != 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestClientContext(t *testing.T) {
	srv := storeflowPeer(t)
	expired, cancelExpired := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	t.Cleanup(cancelExpired)
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := map[string]struct {
		ctx       context.Context
		wantError string
		wantKind  func(ClientStats) uint64
	}{
		"caller's deadline": {expired, "the caller's deadline passed", func(s ClientStats) uint64 { return s.Timeouts }},
		"caller cancelled":  {canceled, "canceled", func(s ClientStats) uint64 { return s.Canceled }},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			c := newTestClient(t, srv.URL, ProtocolV2, nil)
			err := c.Score(tt.ctx, &testCustomer, testCoupons(), make([]float64, 5))
			if !errors.Is(err, ErrScore) || !strings.Contains(err.Error(), tt.wantError) {
				t.Fatalf("got %v, want %q", err, tt.wantError)
			}
			if st := c.Stats(); tt.wantKind(st) != 1 || st.Errors() != 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestClientTransportError(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there now
	c := newTestClient(t, url, ProtocolV2, nil)
	err := c.Score(context.Background(), &testCustomer, testCoupons(), make([]float64, 5))
	if !errors.Is(err, ErrScore) || !strings.Contains(err.Error(), "v2 "+url+"/v2/models/coupon/infer: dial tcp") {
		t.Fatalf("got %v, want a dial error", err)
	}
	if st := c.Stats(); st.Transport != 1 || st.Errors() != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestClientInvalidInput(t *testing.T) {
	c := newTestClient(t, storeflowPeer(t).URL, ProtocolV2, nil)
	bad := testCustomer
	bad.MeanBuyPrice = 1e39 // +Inf as a float32 feature
	tests := map[string]struct {
		cust *store.Customer
		out  []float64
	}{
		"out too short":      {&testCustomer, make([]float64, 2)},
		"non-finite feature": {&bad, make([]float64, 5)},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if err := c.Score(context.Background(), tt.cust, testCoupons(), tt.out); !errors.Is(err, ErrScore) {
				t.Fatalf("got %v, want an ErrScore", err)
			}
		})
	}
	if st := c.Stats(); st.Invalid != 2 || st.Errors() != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestClientNoCoupons(t *testing.T) {
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { requests.Add(1) }))
	t.Cleanup(srv.Close)
	c := newTestClient(t, srv.URL, ProtocolV2, nil)
	if err := c.Score(context.Background(), &testCustomer, nil, nil); err != nil || requests.Load() != 0 || c.Stats().Calls != 0 {
		t.Fatalf("err %v, %d requests: want no call", err, requests.Load())
	}
}

func TestClientHeaders(t *testing.T) {
	const token = "Bearer s3cr3t=="
	var got http.Header
	var host string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, host = r.Header.Clone(), r.Host
		http.Error(w, "denied", http.StatusUnauthorized)
	}))
	t.Cleanup(srv.Close)
	c := newTestClient(t, srv.URL, ProtocolV2, func(cfg *Config) {
		cfg.Headers = "Seldon-Model=coupon-v2, Authorization=" + token + ",Host=coupon.shop.example.com"
	})
	err := c.Score(context.Background(), &testCustomer, testCoupons(), make([]float64, 5))
	if err == nil || strings.Contains(err.Error(), "s3cr3t") || !strings.Contains(err.Error(), "401 Unauthorized: denied") {
		t.Fatalf("got %v, want a 401 without the token", err)
	}
	want := map[string]string{"Seldon-Model": "coupon-v2", "Authorization": token, "Content-Type": "application/json"}
	for k, v := range want {
		if got.Get(k) != v {
			t.Errorf("header %s: got %q, want %q", k, got.Get(k), v)
		}
	}
	if host != "coupon.shop.example.com" {
		t.Errorf("Host %q, want coupon.shop.example.com", host)
	}
}

func TestClientHidesURLSecrets(t *testing.T) {
	srv := rawPeer(t, 500, "boom")
	url := strings.Replace(srv.URL, "http://", "http://user:pa55word@", 1) + "/prefix?api_key=k3y"
	c := newTestClient(t, url, ProtocolV2, nil)
	err := c.Score(context.Background(), &testCustomer, testCoupons(), make([]float64, 5))
	if err == nil || strings.Contains(err.Error(), "pa55word") || strings.Contains(err.Error(), "k3y") ||
		!strings.Contains(err.Error(), srv.URL+"/prefix/v2/models/coupon/infer: 500") {
		t.Fatalf("got %v", err)
	}
}

func TestNewClientRefuses(t *testing.T) {
	tests := map[string]struct {
		edit      func(*Config)
		wantError string
	}{
		"no URL":              {func(c *Config) { c.URL = "" }, "PREDICTION_URL"},
		"ftp URL":             {func(c *Config) { c.URL = "ftp://x" }, "PREDICTION_URL"},
		"URL with a password": {func(c *Config) { c.URL = "mqtt://u:hunter2@x" }, "PREDICTION_URL"},
		"protocol":            {func(c *Config) { c.Protocol = "grpc" }, "PREDICTION_PROTOCOL"},
		"model with a slash":  {func(c *Config) { c.Model = "a/b" }, "PREDICTION_MODEL"},
		"zero timeout":        {func(c *Config) { c.Timeout = 0 }, "PREDICTION_TIMEOUT"},
		"no slots":            {func(c *Config) { c.MaxInFlight = 0 }, "PREDICTION_MAX_INFLIGHT"},
		"bad headers":         {func(c *Config) { c.Headers = "Authorization: hunter2" }, "PREDICTION_HEADERS"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			cfg := Config{URL: "http://127.0.0.1:1", Protocol: ProtocolV2, Model: DefaultModel, Timeout: time.Second, MaxInFlight: 1}
			tt.edit(&cfg)
			_, err := NewClient(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.wantError) || strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("got %v, want an error naming %s without secrets", err, tt.wantError)
			}
		})
	}
}

func TestClientMaxInFlight(t *testing.T) {
	const maxInFlight, calls = 3, 10
	var now, most atomic.Int64
	arrived := make(chan struct{}, calls)
	release := make(chan struct{})
	_, mux := newTestMux(testScorer{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := now.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		now.Add(-1)
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	c := newTestClient(t, srv.URL, ProtocolV2, func(cfg *Config) {
		cfg.MaxInFlight = maxInFlight
		cfg.Timeout = 20 * time.Second
	})

	errs := make(chan error, calls)
	for range calls {
		go func() {
			errs <- c.Score(context.Background(), &testCustomer, testCoupons(), make([]float64, 5))
		}()
	}
	deadline := time.After(10 * time.Second)
	for i := range maxInFlight {
		select {
		case <-arrived:
		case <-deadline:
			close(release)
			t.Fatalf("only %d of %d requests arrived", i, maxInFlight)
		}
	}
	if got := c.Stats().InFlight; got != maxInFlight {
		t.Errorf("InFlight = %d with the peer holding %d requests", got, maxInFlight)
	}
	close(release)
	for range calls {
		select {
		case err := <-errs:
			if err != nil {
				t.Error(err)
			}
		case <-deadline:
			t.Fatal("calls did not finish")
		}
	}
	if m := most.Load(); m > maxInFlight || m < 1 {
		t.Fatalf("peer saw %d requests at once, want at most %d", m, maxInFlight)
	}
	if st := c.Stats(); st.OK != calls || st.InFlight != 0 {
		t.Fatalf("stats %+v", st)
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
		if n < 0 || n > MaxRows {
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

// FuzzParseScoreReply checks the /score answer decoder on any body.
func FuzzParseScoreReply(f *testing.F) {
	f.Add([]byte(`[{"coupon_id":4,"customer_id":"c","prediction":0.5},{"coupon_id":7,"prediction":0.25},{"coupon_id":9,"prediction":1}]`))
	f.Add([]byte(`[{"coupon_id":"4","prediction":0.5}]`))
	coupons := testCoupons()[:3]
	f.Fuzz(func(t *testing.T, body []byte) {
		out := []float64{-1, -1, -1}
		if err := parseScoreReply(body, coupons, out); err != nil {
			return
		}
		for i, p := range out {
			if !(p >= 0 && p <= 1) {
				t.Fatalf("coupon %d: accepted %v", coupons[i].ID, p)
			}
		}
	})
}

func BenchmarkClientV2(b *testing.B) {
	for _, n := range []int{5, 50} {
		b.Run(fmt.Sprintf("coupons=%d", n), func(b *testing.B) {
			coupons := make([]store.Coupon, n)
			for i := range coupons {
				coupons[i] = testCoupons()[i%5]
				coupons[i].ID = i + 1
			}
			c := newTestClient(b, storeflowPeer(b).URL, ProtocolV2, nil)
			out := make([]float64, n)
			b.ReportAllocs()
			for b.Loop() {
				if err := c.Score(context.Background(), &testCustomer, coupons, out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A service that hangs opens the circuit breaker after
// PREDICTION_BREAKER_FAILURES timeouts: calls then fail at once without a
// request, until a probe after the cooldown finds the service back.
func TestClientBreaker(t *testing.T) {
	var hang atomic.Bool
	var requests atomic.Int64
	peer := storeflowPeer(t)
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if hang.Load() {
			select {
			case <-r.Context().Done():
			case <-done:
			}
			return
		}
		peer.Config.Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(done) })

	const failures, cooldown = 3, time.Second // far longer than the 100 refused calls take
	c := newTestClient(t, srv.URL, ProtocolV2, func(cfg *Config) {
		cfg.Timeout, cfg.BreakerFailures, cfg.BreakerCooldown = 50*time.Millisecond, failures, cooldown
	})
	score := func() error {
		return c.Score(context.Background(), &testCustomer, testCoupons(), make([]float64, 5))
	}
	hang.Store(true)
	for i := range failures {
		if err := score(); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("call %d: %v, want a timeout", i, err)
		}
	}
	if err := c.BreakerErr(); err == nil || c.BreakerState() != breaker.Open {
		t.Fatalf("breaker %s (%v) after %d timeouts, want open", c.BreakerState(), err, failures)
	}
	for range 100 {
		if err := score(); !errors.Is(err, breaker.ErrOpen) || !errors.Is(err, ErrScore) {
			t.Fatalf("call with the breaker open: %v, want ErrScore and breaker.ErrOpen", err)
		}
	}
	if got := requests.Load(); got != failures {
		t.Errorf("%d requests reached the service, want only the %d before the breaker opened", got, failures)
	}
	hang.Store(false)
	deadline := time.Now().Add(5 * time.Second)
	for score() != nil { // the probe goes once the cooldown has passed
		if time.Now().After(deadline) {
			t.Fatalf("no call went through within 5s of the service coming back; breaker %v", c.BreakerErr())
		}
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
	if c.BreakerState() != breaker.Closed {
		t.Fatalf("breaker %s after a good probe", c.BreakerState())
	}
	st := c.Stats()
	if st.BreakerOpened != 1 || st.BreakerOpen < 100 || st.Timeouts != failures || st.OK != 1 {
		t.Errorf("stats %+v: want 1 opening, at least 100 refused calls, %d timeouts, 1 ok", st, failures)
	}
}
