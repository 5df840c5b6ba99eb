package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/storeflow/storeflow/store"
)

// A shopper who lingers in Boys gets a focus event for Boys, then a Boys
// coupon in exactly the shape of the seed's Prediction Results Message.
func TestLingerInBoysGetsBoysCoupon(t *testing.T) {
	sys := startSystem(t, nil)
	obs, sensor := sys.observerAndSensor(t, "customer/#")

	s := lingerInBoys(t, sys, sensor)
	id := s.id

	focus := obs.next("customer/focus", 10*time.Second)
	var f map[string]any
	if err := json.Unmarshal(focus.Payload, &f); err != nil {
		t.Fatalf("focus payload %s: %v", focus.Payload, err)
	}
	if f["id"] != id || f["dep"] != "Boys" {
		t.Fatalf("focus = %s, want id %s and dep Boys", focus.Payload, id)
	}

	pred := obs.next("customer/prediction", 10*time.Second)
	checkPredictionShape(t, pred.Payload)
	var p struct {
		Customer struct{ ID string }
		Coupon   struct {
			ID         int
			Department string
			StartDate  string `json:"start_date"`
			EndDate    string `json:"end_date"`
		}
		TS int64
	}
	if err := json.Unmarshal(pred.Payload, &p); err != nil {
		t.Fatal(err)
	}
	if p.Customer.ID != id || p.Coupon.Department != "Boys" {
		t.Fatalf("prediction for customer %s department %s, want %s Boys", p.Customer.ID, p.Coupon.Department, id)
	}
	if p.TS != int64(f["ts"].(float64)) {
		t.Errorf("prediction ts %d, want the focus ts %v", p.TS, f["ts"])
	}
	today := store.DayOf(p.TS).String()
	if p.Coupon.StartDate > today || p.Coupon.EndDate < today {
		t.Errorf("coupon valid %s..%s, not on the focus day %s", p.Coupon.StartDate, p.Coupon.EndDate, today)
	}
	s.exit()
	sys.waitMetric(t, 1, 5*time.Second, "storeflow_focus_outcomes_total", "outcome=published")
}

// A shopper who only walks through a department gets no focus and no coupon.
// The same shopper then lingers in Girls: the first focus seen must be Girls,
// which proves the walk-through was processed (one shopper's events are
// handled in order) and produced nothing.
func TestWalkThroughGetsNothing(t *testing.T) {
	sys := startSystem(t, nil)
	obs, sensor := sys.observerAndSensor(t, "customer/#")

	s := shopper(t, sys, sensor, store.Girls)
	s.enter()
	s.move(0, 0)
	s.move(1, 0)
	s.move(2, 0)
	s.move(2, 1)
	s.stay(3, 1, 4) // through Boys, well under the dwell
	s.move(2, 1)
	s.move(2, 2)
	s.move(2, 3)
	s.stay(3, 3, 12) // Girls, past the dwell

	focus := obs.next("customer/focus", 10*time.Second)
	if !strings.Contains(string(focus.Payload), `"dep":"Girls"`) {
		t.Fatalf("first focus = %s, want Girls (the walk through Boys must not focus)", focus.Payload)
	}
	pred := obs.next("customer/prediction", 10*time.Second)
	if !strings.Contains(string(pred.Payload), `"department":"Girls"`) {
		t.Fatalf("prediction = %s, want a Girls coupon", pred.Payload)
	}
	if n := sys.metric(t, "storeflow_focus_detected_total"); n != 1 {
		t.Fatalf("storeflow_focus_detected_total = %v, want 1", n)
	}
}

