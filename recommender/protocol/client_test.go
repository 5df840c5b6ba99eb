package protocol_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/storeflow/storeflow/internal/breaker"
	"github.com/storeflow/storeflow/internal/harness"
	"github.com/storeflow/storeflow/internal/proctest"
	"github.com/storeflow/storeflow/recommender"
	"github.com/storeflow/storeflow/recommender/internal/fixture"
	"github.com/storeflow/storeflow/recommender/protocol"
	"github.com/storeflow/storeflow/recommender/score"
	"github.com/storeflow/storeflow/recommender/v2"
	"github.com/storeflow/storeflow/store"
)

// newTestClient is a client of the service at url speaking proto, with
// metrics of its own.
func newTestClient(t testing.TB, url, proto string, edit func(*recommender.Config)) (*protocol.Client, *protocol.ClientMetrics) {
	t.Helper()
	codec := score.Codec
	if proto == recommender.ProtocolV2 {
		codec = v2.Codec
	}
	return fixture.Client(t, codec, url, edit)
}

// checkCalls checks the client's calls ended as want says, and none is in
// flight.
func checkCalls(t *testing.T, m *protocol.ClientMetrics, want map[string]float64) {
	t.Helper()
	if got, inFlight := fixture.CallCounts(t, m), testutil.ToFloat64(m.InFlight); !maps.Equal(got, want) || inFlight != 0 {
		t.Fatalf("calls %v, %v in flight; want %v, none in flight", got, inFlight, want)
	}
}

// storeflowPeer is storeflow's own prediction server over fixture.Scorer.
func storeflowPeer(t testing.TB) *httptest.Server {
	t.Helper()
	_, mux := newTestMux(fixture.Scorer{})
	return fixture.Peer(t, mux)
}

