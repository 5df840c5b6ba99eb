package event_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/storeflow/storeflow/event"
	"github.com/storeflow/storeflow/store"
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
	// Names and strings spelt with escapes, as encoding/json reads them.
	`{"\u0069d":"21","ts":192322800,"x":3,"y":7,"dep":"Men"}`,
	`{"i\u0064":"\u0032\u0031","\u0074\u0073":192322800,"\u0078":3,"\u0079":7,"\u0064ep":"B\u006fys"}`,
	`{"id":"\ud83d\ude00","ts":192322800,"x":3,"y":7,"dep":"Women"}`,
	`{"id":"\ud83d","ts":192322800,"x":3,"y":7,"dep":"Women"}`,
	`{"id":"a\ude00b","ts":192322800,"x":3,"y":7,"dep":"Women"}`,
	`{"id":"\ufffd","ts":192322800,"x":3,"y":7,"dep":"Wom\u0065n"}`,
	"{\"id\":\"\xef\xbf\xbd\",\"ts\":192322800,\"x\":3,\"y\":7,\"dep\":\"Men\xff\"}",
	`{"id":"21","\u0069d":"22","ts":192322800,"x":3,"y":7,"dep":"Men"}`,
	`{"id":"21","Id":"22","ts":192322800,"x":3,"y":7,"dep":"Men"}`,
	"{\"id\":\"1\",\"ts\":192322800,\"x\":3,\"y\":7,\"dep\":\"Men\"}\v",
	"\u00a0{\"id\":\"1\",\"ts\":192322800,\"x\":3,\"y\":7,\"dep\":\"Men\"}",
}

// The fuzz targets compare each decoder with a reading of the same payload by
// encoding/json: where the reference accepts, the decoder gives the same
// values; where it refuses, so does the decoder. The reference reads every
// member with a json.Decoder (names and strings decoded by encoding/json) and
// then applies the field rules of the README. It departs from encoding/json
// unmarshalling into a struct in three ways, on purpose (scan.go says why):
// names match exactly, not case-insensitively; an event field (id, ts, x, y,
// dep) must not be given twice, whether or not the topic reads it
// (encoding/json keeps the last); and an id must be valid
// Unicode as sent (encoding/json replaces invalid UTF-8 and lone surrogates
// with U+FFFD).

// refObject is encoding/json's reading of a payload that must be a JSON
// object: every value of each name, raw, in order.
func refObject(data []byte) (map[string][]json.RawMessage, bool) {
	names, vals, ok := event.ReferenceMembers(data)
	if !ok {
		return nil, false
	}
	m := map[string][]json.RawMessage{}
	for i, name := range names {
		m[name] = append(m[name], vals[i])
	}
	return m, true
}

// errRef is the reference refusing a payload; its text is for the failure
// message.
type errRef string

func (e errRef) Error() string { return string(e) }

// refOne is the one value of name in m, nil when absent or null.
func refOne(m map[string][]json.RawMessage, name string) (json.RawMessage, error) {
	vals := m[name]
	switch {
	case len(vals) > 1:
		return nil, errRef(name + " given twice")
	case len(vals) == 0 || string(vals[0]) == "null":
		return nil, nil
	}
	return vals[0], nil
}

func refID(raw json.RawMessage) (string, error) {
	switch {
	case raw == nil:
		return "", errRef("no id")
	case raw[0] == '"':
		s, valid := event.ReferenceString(raw)
		if !valid || s == "" || len(s) > 64 {
			return "", errRef(fmt.Sprintf("id %q: not 1-64 bytes of valid Unicode as sent", s))
		}
		return s, nil
	case raw[0] != '-' && (raw[0] < '0' || raw[0] > '9'):
		return "", errRef("id not a string or number")
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return "", err
	}
	if u, err := strconv.ParseUint(n.String(), 10, 64); err == nil {
		return strconv.FormatUint(u, 10), nil
	}
	f, err := n.Float64()
	if err != nil || f != math.Trunc(f) || f < 0 || f >= 1<<53 {
		return "", errRef("id " + n.String() + ": not a whole number in [0, 2^53)")
	}
	return strconv.FormatInt(int64(f), 10), nil
}