// Malformed payloads on every topic are rejected and counted by reason, and
// the store keeps serving: a lingering shopper still gets a coupon.
func TestMalformedPayloadsAreRejectedAndCounted(t *testing.T) {
	sys := startSystem(t, nil)
	obs, sensor := sys.observerAndSensor(t, "customer/prediction")

	bad := []struct {
		topic, payload, kind, reason string
	}{
		{"customer/enter", `not json`, "enter", "malformed_json"},
		{"customer/enter", `{"ts":1700000000}`, "enter", "missing_field"},
		{"customer/enter", `{"id":"1","ts":"yesterday"}`, "enter", "invalid_field"},
		{"customer/move", `{"id":"1","ts":1700000000,"x":1}`, "move", "missing_field"},
		{"customer/move", `{"id":"1","ts":1700000000,"x":"a","y":2}`, "move", "invalid_field"},
		{"customer/move", `{"id":"1","ts":1700000000,"x":500,"y":2}`, "move", "off_plan"},
		{"customer/move", `[1,2,3]`, "move", "malformed_json"},
		{"customer/exit", `{"id":"","ts":1700000000}`, "exit", "invalid_field"},
		{"customer/exit", `{`, "exit", "malformed_json"},
		{"customer/focus", `{"id":"1","ts":1700000000,"dep":"Garden"}`, "focus", "unknown_department"},
		{"customer/focus", `{"id":"1","ts":1700000000}`, "focus", "missing_field"},
		{"customer/focus", `{"id":{"x":1},"ts":1700000000,"dep":"Boys"}`, "focus", "invalid_field"},
		{"customer/focus", strings.Repeat(" ", 5000), "focus", "too_large"},
	}
	want := map[string]float64{}
	for _, b := range bad {
		sensor.publish(b.topic, b.payload)
		want[b.kind+"/"+b.reason]++
	}
	for key, n := range want {
		kind, reason, _ := strings.Cut(key, "/")
		sys.waitMetric(t, n, 5*time.Second, "storeflow_events_rejected_total", "kind="+kind, "reason="+reason)
	}
	if n := sys.metric(t, "storeflow_events_rejected_total"); n != float64(len(bad)) {
		t.Errorf("storeflow_events_rejected_total = %v, want %d", n, len(bad))
	}

	// An external focus event (numeric id, the Sport alias) takes the same path
	// as a detected one and still yields a coupon.
	now := time.Now().Unix()
	id := customerWithCoupon(t, sys, store.Sports, now)
	sensor.publish("customer/focus", fmt.Sprintf(`{"id":%s,"ts":%d.7,"dep":"Sport"}`, id, now))
	pred := obs.next("customer/prediction", 10*time.Second)
	checkPredictionShape(t, pred.Payload)
	if !strings.Contains(string(pred.Payload), `"department":"Sports"`) || !strings.Contains(string(pred.Payload), fmt.Sprintf(`"ts":%d}`, now)) {
		t.Fatalf("prediction = %s, want a Sports coupon at ts %d", pred.Payload, now)
	}
}

// An unknown customer, or a focus on a day with no coupon running, is counted
// and publishes nothing; the same coupon is never offered twice in one visit.
func TestFocusOutcomes(t *testing.T) {
	// Caps off: the visit's focus events in one department must each get a
	// coupon until the visit runs out (the caps have their own tests).
	sys := startSystem(t, map[string]string{"PREDICTION_THRESHOLD": "0",
		"COUPONS_PER_SHOPPER_PER_DAY": "0", "COUPON_DEPARTMENT_COOLDOWN": "0"})
	obs, sensor := sys.observerAndSensor(t, "customer/prediction")

	now := time.Now().Unix()
	sensor.publish("customer/focus", fmt.Sprintf(`{"id":"no-such-shopper","ts":%d,"dep":"Men"}`, now))
	sys.waitMetric(t, 1, 5*time.Second, "storeflow_focus_outcomes_total", "outcome=unknown_customer")
	sensor.publish("customer/focus", `{"id":"1","ts":192322800,"dep":"Men"}`) // 1976: no coupon ran then
	sys.waitMetric(t, 1, 5*time.Second, "storeflow_focus_outcomes_total", "outcome=no_valid_coupons")

	// With threshold 0 every valid coupon qualifies: n focus events in one
	// visit get n different coupons, then the visit runs out.
	var valid []store.Coupon
	valid, _ = sys.app.Catalog().ValidCoupons(context.Background(), store.Men, store.DayOf(now), valid)
	if len(valid) == 0 {
		t.Fatal("the generated catalog has no Men coupon today")
	}
	seen := map[int]bool{}
	for i := range len(valid) + 1 {
		sensor.publish("customer/focus", fmt.Sprintf(`{"id":"1","ts":%d,"dep":"Men"}`, now+int64(i)))
	}
	for range valid {
		var p struct{ Coupon struct{ ID int } }
		if err := json.Unmarshal(obs.next("customer/prediction", 10*time.Second).Payload, &p); err != nil {
			t.Fatal(err)
		}
		if seen[p.Coupon.ID] {
			t.Fatalf("coupon %d offered twice in one visit", p.Coupon.ID)
		}
		seen[p.Coupon.ID] = true
	}
	sys.waitMetric(t, 1, 5*time.Second, "storeflow_focus_outcomes_total", "outcome=already_issued")

	// A new visit starts clean.
	sensor.publish("customer/enter", fmt.Sprintf(`{"id":"1","ts":%d}`, now+100))
	sensor.publish("customer/focus", fmt.Sprintf(`{"id":"1","ts":%d,"dep":"Men"}`, now+101))
	obs.next("customer/prediction", 10*time.Second)
}

