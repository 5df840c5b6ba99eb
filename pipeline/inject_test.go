package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/storeflow/storeflow/event"
	"github.com/storeflow/storeflow/store"
)

// FocusNow runs the stages in the caller's goroutine and says what came of
// the focus, counted and published as a focus from the topic would be.
func TestFocusNow(t *testing.T) {
	b := newBus()
	reg := prometheus.NewRegistry()
	cat := testCatalog(t)
	p := start(t, testConfig(), cat, b, reg, nil)
	ctx := context.Background()
	now := time.Now().Unix()
	valid, _ := cat.ValidCoupons(ctx, store.Men, store.DayOf(now), nil)
	if len(valid) == 0 {
		t.Fatal("no Men coupon today in the test catalog")
	}
	id := cat.Customers()[0].ID
	focus := fmt.Sprintf(`{"id":%q,"ts":%d,"dep":"Men"}`, id, now)

	// Threshold 0: every valid coupon once per visit, then already_issued.
	for range valid {
		res, err := p.FocusNow(ctx, []byte(focus))
		if err != nil || res.Outcome != OutcomePublished {
			t.Fatalf("FocusNow = %+v, %v, want published", res, err)
		}
		if !strings.Contains(string(res.Prediction), fmt.Sprintf(`"customer":{"id":%q}`, id)) {
			t.Fatalf("prediction %s is not for %s", res.Prediction, id)
		}
		select {
		case got := <-b.out:
			if got != "prediction "+string(res.Prediction) {
				t.Fatalf("published %s, want the returned prediction", got)
			}
		default:
			t.Fatal("the prediction was not published")
		}
	}
	for name, tc := range map[string]struct {
		payload, outcome string
	}{
		"visit ran out":    {focus, OutcomeAlreadyIssued},
		"unknown customer": {fmt.Sprintf(`{"id":"nobody","ts":%d,"dep":"Men"}`, now), OutcomeUnknownCustomer},
		"no coupons then":  {fmt.Sprintf(`{"id":%q,"ts":192322800,"dep":"Men"}`, id), OutcomeNoCoupons},
	} {
		t.Run(name, func(t *testing.T) {
			res, err := p.FocusNow(ctx, []byte(tc.payload))
			if err != nil || res.Outcome != tc.outcome || res.Prediction != nil {
				t.Fatalf("FocusNow = %+v, %v, want %s and no prediction", res, err, tc.outcome)
			}
		})
	}
	_, err := p.FocusNow(ctx, []byte(`{"id":"1","ts":192322800,"dep":"Toys"}`))
	var ee *event.Error
	if !errors.As(err, &ee) || ee.Field != "dep" {
		t.Fatalf("unknown department: %v, want an *event.Error on dep", err)
	}
	if n := testutil.ToFloat64(p.m.accepted.WithLabelValues(kindFocus)); n != float64(len(valid)+3) {
		t.Errorf("accepted focus events = %v, want %d", n, len(valid)+3)
	}
	if n := testutil.ToFloat64(p.m.rejected.WithLabelValues(kindFocus, string(event.ReasonUnknownDep))); n != 1 {
		t.Errorf("rejected focus events = %v, want 1", n)
	}
}

func TestInjectShopperEvents(t *testing.T) {
	b := newBus()
	p := start(t, testConfig(), testCatalog(t), b, prometheus.NewRegistry(), nil)
	for name, tc := range map[string]struct {
		inject  func([]byte) error
		payload string
		field   string // "": no *event.Error
		ok      bool
	}{
		"enter":          {p.InjectEnter, `{"id":"1","ts":192322800}`, "", true},
		"enter no ts":    {p.InjectEnter, `{"id":"1"}`, "ts", false},
		"move":           {p.InjectMove, `{"id":"1","ts":192322801,"x":1,"y":1}`, "", true},
		"move no y":      {p.InjectMove, `{"id":"1","ts":192322801,"x":1}`, "y", false},
		"move off plan":  {p.InjectMove, `{"id":"1","ts":192322801,"x":99,"y":1}`, "", false},
		"exit":           {p.InjectExit, `{"id":"1","ts":192322802}`, "", true},
		"exit malformed": {p.InjectExit, `nope`, "", false},
	} {
		t.Run(name, func(t *testing.T) {
			err := tc.inject([]byte(tc.payload))
			if (err == nil) != tc.ok {
				t.Fatalf("error %v, want ok=%v", err, tc.ok)
			}
			var ee *event.Error
			if tc.field != "" && (!errors.As(err, &ee) || ee.Field != tc.field) {
				t.Fatalf("error %v, want one naming %s", err, tc.field)
			}
		})
	}
	for kind, want := range map[string]float64{kindEnter: 1, kindMove: 1, kindExit: 1} {
		if n := testutil.ToFloat64(p.m.accepted.WithLabelValues(kind)); n != want {
			t.Errorf("accepted %s = %v, want %v", kind, n, want)
		}
	}
	if n := testutil.ToFloat64(p.m.rejected.WithLabelValues(kindMove, string(reasonOffPlan))); n != 1 {
		t.Errorf("off-plan moves rejected = %v, want 1", n)
	}
}