func TestClientAgainstServer(t *testing.T) {
	coupons := fixture.Coupons()
	probs := fixture.WantProbs(&fixture.Customer, coupons)
	fp32 := make([]float64, len(probs))
	for i, p := range probs {
		fp32[i] = float64(float32(p))
	}
	tests := map[string]struct {
		protocol string
		want     []float64 // the V2 output is FP32
	}{
		"score": {recommender.ProtocolScore, probs},
		"v2":    {recommender.ProtocolV2, fp32},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			c, m := newTestClient(t, storeflowPeer(t).URL, tt.protocol, nil)
			out := make([]float64, len(coupons))
			if err := c.Score(context.Background(), &fixture.Customer, coupons, out); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(out, tt.want) {
				t.Fatalf("got  %v\nwant %v", out, tt.want)
			}
			checkCalls(t, m, map[string]float64{"ok": 1})
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
	coupons := fixture.Coupons()[:3] // ids 7, 4, 9
	long := strings.Repeat("x", 1000)
	tests := map[string]struct {
		protocol  string
		status    int
		body      string
		wantKind  string // the outcome counted
		wantError string // the end of the error
	}{
		"v2 400":                  {recommender.ProtocolV2, 400, `{"error":"unexpected shape for input 'features'"}`, "http_4xx", `: 400 Bad Request: unexpected shape for input 'features'`},
		"v2 404":                  {recommender.ProtocolV2, 404, `{"error":"Model with name coupon does not exist."}`, "http_4xx", `: 404 Not Found: Model with name coupon does not exist.`},
		"v2 500":                  {recommender.ProtocolV2, 500, "Internal Server Error\n", "http_5xx", `: 500 Internal Server Error: Internal Server Error`},
		"v2 503":                  {recommender.ProtocolV2, 503, "no healthy upstream", "http_5xx", `v2/models/coupon/infer: 503 Service Unavailable: no healthy upstream`},
		"v2 503, empty body":      {recommender.ProtocolV2, 503, "", "http_5xx", `: 503 Service Unavailable: (empty body)`},
		"long error body is cut":  {recommender.ProtocolV2, 502, long, "http_5xx", ": 502 Bad Gateway: " + long[:200] + "…"},
		"redirect":                {recommender.ProtocolV2, 302, "", "bad_response", `: unexpected 302 Found`},
		"malformed JSON":          {recommender.ProtocolV2, 200, `{"outputs":[`, "bad_response", `want a V2 infer response: unexpected end of JSON input`},
		"not an object":           {recommender.ProtocolV2, 200, `[0.1,0.2,0.3]`, "bad_response", `want a V2 infer response: json: cannot unmarshal array into Go value of type v2.inferReply`},
		"no outputs":              {recommender.ProtocolV2, 200, `{"outputs":[]}`, "bad_response", `no probability output among []: want a float output named probability, predict_proba, output-0, output0, OUTPUT0 or the only float output`},
		"only class labels":       {recommender.ProtocolV2, 200, `{"outputs":[{"name":"predict","datatype":"INT64","shape":[3],"data":[0,1,0]}]}`, "bad_response", `no probability output among ["predict" "INT64"]`},
		"two unnamed floats":      {recommender.ProtocolV2, 200, `{"outputs":[{"name":"a","datatype":"FP32","shape":[3],"data":[0,1,0]},{"name":"b","datatype":"FP32","shape":[3],"data":[0,1,0]}]}`, "bad_response", `no probability output among ["a" "FP32", "b" "FP32"]`},
		"wrong row count":         {recommender.ProtocolV2, 200, `{"outputs":[{"name":"probability","datatype":"FP32","shape":[2],"data":[0.1,0.2]}]}`, "bad_response", `output "probability": 2 rows for 3 coupons`},
		"shape and data disagree": {recommender.ProtocolV2, 200, `{"outputs":[{"name":"probability","datatype":"FP32","shape":[3],"data":[0.1,0.2]}]}`, "bad_response", `output "probability": 2 values for shape [3] (want 3)`},
		"three columns":           {recommender.ProtocolV2, 200, `{"outputs":[{"name":"probability","datatype":"FP32","shape":[3,3],"data":[]}]}`, "bad_response", `shape [3 3]: want [n], [n,1] or [n,2]`},
		"probability over 1":      {recommender.ProtocolV2, 200, `{"outputs":[{"name":"probability","datatype":"FP32","shape":[3],"data":[0.1,1.5,0.2]}]}`, "bad_response", `output "probability": row 1: 1.5 is not a probability`},
		"negative probability":    {recommender.ProtocolV2, 200, `{"outputs":[{"name":"probability","datatype":"FP64","shape":[3,1],"data":[[0.1],[0.5],[-0.2]]}]}`, "bad_response", `row 2: -0.2 is not a probability`},
		"null in data":            {recommender.ProtocolV2, 200, `{"outputs":[{"name":"probability","datatype":"FP32","shape":[3],"data":[0.1,null,0.2]}]}`, "bad_response", `value 1: want a number, got null`},
		"score 500":               {recommender.ProtocolScore, 500, `{"detail":"boom"}`, "http_5xx", `: 500 Internal Server Error: {"detail":"boom"}`},
		"score not a list":        {recommender.ProtocolScore, 200, `{"predictions":[]}`, "bad_response", `want a JSON list of {coupon_id, customer_id, prediction}`},
		"score missing coupon":    {recommender.ProtocolScore, 200, `[{"coupon_id":7,"prediction":0.1},{"coupon_id":4,"prediction":0.2}]`, "bad_response", `2 predictions for 3 coupons`},
		"score unknown coupon":    {recommender.ProtocolScore, 200, `[{"coupon_id":7,"prediction":0.1},{"coupon_id":4,"prediction":0.2},{"coupon_id":1,"prediction":0.2}]`, "bad_response", `coupon 1 was not asked for`},
		"score duplicate coupon":  {recommender.ProtocolScore, 200, `[{"coupon_id":7,"prediction":0.1},{"coupon_id":4,"prediction":0.2},{"coupon_id":7,"prediction":0.2}]`, "bad_response", `coupon 7 answered twice`},
		"score over 1":            {recommender.ProtocolScore, 200, `[{"coupon_id":7,"prediction":0.1},{"coupon_id":4,"prediction":1.2},{"coupon_id":9,"prediction":0.2}]`, "bad_response", `coupon 4: prediction 1.2 is not a probability`},
		"score no prediction":     {recommender.ProtocolScore, 200, `[{"coupon_id":7,"prediction":0.1},{"coupon_id":4},{"coupon_id":9,"prediction":0.2}]`, "bad_response", `prediction 1: coupon 4 has no prediction`},
		"score fractional id":     {recommender.ProtocolScore, 200, `[{"coupon_id":7.5,"prediction":0.1},{"coupon_id":4,"prediction":0.1},{"coupon_id":9,"prediction":0.2}]`, "bad_response", `prediction 0: coupon_id "7.5" is not an integer`},
		"score string prediction": {recommender.ProtocolScore, 200, `[{"coupon_id":7,"prediction":"0.1"}]`, "bad_response", `cannot unmarshal string`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			srv := rawPeer(t, tt.status, tt.body)
			c, m := newTestClient(t, srv.URL, tt.protocol, nil)
			out := make([]float64, len(coupons))
			err := c.Score(context.Background(), &fixture.Customer, coupons, out)
			if !errors.Is(err, recommender.ErrScore) {
				t.Fatalf("got %v, want a recommender.ErrScore", err)
			}
			path := "/score"
			if tt.protocol == recommender.ProtocolV2 {
				path = "/v2/models/coupon/infer"
			}
			prefix := "recommender: scoring failed: " + tt.protocol + " " + srv.URL + path + ": "
			if msg := err.Error(); !strings.HasPrefix(msg, prefix) || !strings.Contains(msg, tt.wantError) {
				t.Fatalf("got  %q\nwant %q…%q", msg, prefix, tt.wantError)
			}
			checkCalls(t, m, map[string]float64{tt.wantKind: 1})
		})
	}
}

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
	for _, proto := range []string{recommender.ProtocolScore, recommender.ProtocolV2} {
		t.Run(proto, func(t *testing.T) {
			c, m := newTestClient(t, srv.URL, proto, func(cfg *recommender.Config) { cfg.Timeout = timeout })
			start := time.Now()
			err := c.Score(context.Background(), &fixture.Customer, fixture.Coupons(), make([]float64, 5))
			elapsed := time.Since(start)
			if !errors.Is(err, recommender.ErrScore) || !errors.Is(err, context.DeadlineExceeded) || !strings.HasSuffix(err.Error(), ": timed out after 200ms: context deadline exceeded") {
				t.Fatalf("got %v, want a timeout", err)
			}
			if elapsed > timeout+2*time.Second {
				t.Fatalf("gave up after %s, want about %s", elapsed, timeout)
			}
			checkCalls(t, m, map[string]float64{"timeout": 1})
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
		wantKind  string
	}{
		"caller's deadline": {expired, "the caller's deadline passed", "timeout"},
		"caller cancelled":  {canceled, "canceled", "canceled"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			c, m := newTestClient(t, srv.URL, recommender.ProtocolV2, nil)
			err := c.Score(tt.ctx, &fixture.Customer, fixture.Coupons(), make([]float64, 5))
			if !errors.Is(err, recommender.ErrScore) || !strings.Contains(err.Error(), tt.wantError) {
				t.Fatalf("got %v, want %q", err, tt.wantError)
			}
			checkCalls(t, m, map[string]float64{tt.wantKind: 1})
		})
	}
}

