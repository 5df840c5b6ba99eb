package protocol

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync/atomic"
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
	// ModelReady is the URL that answers 200 when the model is ready to
	// take requests, below the service's base URL; nil when the protocol
	// has none.
	ModelReady func(base *url.URL, model string) *url.URL
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
	model    string // PREDICTION_MODEL
	modelURL string // what WatchModel asks; "" when the protocol has no such route
	modelErr atomic.Pointer[error]
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
	var modelURL string
	if codec.ModelReady != nil {
		modelURL = codec.ModelReady(u, cfg.Model).String()
	}
	u = codec.Endpoint(u, cfg.Model)
	br := breaker.New(cfg.BreakerFailures, cfg.BreakerCooldown)
	br.Register(m.reg, "prediction")
	return &Client{
		codec:    codec,
		endpoint: u.String(),
		readyURL: ready.String(),
		model:    cfg.Model,
		modelURL: modelURL,
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
	r := c.get(ctx, c.readyURL)
	switch {
	case r.Status == 0: // no answer
		return fmt.Errorf("%s %s: %w", c.codec.Name, c.shown, r.Err)
	case !c.codec.Ready(r.Status):
		return fmt.Errorf("GET %s: %d %s", redact.URL(c.readyURL), r.Status, http.StatusText(r.Status))
	}
	return nil
}

// get asks url for a readiness answer, passing the body over.
func (c *Client) get(ctx context.Context, url string) peerhttp.Response {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return peerhttp.Response{Err: errors.New("cannot build the request")}
	}
	req.Header = c.header.Clone()
	req.Header.Del("Content-Type")
	if c.host != "" {
		req.Host = c.host
	}
	return c.http.Call(req, maxReadyBytes)
}

// ModelErr is nil while the model (PREDICTION_MODEL) was ready when
// WatchModel last asked, else why it was not; always nil for a protocol
// without a model readiness route.
func (c *Client) ModelErr() error {
	if c.modelURL == "" {
		return nil
	}
	if err := c.modelErr.Load(); err != nil {
		return *err
	}
	return fmt.Errorf("model %q (PREDICTION_MODEL): readiness not checked yet", c.model)
}

// WatchModel keeps ModelErr current: it asks GET {URL}/v2/models/{name}/ready
// at once and then every interval, each time within timeout, until ctx
// ends; it logs when the answer turns. A model the server does not have
// fails every call with 404 while the server itself is ready, so /readyz
// must see it; asking here rather than on every probe keeps a probe cheap
// and the server's load independent of how often it is probed. It returns
// nil at once for a protocol without such a route.
func (c *Client) WatchModel(ctx context.Context, every, timeout time.Duration, log *slog.Logger) error {
	if c.modelURL == "" {
		return nil
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	wasReady, first := false, true
	for {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		err := c.checkModel(cctx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		c.modelErr.Store(&err)
		switch {
		case err != nil && (wasReady || first):
			log.Warn("prediction model not ready", "model", c.model, "reason", err.Error())
		case err == nil && !wasReady:
			log.Info("prediction model ready", "model", c.model)
		}
		wasReady, first = err == nil, false
		select {
		case <-tick.C:
		case <-ctx.Done():
			return nil
		}
	}
}

// checkModel asks once whether the model is ready.
func (c *Client) checkModel(ctx context.Context) error {
	r := c.get(ctx, c.modelURL)
	switch {
	case r.Status == 0: // no answer
		return fmt.Errorf("model %q (PREDICTION_MODEL): %s %s: %w", c.model, c.codec.Name, redact.URL(c.modelURL), r.Err)
	case r.Status == http.StatusNotFound:
		return fmt.Errorf("model %q (PREDICTION_MODEL) is not on the server: GET %s: 404 Not Found", c.model, redact.URL(c.modelURL))
	case r.Status != http.StatusOK:
		return fmt.Errorf("model %q (PREDICTION_MODEL) is not ready: GET %s: %d %s", c.model, redact.URL(c.modelURL), r.Status, http.StatusText(r.Status))
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
