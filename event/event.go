// Package event owns the wire: the JSON payloads of the enter, move, exit,
// focus, browsing and redeem topics and the Prediction Results Message. Decoding
// validates every field and says which one is wrong; encoding produces exactly
// the shapes of the seed documents.
package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/storeflow/storeflow/internal/clip"
	"github.com/storeflow/storeflow/store"
)

// MaxPayload is the largest event payload accepted. Real events are well under
// 200 bytes; anything near this is not an event.
const MaxPayload = 4096

// maxTS is 9999-12-31T23:59:59Z: a later timestamp is a unit mix-up
// (milliseconds), not a date.
const maxTS = 253402300799

// Reason classifies a rejected payload. It is a metric label, so the set is small
// and fixed.
type Reason string

// The reasons a payload is rejected.
const (
	ReasonTooLarge     Reason = "too_large"
	ReasonMalformed    Reason = "malformed_json"
	ReasonMissingField Reason = "missing_field"
	ReasonInvalidField Reason = "invalid_field"
	ReasonUnknownDep   Reason = "unknown_department"
)

// Reasons lists every Reason, for pre-registering metrics.
var Reasons = []Reason{ReasonTooLarge, ReasonMalformed, ReasonMissingField, ReasonInvalidField, ReasonUnknownDep}

// Error says what is wrong with a payload: which field and why.
type Error struct {
	Reason Reason
	Field  string // empty for whole-payload problems
	Detail string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return "event: " + e.Detail
	}
	return fmt.Sprintf("event: field %q: %s", e.Field, e.Detail)
}

// ReasonOf returns the Reason of a decode error (ReasonMalformed for any error
// that is not an *Error).
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ReasonMalformed
}

// Presence is an enter or exit event: a shopper crossing the door.
type Presence struct {
	ID string // customer id
	TS int64  // unix seconds
}

// Move is a location sensor firing for a shopper.
type Move struct {
	ID   string
	TS   int64
	X, Y int
}

// Focus is a shopper lingering in a department. X and Y are optional.
type Focus struct {
	ID     string
	TS     int64
	Dep    store.Department
	X, Y   int
	HasPos bool // X and Y were given
}

// Browsing is a shopper who keeps moving through the store without focusing:
// a staff alert ("needs assistance"). It has a focus's fields, but Dep may be
// NoDepartment (an aisle).
type Browsing Focus

// wire is the union of every event field as it arrives, each value still raw
// JSON (a slice of the payload), so that ints, floats and numeric ids are all
// accepted and checked here.
type wire struct {
	ID, TS, X, Y, Dep json.RawMessage
}

// wireNames are the names of wire's fields on the wire, in its order.
var wireNames = []string{"id", "ts", "x", "y", "dep"}

// decodeWire splits a payload into its fields and decodes the two every event
// has, the customer id and the timestamp; the rest stay raw for the event's own
// decoder.
func decodeWire(b []byte) (wire, string, int64, error) {
	var w wire
	if err := checkObject(b); err != nil {
		return wire{}, "", 0, err
	}
	fields := [...]*json.RawMessage{&w.ID, &w.TS, &w.X, &w.Y, &w.Dep}
	twice := -1
	ok := object(b, wireNames, func(f int, val []byte) {
		if *fields[f] != nil && twice < 0 {
			twice = f
		}
		*fields[f] = val
	})
	if !ok {
		return wire{}, "", 0, malformed(b)
	}
	if twice >= 0 {
		return wire{}, "", 0, givenTwice(wireNames[twice])
	}
	id, err := decodeID(w.ID)
	if err != nil {
		return wire{}, "", 0, err
	}
	ts, err := decodeTS(w.TS)
	if err != nil {
		return wire{}, "", 0, err
	}
	return w, id, ts, nil
}

// checkObject refuses a payload over MaxPayload or one that does not start
// as a JSON object.
func checkObject(b []byte) error {
	if len(b) > MaxPayload {
		return &Error{Reason: ReasonTooLarge, Detail: fmt.Sprintf("payload of %d bytes is over the %d byte limit", len(b), MaxPayload)}
	}
	// JSON's space only: bytes.TrimSpace also took \v and U+00A0, which
	// encoding/json refuses.
	if i := skipWS(b, 0); i == len(b) || b[i] != '{' {
		return &Error{Reason: ReasonMalformed, Detail: "payload is not a JSON object"}
	}
	return nil
}

// givenTwice is the error for a field given more than once (see scan.go).
func givenTwice(field string) *Error {
	return &Error{Reason: ReasonInvalidField, Field: field, Detail: "given more than once"}
}