func TestClientTransportError(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there now
	c, m := newTestClient(t, url, recommender.ProtocolV2, nil)
	err := c.Score(context.Background(), &fixture.Customer, fixture.Coupons(), make([]float64, 5))
	if !errors.Is(err, recommender.ErrScore) || !strings.Contains(err.Error(), "v2 "+url+"/v2/models/coupon/infer: dial tcp") {
		t.Fatalf("got %v, want a dial error", err)
	}
	checkCalls(t, m, map[string]float64{"transport": 1})
}

func TestClientInvalidInput(t *testing.T) {
	c, m := newTestClient(t, storeflowPeer(t).URL, recommender.ProtocolV2, nil)
	bad := fixture.Customer
	bad.MeanBuyPrice = math.NaN() // a finite amount beyond float32's range saturates instead
	tests := map[string]struct {
		cust *store.Customer
		out  []float64
	}{
		"out too short":      {&fixture.Customer, make([]float64, 2)},
		"non-finite feature": {&bad, make([]float64, 5)},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if err := c.Score(context.Background(), tt.cust, fixture.Coupons(), tt.out); !errors.Is(err, recommender.ErrScore) {
				t.Fatalf("got %v, want a recommender.ErrScore", err)
			}
		})
	}
	checkCalls(t, m, map[string]float64{"invalid": 2})
}

