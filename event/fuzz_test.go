package event_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/storeflow/storeflow/event"
)

// fuzzSeeds are valid and invalid payloads shared by every fuzzer; each
// fuzzer adds its own.
var fuzzSeeds = []string{
	`{"id":"127","ts":192322800}`,
	`{"id":127,"ts":192322800.9}`,
	`{"id":"127","ts":192322800,"x":3,"y":7}`,
	`{"id":"127","ts":192322800,"dep":"Boys","x":3,"y":7}`,
	`{"id":"127","ts":192322800,"dep":"Sport"}`,
	" {\"id\":\"a\\\"b\\\\c\\u00e9\\u2028\",\"ts\":1,\"x\":-0.4,\"y\":2.5} ",
	`{"id":1.27e2,"ts":1.923228e8,"x":1e6,"y":-1e6}`,
	`{"id":9007199254740993,"ts":253402300799,"x":0,"y":0}`,
	`{"ID":"1","TS":5,"X":1,"Y":2,"DEP":"Men"}`,
	`{"id":"1","id":"2","ts":3,"ts":4}`,
	`{"id":"","ts":192322800}`,
	`{"id":1.5,"ts":192322800}`,
	`{"id":-1,"ts":192322800}`,
	`{"id":{"a":1},"ts":192322800}`,
	"{\"id\":\"\xff\",\"ts\":192322800}",
	`{"id":"127","ts":"192322800"}`,
	`{"id":"127","ts":0.5}`,
	`{"id":"127","ts":-1}`,
	`{"id":"127","ts":1.7e12}`,
	`{"id":"127","ts":1e400}`,
	`{"id":"127","ts":192322800,"x":"3","y":7}`,
	`{"id":"127","ts":192322800,"x":1e7,"y":7}`,
	`{"id":"127","ts":192322800,"dep":"Toys"}`,
	`{"id":"127","ts":192322800,"dep":null}`,
	`{"id":"127","ts":192322800,"dep":3,"x":1}`,
	`[]`, `"s"`, `1`, `null`, ``, `{`, `{"id":"127","ts":1923`, `{} x`,
}

// checkDecodeError is the failure half of the fuzz property.
func checkDecodeError(t *testing.T, data []byte, err error) {
	t.Helper()
	var e *event.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *event.Error", err, err)
	}
	if !slices.Contains(event.Reasons, e.Reason) {
		t.Fatalf("reason %q is not in event.Reasons", e.Reason)
	}
	if event.ReasonOf(err) != e.Reason {
		t.Fatalf("ReasonOf = %s, want %s", event.ReasonOf(err), e.Reason)
	}
	msg := err.Error()
	if e.Detail == "" || len(msg) <= len("event: ") {
		t.Fatalf("empty message: %q", msg)
	}
	if e.Field != "" && !strings.Contains(msg, `"`+e.Field+`"`) {
		t.Fatalf("message %q does not name field %q", msg, e.Field)
	}
	// clip keeps hostile input out of the logs.
	if len(msg) > 256 {
		t.Fatalf("message of %d bytes: %q", len(msg), msg)
	}
	if (len(data) > event.MaxPayload) != (e.Reason == event.ReasonTooLarge) {
		t.Fatalf("payload of %d bytes rejected as %s", len(data), e.Reason)
	}
}

// checkCommon checks what every successfully decoded event guarantees.
func checkCommon(t *testing.T, id string, ts int64) {
	t.Helper()
	if id == "" || len(id) > 64 || !utf8.ValidString(id) {
		t.Fatalf("decoded id %q: want 1-64 bytes of UTF-8", id)
	}
	if ts < 1 || ts > 253402300799 {
		t.Fatalf("decoded ts %d is out of range", ts)
	}
}

func checkCoord(t *testing.T, name string, v int) {
	t.Helper()
	if v < -1e6 || v > 1e6 {
		t.Fatalf("decoded %s %d is out of range", name, v)
	}
}

func FuzzDecodePresence(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := event.DecodePresence(data)
		if err != nil {
			checkDecodeError(t, data, err)
			return
		}
		checkCommon(t, p.ID, p.TS)
		b := event.AppendPresence(nil, p)
		back, err := event.DecodePresence(b)
		if err != nil || back != p {
			t.Fatalf("%q decodes to %+v, re-encodes to %s, which decodes to %+v, %v", data, p, b, back, err)
		}
	})
}

func FuzzDecodeMove(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"id":"42","ts":1700000000,"x":1071.5,"y":49.49}`))
	f.Add([]byte(`{"id":"42","ts":1700000000,"x":null,"y":7}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := event.DecodeMove(data)
		if err != nil {
			checkDecodeError(t, data, err)
			return
		}
		checkCommon(t, m.ID, m.TS)
		checkCoord(t, "x", m.X)
		checkCoord(t, "y", m.Y)
		b := event.AppendMove(nil, m)
		back, err := event.DecodeMove(b)
		if err != nil || back != m {
			t.Fatalf("%q decodes to %+v, re-encodes to %s, which decodes to %+v, %v", data, m, b, back, err)
		}
	})
}

func FuzzDecodeFocus(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	for _, dep := range []string{"Boys", "Girls", "Men", "Sports", "Sport", "Women", "", "boys", "Sportss"} {
		f.Add([]byte(`{"id":"127","ts":192322800,"dep":"` + dep + `"}`))
	}
	f.Add([]byte(`{"id":"127","ts":192322800,"dep":"Women","x":3}`))
	f.Add([]byte(`{"id":"127","ts":192322800,"dep":"Women","y":null,"x":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fc, err := event.DecodeFocus(data)
		if err != nil {
			checkDecodeError(t, data, err)
			return
		}
		checkCommon(t, fc.ID, fc.TS)
		if fc.Dep.String() == "" || strings.HasPrefix(fc.Dep.String(), "Department(") {
			t.Fatalf("decoded department %d is not a real one", fc.Dep)
		}
		if fc.HasPos {
			checkCoord(t, "x", fc.X)
			checkCoord(t, "y", fc.Y)
		} else if fc.X != 0 || fc.Y != 0 {
			t.Fatalf("no position but x, y = %d, %d", fc.X, fc.Y)
		}
		b := event.AppendFocus(nil, fc)
		back, err := event.DecodeFocus(b)
		if err != nil || back != fc {
			t.Fatalf("%q decodes to %+v, re-encodes to %s, which decodes to %+v, %v", data, fc, b, back, err)
		}
	})
}

func FuzzDecodeOffer(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"customer":{"id":"11"},"coupon":{"id":22},"ts":192322800}`))
	f.Add([]byte(`{"customer":{"id":11},"coupon":{"id":"22"},"ts":1.5}`))
	f.Add([]byte(`{"customer":{"id":"11"},"coupon":{"id":"2\"2"},"ts":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := event.DecodeOffer(b)
		if err != nil {
			var e *event.Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is not an *event.Error", err)
			}
			return
		}
		if o.CustomerID == "" || o.CouponID < 0 || o.TS < 0 {
			t.Fatalf("accepted an offer with an empty customer, a negative coupon or ts: %+v", o)
		}
	})
}
