package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/storeflow/storeflow/internal/proctest"
	"github.com/storeflow/storeflow/store"
)

// post sends body to one of the system's HTTP endpoints and returns the status
// and the raw answer.
func (s *system) post(t *testing.T, path, body string) (int, []byte) {
	t.Helper()
	return httpDo(t, http.MethodPost, "http://"+s.app.HTTPAddr()+path, strings.NewReader(body))
}

// focusAnswer is /mock_focus's answer.
type focusAnswer struct {
	Outcome    string
	Prediction json.RawMessage
}

func (s *system) mockFocus(t *testing.T, body string) focusAnswer {
	t.Helper()
	status, b := s.post(t, "/mock_focus", body)
	if status != http.StatusOK {
		t.Fatalf("POST /mock_focus %s = %d %s, want 200", body, status, b)
	}
	var a focusAnswer
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("/mock_focus answer %s: %v", b, err)
	}
	return a
}

// With TESTING_NO_MQTT the seed 000 mock endpoints run the event logic with
// no broker at all: the focus answer carries the Prediction Results Message,
// which the mock broker logs instead of publishing.
func TestNoMQTTMockEndpoints(t *testing.T) {
	sys := startSystem(t, map[string]string{"TESTING_NO_MQTT": "true", "SIMULATOR_ENABLED": "true"})
	if addr := sys.app.BrokerAddr(); addr != "" {
		t.Fatalf("BrokerAddr = %q with TESTING_NO_MQTT, want none", addr)
	}
	if sys.app.Acceptance() != nil {
		t.Fatal("the simulator runs with TESTING_NO_MQTT")
	}
	now := time.Now().Unix()
	ids := customersWithCoupon(t, sys, store.Boys, now, 2)

	if status, b := sys.post(t, "/mock_entry", fmt.Sprintf(`{"id":%q,"ts":%d}`, ids[0], now)); status != http.StatusAccepted {
		t.Fatalf("POST /mock_entry = %d %s, want 202", status, b)
	}
	sys.waitMetric(t, 1, 5*time.Second, "storeflow_events_accepted_total", "kind=enter")

	a := sys.mockFocus(t, fmt.Sprintf(`{"id":%q,"ts":%d,"dep":"Boys"}`, ids[0], now+1))
	if a.Outcome != "published" {
		t.Fatalf("outcome = %q, want published", a.Outcome)
	}
	checkPredictionShape(t, a.Prediction)
	var p struct {
		Customer struct{ ID string }
		Coupon   struct{ Department string }
		TS       int64
	}
	if err := json.Unmarshal(a.Prediction, &p); err != nil {
		t.Fatal(err)
	}
	if p.Customer.ID != ids[0] || p.Coupon.Department != "Boys" || p.TS != now+1 {
		t.Fatalf("prediction %s, want customer %s, a Boys coupon, ts %d", a.Prediction, ids[0], now+1)
	}
	if n := sys.metric(t, "storeflow_focus_outcomes_total", "outcome=published"); n != 1 {
		t.Errorf("published outcomes = %v, want 1: a mock focus is counted as a focus event", n)
	}
	if n := sys.metric(t, "storeflow_mqtt_mock_published_total"); n < 1 {
		t.Errorf("mock publishes = %v, want the prediction logged", n)
	}

	if a := sys.mockFocus(t, fmt.Sprintf(`{"id":"no-such-shopper","ts":%d,"dep":"Men"}`, now)); a.Outcome != "unknown_customer" || a.Prediction != nil {
		t.Errorf("unknown customer: %+v, want outcome unknown_customer and no prediction", a)
	}

	// Seed 000's second form: event_type, event_timestamp and payload.
	stamp := time.Unix(now+2, 0).UTC().Format("2006-01-02T15:04:05.000Z")
	if status, b := sys.post(t, "/mock_entry", fmt.Sprintf(`{"event_type":"entry event","event_timestamp":%q,"payload":{"customer_id":%s}}`, stamp, ids[1])); status != http.StatusAccepted {
		t.Fatalf("POST /mock_entry (event form) = %d %s, want 202", status, b)
	}
	a = sys.mockFocus(t, fmt.Sprintf(`{"event_type":"focus event","event_timestamp":%q,"payload":{"customer_id":%s,"category":"Boys"}}`, stamp, ids[1]))
	if a.Outcome != "published" || !bytes.Contains(a.Prediction, fmt.Appendf(nil, `"customer":{"id":%q}`, ids[1])) ||
		!bytes.Contains(a.Prediction, fmt.Appendf(nil, `"ts":%d}`, now+2)) {
		t.Fatalf("event form: %s %s, want a prediction for %s at ts %d", a.Outcome, a.Prediction, ids[1], now+2)
	}
}

