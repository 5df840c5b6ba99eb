// Package protocol is what the two prediction protocols — the original
// POST /score (recommender/score) and the Open Inference Protocol
// (recommender/v2) — share over HTTP. On the server side: the model both
// serve, the limits of a request, the error answers and the request metrics.
// On the client side: the call to a prediction service (PREDICTION_URL) with
// its slots, deadline, outcome and metrics. Each protocol brings its own
// routes and codec; a V2 codec also names its model readiness route, which
// the client asks in the background (WatchModel).
package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/storeflow/storeflow/internal/clip"
	"github.com/storeflow/storeflow/internal/ratelog"
	"github.com/storeflow/storeflow/recommender"
)

// Limits of one request, on both APIs.
const (
	MaxRows         = 1000    // coupons of one /score request, rows of one infer request
	MaxRequestBytes = 1 << 20 // request body; larger gets 413
)

const (
	msgNoModel     = "model not loaded"
	maxEchoedBytes = 40               // of a bad value quoted back in an error
	logEvery       = 10 * time.Second // at most one line per route about a non-finite probability
)

// Route is a group of routes, as storeflow_prediction_server_requests_total
// counts them.
type Route int

// The routes.
const (
	RouteScore    Route = iota // POST /score
	RouteInfer                 // POST /v2/models/{name}/infer
	RouteHealth                // the V2 liveness and readiness routes
	RouteMetadata              // the V2 server and model metadata routes
	numRoutes
)

var routeNames = [numRoutes]string{"score", "infer", "health", "metadata"}

func (r Route) String() string { return routeNames[r] }

// The outcomes of a request, by the status of its answer (outcomeOf).
const (
	outcomeOK            = iota // 2xx
	outcomeBadRequest           // 400: the body is wrong; the reason is logged at debug
	outcomeNotFound             // 404: unknown model or version
	outcomeTooLarge             // 413: body over MaxRequestBytes
	outcomeUnprocessable        // 422: the model gave a non-finite probability for a row (a model defect)
	outcomeUnavailable          // 503: no model loaded
	outcomeFailed               // 500: the answer could not be encoded (a bug)
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"ok", "bad_request", "not_found", "too_large", "unprocessable", "unavailable", "failed"}

func outcomeOf(status int) int {
	switch {
	case status < 300:
		return outcomeOK
	case status == http.StatusNotFound:
		return outcomeNotFound
	case status == http.StatusRequestEntityTooLarge:
		return outcomeTooLarge
	case status == http.StatusUnprocessableEntity:
		return outcomeUnprocessable
	case status == http.StatusServiceUnavailable:
		return outcomeUnavailable
	case status < 500:
		return outcomeBadRequest
	}
	return outcomeFailed
}

// ServerMetrics are the prediction server's metrics, one set for both
// protocols.
type ServerMetrics struct {
	// Requests counts requests by route (score, infer, health, metadata)
	// and outcome (ok, bad_request, not_found, too_large, unprocessable,
	// unavailable, failed). It is counted by Reply rather than by promhttp's
	// InstrumentHandlerCounter: that labels by status code, not by these
	// outcomes, and counts after the answer has left, so a client holding
	// the answer could scrape the count before it moved.
	Requests *prometheus.CounterVec
	Rows     prometheus.Counter // feature rows scored, both APIs
	// UnknownFields counts the request fields /score ignored because it
	// does not know them (the original service ignored them too).
	UnknownFields prometheus.Counter
}