// refNumber reads raw with encoding/json into a float64, within [lo, hi].
func refNumber(name string, raw json.RawMessage, lo, hi float64) (float64, error) {
	if raw == nil {
		return 0, errRef("no " + name)
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil {
		return 0, err
	}
	if f < lo || f > hi {
		return 0, errRef(fmt.Sprintf("%s %v out of range", name, f))
	}
	return f, nil
}

func refTS(raw json.RawMessage) (int64, error) {
	f, err := refNumber("ts", raw, 1, 253402300799)
	return int64(f), err
}

func refCoord(name string, raw json.RawMessage) (int, error) {
	f, err := refNumber(name, raw, -1e6, 1e6)
	return int(math.Round(f)), err
}

// eventFields are the names of every shopper event's fields; none may be
// given twice, whichever of them the topic's payload reads.
var eventFields = []string{"id", "ts", "x", "y", "dep"}

// refFields reads the named members of the payload, each once at most.
func refFields(data []byte, names ...string) ([]json.RawMessage, error) {
	if len(data) > event.MaxPayload {
		return nil, errRef("too large")
	}
	m, ok := refObject(data)
	if !ok {
		return nil, errRef("not a JSON object")
	}
	for _, name := range eventFields {
		if len(m[name]) > 1 {
			return nil, errRef(name + " given twice")
		}
	}
	out := make([]json.RawMessage, len(names))
	for i, name := range names {
		var err error
		if out[i], err = refOne(m, name); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// refHead reads "id", "ts" and then names from data, and decodes the id and
// the ts every shopper event has.
func refHead(data []byte, names ...string) (f []json.RawMessage, p event.Presence, err error) {
	f, err = refFields(data, append([]string{"id", "ts"}, names...)...)
	if err != nil {
		return nil, p, err
	}
	if p.ID, err = refID(f[0]); err != nil {
		return nil, p, err
	}
	p.TS, err = refTS(f[1])
	return f, p, err
}

func refPresence(data []byte) (event.Presence, error) {
	_, p, err := refHead(data)
	return p, err
}

func refMove(data []byte) (m event.Move, err error) {
	f, p, err := refHead(data, "x", "y")
	if err != nil {
		return m, err
	}
	m.ID, m.TS = p.ID, p.TS
	if m.X, err = refCoord("x", f[2]); err != nil {
		return m, err
	}
	m.Y, err = refCoord("y", f[3])
	return m, err
}

func refFocus(data []byte) (event.Focus, error) { return refSpot(data, true) }

func refBrowsing(data []byte) (event.Browsing, error) {
	fc, err := refSpot(data, false)
	return event.Browsing(fc), err
}

// refSpot reads a focus or browsing payload; dep is optional for browsing.
func refSpot(data []byte, depRequired bool) (fc event.Focus, err error) {
	f, p, err := refHead(data, "dep", "x", "y")
	if err != nil {
		return fc, err
	}
	fc.ID, fc.TS = p.ID, p.TS
	if f[2] != nil || depRequired {
		var name string
		if f[2] == nil || json.Unmarshal(f[2], &name) != nil {
			return fc, errRef("dep missing or not a string")
		}
		var ok bool
		if fc.Dep, ok = store.ParseDepartment(name); !ok {
			return fc, errRef("unknown dep " + name)
		}
	}
	if (f[3] == nil) != (f[4] == nil) {
		return fc, errRef("x without y or y without x")
	}
	if f[3] != nil {
		if fc.X, err = refCoord("x", f[3]); err != nil {
			return fc, err
		}
		if fc.Y, err = refCoord("y", f[4]); err != nil {
			return fc, err
		}
		fc.HasPos = true
	}
	return fc, nil
}

func refOffer(data []byte) (o event.Offer, err error) {
	if len(data) > event.MaxPredictionPayload {
		return o, errRef("too large")
	}
	m, ok := refObject(data)
	if !ok {
		return o, errRef("not a JSON object")
	}
	ids := make([]json.RawMessage, 2)
	for i, name := range []string{"customer", "coupon"} {
		obj, err := refOne(m, name)
		if err != nil || obj == nil {
			return o, errRef(name + " missing or given twice")
		}
		inner, ok := refObject(obj)
		if !ok {
			return o, errRef(name + " not an object")
		}
		if ids[i], err = refOne(inner, "id"); err != nil {
			return o, err
		}
	}
	if o.CustomerID, err = refID(ids[0]); err != nil {
		return o, err
	}
	raw := ids[1]
	if raw == nil {
		return o, errRef("no coupon.id")
	}
	if raw[0] == '"' { // a JSON number in a string
		var s string
		if json.Unmarshal(raw, &s) != nil || s == "" || !json.Valid([]byte(s)) || (s[0] != '-' && (s[0] < '0' || s[0] > '9')) {
			return o, errRef("coupon.id not a number")
		}
		raw = json.RawMessage(s)
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil || f != math.Trunc(f) || f < 0 || f > math.MaxInt32 {
		return o, errRef("coupon.id not a whole number in [0, 2^31)")
	}
	o.CouponID = int(f)
	ts, err := refOne(m, "ts")
	if err != nil {
		return o, err
	}
	o.TS, err = refTS(ts)
	return o, err
}

// checkReference fails unless the decoder (got, err) and the reference
// (want, refErr) agree on data: both refuse, or both read the same values.
func checkReference[T comparable](t *testing.T, data []byte, got T, err error, want T, refErr error) {
	t.Helper()
	switch {
	case (err == nil) != (refErr == nil):
		t.Fatalf("%q: decoder: %+v, %v; encoding/json reference: %+v, %v", data, got, err, want, refErr)
	case err == nil && got != want:
		t.Fatalf("%q: decoder read %+v, encoding/json reference %+v", data, got, want)
	}
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

// seed adds the shared seeds and the fuzzer's own.
func seed(f *testing.F, own ...string) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	for _, s := range own {
		f.Add([]byte(s))
	}
}

// fuzzEvent is the fuzz property of a shopper event's decoder: it agrees with
// the encoding/json reference, refuses with a proper *event.Error, and what
// it accepts passes check and decodes back the same after encode.
func fuzzEvent[E comparable](f *testing.F, decode, ref func([]byte) (E, error), encode func([]byte, E) []byte, check func(*testing.T, E)) {
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := decode(data)
		want, refErr := ref(data)
		checkReference(t, data, e, err, want, refErr)
		if err != nil {
			checkDecodeError(t, data, err)
			return
		}
		check(t, e)
		b := encode(nil, e)
		back, err := decode(b)
		if err != nil || back != e {
			t.Fatalf("%q decodes to %+v, re-encodes to %s, which decodes to %+v, %v", data, e, b, back, err)
		}
	})
}

func FuzzDecodePresence(f *testing.F) {
	seed(f)
	fuzzEvent(f, event.DecodePresence, refPresence, event.AppendPresence, func(t *testing.T, p event.Presence) {
		checkCommon(t, p.ID, p.TS)
	})
}

func FuzzDecodeMove(f *testing.F) {
	seed(f,
		`{"id":"42","ts":1700000000,"x":1071.5,"y":49.49}`,
		`{"id":"42","ts":1700000000,"x":null,"y":7}`)
	fuzzEvent(f, event.DecodeMove, refMove, event.AppendMove, func(t *testing.T, m event.Move) {
		checkCommon(t, m.ID, m.TS)
		checkCoord(t, "x", m.X)
		checkCoord(t, "y", m.Y)
	})
}

func FuzzDecodeFocus(f *testing.F) {
	seed(f)
	for _, dep := range []string{"Boys", "Girls", "Men", "Sports", "Sport", "Women", "", "boys", "Sportss"} {
		f.Add([]byte(`{"id":"127","ts":192322800,"dep":"` + dep + `"}`))
	}
	f.Add([]byte(`{"id":"127","ts":192322800,"dep":"Women","x":3}`))
	f.Add([]byte(`{"id":"127","ts":192322800,"dep":"Women","y":null,"x":null}`))
	fuzzEvent(f, event.DecodeFocus, refFocus, event.AppendFocus, func(t *testing.T, fc event.Focus) {
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
	})
}

func FuzzDecodeBrowsing(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"id": 18, "x": 1040.3088057901086, "y": 966.9820674338519, "ts": 1765069200.5123}`))
	f.Add([]byte(`{"id":"127","ts":192322800,"dep":"Unknown"}`))
	f.Add([]byte(`{"id":"127","ts":192322800,"dep":null,"x":null,"y":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		br, err := event.DecodeBrowsing(data)
		want, refErr := refBrowsing(data)
		checkReference(t, data, br, err, want, refErr)
		if err != nil {
			checkDecodeError(t, data, err)
			return
		}
		checkCommon(t, br.ID, br.TS)
		if br.Dep != store.NoDepartment && !br.Dep.Valid() {
			t.Fatalf("decoded department %d is not a real one", br.Dep)
		}
		if br.HasPos {
			checkCoord(t, "x", br.X)
			checkCoord(t, "y", br.Y)
		} else if br.X != 0 || br.Y != 0 {
			t.Fatalf("no position but x, y = %d, %d", br.X, br.Y)
		}
		b := event.AppendBrowsing(nil, br)
		back, err := event.DecodeBrowsing(b)
		if err != nil || back != br {
			t.Fatalf("%q decodes to %+v, re-encodes to %s, which decodes to %+v, %v", data, br, b, back, err)
		}
	})
}

func FuzzDecodeOffer(f *testing.F) {
	seed(f,
		`{"customer":{"id":"11"},"coupon":{"id":22},"ts":192322800}`,
		`{"customer":{"id":11},"coupon":{"id":"22"},"ts":1.5}`,
		`{"customer":{"id":"11"},"coupon":{"id":"2\"2"},"ts":1}`,
		`{"\u0063ustomer":{"\u0069d":"1\u0031"},"coupon":{"id":"\u0032\u0032"},"t\u0073":1}`,
		`{"customer":{"id":"11","id":"12"},"coupon":{"id":22},"ts":1}`,
		`{"customer":{"id":"11"},"coupon":{"id":"2.2e1"},"ts":1,"coupon":{"id":3}}`,
		`{"Customer":{"id":"11"},"coupon":{"ID":22},"ts":1}`)
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := event.DecodeOffer(b)
		want, refErr := refOffer(b)
		checkReference(t, b, o, err, want, refErr)
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
