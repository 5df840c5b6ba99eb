package pipeline

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Counts says what /metrics says, read from the same collectors, and
// reading it adds no series to /metrics.
func TestCountsAreTheMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := newBus()
	p := start(t, testConfig(), testCatalog(t), b, reg, nil)

	series := len(gatherSeries(t, reg))
	if c := p.Counts(); c != (Counts{}) {
		t.Fatalf("a new pipeline counts %+v", c)
	}
	if n := len(gatherSeries(t, reg)); n != series {
		t.Fatalf("reading the counts changed /metrics from %d to %d series", series, n)
	}

	ctx := context.Background()
	ts := time.Now().Unix()
	// Customer 5 and a shopper the central does not know linger in Men
	// until focused.
	for _, id := range []string{"5", "no-such-customer"} {
		_ = b.Publish(ctx, "enter", fmt.Appendf(nil, `{"id":%q,"ts":%d}`, id, ts))
		for i := range 12 {
			_ = b.Publish(ctx, "move", fmt.Appendf(nil, `{"id":%q,"ts":%d,"x":0,"y":7}`, id, ts+int64(i)))
		}
		_ = b.Publish(ctx, "exit", fmt.Appendf(nil, `{"id":%q,"ts":%d}`, id, ts+12))
	}
	_ = b.Publish(ctx, "move", []byte(`{"id":"5"}`))                                        // rejected: no ts
	_ = b.Publish(ctx, "move", fmt.Appendf(nil, `{"id":"5","ts":%d,"x":99,"y":99}`, ts+13)) // rejected: off the plan
	_ = b.Publish(ctx, "enter", []byte(`not json`))                                         // rejected
	_ = b.Publish(ctx, "focus", []byte(`{"id":"5"}`))                                       // rejected, not a shopper event
	waitFor(t, "both focus events settled", func() bool { return p.Counts().Outcomes == 2 })

	c := p.Counts()
	if want := (Counts{Accepted: 28, Rejected: 3, Focus: 2, Outcomes: 2, UnknownCustomer: 1, Coupons: 1}); c != want {
		t.Fatalf("counts %+v, want %+v", c, want)
	}
	if want := countsInMetrics(t, reg); c != want {
		t.Fatalf("counts %+v, /metrics says %+v", c, want)
	}
	if d := c.Sub(Counts{Accepted: 20, Focus: 1, Coupons: 1}); d != (Counts{Accepted: 8, Rejected: 3, Focus: 1, Outcomes: 2, UnknownCustomer: 1}) {
		t.Fatalf("counts less some: %+v", d)
	}
}

// The drops by queue are the dropped-events series by queue.
func TestCountsSplitTheDrops(t *testing.T) {
	p, b, central, reg := startShedding(t)
	publishFocusFrom(b, 10, 20)
	c := p.Counts()
	if c.DroppedFocus == 0 || c.Dropped != c.DroppedFocus || c.DroppedIntake != 0 || c.Accepted != 0 {
		t.Fatalf("counts %+v: want focus events shed at the focus hand-off and nothing else", c)
	}
	if want := countsInMetrics(t, reg); c != want {
		t.Fatalf("counts %+v, /metrics says %+v", c, want)
	}
	close(central.release)
}

// countsInMetrics is Counts as read from /metrics by name.
func countsInMetrics(t *testing.T, reg *prometheus.Registry) Counts {
	t.Helper()
	shopper := []string{kindEnter, kindMove, kindExit}
	return Counts{
		Accepted:        sumSeries(t, reg, "storeflow_events_accepted_total", "kind", shopper...),
		Rejected:        sumSeries(t, reg, "storeflow_events_rejected_total", "kind", shopper...),
		Dropped:         sumSeries(t, reg, "storeflow_events_dropped_total", ""),
		DroppedIntake:   sumSeries(t, reg, "storeflow_events_dropped_total", "queue", "dwell", "shutdown"),
		DroppedFocus:    sumSeries(t, reg, "storeflow_events_dropped_total", "queue", "focus"),
		PrefetchSkipped: sumSeries(t, reg, "storeflow_events_dropped_total", "queue", "prefetch"),
		Focus:           sumSeries(t, reg, "storeflow_focus_detected_total", ""),
		Outcomes:        sumSeries(t, reg, "storeflow_focus_outcomes_total", ""),
		UnknownCustomer: sumSeries(t, reg, "storeflow_focus_outcomes_total", "outcome", "unknown_customer"),
		Coupons:         sumSeries(t, reg, "storeflow_coupons_published_total", ""),
	}
}

type series struct {
	name   string
	labels map[string]string
	value  float64
}

func gatherSeries(t *testing.T, reg *prometheus.Registry) []series {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []series
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			s := series{name: mf.GetName(), labels: map[string]string{}, value: m.GetCounter().GetValue()}
			for _, l := range m.GetLabel() {
				s.labels[l.GetName()] = l.GetValue()
			}
			out = append(out, s)
		}
	}
	return out
}

// sumSeries adds up the series of name whose label is one of values (every
// series when label is "").
func sumSeries(t *testing.T, reg *prometheus.Registry, name, label string, values ...string) int64 {
	t.Helper()
	var sum float64
	for _, s := range gatherSeries(t, reg) {
		if s.name != name {
			continue
		}
		keep := label == ""
		for _, v := range values {
			keep = keep || s.labels[label] == v
		}
		if keep {
			sum += s.value
		}
	}
	return int64(sum)
}
