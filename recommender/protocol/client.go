package protocol

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/storeflow/storeflow/internal/breaker"
	"github.com/storeflow/storeflow/internal/peerhttp"
	"github.com/storeflow/storeflow/internal/redact"
	"github.com/storeflow/storeflow/recommender"
	"github.com/storeflow/storeflow/store"
)

// Limits of the client.
const (
	maxResponseBytes = 4 << 20 // a response body; larger is a bad response
	maxReadyBytes    = 200     // of a readiness answer, read and passed over
)

// Invalid is the outcome of a call that sent nothing: a feature is not
// finite, out is too short. The other outcomes are peerhttp's.
const Invalid peerhttp.Outcome = "invalid"

// BreakerOpen is the outcome of a call the circuit breaker refused: nothing
// was sent.
const BreakerOpen peerhttp.Outcome = "breaker_open"

// clientOutcomes are the outcome label's values, in the README's order.
var clientOutcomes = []peerhttp.Outcome{peerhttp.OK, peerhttp.Timeout, peerhttp.Canceled, peerhttp.HTTP4xx,
	peerhttp.HTTP5xx, peerhttp.Transport, peerhttp.BadResponse, Invalid, BreakerOpen}

// ClientMetrics are the prediction client's metrics.
type ClientMetrics struct {
	// Calls counts Score calls with at least one coupon by outcome: every
	// call that sent, or tried to send, a request ends in exactly one.
	Calls    *prometheus.CounterVec
	InFlight prometheus.Gauge // calls holding a slot now

	reg prometheus.Registerer // for the circuit breaker's metrics
}

// NewClientMetrics registers the prediction client's metrics with reg, every
// outcome from zero.
func NewClientMetrics(reg prometheus.Registerer) *ClientMetrics {
	m := &ClientMetrics{
		Calls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "storeflow_prediction_client_calls_total",
			Help: "Calls to the remote prediction service (PREDICTION_URL) by outcome."}, []string{"outcome"}),
		InFlight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "storeflow_prediction_client_in_flight",
			Help: "Calls to the remote prediction service in flight now."}),
		reg: reg,
	}
	for _, o := range clientOutcomes {
		m.Calls.WithLabelValues(string(o))
	}
	reg.MustRegister(m.Calls, m.InFlight)
	return m
}

// Codec is one protocol's side of a call: where it goes, the request it
// sends and how it reads the answer.
type Codec struct {
	// Name is the protocol as PREDICTION_PROTOCOL names it; errors show it.
	Name string
	// Endpoint is the URL calls go to, below the service's base URL.
	Endpoint func(base *url.URL, model string) *url.URL
	// Encode writes the request of one call; an error is an input the
	// protocol cannot carry.
	Encode func(c *store.Customer, coupons []store.Coupon) ([]byte, error)
	// Decode takes the probabilities of coupons out of a 2xx answer into out.
	Decode func(body []byte, coupons []store.Coupon, out []float64) error
	// Ready tells whether the status of GET {URL}/v2/health/ready means the
	// service can take requests.
	Ready func(status int) bool
}

// Client is a recommender.Scorer that asks a prediction service over HTTP
// with one protocol (Codec).
//
// Score makes one request per call and never retries: a failed call is one
// focus without a coupon, which the caller counts and moves past, while a
// retry would hold a worker beyond PREDICTION_TIMEOUT. It is safe for
// concurrent use; at most PREDICTION_MAX_INFLIGHT calls are in flight, the
// rest wait for a slot within their own deadline. A circuit breaker
// (PREDICTION_BREAKER_FAILURES, PREDICTION_BREAKER_COOLDOWN) stops calling a
// service that keeps failing: Score then fails at once with an error that
// wraps breaker.ErrOpen.
type Client struct {
	codec    Codec
	endpoint string // the URL requests go to
	readyURL string // what Ready asks
	shown    string // the endpoint as errors show it (redact.URL)
	header   http.Header
	host     string // a Host from PREDICTION_HEADERS, for ingress routing
	timeout  time.Duration
	http     *peerhttp.Client
	slots    chan struct{}
	breaker  *breaker.Breaker
	m        *ClientMetrics
}

