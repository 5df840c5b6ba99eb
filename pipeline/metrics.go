package pipeline

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/storeflow/storeflow/event"
	"github.com/storeflow/storeflow/internal/metric"
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
	// queueDwellState: DWELL_STATE=redis and Redis failed the event's script
	// call (down, timeout, refused).
	queueDwellState = "dwell_state"
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
	OutcomeDuplicate       = "duplicate"        // the same focus delivered again (FOCUS_DEDUP_WINDOW), or handled by another instance: not handled twice
	OutcomeRedisError      = "redis_error"      // DWELL_STATE=redis: the focus claim, the visit ledger or the caps failed; no coupon (fail-closed)
	OutcomeHoldout         = "holdout"          // the shopper is in the experiment's holdout (HOLDOUT_FRACTION): no coupon
	OutcomeCapped          = "capped"           // COUPONS_PER_SHOPPER_PER_DAY or COUPON_DEPARTMENT_COOLDOWN reached

	// Not asked, so that a failing peer costs a fast error, not a worker
	// held until its timeout.
	OutcomeCentralUnavailable   = "central_unavailable"   // the central's circuit breaker is open
	OutcomeCentralLimited       = "central_limited"       // CENTRAL_MAX_RPS spent
	OutcomePredictorUnavailable = "predictor_unavailable" // the prediction service's circuit breaker is open
)

var outcomes = []string{OutcomePublished, OutcomeUnknownCustomer, OutcomeNoCoupons, OutcomeBelowThreshold,
	OutcomeAlreadyIssued, OutcomeContextError, OutcomeScoreError, OutcomePublishError, OutcomeDuplicate, OutcomeRedisError,
	OutcomeHoldout, OutcomeCapped, OutcomeCentralUnavailable, OutcomeCentralLimited, OutcomePredictorUnavailable}

// Operations on the state instances share (DWELL_STATE=redis), as the
// storeflow_shared_state_errors_total label.
const (
	opClaim     = "claim"           // take a focus
	opFinish    = "finish"          // confirm or release a focus claim
	opOffer     = "offer"           // pick and record a coupon in the visit ledger
	opRelease   = "release"         // take back an offer that was not delivered
	opForget    = "forget"          // end a visit on enter or exit
	opPublished = "focus_published" // mark a detected focus published in the dwell state
	opCaps      = "caps"            // look up, reserve or give back a coupon's place under the frequency caps
)

var sharedOps = []string{opClaim, opFinish, opOffer, opRelease, opForget, opPublished, opCaps}

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
	predictions       *prometheus.CounterVec   // outcome
	stageContext      prometheus.Observer
	stageScore        prometheus.Observer
	stagePublish      prometheus.Observer
	focusSeconds      prometheus.Histogram
	predictionSeconds prometheus.Histogram
	predictionsOK     prometheus.Counter
	predictionsError  prometheus.Counter
	published         prometheus.Counter
	outcome           map[string]prometheus.Counter // by outcome: read-only after newMetrics
	acceptedBy        map[string]prometheus.Counter // accepted, by kind: no label hashing per event
	dropShutdown      prometheus.Counter
	dropFocus         prometheus.Counter
	sharedErrors      *prometheus.CounterVec // op
	claimsExpired     prometheus.Counter
	dropState         prometheus.Counter
	stateTrips        prometheus.Counter
	capsEvicted       prometheus.Counter
}

