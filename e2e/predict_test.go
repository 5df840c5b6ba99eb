package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/storeflow/storeflow/internal/modeltest"
	"github.com/storeflow/storeflow/internal/proctest"
	"github.com/storeflow/storeflow/recommender"
	"github.com/storeflow/storeflow/recommender/protocol"
	"github.com/storeflow/storeflow/recommender/v2"
	"github.com/storeflow/storeflow/store"
)

// One process serves predictions (/score and the Open Inference Protocol)
// and another, with the same catalog, asks it over HTTP instead of keeping a
// model: the coupon the second one publishes is the one the first one's
// model picks, and the call really went through the first one.
func TestSplitRunAsksThePeerForPredictions(t *testing.T) {
	const seed = "11" // not the default: both sides must agree on it
	server := startSystem(t, map[string]string{"CATALOG_SEED": seed, "MODEL_FILE": modelFile(t)})
	cases := []struct {
		protocol string
		path     string // what the peer must have answered
		route    string // the serving process's metric label for it
		fp32     bool   // the answer carries FP32 probabilities
	}{
		{recommender.ProtocolScore, "POST /score 200", "score", false},
		{recommender.ProtocolV2, "POST /v2/models/coupon/infer 200", "infer", true},
	}
	for _, tc := range cases {
		t.Run(tc.protocol, func(t *testing.T) {
			peer := newCountingProxy(t, "http://"+server.app.HTTPAddr())
			sys := startSystem(t, map[string]string{
				"CATALOG_SEED":        seed,
				"PREDICTION_URL":      peer.url,
				"PREDICTION_PROTOCOL": tc.protocol,
			})
			if !slices.Equal(sys.app.Catalog().Customers(), server.app.Catalog().Customers()) ||
				!slices.Equal(sys.app.Catalog().Coupons(), server.app.Catalog().Coupons()) {
				t.Fatal("the two processes generated different catalogs from one CATALOG_SEED")
			}
			obs, sensor := sys.observerAndSensor(t, "customer/#")

			s := lingerInBoys(t, server, sensor)
			id := s.id

			focus := decodeFocus(t, obs.next("customer/focus", 10*time.Second).Payload)
			got := obs.nextOffer(t, 10*time.Second)
			if got.Customer.ID != id || got.Coupon.Department != "Boys" || got.TS != focus.TS {
				t.Fatalf("prediction for %s in %s at %d, want %s in Boys at the focus ts %d",
					got.Customer.ID, got.Coupon.Department, got.TS, id, focus.TS)
			}
			want := bestCoupon(t, server, id, store.Boys, store.DayOf(focus.TS), tc.fp32)
			if got.Coupon.ID != want {
				t.Errorf("published coupon %d, the serving process's model picks %d", got.Coupon.ID, want)
			}

			// The answer passed the proxy before the prediction was
			// published, so the count is already there.
			answers := peer.answers()
			// The V2 model's readiness is asked in the background (/readyz).
			delete(answers, "GET /v2/models/coupon/ready 200")
			if answers[tc.path] < 1 || len(answers) != 1 {
				t.Errorf("the peer answered %v, want only %q", answers, tc.path)
			}
			// The server counts a request after writing its answer: wait.
			server.waitMetric(t, 1, 5*time.Second, "storeflow_prediction_server_requests_total", "route="+tc.route, "outcome=ok")
			const calls = "storeflow_prediction_client_calls_total"
			if _, ok := sys.app.Scorer().(*protocol.Client); !ok {
				t.Errorf("scorer is %T, want the prediction client", sys.app.Scorer())
			} else if ok, all := sys.metric(t, calls, "outcome=ok"), sys.metric(t, calls); ok < 1 || all != ok {
				t.Errorf("client calls: %v ok of %v, want an OK call and no error", ok, all)
			}
			s.exit()
		})
	}
}

