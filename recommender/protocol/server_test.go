package protocol_test

import (
	"encoding/json"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/storeflow/storeflow/internal/modeltest"
	"github.com/storeflow/storeflow/internal/proctest"
	"github.com/storeflow/storeflow/recommender"
	"github.com/storeflow/storeflow/recommender/internal/fixture"
	"github.com/storeflow/storeflow/recommender/protocol"
	"github.com/storeflow/storeflow/recommender/score"
	"github.com/storeflow/storeflow/recommender/v2"
)

// newTestMux serves both protocols for model on one mux, as storeflow does.
func newTestMux(model recommender.RowScorer) (*protocol.ServerMetrics, *http.ServeMux) {
	return newTestMuxLog(model, nil)
}

func newTestMuxLog(model recommender.RowScorer, log *slog.Logger) (*protocol.ServerMetrics, *http.ServeMux) {
	return fixture.Mux(model, log, score.Register, v2.Register)
}

// scoreJSON is a valid /score request as a generic value, for cases to break.
func scoreJSON() map[string]any { return fixture.ScoreJSON(score.EncodeRequest) }

// The requests: valid bodies with tiny amounts were answered 500
// "model gave a non-finite probability". Every amount /score accepts, and
// every FP32 value of an infer row, gets a probability from the trained model.
func TestEndpointsFiniteForExtremeInputs(t *testing.T) {
	m, mux := newTestMux(modeltest.Reference(t).Model)
	var amounts []float64 // what /score accepts: 0 to float32's largest
	for _, v := range modeltest.ExtremeAmounts {
		if v <= math.MaxFloat32 {
			amounts = append(amounts, v)
		}
	}
	requests := 0
	for _, buy := range amounts {
		for _, discount := range []float64{0, 1e-45, 100} {
			body := scoreJSON()
			fixture.CustomerOf(body)["mean_buy_price"] = buy
			fixture.CustomerOf(body)["mean_discount_received"] = discount
			coupon := fixture.CouponOf(body, 0)
			var coupons []any
			for i, product := range amounts { // one coupon per product price
				cp := maps.Clone(coupon)
				cp["coupon_id"], cp["product_mean_price"] = i, product
				coupons = append(coupons, cp)
			}
			body["coupons"] = coupons
			status, resp := fixture.Serve(t, mux, "POST", "/score", fixture.MustJSON(t, body))
			requests++
			var got []struct {
				CouponID   int     `json:"coupon_id"`
				Prediction float64 `json:"prediction"`
			}
			if status != http.StatusOK || json.Unmarshal(resp, &got) != nil || len(got) != len(amounts) {
				t.Errorf("/score with mean_buy_price %g, mean_discount_received %g: %d %s", buy, discount, status, resp)
				continue
			}
			for _, r := range got {
				if !modeltest.IsProbability(r.Prediction) {
					t.Errorf("/score with mean_buy_price %g, product_mean_price %g: prediction %v", buy, amounts[r.CouponID], r.Prediction)
				}
			}
		}
	}
	if got := fixture.RouteCounts(t, m, "score"); !maps.Equal(got, map[string]float64{"ok": float64(requests)}) {
		t.Errorf("/score counts %v, want %d ok", got, requests)
	}

	// An infer row is any FP32 values: negative ones, and a discount gap
	// beyond float32's range.
	base := fixture.Rows(&fixture.Customer, fixture.Coupons()[:1])[0]
	var rows [][]float32
	var signed []float32
	for _, v := range amounts {
		signed = append(signed, float32(v), -float32(v))
	}
	for _, buy := range signed {
		for _, product := range signed {
			row := slices.Clone(base)
			row[fixture.Feature("mean_buy_price")], row[fixture.Feature("product_mean_price")] = buy, product
			rows = append(rows, row)
		}
		row := slices.Clone(base)
		row[fixture.Feature("discount")], row[fixture.Feature("mean_discount_received")] = math.MaxFloat32, buy
		rows = append(rows, row)
		row = slices.Clone(row)
		row[fixture.Feature("discount")] = -math.MaxFloat32
		rows = append(rows, row)
	}
	status, resp := fixture.Serve(t, mux, "POST", "/v2/models/coupon/infer", fixture.InferJSON(t, "FP32", len(rows), fixture.Flat(rows)))
	var got struct {
		Outputs []struct {
			Data []float32 `json:"data"`
		} `json:"outputs"`
	}
	if status != http.StatusOK || json.Unmarshal(resp, &got) != nil || len(got.Outputs) != 1 || len(got.Outputs[0].Data) != len(rows) {
		t.Fatalf("infer of %d extreme rows: %d %.300s", len(rows), status, resp)
	}
	for i, p := range got.Outputs[0].Data {
		if !modeltest.IsProbability(float64(p)) {
			t.Errorf("infer row %v: probability %v", rows[i], p)
		}
	}
}

