package app

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/storeflow/storeflow/broker"
	"github.com/storeflow/storeflow/event"
	"github.com/storeflow/storeflow/internal/clip"
)

// The test endpoints of the seeds ("Testing without MQTT", "Mock event
// endpoints", "Producing test messages"), on when HTTP_TEST_ENDPOINTS=true or
// a testing mode is on:
//
//	POST /mock_entry    an entry event, handled as if it came on ENTRY_EVENT_TOPIC_NAME
//	POST /mock_focus    a focus event run through the focus stages now; answers the outcome
//	POST /produce_entry publish an enter payload on ENTER_TOPIC, as the simulator does
//	POST /produce_move  … a move payload on MOVE_TOPIC
//	POST /produce_exit  … an exit payload on EXIT_TOPIC
//
// Bodies must be sent as application/json (else 415) and are validated by
// the event decoders: a bad one is a 400 naming the field, one over
// event.MaxPayload a 413.
func (a *App) registerTestEndpoints(mux *http.ServeMux) {
	if !a.cfg.TestEndpoints() {
		return
	}
	a.testRefused = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "storeflow_test_endpoints_refused_total",
		Help: "Requests to the test endpoints refused before their body was read, by reason."}, []string{"reason"})
	a.reg.MustRegister(a.testRefused)
	a.testRefused.WithLabelValues(refusedMediaType) // served at zero from the start, as every series
	log := a.log.With("component", "test_endpoints")
	log.Warn("test endpoints on: anyone who reaches HTTP_ADDR can inject events",
		"paths", "/mock_entry /mock_focus /produce_entry /produce_move /produce_exit")
	mux.HandleFunc("POST /mock_entry", a.mockEntry(log))
	mux.HandleFunc("POST /mock_focus", a.mockFocus(log))
	sc := a.cfg.Simulator
	mux.HandleFunc("POST /produce_entry", a.produce(log, sc.EnterTopic, presence))
	mux.HandleFunc("POST /produce_move", a.produce(log, sc.MoveTopic, move))
	mux.HandleFunc("POST /produce_exit", a.produce(log, sc.ExitTopic, presence))
}

// registerMockMetrics exposes what the mock broker was given to publish.
func (a *App) registerMockMetrics(m *broker.Mock) {
	a.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "storeflow_mqtt_mock_published_total",
		Help: "Messages given to the mock broker (TESTING_NO_MQTT, TESTING_MOCK_MQTT): logged, not delivered.",
	}, func() float64 { return float64(m.Published()) }))
}

// seedBody reads a seed endpoint's body, in either of seed 000's forms, as
// an event payload; rename names its fields as the caller wrote them. On
// false the answer has been written.
func (a *App) seedBody(w http.ResponseWriter, r *http.Request, log *slog.Logger, eventType string, focus bool) ([]byte, map[string]string, bool) {
	body, ok := a.readBody(w, r, log)
	if !ok {
		return nil, nil, false
	}
	body, rename, err := event.FromEnvelope(body, eventType, focus)
	if err != nil {
		writeEventError(w, r, log, err, rename)
		return nil, nil, false
	}
	return body, rename, true
}

func (a *App) mockEntry(log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, rename, ok := a.seedBody(w, r, log, "entry event", false)
		if !ok {
			return
		}
		if err := a.pipeline.InjectEnter(body); err != nil {
			writeEventError(w, r, log, err, rename)
			return
		}
		writeJSON(w, r, log, http.StatusAccepted, map[string]string{"accepted": a.cfg.Pipeline.EntryTopic})
	}
}

// focusResponse is /mock_focus's answer.
type focusResponse struct {
	Outcome    string          `json:"outcome"`
	Prediction json.RawMessage `json:"prediction,omitempty"`
}

func (a *App) mockFocus(log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, rename, ok := a.seedBody(w, r, log, "focus event", true)
		if !ok {
			return
		}
		res, err := a.pipeline.FocusNow(r.Context(), body)
		var ee *event.Error
		switch {
		case errors.As(err, &ee):
			writeEventError(w, r, log, err, rename)
		case err != nil:
			writeJSON(w, r, log, http.StatusServiceUnavailable, map[string]string{"error": err.Error(), "outcome": res.Outcome})
		default:
			writeJSON(w, r, log, http.StatusOK, focusResponse{Outcome: res.Outcome, Prediction: res.Prediction})
		}
	}
}

// presence and move validate a body with the event decoder and encode it as
// the simulator does.
func presence(b []byte) ([]byte, error) {
	p, err := event.DecodePresence(b)
	if err != nil {
		return nil, err
	}
	return event.AppendPresence(nil, p), nil
}

func move(b []byte) ([]byte, error) {
	m, err := event.DecodeMove(b)
	if err != nil {
		return nil, err
	}
	return event.AppendMove(nil, m), nil
}

// produce publishes a validated payload through the app's broker connection,
// exactly as the simulator does: with the embedded broker it reaches the
// pipeline and outside subscribers, with the mock it is logged.
func (a *App) produce(log *slog.Logger, topic string, encode func([]byte) ([]byte, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, ok := a.readBody(w, r, log)
		if !ok {
			return
		}
		payload, err := encode(body)
		if err != nil {
			writeEventError(w, r, log, err, nil)
			return
		}
		if err := a.conn.Publish(r.Context(), topic, payload); err != nil {
			writeJSON(w, r, log, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, r, log, http.StatusAccepted, map[string]string{"published": topic})
	}
}

// refusedMediaType is the reason a request without a JSON body is refused.
const refusedMediaType = "unsupported_media_type"

// readBody reads a JSON body of at most event.MaxPayload bytes. A body sent
// as anything but application/json is a 415: a web page can post text/plain
// (or a form) to another origin without asking first, but not JSON, so with
// the test endpoints on, a page a store employee happens to open cannot
// inject events. A larger body is a 413.
func (a *App) readBody(w http.ResponseWriter, r *http.Request, log *slog.Logger) ([]byte, bool) {
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		a.testRefused.WithLabelValues(refusedMediaType).Inc()
		writeJSON(w, r, log, http.StatusUnsupportedMediaType, map[string]string{
			"error": "Content-Type " + clip.Quote(ct, 32) + ": the test endpoints take application/json"})
		return nil, false
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, event.MaxPayload))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeJSON(w, r, log, http.StatusRequestEntityTooLarge,
				map[string]string{"error": fmt.Sprintf("body over the %d byte limit of an event", event.MaxPayload)})
		} else {
			writeJSON(w, r, log, http.StatusBadRequest, map[string]string{"error": "reading body: " + err.Error()})
		}
		return nil, false
	}
	return b, true
}

// writeEventError answers a payload the decoders refused: 400 naming the
// field (as the caller named it), 413 for an oversized one.
func writeEventError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error, rename map[string]string) {
	status, resp := http.StatusBadRequest, map[string]string{"error": err.Error()}
	var ee *event.Error
	if errors.As(err, &ee) {
		e := *ee
		if to, ok := rename[e.Field]; ok {
			e.Field = to
			resp["error"] = e.Error()
		}
		if e.Field != "" {
			resp["field"] = e.Field
		}
		if e.Reason == event.ReasonTooLarge {
			status = http.StatusRequestEntityTooLarge
		}
	}
	writeJSON(w, r, log, status, resp)
}

func writeJSON(w http.ResponseWriter, r *http.Request, log *slog.Logger, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // the prediction goes out as it was published
	if err := enc.Encode(v); err != nil {
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString(`{"error":"encoding the answer failed"}` + "\n")
	}
	log.Debug("test_endpoint", "method", r.Method, "path", r.URL.Path, "status", status)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