// A prediction service that cannot be reached costs each focus its coupon,
// counted as score_error, and nothing else: the process keeps consuming and a
// later focus is still handled.
func TestPredictionServiceDownIsCountedAndSurvived(t *testing.T) {
	closed := proctest.FreeAddr(t)

	sys := startSystem(t, map[string]string{
		"PREDICTION_URL":     "http://" + closed,
		"PREDICTION_TIMEOUT": "500ms",
	})
	obs, sensor := sys.observerAndSensor(t, "customer/prediction")

	now := time.Now().Unix()
	if coupons, _ := sys.app.Catalog().ValidCoupons(context.Background(), store.Boys, store.DayOf(now), nil); len(coupons) == 0 {
		t.Fatal("the generated catalog has no Boys coupon today: the focus would end before scoring")
	}
	customers := sys.app.Catalog().Customers()
	for i, c := range customers[:2] {
		s := &script{cl: sensor, id: c.ID, ts: now}
		s.lingerInBoys()
		sys.waitMetric(t, float64(i+1), 10*time.Second, "storeflow_focus_outcomes_total", "outcome=score_error")
		s.exit()
	}
	if n := sys.metric(t, "storeflow_focus_detected_total"); n != 2 {
		t.Errorf("storeflow_focus_detected_total = %v, want 2", n)
	}
	if n := sys.metric(t, "storeflow_focus_outcomes_total", "outcome=published"); n != 0 {
		t.Errorf("%v coupons published with the prediction service down", n)
	}
	select {
	case m := <-obs.msg:
		t.Errorf("a prediction was published with the service down: %s", m.Payload)
	default:
	}
	const calls = "storeflow_prediction_client_calls_total"
	if all, transport := sys.metric(t, calls), sys.metric(t, calls, "outcome=transport"); all != 2 || transport != 2 {
		t.Errorf("client calls: %v, %v of them transport errors; want 2 calls, both transport errors", all, transport)
	}
	// The process keeps running, but it is not ready: a probe takes it out
	// of rotation until the prediction service answers.
	if code, body := httpGet(t, "http://"+sys.app.HTTPAddr()+"/readyz"); code != http.StatusServiceUnavailable ||
		!strings.Contains(body, "not ready: prediction: ") {
		t.Errorf("GET /readyz = %d %s with the prediction service down, want 503 naming prediction", code, body)
	}
}

