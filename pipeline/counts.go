package pipeline

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Counts are the pipeline's totals since New, read from the Prometheus
// collectors the pipeline records them in: what a caller needs to balance
// what it published against what the pipeline did with it (published =
// Accepted + DroppedIntake + Rejected) and to tell when every focus settled
// (Outcomes + DroppedFocus ≥ Focus).
type Counts struct {
	Accepted        int64 // shopper events (enter, move, exit) decoded and queued
	Rejected        int64 // shopper events refused as invalid, every reason
	Dropped         int64 // events dropped, every queue
	DroppedIntake   int64 // of which refused at intake (dwell queue full, shutting down): never accepted
	DroppedFocus    int64 // of which focus events the focus hand-off shed
	PrefetchSkipped int64 // of which context prefetches skipped (prefetch queue full): no event lost
	Focus           int64 // focus events the dwell detector published
	Outcomes        int64 // focus events settled, every outcome
	UnknownCustomer int64 // of which OutcomeUnknownCustomer
	Coupons         int64 // coupons (prediction messages) published
	StateRoundTrips int64 // pipelines the dwell workers sent to Redis (DWELL_STATE=redis)
}

// Sub is c less o: what was counted between two reads.
func (c Counts) Sub(o Counts) Counts {
	return Counts{
		Accepted: c.Accepted - o.Accepted, Rejected: c.Rejected - o.Rejected,
		Dropped: c.Dropped - o.Dropped, DroppedIntake: c.DroppedIntake - o.DroppedIntake,
		DroppedFocus: c.DroppedFocus - o.DroppedFocus, PrefetchSkipped: c.PrefetchSkipped - o.PrefetchSkipped,
		Focus: c.Focus - o.Focus, Outcomes: c.Outcomes - o.Outcomes,
		UnknownCustomer: c.UnknownCustomer - o.UnknownCustomer, Coupons: c.Coupons - o.Coupons,
		StateRoundTrips: c.StateRoundTrips - o.StateRoundTrips,
	}
}

// Counts reads the pipeline's totals. The counters are read one after the
// other while the pipeline runs, so a read is not one instant: a caller that
// balances them waits until they agree.
func (p *Pipeline) Counts() Counts {
	m := p.m
	var c Counts
	for _, k := range []string{kindEnter, kindMove, kindExit} {
		c.Accepted += counterValue(m.acceptedBy[k])
	}
	// The vectors are read series by series: looking a label up with
	// WithLabelValues would create a series /metrics does not have yet.
	eachSeries(m.rejected, func(l labels, v int64) {
		if k := l.get("kind"); k == kindEnter || k == kindMove || k == kindExit {
			c.Rejected += v
		}
	})
	eachSeries(m.dropped, func(l labels, v int64) {
		c.Dropped += v
		switch l.get("queue") {
		case queueDwell, dropShutdown:
			c.DroppedIntake += v
		case queueFocus:
			c.DroppedFocus += v
		case queuePrefetch:
			c.PrefetchSkipped += v
		}
	})
	c.Focus = counterValue(m.focus)
	for o, ctr := range m.outcome {
		v := counterValue(ctr)
		c.Outcomes += v
		if o == OutcomeUnknownCustomer {
			c.UnknownCustomer = v
		}
	}
	c.Coupons = counterValue(m.published)
	c.StateRoundTrips = counterValue(m.stateTrips)
	return c
}

// labels are one series' label pairs.
type labels []*dto.LabelPair

func (l labels) get(name string) string {
	for _, p := range l {
		if p.GetName() == name {
			return p.GetValue()
		}
	}
	return ""
}

// counterValue is a counter's value as a count.
func counterValue(c prometheus.Metric) int64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return 0 // a counter's Write does not fail
	}
	return int64(m.GetCounter().GetValue())
}

// eachSeries calls f with the labels and value of every series of a counter vector.
func eachSeries(vec *prometheus.CounterVec, f func(labels, int64)) {
	ch := make(chan prometheus.Metric)
	go func() {
		vec.Collect(ch)
		close(ch)
	}()
	for s := range ch {
		var m dto.Metric
		if err := s.Write(&m); err != nil {
			continue
		}
		f(m.GetLabel(), int64(m.GetCounter().GetValue()))
	}
}