func TestClientNoCoupons(t *testing.T) {
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { requests.Add(1) }))
	t.Cleanup(srv.Close)
	c, m := newTestClient(t, srv.URL, recommender.ProtocolV2, nil)
	if err := c.Score(context.Background(), &fixture.Customer, nil, nil); err != nil || requests.Load() != 0 || len(fixture.CallCounts(t, m)) != 0 {
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
	c, _ := newTestClient(t, srv.URL, recommender.ProtocolV2, func(cfg *recommender.Config) {
		cfg.Headers = "Seldon-Model=coupon-v2, Authorization=" + token + ",Host=coupon.shop.example.com"
	})
	err := c.Score(context.Background(), &fixture.Customer, fixture.Coupons(), make([]float64, 5))
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
	c, _ := newTestClient(t, url, recommender.ProtocolV2, nil)
	err := c.Score(context.Background(), &fixture.Customer, fixture.Coupons(), make([]float64, 5))
	if err == nil || strings.Contains(err.Error(), "pa55word") || strings.Contains(err.Error(), "k3y") ||
		!strings.Contains(err.Error(), strings.Replace(srv.URL, "http://", "http://*****@", 1)+"/prefix/v2/models/coupon/infer?api_key=*****: 500") {
		t.Fatalf("got %v", err)
	}
}