// The running process serves its model over HTTP: /score answers a
// customer's coupons sorted by prediction, the Open Inference Protocol
// answers the same probabilities for the same rows, and both agree with the
// scorer the pipeline uses.
func TestPredictionEndpointsServeTheModel(t *testing.T) {
	sys := startSystem(t, map[string]string{"MODEL_FILE": modelFile(t)})
	base := "http://" + sys.app.HTTPAddr()
	ctx := context.Background()
	cust := sys.app.Catalog().Customers()[0]
	coupons, _ := sys.app.Catalog().ValidCoupons(ctx, store.Boys, store.DayOf(time.Now().Unix()), nil)
	if len(coupons) < 2 {
		t.Fatalf("%d Boys coupons valid today, want at least 2 to see an order", len(coupons))
	}
	want := make([]float64, len(coupons))
	if err := sys.app.Scorer().Score(ctx, &cust, coupons, want); err != nil {
		t.Fatal(err)
	}
	byID := map[int]float64{}
	for i, c := range coupons {
		byID[c.ID] = want[i]
	}

	t.Run("score", func(t *testing.T) {
		var results []struct {
			CouponID   int     `json:"coupon_id"`
			CustomerID string  `json:"customer_id"`
			Prediction float64 `json:"prediction"`
		}
		httpPostJSON(t, base+"/score", scoreRequest(&cust, coupons), &results)
		if len(results) != len(coupons) {
			t.Fatalf("%d results for %d coupons", len(results), len(coupons))
		}
		seen := map[int]bool{}
		for i, r := range results {
			p, ok := byID[r.CouponID]
			if !ok || seen[r.CouponID] {
				t.Fatalf("result %d: coupon %d was not asked for, or answered twice", i, r.CouponID)
			}
			seen[r.CouponID] = true
			if r.CustomerID != cust.ID {
				t.Errorf("result %d: customer_id %q, want %q", i, r.CustomerID, cust.ID)
			}
			if math.Abs(r.Prediction-p) > 1e-9 {
				t.Errorf("coupon %d: /score %v, scorer %v", r.CouponID, r.Prediction, p)
			}
			if i > 0 {
				prev := results[i-1]
				if prev.Prediction < r.Prediction || (prev.Prediction == r.Prediction && prev.CouponID > r.CouponID) {
					t.Errorf("results %d and %d out of order: %+v before %+v", i-1, i, prev, r)
				}
			}
		}
	})

	t.Run("v2", func(t *testing.T) {
		if code, body := httpGet(t, base+"/v2/health/ready"); code != http.StatusOK {
			t.Fatalf("GET /v2/health/ready = %d %s, want 200", code, body)
		}
		rows := make([]float32, len(coupons)*recommender.NumFeatures)
		for i := range coupons {
			recommender.Encode(&cust, &coupons[i], rows[i*recommender.NumFeatures:(i+1)*recommender.NumFeatures])
		}
		req := map[string]any{
			"id": "e2e-1",
			"inputs": []map[string]any{{
				"name": v2.InputName, "datatype": "FP32",
				"shape": []int{len(coupons), recommender.NumFeatures}, "data": rows,
			}},
		}
		var resp struct {
			ModelName string `json:"model_name"`
			ID        string `json:"id"`
			Outputs   []struct {
				Name     string    `json:"name"`
				Datatype string    `json:"datatype"`
				Shape    []int     `json:"shape"`
				Data     []float64 `json:"data"`
			} `json:"outputs"`
		}
		httpPostJSON(t, base+"/v2/models/coupon/infer", req, &resp)
		if resp.ModelName != v2.ModelName || resp.ID != "e2e-1" || len(resp.Outputs) != 1 {
			t.Fatalf("infer answer model %q id %q with %d outputs, want %q, e2e-1 and one output",
				resp.ModelName, resp.ID, len(resp.Outputs), v2.ModelName)
		}
		out := resp.Outputs[0]
		if out.Name != v2.OutputName || out.Datatype != "FP32" || !slices.Equal(out.Shape, []int{len(coupons)}) || len(out.Data) != len(coupons) {
			t.Fatalf("output %s %s %v with %d values, want %s FP32 [%d]",
				out.Name, out.Datatype, out.Shape, len(out.Data), v2.OutputName, len(coupons))
		}
		for i, p := range out.Data {
			if math.Abs(p-want[i]) > 1e-6 {
				t.Errorf("coupon %d: infer %v, scorer %v", coupons[i].ID, p, want[i])
			}
		}
	})

	// The requests: tiny mean_buy_price values were answered 500
	// "model gave a non-finite probability", counted as failed. A price ratio
	// beyond float32's range either way made NaN of the model's linear part.
	t.Run("extreme amounts", func(t *testing.T) {
		const metric = "storeflow_prediction_server_requests_total"
		okBefore := sys.metric(t, metric, "route=score", "outcome=ok")
		extreme := slices.Clone(coupons)
		extreme[0].ProductMeanPrice = 1e19 // against 1e-20, past float32's range too
		extreme[1].ProductMeanPrice = 1e-45
		amounts := []float64{1e-38, 1e-45, 1e-20, math.MaxFloat32}
		for _, v := range amounts {
			c := cust
			c.MeanBuyPrice = v
			var results []struct {
				CouponID   int     `json:"coupon_id"`
				Prediction float64 `json:"prediction"`
			}
			httpPostJSON(t, base+"/score", scoreRequest(&c, extreme), &results)
			for _, r := range results {
				if !(r.Prediction >= 0 && r.Prediction <= 1) {
					t.Errorf("mean_buy_price %g, coupon %d: prediction %v", v, r.CouponID, r.Prediction)
				}
			}
		}
		if got := sys.metric(t, metric, "route=score", "outcome=ok") - okBefore; got != float64(len(amounts)) {
			t.Errorf("%s{route=score,outcome=ok} rose by %v for %d answered requests", metric, got, len(amounts))
		}
		for _, outcome := range []string{"failed", "unprocessable"} {
			if got := sys.metric(t, metric, "outcome="+outcome); got != 0 {
				t.Errorf("%s{outcome=%s} = %v, want 0", metric, outcome, got)
			}
		}
	})
}