// A bad body is a 400 naming the field, as the caller named it; an oversized
// one a 413.
func TestTestEndpointsRejectBadBodies(t *testing.T) {
	sys := startSystem(t, map[string]string{"TESTING_NO_MQTT": "true"})
	for name, tc := range map[string]struct {
		path, body string
		status     int
		field      string
	}{
		"focus without dep":     {"/mock_focus", `{"id":"1","ts":192322800}`, 400, "dep"},
		"focus with bad ts":     {"/mock_focus", `{"id":"1","ts":"soon","dep":"Boys"}`, 400, "ts"},
		"unknown department":    {"/mock_focus", `{"id":"1","ts":192322800,"dep":"Toys"}`, 400, "dep"},
		"focus with x only":     {"/mock_focus", `{"id":"1","ts":192322800,"dep":"Boys","x":1}`, 400, "y"},
		"entry without id":      {"/mock_entry", `{"ts":192322800}`, 400, "id"},
		"not JSON":              {"/mock_entry", `id=1`, 400, ""},
		"move without x":        {"/produce_move", `{"id":"1","ts":192322800,"y":2}`, 400, "x"},
		"exit with ms ts":       {"/produce_exit", `{"id":"1","ts":1616056142160}`, 400, "ts"},
		"event form bad time":   {"/mock_entry", `{"event_type":"entry event","event_timestamp":"yesterday","payload":{"customer_id":3}}`, 400, "event_timestamp"},
		"event form no id":      {"/mock_focus", `{"event_type":"focus event","event_timestamp":"2021-03-18T08:29:02.160Z","payload":{"category":"Women"}}`, 400, "payload.customer_id"},
		"event form bad dep":    {"/mock_focus", `{"event_type":"focus event","event_timestamp":"2021-03-18T08:29:02.160Z","payload":{"customer_id":8,"category":"Toys"}}`, 400, "payload.category"},
		"event form wrong type": {"/mock_focus", `{"event_type":"entry event","event_timestamp":"2021-03-18T08:29:02.160Z","payload":{"customer_id":8}}`, 400, "event_type"},
		"oversized focus":       {"/mock_focus", `{"id":"1","ts":192322800,"dep":"Boys","pad":"` + strings.Repeat("x", 5000) + `"}`, 413, ""},
		"oversized produce":     {"/produce_entry", `{"id":"1","ts":192322800,"pad":"` + strings.Repeat("x", 5000) + `"}`, 413, ""},
	} {
		t.Run(name, func(t *testing.T) {
			status, b := sys.post(t, tc.path, tc.body)
			if status != tc.status {
				t.Fatalf("POST %s = %d %s, want %d", tc.path, status, b, tc.status)
			}
			var ans map[string]string
			if err := json.Unmarshal(b, &ans); err != nil {
				t.Fatalf("answer %s: %v", b, err)
			}
			if ans["error"] == "" || ans["field"] != tc.field {
				t.Fatalf("answer %s, want an error naming field %q", b, tc.field)
			}
		})
	}
	if n := sys.metric(t, "storeflow_events_rejected_total", "kind=focus"); n < 4 {
		t.Errorf("focus rejections = %v, want the bad mock focus bodies counted", n)
	}
}

