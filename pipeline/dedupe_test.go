package pipeline

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/storeflow/storeflow/event"
	"github.com/storeflow/storeflow/store"
)

// A focus is the same focus when shopper, department and event time are the
// same; the position does not make it another one.
func TestRecentFocusIdentity(t *testing.T) {
	first := event.Focus{ID: "7", TS: 1_700_000_000, Dep: store.Boys, X: 3, Y: 1, HasPos: true}
	tests := map[string]struct {
		f   event.Focus
		new bool
	}{
		"the same":              {first, false},
		"another position":      {event.Focus{ID: "7", TS: 1_700_000_000, Dep: store.Boys, X: 4, Y: 2, HasPos: true}, false},
		"no position":           {event.Focus{ID: "7", TS: 1_700_000_000, Dep: store.Boys}, false},
		"another shopper":       {event.Focus{ID: "8", TS: 1_700_000_000, Dep: store.Boys}, true},
		"another department":    {event.Focus{ID: "7", TS: 1_700_000_000, Dep: store.Girls}, true},
		"a second later":        {event.Focus{ID: "7", TS: 1_700_000_001, Dep: store.Boys}, true},
		"an id that only looks": {event.Focus{ID: "07", TS: 1_700_000_000, Dep: store.Boys}, true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			r := newRecentFocus(10)
			if !r.add(first) {
				t.Fatal("the first focus is not new")
			}
			if got := r.add(tt.f); got != tt.new {
				t.Errorf("add(%+v) after add(%+v) = %v, want %v", tt.f, first, got, tt.new)
			}
		})
	}
}

// The window holds the last n keys: the oldest leaves when a new one comes,
// and is then new again.
func TestRecentFocusEvictsTheOldest(t *testing.T) {
	r := newRecentFocus(3)
	f := func(i int) event.Focus { return event.Focus{ID: fmt.Sprint(i), TS: 1, Dep: store.Men} }
	for i := range 3 {
		if !r.add(f(i)) {
			t.Fatalf("focus %d is not new", i)
		}
	}
	for i := range 3 {
		if r.add(f(i)) {
			t.Fatalf("focus %d within the window is new again", i)
		}
	}
	r.add(f(3)) // 0 leaves
	if r.add(f(1)) || r.add(f(2)) || r.add(f(3)) {
		t.Fatal("a focus still within the window is new again")
	}
	if !r.add(f(0)) { // 1 leaves
		t.Fatal("the oldest focus is still remembered after a newer one took its place")
	}
	if !r.add(f(1)) {
		t.Fatal("focus 1 is still remembered after it left the window")
	}
}

// A forgotten focus is new again; when it is recorded again, the slot it
// had before leaving the window does not take the new record with it.
func TestRecentFocusForget(t *testing.T) {
	r := newRecentFocus(2)
	a := event.Focus{ID: "a", TS: 1, Dep: store.Men}
	b := event.Focus{ID: "b", TS: 1, Dep: store.Men}
	c := event.Focus{ID: "c", TS: 1, Dep: store.Men}
	r.add(a)
	r.forget(a)
	if !r.add(a) { // a again, in the second slot
		t.Fatal("a forgotten focus is not new")
	}
	r.add(b) // takes the first slot, where a was before
	if r.add(a) {
		t.Fatal("a was dropped from the window with its old slot")
	}
	r.add(c) // takes the second slot: now a leaves
	if !r.add(a) {
		t.Fatal("a is still remembered after it left the window")
	}
}

// However many focus events come, the window holds n keys.
func TestRecentFocusIsBounded(t *testing.T) {
	const n = 100
	r := newRecentFocus(n)
	for i := range 100 * n {
		if !r.add(event.Focus{ID: fmt.Sprint(i), TS: 1, Dep: store.Women}) {
			t.Fatalf("focus %d is not new", i)
		}
		if got := len(r.seen); got > n {
			t.Fatalf("after %d focus events the window holds %d, want at most %d", i+1, got, n)
		}
	}
	if got := len(r.seen); got != n {
		t.Errorf("the window holds %d keys, want %d", got, n)
	}
	if len(r.ring) != n {
		t.Errorf("the ring grew to %d slots, want %d", len(r.ring), n)
	}
}

func TestDedupWindowValidate(t *testing.T) {
	for _, n := range []int{0, -1, 1_000_001} {
		c := testConfig()
		c.DedupWindow = n
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("FOCUS_DEDUP_WINDOW=%d", n)) {
			t.Errorf("Validate() with %d = %v, want an error naming FOCUS_DEDUP_WINDOW", n, err)
		}
	}
}

