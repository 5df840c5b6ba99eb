package app

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/storeflow/storeflow/event"
	"github.com/storeflow/storeflow/store"
)

// The tests of this file play floods and stalls against the real wiring
// (the embedded broker, publishing through its inline client as the
// simulator does) and check that real shoppers still get their coupons.

// couponsFor returns a channel that receives the customer id of every coupon
// the app publishes.
func couponsFor(t *testing.T, a *App) <-chan string {
	t.Helper()
	ids := make(chan string, 1000)
	err := a.conn.Subscribe(a.cfg.Pipeline.PredictionTopic, func(_ string, payload []byte) {
		o, err := event.DecodeOffer(payload)
		if err != nil {
			t.Errorf("coupon message %s: %v", payload, err)
			return
		}
		select {
		case ids <- o.CustomerID:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// waitCoupon waits until a coupon for id arrives, at most within.
func waitCoupon(t *testing.T, coupons <-chan string, id string, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case got := <-coupons:
			if got == id {
				return
			}
		case <-deadline:
			t.Fatalf("no coupon for %s within %s", id, within)
		}
	}
}

// publish sends one payload through the app's broker, as the simulator does.
func publish(t *testing.T, a *App, topic string, payload []byte) {
	t.Helper()
	if err := a.conn.Publish(context.Background(), topic, payload); err != nil {
		t.Fatalf("publish on %s: %v", topic, err)
	}
}

// lingerInBoys plays a shopper who enters at ts and stays in Boys past the
// dwell, and returns the ts of its last move.
func lingerInBoys(t *testing.T, a *App, id string, ts int64) int64 {
	t.Helper()
	area, ok := a.plan.Area(store.Boys)
	if !ok {
		t.Fatal("the plan has no Boys")
	}
	publish(t, a, a.cfg.Pipeline.EntryTopic, event.AppendPresence(nil, event.Presence{ID: id, TS: ts}))
	dwell := int64(a.cfg.Pipeline.FocusDwell / time.Second)
	for range dwell + 2 {
		ts++
		publish(t, a, a.cfg.Pipeline.MoveTopic, event.AppendMove(nil, event.Move{ID: id, TS: ts, X: area.Rect.Min.X, Y: area.Rect.Min.Y}))
	}
	return ts
}

// boysShopper returns a catalog customer for whom Boys has a coupon valid
// at ts: with PREDICTION_THRESHOLD=0 every focus of theirs there gets one.
func boysShopper(t *testing.T, a *App, ts int64, n int) string {
	t.Helper()
	if cs, _ := a.catalog.ValidCoupons(context.Background(), store.Boys, store.DayOf(ts), nil); len(cs) == 0 {
		t.Fatal("the generated catalog has no Boys coupon today")
	}
	return a.catalog.Customers()[n].ID
}

// After a flood of 200,000 fake ids — twice MAX_SHOPPERS — a real shopper
// who lingers still gets a coupon. Before, the full shopper table dropped
// every move of a new shopper until SHOPPER_TTL (30 min) freed room, and
// scanned the whole table at each: the flood alone took minutes.
func TestFloodOfFakeIDsDoesNotLockShoppersOut(t *testing.T) {
	a := runApp(t, map[string]string{"PREDICTION_THRESHOLD": "0"})
	coupons := couponsFor(t, a)
	ts := time.Now().Unix()
	area, _ := a.plan.Area(store.Boys)
	const flood = 200_000
	// Generous: the flood takes about 4 s with -race on 2 busy cores.
	deadline := time.Now().Add(time.Minute)
	var buf []byte
	for i := range flood { // one move each, in a department, as a replayed or forged feed would
		buf = fmt.Appendf(buf[:0], `{"id":"fake-%d","ts":%d,"x":%d,"y":%d}`, i, ts, area.Rect.Min.X, area.Rect.Min.Y)
		publish(t, a, a.cfg.Pipeline.MoveTopic, buf)
		if i%1000 == 0 && time.Now().After(deadline) {
			t.Fatalf("only %d of the %d fake moves taken in a minute: a full table slows intake down", i, flood)
		}
	}
	id := boysShopper(t, a, ts, 0)
	lingerInBoys(t, a, id, ts)
	waitCoupon(t, coupons, id, 10*time.Second)

	if got := a.metricValue("storeflow_shoppers_tracked"); got > float64(a.cfg.Pipeline.MaxShoppers) {
		t.Errorf("%v shoppers tracked, MAX_SHOPPERS is %d", got, a.cfg.Pipeline.MaxShoppers)
	}
	if got, want := a.metricValue("storeflow_shoppers_evicted_total"), float64(flood-a.cfg.Pipeline.MaxShoppers); got < want {
		t.Errorf("storeflow_shoppers_evicted_total = %v, want at least %v", got, want)
	}
}
