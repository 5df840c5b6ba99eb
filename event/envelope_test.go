package event

import (
	"errors"
	"testing"
)

func TestFromEnvelope(t *testing.T) {
	tests := map[string]struct {
		body, eventType string
		focus           bool
		want            string // the event payload, or the field an error names
		wantErr         bool
	}{
		"focus": {`{"event_type":"focus event","event_timestamp":"2021-03-18T08:29:02.160Z","payload":{"customer_id":8,"category":"Women","x":3}}`,
			"focus event", true, `{"dep":"Women","id":8,"ts":1616056142,"x":3}`, false},
		"entry keeps only the id": {`{"event_type":"Entry Event","event_timestamp":"2021-03-18T08:29:02Z","payload":{"customer_id":"8","category":"Women"}}`,
			"entry event", false, `{"id":"8","ts":1616056142}`, false},
		"not an envelope passes": {`{"id":"8","ts":1}`, "entry event", false, `{"id":"8","ts":1}`, false},
		"not JSON passes":        {`{"id":`, "entry event", false, `{"id":`, false},
		"wrong type":             {`{"event_type":"exit event","event_timestamp":"2021-03-18T08:29:02Z","payload":{}}`, "entry event", false, "event_type", true},
		"no time":                {`{"event_type":"entry event","payload":{"customer_id":8}}`, "entry event", false, "event_timestamp", true},
		"bad time":               {`{"event_timestamp":"yesterday","payload":{"customer_id":8}}`, "entry event", false, "event_timestamp", true},
		"no payload":             {`{"event_timestamp":"2021-03-18T08:29:02Z"}`, "entry event", false, "payload", true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, rename, err := FromEnvelope([]byte(tc.body), tc.eventType, tc.focus)
			if tc.wantErr {
				var e *Error
				if !errors.As(err, &e) || e.Field != tc.want {
					t.Fatalf("err = %v, want an *Error naming %s", err, tc.want)
				}
				if rename["id"] != "payload.customer_id" {
					t.Errorf("rename[id] = %q, want payload.customer_id", rename["id"])
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("FromEnvelope = %s, %v; want %s", got, err, tc.want)
			}
		})
	}
}
