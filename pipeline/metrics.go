package pipeline

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/storeflow/storeflow/event"
)

// Event kinds, as metric labels.
const (
	kindEnter = "enter"
	kindMove  = "move"
	kindExit  = "exit"
	kindFocus = "focus"
)

// reasonOffPlan rejects a move whose coordinates are not on the store plan:
// usually a STORE_PLAN that does not match the sensors.
const reasonOffPlan event.Reason = "off_plan"

// Focus outcomes, as metric labels: what became of each focus event.
const (
	OutcomePublished       = "published"        // a coupon went out
	OutcomeUnknownCustomer = "unknown_customer" // not in the central's data
	OutcomeNoCoupons       = "no_valid_coupons" // nothing running in the department that day
	OutcomeBelowThreshold  = "below_threshold"  // no coupon scored PREDICTION_THRESHOLD
	OutcomeAlreadyIssued   = "already_issued"   // every qualifying coupon was offered this visit
	OutcomeContextError    = "context_error"    // the central failed
	OutcomeScoreError      = "score_error"      // the scorer failed
	OutcomePublishError    = "publish_error"    // the broker refused the prediction
)

var outcomes = []string{OutcomePublished, OutcomeUnknownCustomer, OutcomeNoCoupons, OutcomeBelowThreshold,
	OutcomeAlreadyIssued, OutcomeContextError, OutcomeScoreError, OutcomePublishError}

// metrics are the pipeline's counters. Label values are fixed sets: never a
// customer id.
type metrics struct {
	accepted     *prometheus.CounterVec // kind
	rejected     *prometheus.CounterVec // kind, reason
	dropped      *prometheus.CounterVec // queue
	focus        prometheus.Counter
	focusOutcome *prometheus.CounterVec // outcome
	outOfOrder   prometheus.Counter
	expired      prometheus.Counter
	prefetch     *prometheus.CounterVec // outcome
	tracked      prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "storeflow_events_accepted_total", Help: "Events decoded and queued, by kind.",
		}, []string{"kind"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "storeflow_events_rejected_total", Help: "Events refused as invalid, by kind and reason.",
		}, []string{"kind", "reason"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "storeflow_events_dropped_total", Help: "Valid events dropped because a queue was full (PIPELINE_OVERFLOW=drop) or the pipeline was stopping, by queue.",
		}, []string{"queue"}),
		focus: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "storeflow_focus_detected_total", Help: "Focus events the dwell detector published.",
		}),
		focusOutcome: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "storeflow_focus_outcomes_total", Help: "What became of each focus event consumed, by outcome.",
		}, []string{"outcome"}),
		outOfOrder: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "storeflow_moves_out_of_order_total", Help: "Moves older than the shopper's previous move, ignored.",
		}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "storeflow_shoppers_expired_total", Help: "Shoppers forgotten after SHOPPER_TTL without an event (no exit seen).",
		}),
		prefetch: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "storeflow_prefetch_total", Help: "Context prefetches on entry events, by outcome.",
		}, []string{"outcome"}),
		tracked: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "storeflow_shoppers_tracked", Help: "Shoppers the dwell detector holds state for.",
		}),
	}
	reg.MustRegister(m.accepted, m.rejected, m.dropped, m.focus, m.focusOutcome, m.outOfOrder, m.expired, m.prefetch, m.tracked)
	// Pre-create every series so dashboards see zeros, not gaps.
	for _, k := range []string{kindEnter, kindMove, kindExit, kindFocus} {
		m.accepted.WithLabelValues(k)
		for _, r := range event.Reasons {
			m.rejected.WithLabelValues(k, string(r))
		}
	}
	m.rejected.WithLabelValues(kindMove, string(reasonOffPlan))
	for _, o := range outcomes {
		m.focusOutcome.WithLabelValues(o)
	}
	return m
}
