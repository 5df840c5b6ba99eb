package recommender

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/storeflow/storeflow/internal/breaker"
	"github.com/storeflow/storeflow/internal/peerhttp"
	"github.com/storeflow/storeflow/store"
)

// Limits of the client.
const (
	maxResponseBytes = 4 << 20 // a response body; larger is a bad response
	maxErrorBody     = 200     // bytes of an error response quoted in the error
)

// Client is a Scorer that asks a prediction service over HTTP, with the
// original API (POST /score) or the Open Inference Protocol (POST
// /v2/models/{model}/infer, as KServe, MLServer, Triton, Seldon Core v2 and
// OpenVINO Model Server speak it).
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
	protocol  string
	endpoint  string // the URL requests go to
	readyURL  string // what Ready asks
	shown     string // the endpoint as errors show it: no user info, no query
	header    http.Header
	host      string // a Host from PREDICTION_HEADERS, for ingress routing
	timeout   time.Duration
	transport *http.Transport
	http      *http.Client
	slots     chan struct{}
	breaker   *breaker.Breaker
	stats     clientCounters
}

// NewClient checks the client's settings in cfg (URL, Protocol, Model,
// Timeout, Headers, MaxInFlight) and builds the client; it makes no request.
func NewClient(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// The URL may carry a password: it is not echoed.
		return nil, errors.New("PREDICTION_URL: want an http:// or https:// URL with a host")
	}
	switch {
	case cfg.Protocol != ProtocolScore && cfg.Protocol != ProtocolV2:
		return nil, fmt.Errorf("PREDICTION_PROTOCOL=%q: must be %q or %q", cfg.Protocol, ProtocolScore, ProtocolV2)
	case cfg.Protocol == ProtocolV2 && (cfg.Model == "" || strings.ContainsAny(cfg.Model, "/?#% ")):
		return nil, fmt.Errorf("PREDICTION_MODEL=%q: want a model name without /, ?, #, %% or spaces", cfg.Model)
	case cfg.Timeout <= 0:
		return nil, fmt.Errorf("PREDICTION_TIMEOUT=%s: must be positive", cfg.Timeout)
	case cfg.MaxInFlight < 1 || cfg.MaxInFlight > 10000:
		return nil, fmt.Errorf("PREDICTION_MAX_INFLIGHT=%d: must be between 1 and 10000", cfg.MaxInFlight)
	}
	if err := cfg.validateBreaker(); err != nil {
		return nil, err
	}
	header, err := ParseHeaders(cfg.Headers)
	if err != nil {
		return nil, fmt.Errorf("PREDICTION_HEADERS: %w", err) // the value may hold a token: not echoed
	}
	host := header.Get("Host")
	header.Del("Host") // net/http sends Request.Host, never a Host header
	header.Set("Content-Type", "application/json")
	header.Set("Accept", "application/json")

	// Ready asks the V2 readiness route; a /score service has no standard
	// one, so the same route only shows that an HTTP server answers there.
	ready := u.JoinPath("v2", "health", "ready")
	if cfg.Protocol == ProtocolV2 {
		u = u.JoinPath("v2", "models", cfg.Model, "infer")
	} else {
		u = u.JoinPath("score")
	}
	shown := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}

	httpClient, transport := peerhttp.New(cfg.MaxInFlight, cfg.MaxInFlight)
	return &Client{
		protocol:  cfg.Protocol,
		endpoint:  u.String(),
		readyURL:  ready.String(),
		shown:     shown.String(),
		header:    header,
		host:      host,
		timeout:   cfg.Timeout,
		transport: transport,
		http:      httpClient,
		slots:     make(chan struct{}, cfg.MaxInFlight),
		breaker:   breaker.New(cfg.BreakerFailures, cfg.BreakerCooldown),
	}, nil
}

// Close closes idle connections. The client stays usable; it is safe to
// call more than once.
func (c *Client) Close() {
	c.transport.CloseIdleConnections()
}

