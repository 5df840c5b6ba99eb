package loop

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/storeflow/storeflow/event"
)

// Register serves POST /redeem and GET /api/experiment on mux.
func (l *Loop) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /redeem", l.serveRedeem)
	mux.HandleFunc("GET /api/experiment", l.serveExperiment)
}

// serveRedeem takes a redemption from a point-of-sale system that speaks
// HTTP: the topic's payload as the body. 202 once it is on its way (on
// REDEEM_TOPIC, so every instance sees it, or to the ledger here); 400 naming
// what is wrong; 413 over event.MaxPayload; 503 when it could not be passed
// on.
func (l *Loop) serveRedeem(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, event.MaxPayload))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			l.m.rejected.WithLabelValues(sourceHTTP, string(event.ReasonTooLarge)).Inc()
			writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": fmt.Sprintf("body over the %d byte limit of a redemption", event.MaxPayload), "reason": string(event.ReasonTooLarge)})
			return
		}
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "reading body: " + err.Error()})
		return
	}
	red, err := event.DecodeRedemption(body)
	if err != nil {
		reason := event.ReasonOf(err)
		l.m.rejected.WithLabelValues(sourceHTTP, string(reason)).Inc()
		l.log.Log(slog.LevelWarn, "redemption_rejected", "redemption refused", "source", sourceHTTP, "error", err)
		resp := map[string]string{"error": err.Error(), "reason": string(reason)}
		var e *event.Error
		if errors.As(err, &e) && e.Field != "" {
			resp["field"] = e.Field
		}
		writeJSON(w, http.StatusBadRequest, resp)
		return
	}
	if l.p.Pub != nil {
		// The decoded form: what every instance then reads is what was checked.
		if err := l.p.Pub.Publish(r.Context(), l.cfg.RedeemTopic, event.AppendRedemption(nil, red)); err != nil {
			l.m.errors.WithLabelValues("publish").Inc()
			l.log.Log(slog.LevelWarn, "redeem_publish", "redemption not published", "topic", l.cfg.RedeemTopic, "error", err)
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "the redemption could not be published; send it again"})
			return
		}
	} else if !l.takeRedemption(red) {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "busy: send the redemption again"})
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "accepted"})
}

func (l *Loop) serveExperiment(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, l.Report(r.Context()))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"encoding the answer failed"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