// The simulator at high speed walks many shoppers through the store, and many
// of them get coupons.
// The demo as it runs with no settings: the model trained at start on the
// generated history, the simulator on (sped up).
func TestSimulatorProducesPredictionsForManyShoppers(t *testing.T) {
	sys := startSystem(t, map[string]string{
		"MODEL_FILE":                 "",
		"SIMULATOR_ENABLED":          "true",
		"SIMULATOR_SPEED":            "200",
		"SIMULATOR_SEED":             "7",
		"CUSTOMERS_AVERAGE_IN_STORE": "20",
	})
	obs := dial(t, sys.app.BrokerAddr(), "observer", "customer/prediction")
	obs.predictionsFor(t, 25, 60*time.Second)
	if n := sys.metric(t, "storeflow_events_rejected_total"); n != 0 {
		t.Errorf("the simulator's own events were rejected %v times", n)
	}
}

// customerWithCoupon returns a catalog customer for whom the in-process model
// scores some coupon of dep, valid at ts, above the default threshold.
func customerWithCoupon(t *testing.T, sys *system, dep store.Department, ts int64) string {
	t.Helper()
	return customersWithCoupon(t, sys, dep, ts, 1)[0]
}

var dateRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)

// checkPredictionShape checks a Prediction Results Message field by field
// against seed 000: exactly these keys, with these JSON types.
func checkPredictionShape(t *testing.T, payload []byte) {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(payload, &m); err != nil {
		t.Fatalf("prediction %s is not JSON: %v", payload, err)
	}
	keys(t, "message", m, "customer", "coupon", "ts")
	isInt(t, "ts", m["ts"])
	cust := m["customer"].(map[string]any)
	keys(t, "customer", cust, "id")
	if s, ok := cust["id"].(string); !ok || s == "" {
		t.Errorf("customer.id = %#v, want a non-empty string", cust["id"])
	}
	c := m["coupon"].(map[string]any)
	keys(t, "coupon", c, "id", "type", "department", "discount", "how_many", "start_date", "end_date", "products")
	isInt(t, "coupon.id", c["id"])
	isInt(t, "coupon.how_many", c["how_many"])
	if _, ok := c["discount"].(float64); !ok || !strings.Contains(string(payload), `"discount":`) {
		t.Errorf("coupon.discount = %#v, want a number", c["discount"])
	}
	if !regexp.MustCompile(`"discount":\d+\.\d+`).Match(payload) {
		t.Errorf("coupon.discount is not written as a float (like 14.0): %s", payload)
	}
	typ, _ := c["type"].(string)
	if !slices.Contains([]string{"buy_more", "buy_all", "just_discount", "department"}, typ) {
		t.Errorf("coupon.type = %q", typ)
	}
	switch hm := c["how_many"].(float64); typ {
	case "just_discount":
		if hm != 1 {
			t.Errorf("just_discount how_many = %v, want 1", hm)
		}
	case "department":
		if hm != -1 {
			t.Errorf("department how_many = %v, want -1", hm)
		}
	}
	if _, ok := store.ParseDepartment(fmt.Sprint(c["department"])); !ok || c["department"] == "Sport" {
		t.Errorf("coupon.department = %v", c["department"])
	}
	for _, k := range []string{"start_date", "end_date"} {
		if s, _ := c[k].(string); !dateRE.MatchString(s) {
			t.Errorf("coupon.%s = %#v, want YYYY-MM-DD", k, c[k])
		}
	}
	products, ok := c["products"].([]any)
	if !ok || len(products) == 0 {
		t.Fatalf("coupon.products = %#v, want a non-empty list", c["products"])
	}
	for i, pr := range products {
		p := pr.(map[string]any)
		keys(t, fmt.Sprintf("products[%d]", i), p, "id", "name", "category", "sizes", "vendor", "description", "buy_price", "department")
		isInt(t, "product.id", p["id"])
		if _, ok := p["buy_price"].(float64); !ok {
			t.Errorf("products[%d].buy_price = %#v, want a number", i, p["buy_price"])
		}
		for _, k := range []string{"name", "category", "sizes", "vendor", "description", "department"} {
			if s, ok := p[k].(string); !ok || s == "" {
				t.Errorf("products[%d].%s = %#v, want a non-empty string", i, k, p[k])
			}
		}
		if p["department"] != c["department"] {
			t.Errorf("products[%d] is in %v, the coupon in %v", i, p["department"], c["department"])
		}
	}
}

func keys(t *testing.T, what string, m map[string]any, want ...string) {
	t.Helper()
	var got []string
	for k := range m {
		got = append(got, k)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s keys = %v, want exactly %v", what, got, want)
	}
}

func isInt(t *testing.T, what string, v any) {
	t.Helper()
	f, ok := v.(float64)
	if !ok || f != float64(int64(f)) {
		t.Errorf("%s = %#v, want an integer", what, v)
	}
}