// NewClient builds the client of the service at cfg.URL, speaking codec's
// protocol, counting into m; it makes no request. It refuses a config
// ValidateClient refuses, and one without a URL.
func NewClient(cfg recommender.Config, codec Codec, m *ClientMetrics) (*Client, error) {
	if cfg.URL == "" {
		return nil, errors.New("PREDICTION_URL: not set: no prediction service to ask")
	}
	if err := cfg.ValidateClient(); err != nil {
		return nil, err
	}
	u, _ := url.Parse(cfg.URL)                         // ValidateClient parsed it
	header, _ := recommender.ParseHeaders(cfg.Headers) // and these
	host := header.Get("Host")
	header.Del("Host") // net/http sends Request.Host, never a Host header
	header.Set("Content-Type", "application/json")
	header.Set("Accept", "application/json")

	// Ready asks the V2 readiness route; a /score service has no standard
	// one, so the same route only shows that an HTTP server answers there.
	ready := u.JoinPath("v2", "health", "ready")
	u = codec.Endpoint(u, cfg.Model)
	br := breaker.New(cfg.BreakerFailures, cfg.BreakerCooldown)
	br.Register(m.reg, "prediction")
	return &Client{
		codec:    codec,
		endpoint: u.String(),
		readyURL: ready.String(),
		shown:    redact.URL(u.String()),
		header:   header,
		host:     host,
		timeout:  cfg.Timeout,
		http:     peerhttp.New(cfg.MaxInFlight, cfg.MaxInFlight),
		slots:    make(chan struct{}, cfg.MaxInFlight),
		breaker:  br,
		m:        m,
	}, nil
}

// Close closes idle connections. The client stays usable; it is safe to
// call more than once.
func (c *Client) Close() {
	c.http.CloseIdleConnections()
}

// Ready reports whether the prediction service can take requests, for a
// readiness probe: GET {URL}/v2/health/ready must answer a status the
// protocol takes for ready (Codec.Ready). It is not counted, and errors
// carry no header value.
func (c *Client) Ready(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.readyURL, nil)
	if err != nil {
		return fmt.Errorf("%s %s: cannot build the request", c.codec.Name, c.shown)
	}
	req.Header = c.header.Clone()
	req.Header.Del("Content-Type")
	if c.host != "" {
		req.Host = c.host
	}
	r := c.http.Call(req, maxReadyBytes)
	switch {
	case r.Status == 0: // no answer
		return fmt.Errorf("%s %s: %w", c.codec.Name, c.shown, r.Err)
	case !c.codec.Ready(r.Status):
		return fmt.Errorf("GET %s: %d %s", redact.URL(c.readyURL), r.Status, http.StatusText(r.Status))
	}
	return nil
}

// Score implements recommender.Scorer: one request for all of coupons,
// out[i] receives coupon i's probability. Every error wraps
// recommender.ErrScore and carries no header value.
func (c *Client) Score(ctx context.Context, cust *store.Customer, coupons []store.Coupon, out []float64) error {
	if len(coupons) == 0 {
		return nil
	}
	if len(out) < len(coupons) {
		return c.fail(Invalid, fmt.Errorf("out holds %d values for %d coupons", len(out), len(coupons)))
	}
	body, err := c.codec.Encode(cust, coupons)
	if err != nil {
		return c.fail(Invalid, err)
	}

	probe, err := c.breaker.Allow()
	if err != nil {
		return c.fail(BreakerOpen, err)
	}
	r := c.call(ctx, body)
	c.breaker.Record(probe, breaker.ResultOf(r.Status, r.Err), r.Err)
	if r.Outcome != peerhttp.OK {
		return c.fail(r.Outcome, r.Err)
	}
	if err := c.codec.Decode(r.Body, coupons, out); err != nil {
		return c.fail(peerhttp.BadResponse, err)
	}
	c.m.Calls.WithLabelValues(string(peerhttp.OK)).Inc()
	return nil
}

// BreakerErr is nil while the circuit breaker is closed, else why it is
// not: the service failed PREDICTION_BREAKER_FAILURES calls in a row and is
// not called, or the probe is out.
func (c *Client) BreakerErr() error { return c.breaker.Err() }

// call waits for a slot and posts body within PREDICTION_TIMEOUT.
func (c *Client) call(ctx context.Context, body []byte) peerhttp.Response {
	ctx, cancel := peerhttp.WithTimeout(ctx, c.timeout)
	defer cancel()
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return peerhttp.Ended(ctx, "waiting for a free slot")
	}
	c.m.InFlight.Inc()
	defer func() {
		c.m.InFlight.Dec()
		<-c.slots
	}()

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, bytes.NewReader(body))
	if err != nil {
		return peerhttp.Response{Outcome: Invalid, Err: errors.New("cannot build the request")}
	}
	req.Header = c.header.Clone() // the transport may add to it; c.header is shared
	if c.host != "" {
		req.Host = c.host
	}
	return c.http.Call(req, maxResponseBytes)
}

// fail counts a failed call by outcome and wraps what happened:
// "recommender: scoring failed: v2 http://host/v2/models/coupon/infer:
// <err>". err is wrapped so callers can test for what it wraps.
func (c *Client) fail(o peerhttp.Outcome, err error) error {
	c.m.Calls.WithLabelValues(string(o)).Inc()
	return fmt.Errorf("%w: %s %s: %w", recommender.ErrScore, c.codec.Name, c.shown, err)
}