// A focus delivered twice (a QoS 1 redelivery) gets one coupon: the second
// delivery is counted as "duplicate" and goes no further, though the shopper
// has another coupon the visit ledger would offer. A later focus of the same
// shopper in the same department is another focus.
func TestFocusDeliveredAgainGetsNoSecondCoupon(t *testing.T) {
	b := newBus()
	cat := testCatalog(t)
	p := start(t, testConfig(), cat, b, prometheus.NewRegistry(), nil)
	now := time.Now().Unix()
	dep := departmentWithCoupons(t, cat, now, 3)
	id := cat.Customers()[0].ID
	focus := fmt.Appendf(nil, `{"id":%q,"ts":%d,"dep":%q,"x":1,"y":1}`, id, now, dep)
	outcome := func(o string) float64 { return testutil.ToFloat64(p.m.focusOutcome.WithLabelValues(o)) }

	_ = b.Publish(context.Background(), "focus", focus)
	waitFor(t, "the first coupon", func() bool { return outcome(OutcomePublished) == 1 })
	_ = b.Publish(context.Background(), "focus", focus)
	_ = b.Publish(context.Background(), "focus", fmt.Appendf(nil, `{"id":%q,"ts":%d,"dep":%q}`, id, now+600, dep))
	waitFor(t, "three deliveries settled", func() bool {
		var sum float64
		for _, o := range outcomes {
			sum += outcome(o)
		}
		return sum == 3
	})
	predictions := 0
	for len(b.out) > 0 {
		if strings.HasPrefix(<-b.out, "prediction ") {
			predictions++
		}
	}
	if predictions != 2 {
		t.Errorf("%d coupons for two focus events, one delivered twice; want 2", predictions)
	}
	if got := outcome(OutcomeDuplicate); got != 1 {
		t.Errorf("duplicate outcomes = %v, want 1", got)
	}
	if got := testutil.ToFloat64(p.m.accepted.WithLabelValues(kindFocus)); got != 2 {
		t.Errorf("accepted focus events = %v, want 2", got)
	}
}

// A focus dropped at intake (a full queue with PIPELINE_OVERFLOW=drop) is
// not remembered: delivered again, it is taken in.
func TestDroppedFocusIsTakenInWhenDeliveredAgain(t *testing.T) {
	cfg := testConfig()
	cfg.Overflow, cfg.QueueSize, cfg.FocusWorkers = OverflowDrop, 1, 1
	b := newBus()
	central := blockingCentral{Catalog: testCatalog(t), release: make(chan struct{})}
	p := start(t, cfg, central, b, prometheus.NewRegistry(), nil)
	ts := time.Now().Unix()
	focus := func(id int) []byte { return fmt.Appendf(nil, `{"id":"%d","ts":%d,"dep":"Men"}`, id, ts) }
	_ = b.Publish(context.Background(), "focus", focus(1))
	waitFor(t, "the context stage holds the first focus", func() bool { return len(p.focusQ) == 0 })
	_ = b.Publish(context.Background(), "focus", focus(2)) // queued
	_ = b.Publish(context.Background(), "focus", focus(3)) // dropped: the queue is full
	if got := testutil.ToFloat64(p.m.dropped.WithLabelValues("focus")); got != 1 {
		t.Fatalf("dropped focus events = %v, want 1", got)
	}
	close(central.release)
	waitFor(t, "the queue has room", func() bool { return len(p.focusQ) == 0 })
	_ = b.Publish(context.Background(), "focus", focus(3))
	if got := testutil.ToFloat64(p.m.accepted.WithLabelValues(kindFocus)); got != 3 {
		t.Errorf("accepted focus events = %v, want 3: the dropped one delivered again is taken in", got)
	}
	if got := testutil.ToFloat64(p.m.focusOutcome.WithLabelValues(OutcomeDuplicate)); got != 0 {
		t.Errorf("duplicate outcomes = %v, want 0", got)
	}
}

// departmentWithCoupons returns a department with at least n coupons valid at
// ts in cat.
func departmentWithCoupons(t testing.TB, cat *store.Catalog, ts int64, n int) store.Department {
	t.Helper()
	for _, d := range store.Departments {
		if valid, _ := cat.ValidCoupons(context.Background(), d, store.DayOf(ts), nil); len(valid) >= n {
			return d
		}
	}
	t.Fatalf("no department has %d coupons valid today in the test catalog", n)
	return store.NoDepartment
}

// One add is a map lookup and a ring write, whatever the window's size.
func BenchmarkRecentFocusAdd(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			r := newRecentFocus(n)
			ids := make([]string, 4*n)
			for i := range ids {
				ids[i] = fmt.Sprint(i)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				r.add(event.Focus{ID: ids[i%len(ids)], TS: int64(i / len(ids)), Dep: store.Men})
			}
		})
	}
}
