package event

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/storeflow/storeflow/internal/clip"
)

// FromEnvelope converts seed 000's second body form of the test endpoints,
//
//	{"event_type":"focus event","event_timestamp":"2021-03-18T08:29:02.160Z",
//	 "payload":{"customer_id":8,"category":"Women"}}
//
// into the event payload {"id":8,"ts":1616056142,"dep":"Women"}. Any other
// body is returned as it is, for the decoder to judge. rename maps the event
// fields back to the names the caller used, for error messages.
func FromEnvelope(body []byte, eventType string, focus bool) ([]byte, map[string]string, error) {
	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) != nil {
		return body, nil, nil
	}
	_, hasPayload := top["payload"]
	_, hasType := top["event_type"]
	_, hasTime := top["event_timestamp"]
	if !hasPayload && !hasType && !hasTime {
		return body, nil, nil
	}
	rename := map[string]string{"id": "payload.customer_id", "ts": "event_timestamp",
		"dep": "payload.category", "x": "payload.x", "y": "payload.y"}
	if hasType {
		var t string
		if json.Unmarshal(top["event_type"], &t) != nil || !strings.EqualFold(t, eventType) {
			return nil, rename, &Error{Reason: ReasonInvalidField, Field: "event_type",
				Detail: fmt.Sprintf("want %q, got %s", eventType, clip.Quote(string(top["event_type"]), 32))}
		}
	}
	var stamp string
	if raw := top["event_timestamp"]; len(raw) == 0 || string(raw) == "null" {
		return nil, rename, &Error{Reason: ReasonMissingField, Field: "event_timestamp", Detail: "missing"}
	} else if json.Unmarshal(raw, &stamp) != nil {
		return nil, rename, &Error{Reason: ReasonInvalidField, Field: "event_timestamp",
			Detail: "want an RFC 3339 time string, got " + clip.Quote(string(raw), 32)}
	}
	ts, err := time.Parse(time.RFC3339Nano, stamp)
	if err != nil {
		return nil, rename, &Error{Reason: ReasonInvalidField, Field: "event_timestamp",
			Detail: "want an RFC 3339 time like 2021-03-18T08:29:02.160Z, got " + clip.Quote(string(top["event_timestamp"]), 32)}
	}
	var payload map[string]json.RawMessage
	if json.Unmarshal(top["payload"], &payload) != nil || payload == nil {
		return nil, rename, &Error{Reason: ReasonMissingField, Field: "payload",
			Detail: "want an object with customer_id"}
	}
	out := map[string]json.RawMessage{"ts": json.RawMessage(fmt.Sprint(ts.Unix()))}
	copyField := func(from, to string) {
		if v, ok := payload[from]; ok {
			out[to] = v
		}
	}
	copyField("customer_id", "id")
	if focus {
		copyField("category", "dep")
		copyField("x", "x")
		copyField("y", "y")
	}
	b, err := json.Marshal(out)
	if err != nil { // raw values came from a valid document
		return nil, rename, err
	}
	return b, rename, nil
}