// latencyBuckets span 100 µs to about 3 s: an in-process scorer answers in
// microseconds, a remote one in milliseconds, a stuck one at its timeout.
var latencyBuckets = prometheus.ExponentialBuckets(0.0001, 2, 16)

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		accepted: metric.CounterVec("storeflow_events_accepted_total",
			"Events decoded and queued, by kind.", "kind"),
		rejected: metric.CounterVec("storeflow_events_rejected_total",
			"Events refused as invalid, by kind and reason.", "kind", "reason"),
		dropped: metric.CounterVec("storeflow_events_dropped_total",
			"Valid events dropped because a queue was full (PIPELINE_OVERFLOW=drop), the pipeline was stopping or the shared dwell state (Redis) failed, by queue.", "queue"),
		focus: metric.Counter("storeflow_focus_detected_total",
			"Focus events the dwell detector published."),
		browsing: metric.Counter("storeflow_browsing_detected_total",
			"Browsing events (a shopper moving on without a focus: a staff alert) the detector published."),
		focusOutcome: metric.CounterVec("storeflow_focus_outcomes_total",
			"What became of each focus event consumed, by outcome.", "outcome"),
		outOfOrder: metric.Counter("storeflow_moves_out_of_order_total",
			"Moves older than the shopper's previous move, ignored."),
		expired: metric.Counter("storeflow_shoppers_expired_total",
			"Shoppers forgotten after SHOPPER_TTL without an event (no exit seen)."),
		prefetch: metric.CounterVec("storeflow_prefetch_total",
			"Context prefetches on entry events, by outcome.", "outcome"),
		tracked: metric.Gauge("storeflow_shoppers_tracked",
			"Shoppers the dwell detector holds state for."),
		stateTrips: metric.Counter("storeflow_dwell_state_round_trips_total",
			"Pipelines of script calls the dwell workers sent to Redis with DWELL_STATE=redis: each carries what was queued, up to 128 events."),
		evictedVec: metric.CounterVec("storeflow_shoppers_evicted_total",
			"Shoppers forgotten to make room for a new one at MAX_SHOPPERS, by reason: one_move (seen in one move only) or least_recent (an established shopper, the least recently active).", "reason"),
	}
	m.sharedErrors = metric.CounterVec("storeflow_shared_state_errors_total",
		"DWELL_STATE=redis: failed Redis calls for the focus claims, the visit ledger and the frequency caps, by operation (claim, finish, offer, release, forget, focus_published, caps).", "op")
	m.capsEvicted = metric.Counter("storeflow_caps_evicted_total",
		"DWELL_STATE=memory: shoppers whose frequency caps were forgotten to make room at MAX_SHOPPERS: their caps start afresh.")
	m.claimsExpired = metric.Counter("storeflow_focus_claims_expired_total",
		"DWELL_STATE=redis: focus events that took longer than FOCUS_CLAIM_TTL to settle: their claim had expired, so another instance may have handled them too.")
	m.evicted[evictedOneMove] = m.evictedVec.WithLabelValues("one_move")
	m.evicted[evictedLeastRecent] = m.evictedVec.WithLabelValues("least_recent")
	m.stageSeconds = latencyVec("storeflow_focus_stage_seconds",
		"Time a focus event spends in each focus stage: context, score, publish (select and publish).", "stage")
	m.focusSeconds = latency("storeflow_focus_seconds",
		"Time from a focus event's receipt to its outcome, queues included.")
	m.predictionSeconds = latency("storeflow_prediction_seconds",
		"Time of a scorer call, in-process or remote (PREDICTION_URL).")
	m.predictions = metric.CounterVec("storeflow_predictions_total",
		"Scorer calls, by outcome (ok, error).", "outcome")
	m.published = metric.Counter("storeflow_coupons_published_total",
		"Prediction messages (coupons) published.")
	m.stageContext = m.stageSeconds.WithLabelValues("context")
	m.stageScore = m.stageSeconds.WithLabelValues("score")
	m.stagePublish = m.stageSeconds.WithLabelValues("publish")
	m.predictionsOK = m.predictions.WithLabelValues("ok")
	m.predictionsError = m.predictions.WithLabelValues("error")
	m.dropShutdown = m.dropped.WithLabelValues(dropShutdown)
	m.dropFocus = m.dropped.WithLabelValues(queueFocus)
	m.dropState = m.dropped.WithLabelValues(queueDwellState)
	m.outcome = make(map[string]prometheus.Counter, len(outcomes))
	for _, o := range outcomes {
		m.outcome[o] = m.focusOutcome.WithLabelValues(o)
	}
	reg.MustRegister(m.accepted, m.rejected, m.dropped, m.focus, m.browsing, m.focusOutcome, m.outOfOrder, m.expired, m.stateTrips, m.evictedVec, m.prefetch, m.tracked,
		m.stageSeconds, m.focusSeconds, m.predictionSeconds, m.predictions, m.published, m.sharedErrors, m.claimsExpired, m.capsEvicted)
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
	for _, op := range sharedOps {
		m.sharedErrors.WithLabelValues(op)
	}
	for _, o := range []string{"ok", OutcomeUnknownCustomer, "error"} {
		m.prefetch.WithLabelValues(o)
	}
	return m
}

// latency and latencyVec share latencyBuckets across every latency histogram.

func latency(name, help string) prometheus.Histogram {
	return metric.Histogram(name, help, latencyBuckets)
}

func latencyVec(name, help string, labels ...string) *prometheus.HistogramVec {
	return metric.HistogramVec(name, help, latencyBuckets, labels...)
}
