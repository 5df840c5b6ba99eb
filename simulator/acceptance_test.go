package simulator

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/storeflow/storeflow/internal/harness"
	"github.com/storeflow/storeflow/store/world"
)

func acceptanceWorld(t *testing.T) *world.World {
	t.Helper()
	w, err := world.Generate(world.Config{Seed: 2, Reference: time.Date(2024, 5, 15, 0, 0, 0, 0, time.UTC), Customers: 50, Days: 10})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func prediction(customer string, coupon int) []byte {
	return fmt.Appendf(nil, `{"customer":{"id":%q},"coupon":{"id":%d,"type":"buy_more"},"ts":1715731200}`, customer, coupon)
}

// Shoppers use coupons as often as the ground truth says: over many offers of
// one coupon to one customer, the use rate converges on its probability.
func TestAcceptanceFollowsTheGroundTruth(t *testing.T) {
	w := acceptanceWorld(t)
	c := w.Catalog.Customers()[3]
	cp := w.Catalog.Coupons()[10]
	prefs, _ := w.Truth.Preferences(c.ID)
	p := world.Probability(prefs, &c, &cp)

	reg := prometheus.NewRegistry()
	a := NewAcceptance(w.Catalog, w.Truth, 1, time.Minute, slog.New(slog.DiscardHandler), reg)
	const n = 20000
	for range n {
		a.Handle("customer/prediction", prediction(c.ID, cp.ID))
	}
	got := a.Tally()
	if got.Received != n {
		t.Fatalf("received %d, want %d", got.Received, n)
	}
	rate := float64(got.Used) / n
	if sd := math.Sqrt(p * (1 - p) / n); math.Abs(rate-p) > 5*sd {
		t.Fatalf("use rate %.4f, ground truth %.4f (5 sd = %.4f)", rate, p, 5*sd)
	}
	if math.Abs(got.Expected-n*p) > 1e-6*n {
		t.Fatalf("expected uses %.2f, want %.2f", got.Expected, n*p)
	}
	if v := testutil.ToFloat64(a.mUsed); int(v) != got.Used {
		t.Fatalf("metric says %v used, tally %d", v, got.Used)
	}
}

func TestAcceptanceCountsWhatItCannotRead(t *testing.T) {
	w := acceptanceWorld(t)
	a := NewAcceptance(w.Catalog, w.Truth, 1, time.Minute, slog.New(slog.DiscardHandler), nil)
	a.Handle("t", []byte(`{"customer":`))                       // unreadable
	a.Handle("t", []byte(`{"customer":{"id":"1"},"ts":1}`))     // no coupon
	a.Handle("t", prediction("no-such-customer", 1))            // not a simulated shopper
	a.Handle("t", prediction(w.Catalog.Customers()[0].ID, 1e6)) // no such coupon
	if got := a.Tally(); got.Received != 0 {
		t.Fatalf("counted %d received coupons from bad messages", got.Received)
	}
	if r, u := testutil.ToFloat64(a.mRejected), testutil.ToFloat64(a.mUnknown); r != 2 || u != 2 {
		t.Fatalf("rejected %v, unknown %v; want 2 and 2", r, u)
	}
}

// subscriberFunc adapts a function to Subscriber.
type subscriberFunc func(string, func(string, []byte)) error

func (f subscriberFunc) Subscribe(filter string, h func(string, []byte)) error { return f(filter, h) }

func TestAcceptanceSubscribes(t *testing.T) {
	w := acceptanceWorld(t)
	a := NewAcceptance(w.Catalog, w.Truth, 1, time.Hour, slog.New(slog.DiscardHandler), nil)
	got := make(chan string, 1)
	var handler func(string, []byte)
	sub := subscriberFunc(func(filter string, h func(string, []byte)) error {
		handler = h
		got <- filter
		return nil
	})
	if err := a.Subscribe(sub, "customer/prediction"); err != nil {
		t.Fatal(err)
	}
	if f := <-got; f != "customer/prediction" {
		t.Fatalf("subscribed to %q", f)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	handler("customer/prediction", prediction(w.Catalog.Customers()[0].ID, w.Catalog.Coupons()[0].ID))
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if a.Tally().Received != 1 {
		t.Fatal("a message through the subscription was not counted")
	}
}

// redeemRecorder keeps the payloads published to it.
type redeemRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *redeemRecorder) Publish(_ context.Context, topic string, payload []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, topic+" "+string(payload))
	return nil
}

func (r *redeemRecorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

// A shopper who would use a coupon redeems it on the redeem topic, at the
// offer's time: one redemption per coupon drawn as used.
func TestAcceptanceRedeems(t *testing.T) {
	w := acceptanceWorld(t)
	c := w.Catalog.Customers()[3]
	cp := w.Catalog.Coupons()[10]
	a := NewAcceptance(w.Catalog, w.Truth, 1, time.Minute, slog.New(slog.DiscardHandler), nil)
	rec := &redeemRecorder{}
	a.RedeemOn(rec, "customer/redeem")
	stop := harness.Start(t, "acceptance", a.Run, closed())
	const n = 500
	for range n {
		a.Handle("customer/prediction", prediction(c.ID, cp.ID))
	}
	used := a.Tally().Used
	if used == 0 || used == n {
		t.Fatalf("%d of %d used: the test needs some of each", used, n)
	}
	harness.Until(t, 5*time.Second, "every use redeemed", func() bool { return rec.len() >= used })
	stop(5 * time.Second)
	want := fmt.Sprintf(`customer/redeem {"id":%q,"ts":1715731200,"coupon_id":%d}`, c.ID, cp.ID)
	if len(rec.msgs) != used || rec.msgs[0] != want {
		t.Fatalf("%d redemptions published, first %q; want %d, %q", len(rec.msgs), rec.msgs[0], used, want)
	}
	if v := testutil.ToFloat64(a.mRedeemed); int(v) != used {
		t.Errorf("published metric %v, want %d", v, used)
	}
}

func closed() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}