// Ready reports whether the prediction service can take requests, for a
// readiness probe: with protocol v2, GET {URL}/v2/health/ready must answer
// 200; with score, any HTTP answer below 500 will do (the service is up).
// It is not counted in Stats, and errors carry no header value.
func (c *Client) Ready(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.readyURL, nil)
	if err != nil {
		return fmt.Errorf("%s %s: cannot build the request", c.protocol, c.shown)
	}
	req.Header = c.header.Clone()
	req.Header.Del("Content-Type")
	if c.host != "" {
		req.Host = c.host
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL, query included
		}
		return fmt.Errorf("%s %s: %w", c.protocol, c.shown, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
	resp.Body.Close()
	shown := url.URL{Scheme: req.URL.Scheme, Host: req.URL.Host, Path: req.URL.Path}
	status := fmt.Sprintf("%d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	switch {
	case c.protocol == ProtocolV2 && resp.StatusCode != http.StatusOK:
		return fmt.Errorf("GET %s: %s", shown.String(), status)
	case resp.StatusCode >= 500:
		return fmt.Errorf("GET %s: %s", shown.String(), status)
	}
	return nil
}

// ClientStats counts the client's calls since it was made. Every call that
// sent, or tried to send, a request ends in OK or in exactly one error kind.
type ClientStats struct {
	Calls       uint64 // Score calls with at least one coupon
	OK          uint64 //
	Timeouts    uint64 // PREDICTION_TIMEOUT or the caller's deadline passed
	Canceled    uint64 // the caller's context was cancelled
	HTTP4xx     uint64 // the service refused the request
	HTTP5xx     uint64 // the service failed
	Transport   uint64 // no answer: connection refused, reset, TLS failure
	BadResponse uint64 // an answer that cannot be used: not JSON, wrong rows, out of range, 1xx/3xx
	Invalid     uint64 // nothing sent: a feature is not finite, out is too short
	BreakerOpen uint64 // nothing sent: the circuit breaker is open
	InFlight    int64  // calls holding a slot now

	BreakerOpened uint64 // times the circuit breaker opened
}

// Errors is the number of failed calls.
func (s ClientStats) Errors() uint64 {
	return s.Timeouts + s.Canceled + s.HTTP4xx + s.HTTP5xx + s.Transport + s.BadResponse + s.Invalid + s.BreakerOpen
}

// Stats returns the counts so far.
func (c *Client) Stats() ClientStats {
	s := &c.stats
	return ClientStats{
		Calls: s.calls.Load(), OK: s.ok.Load(), Timeouts: s.timeouts.Load(), Canceled: s.canceled.Load(),
		HTTP4xx: s.http4xx.Load(), HTTP5xx: s.http5xx.Load(), Transport: s.transport.Load(),
		BadResponse: s.badResponse.Load(), Invalid: s.invalid.Load(), BreakerOpen: c.breaker.Refused(),
		InFlight: s.inFlight.Load(), BreakerOpened: c.breaker.Opened(),
	}
}

// BreakerErr is nil while the circuit breaker is closed, else why it is
// not: the service failed PREDICTION_BREAKER_FAILURES calls in a row and is
// not called, or the probe is out.
func (c *Client) BreakerErr() error { return c.breaker.Err() }

// BreakerState is the circuit breaker's state.
func (c *Client) BreakerState() breaker.State { return c.breaker.State() }

type clientCounters struct {
	calls, ok, timeouts, canceled, http4xx, http5xx, transport, badResponse, invalid atomic.Uint64
	inFlight                                                                         atomic.Int64
}

// errTimeout marks the client's own deadline, to tell it from the caller's.
var errTimeout = errors.New("prediction timeout")

// Score implements Scorer: one request for all of coupons, out[i] receives
// coupon i's probability. Every error wraps ErrScore and carries no header
// value.
func (c *Client) Score(ctx context.Context, cust *store.Customer, coupons []store.Coupon, out []float64) error {
	if len(coupons) == 0 {
		return nil
	}
	c.stats.calls.Add(1)
	if len(out) < len(coupons) {
		return c.fail(&c.stats.invalid, fmt.Sprintf("out holds %d values for %d coupons", len(out), len(coupons)), nil)
	}
	var body []byte
	var err error
	if c.protocol == ProtocolV2 {
		body, err = inferBody(cust, coupons)
	} else {
		body, err = scoreBody(cust, coupons)
	}
	if err != nil {
		return c.fail(&c.stats.invalid, "", err)
	}

	probe, err := c.breaker.Allow()
	if err != nil {
		return fmt.Errorf("%w: %s %s: %w", ErrScore, c.protocol, c.shown, err)
	}
	reply, status, err := c.call(ctx, body)
	c.breaker.Record(probe, breaker.ResultOf(status, err), err)
	if err != nil {
		return err
	}
	if c.protocol == ProtocolV2 {
		err = parseInferReply(reply, len(coupons), out)
	} else {
		err = parseScoreReply(reply, coupons, out)
	}
	if err != nil {
		return c.fail(&c.stats.badResponse, "", err)
	}
	c.stats.ok.Add(1)
	return nil
}