// Seed 002's produce endpoints publish through the app's broker, as the
// simulator does: a shopper walked in over HTTP gets a coupon an outside
// subscriber sees.
func TestProduceEndpointsPublishOnTheBroker(t *testing.T) {
	sys := startSystem(t, map[string]string{"HTTP_TEST_ENDPOINTS": "true"})
	obs := dial(t, sys.app.BrokerAddr(), "observer", "customer/#")
	now := time.Now().Unix()
	id := customerWithCoupon(t, sys, store.Boys, now)

	produce := func(path, topic, body string) {
		t.Helper()
		status, b := sys.post(t, path, body)
		if status != http.StatusAccepted || string(b) != fmt.Sprintf(`{"published":%q}`+"\n", topic) {
			t.Fatalf("POST %s = %d %s, want 202 published %s", path, status, b, topic)
		}
	}
	ts := now
	produce("/produce_entry", "customer/enter", fmt.Sprintf(`{"id":%q,"ts":%d}`, id, ts))
	walk := [][2]int{{0, 0}, {1, 0}, {2, 0}, {3, 0}}
	for range 12 {
		walk = append(walk, [2]int{3, 1})
	}
	for _, c := range walk {
		ts++
		produce("/produce_move", "customer/move", fmt.Sprintf(`{"id":%q,"ts":%d,"x":%d,"y":%d}`, id, ts, c[0], c[1]))
	}
	if m := obs.next("customer/enter", 5*time.Second); string(m.Payload) != fmt.Sprintf(`{"id":%q,"ts":%d}`, id, now) {
		t.Errorf("enter payload %s", m.Payload)
	}
	pred := obs.next("customer/prediction", 10*time.Second)
	checkPredictionShape(t, pred.Payload)
	if !bytes.Contains(pred.Payload, fmt.Appendf(nil, `"customer":{"id":%q}`, id)) {
		t.Fatalf("prediction %s, want one for %s", pred.Payload, id)
	}
	ts++
	produce("/produce_exit", "customer/exit", fmt.Sprintf(`{"id":%q,"ts":%d}`, id, ts))
	obs.next("customer/exit", 5*time.Second)
}

// Without a testing mode or HTTP_TEST_ENDPOINTS the endpoints do not exist.
func TestTestEndpointsOffByDefault(t *testing.T) {
	sys := startSystem(t, nil)
	for _, path := range []string{"/mock_entry", "/mock_focus", "/produce_entry", "/produce_move", "/produce_exit"} {
		if status, b := sys.post(t, path, `{"id":"1","ts":192322800,"dep":"Boys","x":1,"y":1}`); status != http.StatusNotFound {
			t.Errorf("POST %s = %d %s, want 404", path, status, b)
		}
	}
}

// With TESTING_MOCK_MQTT the simulator runs and the mock logs what it
// publishes; nothing listens for MQTT.
func TestMockMQTTLogsTheSimulator(t *testing.T) {
	port := proctest.FreeAddr(t)
	sys := startSystem(t, map[string]string{
		"TESTING_MOCK_MQTT":          "true",
		"BROKER_LISTEN_ADDR":         port,
		"SIMULATOR_ENABLED":          "true",
		"SIMULATOR_SPEED":            "200",
		"SIMULATOR_SEED":             "7",
		"CUSTOMERS_AVERAGE_IN_STORE": "20",
	})
	if addr := sys.app.BrokerAddr(); addr != "" {
		t.Fatalf("BrokerAddr = %q with TESTING_MOCK_MQTT, want none", addr)
	}
	if c, err := net.DialTimeout("tcp", port, time.Second); err == nil {
		c.Close()
		t.Fatalf("something listens on BROKER_LISTEN_ADDR %s with TESTING_MOCK_MQTT", port)
	}
	sys.waitMetric(t, 50, 30*time.Second, "storeflow_mqtt_mock_published_total")
	if n := sys.metric(t, "storeflow_events_accepted_total"); n != 0 {
		t.Errorf("the pipeline accepted %v events: the mock must deliver nothing", n)
	}
	// The test endpoints are on in this mode too; produce only logs.
	if status, b := sys.post(t, "/produce_entry", `{"id":"997","ts":192326400}`); status != http.StatusAccepted {
		t.Fatalf("POST /produce_entry = %d %s, want 202", status, b)
	}
}