// The simulated shoppers receive the published coupons and decide, with the
// ground truth, whether they would use them; the counts stay consistent.
//
// That the acceptance counter saw exactly the messages an outside subscriber
// saw is not checked: both subscribe while the simulator is already running
// (the counter right after Ready, the subscriber after that), so either may
// miss the first messages.
func TestSimulatedShoppersAcceptCoupons(t *testing.T) {
	sys := startSystem(t, map[string]string{
		"MODEL_FILE":                 modelFile(t),
		"SIMULATOR_ENABLED":          "true",
		"SIMULATOR_SPEED":            "200",
		"SIMULATOR_SEED":             "7",
		"CUSTOMERS_AVERAGE_IN_STORE": "20",
	})
	if sys.app.Acceptance() == nil {
		t.Fatal("no acceptance counter with the simulator on and a generated world")
	}
	const received = "storeflow_simulator_coupons_received_total"
	sys.waitMetric(t, 5, 60*time.Second, received)

	// A coupon is counted received before its use and its probability, so
	// reading those first keeps them within what received says.
	used := sys.metric(t, "storeflow_simulator_coupons_used_total")
	expected := sys.metric(t, "storeflow_simulator_coupons_expected_uses_total")
	got := sys.metric(t, received)
	if used < 0 || used > got {
		t.Errorf("coupons used %v, received %v", used, got)
	}
	if expected <= 0 || expected > got {
		t.Errorf("expected uses %v, want in (0, %v]", expected, got)
	}
	tally := sys.app.Acceptance().Tally()
	if float64(tally.Received) < got || tally.Used > tally.Received || tally.Expected <= 0 || tally.Expected > float64(tally.Received) {
		t.Errorf("tally %+v inconsistent (metric said %v received)", tally, got)
	}
	for _, name := range []string{"storeflow_simulator_predictions_rejected_total", "storeflow_simulator_predictions_unknown_total"} {
		if n := sys.metric(t, name); n != 0 {
			t.Errorf("%s = %v: every prediction is for a simulated shopper, in the seed's shape", name, n)
		}
	}
}

// modelFile is the shared test model, for MODEL_FILE.
func modelFile(t *testing.T) string { return modeltest.File(t) }