// malformed is the error for a payload that is not valid JSON, worded by
// encoding/json (the slow path, taken only for a bad payload).
func malformed(b []byte) *Error {
	detail := "payload is not valid JSON"
	if err := json.Unmarshal(b, new(any)); err != nil {
		detail += ": " + err.Error()
	}
	return &Error{Reason: ReasonMalformed, Detail: detail}
}

// DecodePresence decodes an enter or exit payload: {"id":"127","ts":192322800}.
func DecodePresence(b []byte) (Presence, error) {
	_, id, ts, err := decodeWire(b)
	if err != nil {
		return Presence{}, err
	}
	return Presence{ID: id, TS: ts}, nil
}

// DecodeMove decodes a move payload: {"id":"127","ts":192322800,"x":3,"y":7}.
func DecodeMove(b []byte) (Move, error) {
	w, id, ts, err := decodeWire(b)
	if err != nil {
		return Move{}, err
	}
	x, err := decodeCoord("x", w.X, true)
	if err != nil {
		return Move{}, err
	}
	y, err := decodeCoord("y", w.Y, true)
	if err != nil {
		return Move{}, err
	}
	return Move{ID: id, TS: ts, X: x, Y: y}, nil
}

// DecodeFocus decodes a focus payload:
// {"id":"127","ts":192322800,"dep":"Boys"} with optional "x" and "y".
// "Sport" is accepted for Sports.
func DecodeFocus(b []byte) (Focus, error) {
	return decodeSpot(b, true)
}

// DecodeBrowsing decodes a browsing payload: {"id":"127","ts":192322800} with
// optional "dep" (absent or null: an aisle) and optional "x" and "y", as the
// original decision service and its recorded scenarios send it.
func DecodeBrowsing(b []byte) (Browsing, error) {
	f, err := decodeSpot(b, false)
	return Browsing(f), err
}

// decodeSpot decodes where a shopper is, as focus and browsing payloads say
// it: the id, the ts, the department (required or not) and an optional
// position.
func decodeSpot(b []byte, depRequired bool) (Focus, error) {
	w, id, ts, err := decodeWire(b)
	if err != nil {
		return Focus{}, err
	}
	dep, err := decodeDep(w.Dep, depRequired)
	if err != nil {
		return Focus{}, err
	}
	f := Focus{ID: id, TS: ts, Dep: dep}
	if f.X, f.Y, f.HasPos, err = decodePos(w); err != nil {
		return Focus{}, err
	}
	return f, nil
}

// decodeDep reads a department name; "Sport" is accepted for Sports. Absent
// or null is NoDepartment, an error when required.
func decodeDep(raw json.RawMessage, required bool) (store.Department, error) {
	// isNull, as for every other field: "dep":null is a missing department, not
	// an unknown one named "".
	if isNull(raw) {
		if required {
			return store.NoDepartment, &Error{Reason: ReasonMissingField, Field: "dep", Detail: "missing"}
		}
		return store.NoDepartment, nil
	}
	if raw[0] != '"' {
		return store.NoDepartment, &Error{Reason: ReasonInvalidField, Field: "dep", Detail: "want a string, got " + quoted(raw)}
	}
	var buf [16]byte // the longest department name, and then some
	name, _ := unquote(buf[:0], raw[1:len(raw)-1])
	dep, ok := store.ParseDepartment(string(name))
	if !ok {
		return store.NoDepartment, &Error{Reason: ReasonUnknownDep, Field: "dep",
			// %s, not %q: quoted already quotes (quoting twice printed "\"Foo\"").
			Detail: fmt.Sprintf("unknown department %s (want Boys, Girls, Men, Sports or Women)", quoted(name))}
	}
	return dep, nil
}

