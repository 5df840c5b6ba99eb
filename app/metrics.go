package app

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/storeflow/storeflow/broker"
	"github.com/storeflow/storeflow/internal/breaker"
	"github.com/storeflow/storeflow/recommender"
)

// registerPredictionMetrics exposes the prediction server's and client's own
// counters on /metrics, read when scraped.
func (a *App) registerPredictionMetrics() {
	counter := func(name, help string, labels prometheus.Labels, read func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(read()) })
	}
	srv := a.server
	for _, route := range []struct {
		name string
		get  func(recommender.ServerStats) recommender.RouteStats
	}{
		{"score", func(s recommender.ServerStats) recommender.RouteStats { return s.Score }},
		{"infer", func(s recommender.ServerStats) recommender.RouteStats { return s.Infer }},
		{"health", func(s recommender.ServerStats) recommender.RouteStats { return s.Health }},
		{"metadata", func(s recommender.ServerStats) recommender.RouteStats { return s.Metadata }},
	} {
		for _, oc := range []struct {
			name string
			get  func(recommender.RouteStats) uint64
		}{
			{"ok", func(r recommender.RouteStats) uint64 { return r.OK }},
			{"bad_request", func(r recommender.RouteStats) uint64 { return r.BadRequest }},
			{"not_found", func(r recommender.RouteStats) uint64 { return r.NotFound }},
			{"too_large", func(r recommender.RouteStats) uint64 { return r.TooLarge }},
			{"unavailable", func(r recommender.RouteStats) uint64 { return r.Unavailable }},
			{"failed", func(r recommender.RouteStats) uint64 { return r.Failed }},
		} {
			a.reg.MustRegister(counter("storeflow_prediction_server_requests_total",
				"Requests to the prediction server (/score and the Open Inference Protocol) by route and outcome.",
				prometheus.Labels{"route": route.name, "outcome": oc.name},
				func() uint64 { return oc.get(route.get(srv.Stats())) }))
		}
	}
	a.reg.MustRegister(counter("storeflow_prediction_server_rows_total", "Feature rows the prediction server scored.",
		nil, func() uint64 { return srv.Stats().Rows }))

	if a.client == nil {
		return
	}
	c := a.client
	for _, oc := range []struct {
		name string
		get  func(recommender.ClientStats) uint64
	}{
		{"ok", func(s recommender.ClientStats) uint64 { return s.OK }},
		{"timeout", func(s recommender.ClientStats) uint64 { return s.Timeouts }},
		{"canceled", func(s recommender.ClientStats) uint64 { return s.Canceled }},
		{"http_4xx", func(s recommender.ClientStats) uint64 { return s.HTTP4xx }},
		{"http_5xx", func(s recommender.ClientStats) uint64 { return s.HTTP5xx }},
		{"transport", func(s recommender.ClientStats) uint64 { return s.Transport }},
		{"bad_response", func(s recommender.ClientStats) uint64 { return s.BadResponse }},
		{"invalid", func(s recommender.ClientStats) uint64 { return s.Invalid }},
		{"breaker_open", func(s recommender.ClientStats) uint64 { return s.BreakerOpen }},
	} {
		a.reg.MustRegister(counter("storeflow_prediction_client_calls_total",
			"Calls to the remote prediction service (PREDICTION_URL) by outcome.",
			prometheus.Labels{"outcome": oc.name}, func() uint64 { return oc.get(c.Stats()) }))
	}
	a.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "storeflow_prediction_client_in_flight",
		Help: "Calls to the remote prediction service in flight now."}, func() float64 { return float64(c.Stats().InFlight) }))
	a.registerBreakerMetrics("prediction", c.BreakerState, func() uint64 { return c.Stats().BreakerOpened })
}

// registerBreakerMetrics exposes a peer's circuit breaker: its state and how
// often it opened.
func (a *App) registerBreakerMetrics(peer string, state func() breaker.State, opened func() uint64) {
	labels := prometheus.Labels{"peer": peer}
	a.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "storeflow_breaker_state", ConstLabels: labels,
		Help: "A remote peer's circuit breaker: 0 closed (calls go through), 1 open (calls refused), 2 half-open (one probe out)."},
		func() float64 { return float64(state()) }))
	a.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "storeflow_breaker_opened_total", ConstLabels: labels,
		Help: "Times a remote peer's circuit breaker opened."}, func() float64 { return float64(opened()) }))
}

// registerBrokerMetrics exposes the external broker connection's counters.
func (a *App) registerBrokerMetrics(c *broker.Client) {
	a.countersByLabel("storeflow_mqtt_client_events_total",
		"The external broker connection: connects, connections lost, publishes, failed publishes, publishes queued and dropped while disconnected.",
		"event", map[string]func() uint64{
			"connect":         func() uint64 { return c.Stats().Connects },
			"connection_lost": func() uint64 { return c.Stats().ConnectionLost },
			"published":       func() uint64 { return c.Stats().Published },
			"publish_error":   func() uint64 { return c.Stats().PublishErrors },
			"offline_queued":  func() uint64 { return c.Stats().OfflineQueued },
			"offline_dropped": func() uint64 { return c.Stats().OfflineDropped },
		})
	a.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "storeflow_mqtt_client_offline_pending",
		Help: "Publishes waiting in the offline queue for the external broker to come back."},
		func() float64 { return float64(c.Stats().OfflinePending) }))
}
