package score

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/storeflow/storeflow/recommender/internal/fixture"
	"github.com/storeflow/storeflow/store"
)

// The original system's /score requests (testdata/original/README.md): what
// its recommendation service's client sends, its prediction service's README
// example and its test.
var originalRequests = []string{"client_127_boys.json", "client_127_sport.json", "readme_request.json", "test_request.json"}

// TestOriginalRequests posts each original request to the handler: every
// coupon is answered once, highest first, with the same probabilities as
// the request written the way storeflow's client writes it (no dates,
// numeric ids), and nothing in them counts as unknown.
func TestOriginalRequests(t *testing.T) {
	for _, name := range originalRequests {
		t.Run(name, func(t *testing.T) {
			body, err := os.ReadFile(filepath.Join("testdata", "original", name))
			if err != nil {
				t.Fatal(err)
			}
			m, mux := newTestMux(fixture.Scorer{})
			status, answer := fixture.Serve(t, mux, "POST", "/score", string(body))
			if status != http.StatusOK {
				t.Fatalf("status %d: %s", status, answer)
			}
			var got []result
			if err := json.Unmarshal(answer, &got); err != nil {
				t.Fatalf("%v: %s", err, answer)
			}

			var orig map[string]any
			dec := json.NewDecoder(bytes.NewReader(body))
			dec.UseNumber()
			if err := dec.Decode(&orig); err != nil {
				t.Fatal(err)
			}
			wantCustomer := fmt.Sprint(fixture.CustomerOf(orig)["customer_id"])
			coupons := orig["coupons"].([]any)
			var wantIDs []int
			for i := range coupons {
				c := fixture.CouponOf(orig, i)
				id, err := strconv.Atoi(fmt.Sprint(c["coupon_id"]))
				if err != nil {
					t.Fatal(err)
				}
				wantIDs = append(wantIDs, id)
				c["coupon_id"] = id
				delete(c, "start_date")
				delete(c, "end_date")
			}
			fixture.CustomerOf(orig)["customer_id"] = wantCustomer

			var gotIDs []int
			for _, r := range got {
				gotIDs = append(gotIDs, r.CouponID)
				if r.CustomerID != wantCustomer {
					t.Fatalf("customer_id %q, want %q", r.CustomerID, wantCustomer)
				}
			}
			if !slices.IsSortedFunc(got, func(a, b result) int { return cmp.Compare(b.Prediction, a.Prediction) }) {
				t.Fatalf("not sorted by prediction: %+v", got)
			}
			slices.Sort(gotIDs)
			slices.Sort(wantIDs)
			if !slices.Equal(gotIDs, wantIDs) {
				t.Fatalf("answered coupons %v, want %v", gotIDs, wantIDs)
			}

			status, canonical := fixture.Serve(t, mux, "POST", "/score", fixture.MustJSON(t, orig))
			if status != http.StatusOK || !bytes.Equal(answer, canonical) {
				t.Fatalf("the original form answers\n%s\nits canonical form (%d)\n%s", answer, status, canonical)
			}
			if n := testutil.ToFloat64(m.UnknownFields); n != 0 {
				t.Fatalf("%v unknown fields counted, want 0", n)
			}
		})
	}
}

// TestScoreUnknownFieldsCountedAndLoggedOnce: unknown fields are ignored,
// every one counted, and a client sending them with every request gets one
// debug line per interval, naming an example.
func TestScoreUnknownFieldsCountedAndLoggedOnce(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m, mux := fixture.Mux(fixture.Scorer{}, log, Register)
	body := scoreJSON()
	body["store"] = "north"
	fixture.CouponOf(body, 3)["colour"] = "red"
	for range 3 {
		if status, answer := fixture.Serve(t, mux, "POST", "/score", fixture.MustJSON(t, body)); status != http.StatusOK {
			t.Fatalf("status %d: %s", status, answer)
		}
	}
	if n := testutil.ToFloat64(m.UnknownFields); n != 6 {
		t.Fatalf("%v unknown fields counted, want 6", n)
	}
	if n := strings.Count(logs.String(), "ignored unknown fields"); n != 1 {
		t.Fatalf("%d log lines, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), `example="\"store\""`) {
		t.Fatalf("log names no example:\n%s", logs.String())
	}
}

// TestClientReadsOriginalAnswer: the original prediction service answers
// coupon_id and customer_id as strings, sorted by prediction; the client maps
// that back to its coupons.
func TestClientReadsOriginalAnswer(t *testing.T) {
	body, err := os.ReadFile(filepath.Join("testdata", "original", "readme_response.json"))
	if err != nil {
		t.Fatal(err)
	}
	coupons := make([]store.Coupon, 3)
	for i, id := range []int{7, 8, 9} {
		coupons[i] = fixture.Coupons()[0]
		coupons[i].ID = id
	}
	out := make([]float64, 3)
	if err := parseReply(body, coupons, out); err != nil {
		t.Fatal(err)
	}
	if want := []float64{0.3721197586, 0.6108783426, 0.5151725303}; !reflect.DeepEqual(out, want) {
		t.Fatalf("got %v, want %v", out, want)
	}
}

// TestClientAgainstOriginalService runs storeflow's client against a peer
// that takes the request as the original prediction service's model does
// (customer_id and coupon_id as integers, a number or a numeric string) and
// answers in its form.
func TestClientAgainstOriginalService(t *testing.T) {
	prob := func(couponID int) float64 { return math.Round(float64(couponID%10)/10*1e10) / 1e10 }
	peer := fixture.Peer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Customer struct {
				CustomerID json.Number `json:"customer_id"`
			} `json:"customer"`
			Coupons []struct {
				CouponID json.Number `json:"coupon_id"`
			} `json:"coupons"`
		}
		if r.URL.Path != "/score" || json.NewDecoder(r.Body).Decode(&req) != nil {
			http.Error(w, `{"detail":"bad request"}`, http.StatusUnprocessableEntity)
			return
		}
		cust, err := req.Customer.CustomerID.Int64()
		if err != nil {
			http.Error(w, `{"detail":"customer_id: value is not a valid integer"}`, http.StatusUnprocessableEntity)
			return
		}
		type answer struct {
			CouponID   string  `json:"coupon_id"`
			CustomerID string  `json:"customer_id"`
			Prediction float64 `json:"prediction"`
		}
		var out []answer
		for _, c := range req.Coupons {
			id, err := c.CouponID.Int64()
			if err != nil {
				http.Error(w, `{"detail":"coupon_id: value is not a valid integer"}`, http.StatusUnprocessableEntity)
				return
			}
			out = append(out, answer{strconv.FormatInt(id, 10), strconv.FormatInt(cust, 10), prob(int(id))})
		}
		slices.SortStableFunc(out, func(a, b answer) int { return cmp.Compare(b.Prediction, a.Prediction) })
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	}))
	client, _ := fixture.Client(t, Codec, peer.URL, nil)
	cust := fixture.Customer
	cust.ID = "127" // the original service takes integer customer ids only
	coupons := fixture.Coupons()
	out := make([]float64, len(coupons))
	if err := client.Score(context.Background(), &cust, coupons, out); err != nil {
		t.Fatal(err)
	}
	for i, cp := range coupons {
		if out[i] != prob(cp.ID) {
			t.Fatalf("coupon %d: got %v, want %v", cp.ID, out[i], prob(cp.ID))
		}
	}
}
