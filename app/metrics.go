package app

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/storeflow/storeflow/broker"
)

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
