package broker

import (
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/system"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/storeflow/storeflow/internal/metric"
)

// Why a message for an outside subscriber was never written to it. Every
// message the embedded broker routes to an outside subscriber is either
// written (storeflow_broker_delivered_total) or counted under one of these.
const (
	dropClientQueue    = "client_queue_full"  // the connected client reads too slowly: its BROKER_CLIENT_QUEUE is full
	dropSessionQueue   = "session_queue_full" // an offline session held BROKER_SESSION_QUEUE messages: the oldest went
	dropSessionEnded   = "session_ended"      // a clean session ended (or was replaced) with messages not yet written
	dropSessionExpired = "session_expired"    // an offline session passed BROKER_SESSION_EXPIRY with messages not yet written
	dropInflightFull   = "inflight_full"      // the client left too many QoS 1/2 messages unacknowledged (or no packet id was free)
)

// Why a connection was refused, closed before its CONNECT was accepted.
const (
	refuseCredentials = "bad_credentials"
	refuseAnonymous   = "anonymous"
	refuseNoCert      = "no_certificate"
	refuseRateLimited = "rate_limited"     // too many failed logins from this address lately
	refuseAuthBusy    = "auth_busy"        // the password checks are all busy and their queue is full
	refuseWill        = "will_not_allowed" // the Last Will's topic is not the user's to write (or to retain)
	refuseClientID    = "client_id_in_use" // the client id belongs to another user's session, or to storeflow
	refuseTooMany     = "too_many_connections"
	refuseTimeout     = "connect_timeout" // no complete CONNECT within BROKER_CONNECT_TIMEOUT
	refuseTooLarge    = "packet_too_large"
	refuseProtocol    = "protocol_error"
)

// What a client was denied after it connected.
const (
	denyPublish   = "publish"   // no write right on the topic
	denySubscribe = "subscribe" // no read right on the filter
	denyRetain    = "retain"    // retaining on a storeflow topic needs an acl retain line
	denyRetainCap = "retain_limit"
	denyTooLarge  = "too_large" // a packet over BROKER_MAX_PACKET_SIZE: the connection is closed
	denyWill      = "will"      // a will that fired after its client lost the right to publish it
)

// metrics are the embedded broker's counters. No label carries a client id
// or a user name.
type metrics struct {
	delivered  prometheus.Counter
	dropped    *prometheus.CounterVec // reason
	refused    *prometheus.CounterVec // reason
	denied     *prometheus.CounterVec // action
	authChecks *prometheus.CounterVec // outcome: ok, failed
	conns      prometheus.Gauge       // open connections, CONNECT or not
	fastTopics prometheus.Gauge       // topics on the fast path
}

func newMetrics(reg prometheus.Registerer, srv *mqtt.Server) *metrics {
	m := &metrics{
		delivered: metric.Counter("storeflow_broker_delivered_total",
			"Messages the embedded broker wrote to outside subscribers (a retransmission is not counted again)."),
		dropped: metric.CounterVec("storeflow_broker_dropped_total",
			"Messages for outside subscribers that the embedded broker never wrote, by reason.", "reason"),
		refused: metric.CounterVec("storeflow_broker_connections_refused_total",
			"Client connections the embedded broker refused or closed before accepting their CONNECT, by reason.", "reason"),
		denied: metric.CounterVec("storeflow_broker_denied_total",
			"Publishes, subscriptions and retained messages of connected clients that were refused, by action.", "action"),
		authChecks: metric.CounterVec("storeflow_broker_password_checks_total",
			"Password hashes the embedded broker computed (the costly part of a login), by outcome.", "outcome"),
		conns: metric.Gauge("storeflow_broker_connections",
			"Open client connections to the embedded broker, including those that have not sent CONNECT yet."),
		fastTopics: metric.Gauge("storeflow_broker_fast_topics",
			"Topics whose messages skip the embedded broker's topic index: storeflow's own exact subscriptions, no outside subscriber on them."),
	}
	for _, r := range []string{dropClientQueue, dropSessionQueue, dropSessionEnded, dropSessionExpired} {
		m.dropped.WithLabelValues(r)
	}
	for _, r := range []string{refuseCredentials, refuseAnonymous, refuseNoCert, refuseRateLimited, refuseAuthBusy,
		refuseWill, refuseClientID, refuseTooMany, refuseTimeout, refuseTooLarge, refuseProtocol} {
		m.refused.WithLabelValues(r)
	}
	for _, a := range []string{denyPublish, denySubscribe, denyRetain, denyRetainCap, denyTooLarge, denyWill} {
		m.denied.WithLabelValues(a)
	}
	m.authChecks.WithLabelValues("ok")
	m.authChecks.WithLabelValues("failed")
	info := srv.Info // mochi's own counters and sizes are read, not copied
	reg.MustRegister(m.delivered, droppedCollector{m.dropped, info}, m.refused, m.denied, m.authChecks, m.conns, m.fastTopics,
		metric.GaugeFunc("storeflow_broker_sessions",
			"Client sessions the embedded broker holds, connected or offline.",
			func() float64 { return float64(max(srv.Clients.Len()-1, 0)) }), // not the inline client
		metric.GaugeFunc("storeflow_broker_retained",
			"Retained messages the embedded broker holds, $SYS included.",
			func() float64 { return float64(srv.Topics.Retained.Len()) }),
	)
	return m
}

// droppedCollector is the dropped counter with mochi's own count of messages
// it refused at its in-flight limit (reason inflight_full) added: mochi has
// no hook there, but counts it.
type droppedCollector struct {
	vec  *prometheus.CounterVec
	info *system.Info
}

var droppedDesc = prometheus.NewDesc("storeflow_broker_dropped_total",
	"Messages for outside subscribers that the embedded broker never wrote, by reason.", []string{"reason"}, nil)

func (c droppedCollector) Describe(ch chan<- *prometheus.Desc) { c.vec.Describe(ch) }

func (c droppedCollector) Collect(ch chan<- prometheus.Metric) {
	c.vec.Collect(ch)
	ch <- prometheus.MustNewConstMetric(droppedDesc, prometheus.CounterValue,
		float64(atomic.LoadInt64(&c.info.InflightDropped)), dropInflightFull)
}