// call waits for a slot and posts body within PREDICTION_TIMEOUT.
func (c *Client) call(ctx context.Context, body []byte) ([]byte, int, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, c.timeout, errTimeout)
	defer cancel()
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, 0, c.failCtx(ctx, "waiting for a free slot")
	}
	c.stats.inFlight.Add(1)
	defer func() {
		c.stats.inFlight.Add(-1)
		<-c.slots
	}()
	return c.post(ctx, body)
}

// post sends body and returns the 2xx response body and the status (0:
// none); its errors are counted and wrapped already.
func (c *Client) post(ctx context.Context, body []byte) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, 0, c.fail(&c.stats.invalid, "cannot build the request", nil)
	}
	req.Header = c.header.Clone() // the transport may add to it; c.header is shared
	if c.host != "" {
		req.Host = c.host
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, 0, c.failCtx(ctx, "")
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL, query included
		}
		return nil, 0, c.fail(&c.stats.transport, "", err)
	}
	defer resp.Body.Close()
	reply, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		if ctx.Err() != nil {
			return nil, 0, c.failCtx(ctx, "reading the response")
		}
		return nil, 0, c.fail(&c.stats.transport, "reading the response", err)
	}
	status := fmt.Sprintf("%d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	switch {
	case resp.StatusCode >= 500:
		return nil, resp.StatusCode, c.fail(&c.stats.http5xx, status+": "+snippet(reply), nil)
	case resp.StatusCode >= 400:
		return nil, resp.StatusCode, c.fail(&c.stats.http4xx, status+": "+snippet(reply), nil)
	case resp.StatusCode < 200 || resp.StatusCode >= 300:
		return nil, resp.StatusCode, c.fail(&c.stats.badResponse, "unexpected "+status, nil)
	case len(reply) > maxResponseBytes:
		return nil, resp.StatusCode, c.fail(&c.stats.badResponse, fmt.Sprintf("response body over %d bytes", maxResponseBytes), nil)
	}
	return reply, resp.StatusCode, nil
}

// fail counts an error of one kind and wraps it with what happened:
// "recommender: scoring failed: v2 http://host/v2/models/coupon/infer:
// <what>: <cause>"; either may be empty. cause is wrapped so callers can
// test for it.
func (c *Client) fail(kind *atomic.Uint64, what string, cause error) error {
	kind.Add(1)
	prefix := fmt.Sprintf("%s %s", c.protocol, c.shown)
	switch {
	case cause == nil:
		return fmt.Errorf("%w: %s: %s", ErrScore, prefix, what)
	case what == "":
		return fmt.Errorf("%w: %s: %w", ErrScore, prefix, cause)
	}
	return fmt.Errorf("%w: %s: %s: %w", ErrScore, prefix, what, cause)
}

// failCtx reports a call ended by its context: the client's timeout, the
// caller's deadline or the caller's cancellation.
func (c *Client) failCtx(ctx context.Context, while string) error {
	if while != "" {
		while = " " + while
	}
	cause := context.Cause(ctx)
	switch {
	case errors.Is(cause, errTimeout):
		c.stats.timeouts.Add(1)
		return fmt.Errorf("%w: %s %s: timed out after %s%s: %w", ErrScore, c.protocol, c.shown, c.timeout, while, context.DeadlineExceeded)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		c.stats.timeouts.Add(1)
		return fmt.Errorf("%w: %s %s: the caller's deadline passed%s: %w", ErrScore, c.protocol, c.shown, while, context.DeadlineExceeded)
	}
	c.stats.canceled.Add(1)
	return fmt.Errorf("%w: %s %s: canceled%s: %w", ErrScore, c.protocol, c.shown, while, context.Canceled)
}

// snippet is the start of an error response, on one printable line.
func snippet(b []byte) string {
	if len(b) > maxErrorBody {
		b = b[:maxErrorBody]
	}
	s := strings.ToValidUTF8(string(b), "?")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if s = strings.TrimSpace(s); s == "" {
		return "(empty body)"
	}
	return s
}