// bestCoupon is the coupon sys's scorer picks for customer id in dep on day,
// as the pipeline picks it on a first focus. With fp32 the probabilities are
// rounded as an Open Inference Protocol answer carries them.
func bestCoupon(t *testing.T, sys *system, id string, dep store.Department, day store.Day, fp32 bool) int {
	t.Helper()
	ctx := context.Background()
	c, err := sys.app.Catalog().Customer(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	coupons, _ := sys.app.Catalog().ValidCoupons(ctx, dep, day, nil)
	probs := make([]float64, len(coupons))
	if err := sys.app.Scorer().Score(ctx, &c, coupons, probs); err != nil {
		t.Fatal(err)
	}
	if fp32 {
		for i, p := range probs {
			probs[i] = float64(float32(p))
		}
	}
	i, ok := recommender.Best(coupons, probs, 0.2, nil)
	if !ok {
		t.Fatalf("no %s coupon above 0.2 for customer %s on %s", dep, id, day)
	}
	return coupons[i].ID
}

// seenFocus is a focus event as the tests read it.
type seenFocus struct {
	ID  string
	Dep string
	TS  int64
}

func decodeFocus(t *testing.T, payload []byte) seenFocus {
	t.Helper()
	var f struct {
		ID  string  `json:"id"`
		Dep string  `json:"dep"`
		TS  float64 `json:"ts"`
	}
	if err := json.Unmarshal(payload, &f); err != nil {
		t.Fatalf("focus %s: %v", payload, err)
	}
	return seenFocus{ID: f.ID, Dep: f.Dep, TS: int64(f.TS)}
}

// seenOffer is the part of a Prediction Results Message the tests compare.
type seenOffer struct {
	Customer struct {
		ID string `json:"id"`
	} `json:"customer"`
	Coupon struct {
		ID         int    `json:"id"`
		Department string `json:"department"`
		StartDate  string `json:"start_date"`
		EndDate    string `json:"end_date"`
	} `json:"coupon"`
	TS  int64  `json:"ts"`
	raw []byte // the whole message, for failure messages
}

func decodeOffer(t *testing.T, payload []byte) seenOffer {
	t.Helper()
	var o seenOffer
	if err := json.Unmarshal(payload, &o); err != nil {
		t.Fatalf("prediction %s: %v", payload, err)
	}
	o.raw = payload
	return o
}

// nextOffer waits for the next coupon c receives, checks the whole message's
// shape and decodes the parts the tests compare.
func (c *client) nextOffer(t *testing.T, within time.Duration) seenOffer {
	t.Helper()
	pred := c.next("customer/prediction", within)
	checkPredictionShape(t, pred.Payload)
	return decodeOffer(t, pred.Payload)
}

// countingProxy stands in front of a real peer and counts its answers by
// "METHOD path status". Switched down, it answers 503 itself, as a central
// whose data store has gone away does.
type countingProxy struct {
	url  string
	down atomic.Bool
	mu   sync.Mutex
	n    map[string]int
}

func newCountingProxy(t *testing.T, target string) *countingProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &countingProxy{n: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = func(r *http.Response) error {
		p.count(r.Request.Method, r.Request.URL.Path, r.StatusCode)
		return nil
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !p.down.Load() {
			rp.ServeHTTP(w, r)
			return
		}
		p.count(r.Method, r.URL.Path, http.StatusServiceUnavailable)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"error":"central down (test)"}`))
	}))
	t.Cleanup(srv.Close)
	p.url = srv.URL
	return p
}

func (p *countingProxy) count(method, path string, status int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n[fmt.Sprintf("%s %s %d", method, path, status)]++
}

func (p *countingProxy) answers() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.n)
}

// scoreRequest is the body of POST /score for c and coupons, in the field
// names recommender/server.go documents.
func scoreRequest(c *store.Customer, coupons []store.Coupon) map[string]any {
	list := make([]map[string]any, len(coupons))
	for i, cp := range coupons {
		list[i] = map[string]any{
			"coupon_id":                  cp.ID,
			"coupon_type":                string(cp.Type),
			"department":                 cp.Department.String(),
			"discount":                   cp.Discount,
			"how_many_products_required": cp.HowMany,
			"product_mean_price":         cp.ProductMeanPrice,
			"products_available":         cp.ProductsAvailable,
		}
	}
	return map[string]any{
		"customer": map[string]any{
			"customer_id":                         c.ID,
			"gender":                              c.Gender,
			"age":                                 c.Age,
			"mean_buy_price":                      c.MeanBuyPrice,
			"total_coupons_used":                  c.TotalCouponsUsed,
			"mean_discount_received":              c.MeanDiscountReceived,
			"unique_products_bought":              c.UniqueProductsBought,
			"unique_products_bought_with_coupons": c.UniqueProductsBoughtWithCoupons,
			"total_items_bought":                  c.TotalItemsBought,
		},
		"coupons": list,
	}
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// httpDo sends one request, with a JSON body unless body is nil, and returns
// the status and the answer.
func httpDo(t *testing.T, method, addr string, body io.Reader) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, addr, body)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, addr, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read answer: %v", method, addr, err)
	}
	return resp.StatusCode, b
}

// httpGet returns the status and body of a GET.
func httpGet(t *testing.T, addr string) (int, string) {
	t.Helper()
	status, b := httpDo(t, http.MethodGet, addr, nil)
	return status, string(b)
}

// httpPostJSON posts req as JSON and decodes a 200 answer into resp.
func httpPostJSON(t *testing.T, addr string, req, resp any) {
	t.Helper()
	body, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	status, got := httpDo(t, http.MethodPost, addr, bytes.NewReader(body))
	if status != http.StatusOK {
		t.Fatalf("POST %s = %d %s, want 200", addr, status, got)
	}
	if err := json.Unmarshal(got, resp); err != nil {
		t.Fatalf("POST %s: answer %s: %v", addr, got, err)
	}
}