func TestNewClientRefuses(t *testing.T) {
	tests := map[string]struct {
		edit      func(*recommender.Config)
		wantError string
	}{
		"no URL":              {func(c *recommender.Config) { c.URL = "" }, "PREDICTION_URL"},
		"ftp URL":             {func(c *recommender.Config) { c.URL = "ftp://x" }, "PREDICTION_URL"},
		"URL with a password": {func(c *recommender.Config) { c.URL = "mqtt://u:hunter2@x" }, "PREDICTION_URL"},
		"protocol":            {func(c *recommender.Config) { c.Protocol = "grpc" }, "PREDICTION_PROTOCOL"},
		"model with a slash":  {func(c *recommender.Config) { c.Model = "a/b" }, "PREDICTION_MODEL"},
		"zero timeout":        {func(c *recommender.Config) { c.Timeout = 0 }, "PREDICTION_TIMEOUT"},
		"no slots":            {func(c *recommender.Config) { c.MaxInFlight = 0 }, "PREDICTION_MAX_INFLIGHT"},
		"bad headers":         {func(c *recommender.Config) { c.Headers = "Authorization: hunter2" }, "PREDICTION_HEADERS"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			cfg := recommender.Config{URL: "http://127.0.0.1:1", Protocol: recommender.ProtocolV2, Model: recommender.DefaultModel, Timeout: time.Second, MaxInFlight: 1}
			tt.edit(&cfg)
			_, err := protocol.NewClient(cfg, v2.Codec, protocol.NewClientMetrics(prometheus.NewRegistry()))
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
	_, mux := newTestMux(fixture.Scorer{})
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
	c, m := newTestClient(t, srv.URL, recommender.ProtocolV2, func(cfg *recommender.Config) {
		cfg.MaxInFlight = maxInFlight
		cfg.Timeout = 20 * time.Second
	})

	errs := make(chan error, calls)
	for range calls {
		go func() {
			errs <- c.Score(context.Background(), &fixture.Customer, fixture.Coupons(), make([]float64, 5))
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
	if got := testutil.ToFloat64(m.InFlight); got != maxInFlight {
		t.Errorf("in flight: %v with the peer holding %d requests", got, maxInFlight)
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
	if ok, inFlight := fixture.CallCounts(t, m)["ok"], testutil.ToFloat64(m.InFlight); ok != calls || inFlight != 0 {
		t.Fatalf("%v ok, %v in flight; want %d ok, none in flight", ok, inFlight, calls)
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
	c, m := newTestClient(t, srv.URL, recommender.ProtocolV2, func(cfg *recommender.Config) {
		cfg.Timeout, cfg.BreakerFailures, cfg.BreakerCooldown = 50*time.Millisecond, failures, cooldown
	})
	score := func() error {
		return c.Score(context.Background(), &fixture.Customer, fixture.Coupons(), make([]float64, 5))
	}
	hang.Store(true)
	for i := range failures {
		if err := score(); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("call %d: %v, want a timeout", i, err)
		}
	}
	if err := c.BreakerErr(); err == nil {
		t.Fatalf("breaker closed after %d timeouts, want open", failures)
	}
	for range 100 {
		if err := score(); !errors.Is(err, breaker.ErrOpen) || !errors.Is(err, recommender.ErrScore) {
			t.Fatalf("call with the breaker open: %v, want ErrScore and breaker.ErrOpen", err)
		}
	}
	if got := requests.Load(); got != failures {
		t.Errorf("%d requests reached the service, want only the %d before the breaker opened", got, failures)
	}
	hang.Store(false)
	harness.Until(t, 5*time.Second, "a call through after the service came back", func() bool { return score() == nil })
	if err := c.BreakerErr(); err != nil {
		t.Fatalf("breaker %v after a good probe", err)
	}
	got := fixture.CallCounts(t, m)
	if got["breaker_open"] < 100 || got["timeout"] != failures || got["ok"] != 1 {
		t.Errorf("calls %v: want at least 100 breaker_open, %d timeouts, 1 ok", got, failures)
	}
}

// WatchModel asks the V2 model readiness route in the background: against
// storeflow's own server, the model it serves is ready, another name is not
// on the server (404), and a server without a model is not ready (503).
// The /score protocol has no such route: nothing is asked, nothing is wrong.
func TestClientWatchModel(t *testing.T) {
	_, noModel := newTestMux(nil)
	tests := map[string]struct {
		peer    *httptest.Server
		proto   string
		model   string
		wantErr string // "" ready
	}{
		"model served":        {storeflowPeer(t), recommender.ProtocolV2, recommender.DefaultModel, ""},
		"model not on server": {storeflowPeer(t), recommender.ProtocolV2, "other", `model "other" (PREDICTION_MODEL) is not on the server: GET `},
		"no model loaded":     {fixture.Peer(t, noModel), recommender.ProtocolV2, recommender.DefaultModel, `model "coupon" (PREDICTION_MODEL) is not ready: GET `},
		"score protocol":      {storeflowPeer(t), recommender.ProtocolScore, "other", ""},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			c, m := newTestClient(t, tt.peer.URL, tt.proto, func(cfg *recommender.Config) { cfg.Model = tt.model })
			if tt.proto == recommender.ProtocolV2 && !strings.Contains(fmt.Sprint(c.ModelErr()), "not checked yet") {
				t.Fatalf("before WatchModel: ModelErr() = %v, want not checked yet", c.ModelErr())
			}
			var logs proctest.SyncBuffer
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				done <- c.WatchModel(ctx, time.Hour, time.Second, slog.New(slog.NewTextHandler(&logs, nil)))
			}()
			harness.Until(t, 10*time.Second, "the model's readiness asked", func() bool {
				return !strings.Contains(fmt.Sprint(c.ModelErr()), "not checked yet")
			})
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			err := c.ModelErr()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("ModelErr() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("ModelErr() = %v, want %q…", err, tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(logs.String(), "prediction model not ready"):
				t.Fatalf("no warning logged: %q", logs.String())
			}
			checkCalls(t, m, map[string]float64{}) // readiness is not a call
		})
	}
}