// The /score request as the original service takes it. customer_id goes as
// a string, whatever it looks like.
type scoreRequestBody struct {
	Customer scoreCustomer `json:"customer"`
	Coupons  []scoreCoupon `json:"coupons"`
}

type scoreCustomer struct {
	CustomerID                      string  `json:"customer_id"`
	Gender                          string  `json:"gender"`
	Age                             int     `json:"age"`
	MeanBuyPrice                    float64 `json:"mean_buy_price"`
	TotalCouponsUsed                int     `json:"total_coupons_used"`
	MeanDiscountReceived            float64 `json:"mean_discount_received"`
	UniqueProductsBought            int     `json:"unique_products_bought"`
	UniqueProductsBoughtWithCoupons int     `json:"unique_products_bought_with_coupons"`
	TotalItemsBought                int     `json:"total_items_bought"`
}

type scoreCoupon struct {
	CouponID          int     `json:"coupon_id"`
	CouponType        string  `json:"coupon_type"`
	Department        string  `json:"department"`
	Discount          int     `json:"discount"`
	HowMany           int     `json:"how_many_products_required"`
	ProductMeanPrice  float64 `json:"product_mean_price"`
	ProductsAvailable int     `json:"products_available"`
}

func scoreBody(c *store.Customer, coupons []store.Coupon) ([]byte, error) {
	req := scoreRequestBody{
		Customer: scoreCustomer{
			CustomerID: c.ID, Gender: c.Gender, Age: c.Age, MeanBuyPrice: c.MeanBuyPrice,
			TotalCouponsUsed: c.TotalCouponsUsed, MeanDiscountReceived: c.MeanDiscountReceived,
			UniqueProductsBought: c.UniqueProductsBought, UniqueProductsBoughtWithCoupons: c.UniqueProductsBoughtWithCoupons,
			TotalItemsBought: c.TotalItemsBought,
		},
		Coupons: make([]scoreCoupon, len(coupons)),
	}
	for i := range coupons {
		cp := &coupons[i]
		req.Coupons[i] = scoreCoupon{
			CouponID: cp.ID, CouponType: string(cp.Type), Department: cp.Department.String(), Discount: cp.Discount,
			HowMany: cp.HowMany, ProductMeanPrice: cp.ProductMeanPrice, ProductsAvailable: cp.ProductsAvailable,
		}
	}
	b, err := json.Marshal(req)
	if err != nil { // only a NaN or infinite price gets here
		return nil, fmt.Errorf("customer %s: cannot encode the request: %w", c.ID, err)
	}
	return b, nil
}

// inferBody writes the V2 request by hand: one FP32 input, flat row-major
// data, no requested outputs (servers name their output differently, and
// Triton refuses a name it does not know).
func inferBody(c *store.Customer, coupons []store.Coupon) ([]byte, error) {
	n := len(coupons)
	var row [NumFeatures]float32
	b := make([]byte, 0, 96+n*NumFeatures*8)
	b = append(b, `{"inputs":[{"name":"`+InputName+`","shape":[`...)
	b = strconv.AppendInt(b, int64(n), 10)
	b = append(b, ","+strconv.Itoa(NumFeatures)+`],"datatype":"`+datatypeFP32+`","data":[`...)
	EncodeCustomer(c, row[:])
	for i := range coupons {
		EncodeCoupon(&coupons[i], row[:])
		for j, v := range row {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, fmt.Errorf("customer %s, coupon %d: feature %s is %v", c.ID, coupons[i].ID, FeatureNames[j], v)
			}
			if i > 0 || j > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendFloat(b, float64(v), 'g', -1, 32)
		}
	}
	return append(b, "]}]}"...), nil
}