// NewServerMetrics registers the prediction server's metrics with reg, every
// route and outcome from zero.
func NewServerMetrics(reg prometheus.Registerer) *ServerMetrics {
	m := &ServerMetrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "storeflow_prediction_server_requests_total",
			Help: "Requests to the prediction server (/score and the Open Inference Protocol) by route and outcome."},
			[]string{"route", "outcome"}),
		Rows: prometheus.NewCounter(prometheus.CounterOpts{Name: "storeflow_prediction_server_rows_total",
			Help: "Feature rows the prediction server scored."}),
		UnknownFields: prometheus.NewCounter(prometheus.CounterOpts{Name: "storeflow_prediction_server_unknown_fields_total",
			Help: "Fields of /score requests the prediction server does not know and ignored."}),
	}
	for _, route := range routeNames {
		for _, outcome := range outcomeNames {
			m.Requests.WithLabelValues(route, outcome)
		}
	}
	reg.MustRegister(m.Requests, m.Rows, m.UnknownFields)
	return m
}

// Server answers prediction requests for one RowScorer; the protocols'
// handlers (score.Register, v2.Register) answer through it. Both encode
// their rows the same way (recommender.Encode), so they agree on every
// probability, up to the FP32 rounding of the V2 output.
type Server struct {
	model   recommender.RowScorer // nil: not ready, every scoring request gets 503
	log     *slog.Logger
	warn    *ratelog.Logger // lines a caller can cause with every request
	version string
	rows    prometheus.Counter
	unknown prometheus.Counter
	answers [numRoutes][numOutcomes]prometheus.Counter
}

// NewServer returns a server for model. A nil model makes a server that is
// live but not ready, so it can be mounted before the model is loaded. log is
// used as given (the caller names the component); nil discards.
func NewServer(model recommender.RowScorer, log *slog.Logger, m *ServerMetrics) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	version := "dev"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		version = bi.Main.Version
	}
	s := &Server{model: model, log: log, warn: ratelog.New(log, logEvery), version: version, rows: m.Rows, unknown: m.UnknownFields}
	for r, route := range routeNames {
		for o, outcome := range outcomeNames {
			s.answers[r][o] = m.Requests.WithLabelValues(route, outcome)
		}
	}
	return s
}

// Ready reports whether a model is loaded.
func (s *Server) Ready() bool { return s.model != nil }

// Version is the build's version, "dev" for a development build.
func (s *Server) Version() string { return s.version }

// ErrorBody is every error answer. Field names the offending JSON field on
// /score (e.g. "coupons[2].discount"); the V2 routes leave it out, as the
// protocol's error shape is {"error": "..."}.
type ErrorBody struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

// Reply writes v as the JSON answer with status, counted for route before
// it leaves, so a client that has it sees it counted.
func (s *Server) Reply(w http.ResponseWriter, route Route, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil { // only our own types get here; a failure is a bug
		s.log.Error("encode response", "error", err)
		status, body = http.StatusInternalServerError, []byte(`{"error":"encode response"}`)
	}
	s.answers[route][outcomeOf(status)].Inc()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body) // the peer may be gone; nothing to do about it
}

// NoModel answers 503: no model is loaded.
func (s *Server) NoModel(w http.ResponseWriter, route Route) {
	s.Reply(w, route, http.StatusServiceUnavailable, ErrorBody{Error: msgNoModel})
}

// Refuse answers a request its decoder refused: 413 for a body over the
// limit, 400 otherwise. The reason is logged at debug, never the body: it is
// the caller's data and may be large. withField puts the bad field in the
// answer (/score's error shape).
func (s *Server) Refuse(w http.ResponseWriter, route Route, err error, withField bool) {
	var re *RequestError
	if !errors.As(err, &re) {
		re = &RequestError{Status: http.StatusBadRequest, Msg: err.Error()}
	}
	s.log.Debug("bad request", "route", route.String(), "status", re.Status, "field", re.Field, "reason", re.Msg)
	body := ErrorBody{Error: re.Error()}
	if withField {
		body.Field = re.Field
	}
	s.Reply(w, route, re.Status, body)
}

