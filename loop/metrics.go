package loop

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/storeflow/storeflow/event"
	"github.com/storeflow/storeflow/experiment"
)

// Where a refused payload came from, as the metric label says it.
const (
	sourceTopic = "topic" // REDEEM_TOPIC
	sourceHTTP  = "http"  // POST /redeem
	sourceOffer = "offer" // the prediction topic
)

type metrics struct {
	focus, coupons, redemptions, used *prometheus.CounterVec // by arm
	rejected                          *prometheus.CounterVec // by source, reason
	dropped                           *prometheus.CounterVec // by kind
	matched                           *prometheus.CounterVec // redemptions by outcome
	settled                           *prometheus.CounterVec // offers by outcome
	errors                            *prometheus.CounterVec // by where
	rows                              prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, l *Loop) metrics {
	byArm := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"arm"})
	}
	m := metrics{
		focus:       byArm("storeflow_experiment_focus_total", "Focus events on the focus topic, by the shopper's arm of the experiment."),
		coupons:     byArm("storeflow_experiment_coupons_total", "Coupons offered on the prediction topic, by the shopper's arm."),
		redemptions: byArm("storeflow_experiment_redemptions_total", "Valid redemptions (REDEEM_TOPIC, POST /redeem), matched to an offer or not, by the shopper's arm."),
		used: byArm("storeflow_experiment_offers_used_total",
			"Offers redeemed within REDEEM_WINDOW, by the shopper's arm (settled on this instance)."),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "storeflow_loop_rejected_total",
			Help: "Redemptions (source topic or http) and prediction messages (source offer) refused, by reason."}, []string{"source", "reason"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "storeflow_loop_dropped_total",
			Help: "Offers and redemptions dropped because the loop's queue was full, by kind."}, []string{"kind"}),
		matched: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "storeflow_loop_redemptions_total",
			Help: "Redemptions handled: matched to an open offer, or unmatched (no open offer of that coupon to that shopper; dropped)."}, []string{"outcome"}),
		settled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "storeflow_loop_offers_settled_total",
			Help: "Offers settled, one history row each: used, expired (REDEEM_WINDOW passed) or evicted (REDEEM_MAX_OPEN_OFFERS)."}, []string{"outcome"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "storeflow_loop_errors_total",
			Help: "Failures of the loop: ledger (Redis), history_file, history_redis, publish (POST /redeem to REDEEM_TOPIC)."}, []string{"where"}),
		rows: prometheus.NewCounter(prometheus.CounterOpts{Name: "storeflow_loop_history_rows_total",
			Help: "History rows settled by this instance."}),
	}
	for _, a := range experiment.Arms {
		for _, c := range []*prometheus.CounterVec{m.focus, m.coupons, m.redemptions, m.used} {
			c.WithLabelValues(string(a))
		}
	}
	for _, s := range []string{sourceTopic, sourceHTTP, sourceOffer} {
		for _, r := range event.Reasons {
			m.rejected.WithLabelValues(s, string(r))
		}
	}
	for _, k := range []string{"offer", "redemption"} {
		m.dropped.WithLabelValues(k)
	}
	for _, o := range []string{redeemMatched, redeemUnmatched} {
		m.matched.WithLabelValues(o)
	}
	for _, o := range []string{outcomeUsed, outcomeExpired, outcomeEvicted} {
		m.settled.WithLabelValues(o)
	}
	for _, w := range []string{"ledger", "history_file", "history_redis", "publish"} {
		m.errors.WithLabelValues(w)
	}
	open := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "storeflow_loop_open_offers",
		Help: "Offers waiting for their redemption (in Redis: every instance's)."}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		n, _ := l.ledger.size(ctx)
		return float64(n)
	})
	if reg != nil {
		reg.MustRegister(m.focus, m.coupons, m.redemptions, m.used, m.rejected, m.dropped, m.matched, m.settled, m.errors, m.rows, open)
	}
	return m
}