// parseScoreReply maps a /score answer back to out by coupon_id, in any
// order. Every coupon must be answered exactly once.
func parseScoreReply(body []byte, coupons []store.Coupon, out []float64) error {
	var results []struct {
		CouponID   json.Number `json:"coupon_id"`
		Prediction *float64    `json:"prediction"`
	}
	if err := json.Unmarshal(body, &results); err != nil {
		return fmt.Errorf("want a JSON list of {coupon_id, customer_id, prediction}: %v", err)
	}
	if len(results) != len(coupons) {
		return fmt.Errorf("%d predictions for %d coupons", len(results), len(coupons))
	}
	filled := make([]bool, len(coupons))
	for k, r := range results {
		id, err := strconv.Atoi(r.CouponID.String())
		if err != nil {
			return fmt.Errorf("prediction %d: coupon_id %q is not an integer", k, r.CouponID)
		}
		if r.Prediction == nil {
			return fmt.Errorf("prediction %d: coupon %d has no prediction", k, id)
		}
		p := *r.Prediction
		if !(p >= 0 && p <= 1) {
			return fmt.Errorf("coupon %d: prediction %v is not a probability", id, p)
		}
		// Linear: a focus has a handful of coupons, fewer than a map pays for.
		i, seen := -1, false
		for j := range coupons {
			if coupons[j].ID == id {
				seen = true
				if !filled[j] {
					i = j
					break
				}
			}
		}
		switch {
		case i < 0 && seen:
			return fmt.Errorf("coupon %d answered twice", id)
		case i < 0:
			return fmt.Errorf("coupon %d was not asked for", id)
		}
		out[i], filled[i] = p, true
	}
	return nil // as many answers as coupons, none twice: all are filled
}

type inferReply struct {
	Outputs []struct {
		Name     string          `json:"name"`
		Datatype string          `json:"datatype"`
		Shape    []int64         `json:"shape"`
		Data     json.RawMessage `json:"data"`
	} `json:"outputs"`
}

// outputNames are the names a probability output goes by, best first: ours,
// MLServer's sklearn runtime, KServe's and Triton's defaults.
var outputNames = []string{OutputName, "predict_proba", "output-0", "output0", "OUTPUT0"}

// parseInferReply takes the probabilities of n rows out of a V2 answer.
// It picks the float output by name (outputNames), or the only float output
// there is; integer outputs (class labels) are passed over. The shape may
// be [n], [n,1], or [n,2] (sklearn predict_proba: column 1 is the positive
// class), the data flat or nested.
func parseInferReply(body []byte, n int, out []float64) error {
	var reply inferReply
	if err := json.Unmarshal(body, &reply); err != nil {
		return fmt.Errorf("want a V2 infer response: %v", err)
	}
	pick, floats := -1, 0
	for i, o := range reply.Outputs {
		if !isFloatType(o.Datatype) {
			continue
		}
		floats++
		if pick < 0 || rank(o.Name) < rank(reply.Outputs[pick].Name) {
			pick = i
		}
	}
	if pick < 0 || (floats > 1 && rank(reply.Outputs[pick].Name) == len(outputNames)) {
		got := make([]string, len(reply.Outputs))
		for i, o := range reply.Outputs {
			got[i] = quoteShort(o.Name) + " " + quoteShort(o.Datatype)
		}
		return fmt.Errorf("no probability output among [%s]: want a float output named %s or the only float output",
			strings.Join(got, ", "), strings.Join(outputNames, ", "))
	}
	o := reply.Outputs[pick]
	cols := int64(1)
	switch {
	case len(o.Shape) == 2 && (o.Shape[1] == 1 || o.Shape[1] == 2):
		cols = o.Shape[1]
	case len(o.Shape) != 1:
		return fmt.Errorf("output %s: shape %v: want [n], [n,1] or [n,2]", quoteShort(o.Name), o.Shape)
	}
	if o.Shape[0] != int64(n) {
		return fmt.Errorf("output %s: %d rows for %d coupons", quoteShort(o.Name), o.Shape[0], n)
	}
	if len(o.Data) == 0 {
		return fmt.Errorf("output %s: no data", quoteShort(o.Name))
	}
	values, err := tensorData(o.Data, o.Shape, bitSize(o.Datatype), make([]float64, 0, int64(n)*cols))
	if err != nil {
		return fmt.Errorf("output %s: %v", quoteShort(o.Name), err)
	}
	for i := range n {
		p := values[int64(i)*cols+cols-1]
		if !(p >= 0 && p <= 1) {
			return fmt.Errorf("output %s: row %d: %v is not a probability", quoteShort(o.Name), i, p)
		}
		out[i] = p
	}
	return nil
}

func isFloatType(datatype string) bool {
	switch datatype {
	case datatypeFP32, datatypeFP64, "FP16", "BF16":
		return true
	}
	return false
}

// rank is a name's place in outputNames, len(outputNames) if absent.
func rank(name string) int {
	for i, n := range outputNames {
		if n == name {
			return i
		}
	}
	return len(outputNames)
}
