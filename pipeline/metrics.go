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

// Queues, as the dropped-events label (also queueFocus and dropShutdown).
const (
	queueDwell    = "dwell"
	queuePrefetch = "prefetch"
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
	OutcomeDuplicate       = "duplicate"        // the same focus delivered again (FOCUS_DEDUP_WINDOW): not handled twice

	// Not asked, so that a failing peer costs a fast error, not a worker
	// held until its timeout.
	OutcomeCentralUnavailable   = "central_unavailable"   // the central's circuit breaker is open
	OutcomeCentralLimited       = "central_limited"       // CENTRAL_MAX_RPS spent
	OutcomePredictorUnavailable = "predictor_unavailable" // the prediction service's circuit breaker is open
)

var outcomes = []string{OutcomePublished, OutcomeUnknownCustomer, OutcomeNoCoupons, OutcomeBelowThreshold,
	OutcomeAlreadyIssued, OutcomeContextError, OutcomeScoreError, OutcomePublishError, OutcomeDuplicate,
	OutcomeCentralUnavailable, OutcomeCentralLimited, OutcomePredictorUnavailable}

// metrics are the pipeline's counters. Label values are fixed sets: never a
// customer id.
type metrics struct {
	accepted     *prometheus.CounterVec // kind
	rejected     *prometheus.CounterVec // kind, reason
	dropped      *prometheus.CounterVec // queue
	focus        prometheus.Counter
	browsing     prometheus.Counter
	focusOutcome *prometheus.CounterVec // outcome
	outOfOrder   prometheus.Counter
	expired      prometheus.Counter
	evictedVec   *prometheus.CounterVec // reason
	evicted      [evictedLeastRecent + 1]prometheus.Counter
	prefetch     *prometheus.CounterVec // outcome
	tracked      prometheus.Gauge

	// Latency, in seconds. The hot path observes through the curried
	// observers and counters below: no label lookup per event.
	stageSeconds      *prometheus.HistogramVec // stage
	focusSecondsVec   prometheus.Histogram
	predictionSecVec  prometheus.Histogram
	predictions       *prometheus.CounterVec // outcome
	publishedTotal    prometheus.Counter
	stageContext      prometheus.Observer
	stageScore        prometheus.Observer
	stagePublish      prometheus.Observer
	focusSeconds      prometheus.Observer
	predictionSeconds prometheus.Observer
	predictionsOK     prometheus.Counter
	predictionsError  prometheus.Counter
	published         prometheus.Counter
	outcome           map[string]prometheus.Counter // by outcome: read-only after newMetrics
	acceptedBy        map[string]prometheus.Counter // accepted, by kind: no label hashing per event
	dropShutdown      prometheus.Counter
	dropFocus         prometheus.Counter
}

// latencyBuckets span 100 µs to about 3 s: an in-process scorer answers in
// microseconds, a remote one in milliseconds, a stuck one at its timeout.
var latencyBuckets = prometheus.ExponentialBuckets(0.0001, 2, 16)

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
		browsing: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "storeflow_browsing_detected_total", Help: "Browsing events (a shopper moving on without a focus: a staff alert) the detector published.",
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
		evictedVec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "storeflow_shoppers_evicted_total", Help: "Shoppers forgotten to make room for a new one at MAX_SHOPPERS, by reason: one_move (seen in one move only) or least_recent (an established shopper, the least recently active).",
		}, []string{"reason"}),
	}
	m.evicted[evictedOneMove] = m.evictedVec.WithLabelValues("one_move")
	m.evicted[evictedLeastRecent] = m.evictedVec.WithLabelValues("least_recent")
	m.stageSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "storeflow_focus_stage_seconds", Help: "Time a focus event spends in each focus stage: context, score, publish (select and publish).",
		Buckets: latencyBuckets,
	}, []string{"stage"})
	m.focusSecondsVec = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "storeflow_focus_seconds", Help: "Time from a focus event's receipt to its outcome, queues included.",
		Buckets: latencyBuckets,
	})
	m.predictionSecVec = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "storeflow_prediction_seconds", Help: "Time of a scorer call, in-process or remote (PREDICTION_URL).",
		Buckets: latencyBuckets,
	})
	m.predictions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "storeflow_predictions_total", Help: "Scorer calls, by outcome (ok, error).",
	}, []string{"outcome"})
	m.publishedTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "storeflow_coupons_published_total", Help: "Prediction messages (coupons) published.",
	})
	m.stageContext = m.stageSeconds.WithLabelValues("context")
	m.stageScore = m.stageSeconds.WithLabelValues("score")
	m.stagePublish = m.stageSeconds.WithLabelValues("publish")
	m.focusSeconds, m.predictionSeconds, m.published = m.focusSecondsVec, m.predictionSecVec, m.publishedTotal
	m.predictionsOK = m.predictions.WithLabelValues("ok")
	m.predictionsError = m.predictions.WithLabelValues("error")
	m.dropShutdown = m.dropped.WithLabelValues(dropShutdown)
	m.dropFocus = m.dropped.WithLabelValues(queueFocus)
	m.outcome = make(map[string]prometheus.Counter, len(outcomes))
	for _, o := range outcomes {
		m.outcome[o] = m.focusOutcome.WithLabelValues(o)
	}
	reg.MustRegister(m.accepted, m.rejected, m.dropped, m.focus, m.browsing, m.focusOutcome, m.outOfOrder, m.expired, m.evictedVec, m.prefetch, m.tracked,
		m.stageSeconds, m.focusSecondsVec, m.predictionSecVec, m.predictions, m.publishedTotal)
	// Pre-create every series so dashboards see zeros, not gaps.
	m.acceptedBy = make(map[string]prometheus.Counter, 4)
	for _, k := range []string{kindEnter, kindMove, kindExit, kindFocus} {
		m.acceptedBy[k] = m.accepted.WithLabelValues(k)
		for _, r := range event.Reasons {
			m.rejected.WithLabelValues(k, string(r))
		}
	}
	m.rejected.WithLabelValues(kindMove, string(reasonOffPlan))
	for _, o := range outcomes {
		m.focusOutcome.WithLabelValues(o)
	}
	for _, o := range []string{"ok", OutcomeUnknownCustomer, "error"} {
		m.prefetch.WithLabelValues(o)
	}
	return m
}