// Ignored counts n fields of a request that the server does not know and
// ignored, and logs one example at debug at most once per interval: a client
// sends the same extra fields with every request.
func (s *Server) Ignored(route Route, n int, example string) {
	s.unknown.Add(float64(n))
	s.warn.Log(slog.LevelDebug, "unknown_fields_"+route.String(), "ignored unknown fields",
		"route", route.String(), "fields", n, "example", Quote(example))
}

// Score runs the model over n rows of recommender.NumFeatures. bad is the
// index of the first row it gave NaN or ±Inf for, which JSON cannot carry
// and no caller could use, or -1. The model is built to give neither for any
// finite row, so bad >= 0 is a model defect. The server must be Ready.
func (s *Server) Score(rows []float32, n int) (probs []float64, bad int) {
	probs = make([]float64, n)
	if n == 0 {
		return probs, -1
	}
	s.model.ScoreRows(rows, probs)
	s.rows.Add(float64(n))
	for i, p := range probs {
		if math.IsNaN(p) || math.IsInf(p, 0) {
			return nil, i
		}
	}
	return probs, -1
}

// NonFinite answers a request with a row the model could not score: a 422
// naming it, as the caller can do nothing but leave that input out (a 500
// would invite a retry of the same input). The log line, with the row's
// features to reproduce it, is rate-limited: any caller can send the row in
// every request.
func (s *Server) NonFinite(w http.ResponseWriter, route Route, field string, row []float32, withField bool) {
	s.warn.Log(slog.LevelError, "non_finite_"+route.String(), "model gave a non-finite probability",
		"route", route.String(), "field", field, "features", row)
	body := ErrorBody{Error: field + ": the model gave a non-finite probability for this input"}
	if withField {
		body.Field = field
	}
	s.Reply(w, route, http.StatusUnprocessableEntity, body)
}

// Body is r's body bounded to MaxRequestBytes: reading past it is a
// *http.MaxBytesError, which DecodeJSON turns into a 413.
func Body(w http.ResponseWriter, r *http.Request) io.Reader {
	return http.MaxBytesReader(w, r.Body, MaxRequestBytes)
}

// RequestError is what is wrong with a request body.
type RequestError struct {
	Status int    // 400 or 413
	Field  string // JSON path of the bad field, "" for the body as a whole
	Msg    string
}

func (e *RequestError) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

// BadField is a 400 naming field.
func BadField(field, format string, args ...any) *RequestError {
	return &RequestError{Status: http.StatusBadRequest, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// DecodeJSON decodes the one JSON value of a request body into v; its
// errors are *RequestError.
func DecodeJSON(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	err := dec.Decode(v)
	if err == nil {
		// One value per body: trailing data is a client bug worth reporting.
		if _, err = dec.Token(); err == io.EOF {
			return nil
		} else if err == nil {
			err = errors.New("data after the JSON value")
		}
	}
	var tooLarge *http.MaxBytesError
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooLarge):
		return &RequestError{Status: http.StatusRequestEntityTooLarge, Msg: fmt.Sprintf("request body over %d bytes", tooLarge.Limit)}
	case err == io.EOF:
		return &RequestError{Status: http.StatusBadRequest, Msg: "empty body: want a JSON object"}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &RequestError{Status: http.StatusBadRequest, Msg: "invalid JSON: unexpected end of body"}
	case errors.As(err, &syntax):
		return &RequestError{Status: http.StatusBadRequest, Msg: fmt.Sprintf("invalid JSON at byte %d: %v", syntax.Offset, err)}
	case errors.As(err, &typ):
		if typ.Field == "" {
			return &RequestError{Status: http.StatusBadRequest, Msg: "want a JSON object, got " + typ.Value}
		}
		return BadField(typ.Field, "got a JSON %s", typ.Value)
	}
	return &RequestError{Status: http.StatusBadRequest, Msg: "invalid JSON: " + err.Error()}
}

// Quote quotes a caller's (or a peer's) value for an error message, cut
// short: the message must stay small whatever was sent.
func Quote(s string) string { return clip.Quote(s, maxEchoedBytes) }