// A model that gives a non-finite probability (it should not) costs the
// caller a 422 that names the row, counted as unprocessable, and the log one
// line however many requests hit it: it was a 500 and an ERROR line each.
func TestNonFiniteModelIsUnprocessable(t *testing.T) {
	var logs proctest.SyncBuffer
	m, mux := newTestMuxLog(fixture.NaNScorer{}, slog.New(slog.NewTextHandler(&logs, nil)))
	const requests = 50
	rows := fixture.Flat(fixture.Rows(&fixture.Customer, fixture.Coupons()))
	for range requests {
		status, body := fixture.Serve(t, mux, "POST", "/score", fixture.MustJSON(t, scoreJSON()))
		var eb protocol.ErrorBody
		if status != http.StatusUnprocessableEntity || json.Unmarshal(body, &eb) != nil || eb.Field != "coupons[0]" ||
			!strings.Contains(eb.Error, "coupons[0]") || !strings.Contains(eb.Error, "non-finite") {
			t.Fatalf("/score: got %d %s, want 422 naming coupons[0]", status, body)
		}
		status, body = fixture.Serve(t, mux, "POST", "/v2/models/coupon/infer", fixture.InferJSON(t, "FP32", 5, rows))
		if status != http.StatusUnprocessableEntity || !strings.Contains(string(body), "inputs[0].data: row 0") {
			t.Fatalf("infer: got %d %s, want 422 naming inputs[0].data row 0", status, body)
		}
	}
	want := map[string]float64{"unprocessable": requests}
	if score, infer := fixture.RouteCounts(t, m, "score"), fixture.RouteCounts(t, m, "infer"); !maps.Equal(score, want) || !maps.Equal(infer, want) {
		t.Errorf("counts %v on score, %v on infer, want %d unprocessable on each route", score, infer, requests)
	}
	if n := strings.Count(logs.String(), "non-finite"); n != 2 { // one per route within the interval
		t.Errorf("%d log lines about non-finite probabilities for %d requests, want 2:\n%s", n, 2*requests, logs.String())
	}
}

func TestServerCounts(t *testing.T) {
	m, mux := newTestMux(fixture.Scorer{})
	rows := fixture.Flat(fixture.Rows(&fixture.Customer, fixture.Coupons()))
	fixture.Serve(t, mux, "POST", "/score", fixture.MustJSON(t, scoreJSON()))
	fixture.Serve(t, mux, "POST", "/score", `{}`)
	fixture.Serve(t, mux, "POST", "/v2/models/coupon/infer", fixture.InferJSON(t, "FP32", 5, rows))
	fixture.Serve(t, mux, "POST", "/v2/models/nope/infer", fixture.InferJSON(t, "FP32", 5, rows))
	fixture.Serve(t, mux, "GET", "/v2/health/ready", "")
	fixture.Serve(t, mux, "GET", "/v2/models/coupon", "")
	want := map[string]map[string]float64{
		"score":    {"ok": 1, "bad_request": 1},
		"infer":    {"ok": 1, "not_found": 1},
		"health":   {"ok": 1},
		"metadata": {"ok": 1},
	}
	for route, w := range want {
		if got := fixture.RouteCounts(t, m, route); !maps.Equal(got, w) {
			t.Errorf("%s: got %v, want %v", route, got, w)
		}
	}
	if rows := testutil.ToFloat64(m.Rows); rows != 10 {
		t.Errorf("%v rows, want 10", rows)
	}
}

// The caller names the component (the app passes component=prediction_server);
// the server's lines carry it once, not twice.
func TestServerLogsComponentOnce(t *testing.T) {
	var logs proctest.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("component", "prediction_server")
	_, mux := newTestMuxLog(fixture.Scorer{}, log)
	fixture.Serve(t, mux, "POST", "/score", `{}`) // a bad request: one debug line
	if n := strings.Count(logs.String(), "component="); n != 1 {
		t.Fatalf("component given %d times in the log line, want once:\n%s", n, logs.String())
	}
}
