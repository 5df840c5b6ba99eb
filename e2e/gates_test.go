package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/storeflow/storeflow/experiment"
	"github.com/storeflow/storeflow/store"
)

// Through the real wiring, set from the environment: a shopper in the
// holdout gets no coupon, another gets one, and that shopper's next focus in
// the department the same day is capped.
func TestGatesThroughTheApp(t *testing.T) {
	sys := startSystem(t, map[string]string{"PREDICTION_THRESHOLD": "0", "HOLDOUT_FRACTION": "0.5",
		"EXPERIMENT_SALT": "e2e", "COUPONS_PER_SHOPPER_PER_DAY": "1"})
	obs, sensor := sys.observerAndSensor(t, "customer/prediction")
	arms := experiment.Config{HoldoutFraction: 0.5, Salt: "e2e"}
	var held, served string
	for _, c := range sys.app.Catalog().Customers() {
		if arms.Assign(c.ID) == experiment.Holdout {
			held = c.ID
		} else {
			served = c.ID
		}
	}
	if held == "" || served == "" {
		t.Fatal("the catalog's customers are all in one arm")
	}
	now := time.Now().Unix()
	if valid, _ := sys.app.Catalog().ValidCoupons(context.Background(), store.Men, store.DayOf(now), nil); len(valid) < 2 {
		t.Fatalf("%d Men coupons valid today, want 2 (the cap, not the visit, must stop the second)", len(valid))
	}
	focus := func(id string, ts int64) {
		sensor.publish("customer/focus", fmt.Sprintf(`{"id":%q,"ts":%d,"dep":"Men"}`, id, ts))
	}
	focus(held, now)
	sys.waitMetric(t, 1, 5*time.Second, "storeflow_focus_outcomes_total", "outcome=holdout")
	focus(served, now)
	var p struct{ Customer struct{ ID string } }
	if err := json.Unmarshal(obs.next("customer/prediction", 10*time.Second).Payload, &p); err != nil || p.Customer.ID != served {
		t.Fatalf("prediction for %q (%v), want %s", p.Customer.ID, err, served)
	}
	focus(served, now+60)
	sys.waitMetric(t, 1, 5*time.Second, "storeflow_focus_outcomes_total", "outcome=capped")
	if n := sys.metric(t, "storeflow_coupons_published_total"); n != 1 {
		t.Errorf("%v coupons published, want 1", n)
	}
}