// decodePos reads the optional position of a focus or browsing event: x and
// y together or not at all.
func decodePos(w wire) (x, y int, has bool, err error) {
	hasX, hasY := !isNull(w.X), !isNull(w.Y)
	if hasX != hasY {
		missing := "x"
		if hasX {
			missing = "y"
		}
		return 0, 0, false, &Error{Reason: ReasonMissingField, Field: missing, Detail: "x and y come together or not at all"}
	}
	if !hasX {
		return 0, 0, false, nil
	}
	if x, err = decodeCoord("x", w.X, true); err != nil {
		return 0, 0, false, err
	}
	if y, err = decodeCoord("y", w.Y, true); err != nil {
		return 0, 0, false, err
	}
	return x, y, true, nil
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

// MaxIDLen is the longest customer id accepted, in bytes.
const MaxIDLen = 64

// CheckID refuses a customer id no event could carry: empty, longer than
// MaxIDLen bytes, or not valid UTF-8.
func CheckID(s string) error {
	switch {
	case s == "":
		return &Error{Reason: ReasonInvalidField, Field: "id", Detail: "empty"}
	case len(s) > MaxIDLen:
		return &Error{Reason: ReasonInvalidField, Field: "id", Detail: "longer than 64 bytes"}
	case !utf8.ValidString(s):
		return &Error{Reason: ReasonInvalidField, Field: "id", Detail: "not valid UTF-8"}
	}
	return nil
}

// decodeID accepts a non-empty string or an integer number (recorded scenarios
// send numbers) and returns the id as a string.
func decodeID(raw json.RawMessage) (string, error) {
	if isNull(raw) {
		return "", &Error{Reason: ReasonMissingField, Field: "id", Detail: "missing"}
	}
	if raw[0] == '"' {
		// Checked as sent: encoding/json would replace invalid UTF-8 and
		// lone surrogates with U+FFFD, making different ids one.
		raw = raw[1 : len(raw)-1]
		var s string
		if bytes.IndexByte(raw, '\\') < 0 {
			if !utf8.Valid(raw) {
				return "", &Error{Reason: ReasonInvalidField, Field: "id", Detail: "not valid UTF-8"}
			}
			s = string(raw) // no escapes: the common case, one allocation
		} else {
			var buf [64]byte
			text, valid := unquote(buf[:0], raw)
			if !valid {
				return "", &Error{Reason: ReasonInvalidField, Field: "id", Detail: "not valid UTF-8 (or a lone surrogate escape)"}
			}
			s = string(text)
		}
		if err := CheckID(s); err != nil {
			return "", err
		}
		return s, nil
	}
	// A plain integer is kept exactly: through float64, 9007199254740993 became
	// the id of another customer (…992).
	if n, err := strconv.ParseUint(string(raw), 10, 64); err == nil {
		return strconv.FormatUint(n, 10), nil
	}
	// Other number forms (127.0, 1.27e2) go through float64, where integers are
	// exact only below 2^53.
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || f != math.Trunc(f) || f < 0 || f >= 1<<53 {
		return "", &Error{Reason: ReasonInvalidField, Field: "id", Detail: "want a string or a non-negative integer, got " + quoted(raw)}
	}
	return strconv.FormatInt(int64(f), 10), nil
}

// parseNumber parses a JSON number. Plain integers, what sensors send, take a
// loop with no allocation; anything else goes through strconv.
func parseNumber(raw []byte) (float64, bool) {
	if len(raw) > 0 && len(raw) <= 15 {
		n, ok := int64(0), true
		neg := raw[0] == '-'
		digits := raw
		if neg {
			digits = raw[1:]
		}
		for _, c := range digits {
			if c < '0' || c > '9' {
				ok = false
				break
			}
			n = n*10 + int64(c-'0')
		}
		if ok && len(digits) > 0 {
			if neg {
				n = -n
			}
			return float64(n), true
		}
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	return f, err == nil
}

// decodeTS accepts unix seconds as an integer or a float and keeps whole seconds.
func decodeTS(raw json.RawMessage) (int64, error) {
	if isNull(raw) {
		return 0, &Error{Reason: ReasonMissingField, Field: "ts", Detail: "missing"}
	}
	f, ok := parseNumber(raw)
	if !ok {
		return 0, &Error{Reason: ReasonInvalidField, Field: "ts", Detail: "want unix seconds as a number, got " + quoted(raw)}
	}
	// f < 1, not f <= 0: 0.5 would truncate to ts 0, which is itself rejected.
	if f < 1 || f > maxTS {
		return 0, &Error{Reason: ReasonInvalidField, Field: "ts", Detail: fmt.Sprintf("%s is not unix seconds between 1970 and 9999", quoted(raw))}
	}
	return int64(f), nil
}

// decodeCoord accepts an integer or a float (rounded to the nearest integer).
func decodeCoord(field string, raw json.RawMessage, required bool) (int, error) {
	if isNull(raw) {
		if required {
			return 0, &Error{Reason: ReasonMissingField, Field: field, Detail: "missing"}
		}
		return 0, nil
	}
	f, ok := parseNumber(raw)
	if !ok {
		return 0, &Error{Reason: ReasonInvalidField, Field: field, Detail: "want a number, got " + quoted(raw)}
	}
	if f < -1e6 || f > 1e6 {
		return 0, &Error{Reason: ReasonInvalidField, Field: field, Detail: quoted(raw) + " is out of range"}
	}
	return int(math.Round(f)), nil
}

// quoted quotes at most 32 bytes of raw input for an error message, so a
// hostile payload cannot flood the logs.
func quoted(raw []byte) string { return clip.Quote(string(raw), 32) }
