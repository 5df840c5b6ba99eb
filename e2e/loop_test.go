package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/storeflow/storeflow/internal/harness"
)

// The demo closes the loop by itself: the simulated shoppers redeem the
// coupons they would use, every redemption matches its offer, and each
// settled offer is a row of the history file, used as often as redeemed.
func TestClosedLoop(t *testing.T) {
	path := filepath.Join(t.TempDir(), "coupon_history.csv")
	sys := startSystem(t, map[string]string{
		"SIMULATOR_ENABLED":          "true",
		"SIMULATOR_SPEED":            "200",
		"SIMULATOR_SEED":             "7",
		"CUSTOMERS_AVERAGE_IN_STORE": "20",
		"PREDICTION_THRESHOLD":       "0",
		"HISTORY_FILE":               path,
		"REDEEM_WINDOW":              "120s", // of event time: 0.6 s at speed 200
		"HOLDOUT_FRACTION":           "0.2",
	})
	sys.waitMetric(t, 20, 60*time.Second, "storeflow_loop_offers_settled_total", "outcome=used")
	sys.waitMetric(t, 20, 60*time.Second, "storeflow_loop_offers_settled_total", "outcome=expired")

	// Let the counts settle: published redemptions all handled.
	published := sys.metric(t, "storeflow_simulator_redemptions_published_total")
	sys.waitMetric(t, published, 10*time.Second, "storeflow_loop_redemptions_total")
	if d := sys.metric(t, "storeflow_simulator_redemptions_dropped_total"); d != 0 {
		t.Errorf("%v redemptions dropped", d)
	}
	matched := sys.metric(t, "storeflow_loop_redemptions_total", "outcome=matched")
	unmatched := sys.metric(t, "storeflow_loop_redemptions_total", "outcome=unmatched")
	// A shopper offered the same coupon again within the window redeems two
	// coupons of one open offer: rare, not never.
	if unmatched > matched/20 {
		t.Errorf("%v redemptions matched, %v unmatched: the simulator's redemptions should find their offers", matched, unmatched)
	}

	resp, err := http.Get("http://" + sys.app.HTTPAddr() + "/api/experiment")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rep struct {
		Arms []struct {
			Arm            string
			Focus, Coupons int64
			Used           int64                              `json:"offers_used"`
			Rate           struct{ Value, Low, High float64 } `json:"redemption_rate"`
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		t.Fatal(err)
	}
	for _, a := range rep.Arms {
		switch {
		case a.Arm == "b": // MODEL_B_FRACTION=0: nobody
			if a.Focus != 0 {
				t.Errorf("arm b: %+v, want nobody in it", a)
			}
		case a.Focus == 0:
			t.Errorf("arm %s: no focus events", a.Arm)
		case a.Arm == "holdout" && a.Coupons != 0:
			// The holdout gate is another part of the work: until it is in,
			// holdout shoppers get coupons too.
			t.Logf("arm holdout: %d coupons", a.Coupons)
		case a.Arm == "a" && (a.Coupons == 0 || a.Used == 0 || !(a.Rate.Low < a.Rate.Value && a.Rate.Value < a.Rate.High)):
			t.Errorf("arm a: %+v", a)
		}
	}

	// The file, synced every second, holds a row for each offer settled:
	// as many used as settled used.
	used := sys.metric(t, "storeflow_loop_offers_settled_total", "outcome=used")
	var lines []string
	harness.Until(t, 10*time.Second, "the used rows in the history file", func() bool {
		b, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		lines = strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		n := 0
		for _, l := range lines[1:] {
			if strings.HasSuffix(l, ",1") {
				n++
			}
		}
		return float64(n) >= used
	})
	if lines[0] != "customer_id,coupon_id,date,used" {
		t.Errorf("header %q", lines[0])
	}
}
