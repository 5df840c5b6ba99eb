package event_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/storeflow/storeflow/event"
	"github.com/storeflow/storeflow/store"
)

var update = flag.Bool("update", false, "rewrite testdata/ golden files")

// bad is an invalid payload: the Reason it must be rejected with and the field
// the error must name ("" for whole-payload problems).
type bad struct {
	name    string
	payload string
	reason  event.Reason
	field   string
}

// checkBad asserts err is an *event.Error with the wanted reason and field, and
// that its message names the field and stays short.
func checkBad(t *testing.T, tc bad, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("payload %q: no error, want %s on field %q", tc.payload, tc.reason, tc.field)
	}
	if got := event.ReasonOf(err); got != tc.reason {
		t.Errorf("ReasonOf = %s, want %s (err: %v)", got, tc.reason, err)
	}
	var e *event.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *event.Error", err, err)
	}
	if e.Field != tc.field {
		t.Errorf("Field = %q, want %q (err: %v)", e.Field, tc.field, err)
	}
	msg := err.Error()
	if tc.field != "" && !strings.Contains(msg, `"`+tc.field+`"`) {
		t.Errorf("message %q does not name field %q", msg, tc.field)
	}
	if !strings.HasPrefix(msg, "event: ") || len(msg) <= len("event: ") {
		t.Errorf("message %q: want a non-empty message prefixed with \"event: \"", msg)
	}
	if len(msg) >= 200 {
		t.Errorf("message is %d bytes, want < 200: %q", len(msg), msg)
	}
}

// decoded is a valid payload and the event it decodes to.
type decoded[E any] struct {
	name    string
	payload string
	want    E
}

// checkDecoder runs decode, called name in messages, over payloads it must
// accept and payloads it must refuse.
func checkDecoder[E comparable](t *testing.T, name string, decode func([]byte) (E, error), good []decoded[E], bad []bad) {
	t.Helper()
	for _, tc := range good {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decode([]byte(tc.payload))
			if err != nil {
				t.Fatalf("%s(%q): %v", name, tc.payload, err)
			}
			if got != tc.want {
				t.Errorf("%s(%q) = %+v, want %+v", name, tc.payload, got, tc.want)
			}
		})
	}
	for _, tc := range bad {
		t.Run("bad/"+tc.name, func(t *testing.T) {
			_, err := decode([]byte(tc.payload))
			checkBad(t, tc, err)
		})
	}
}

// padded returns a valid presence-like payload grown to exactly n bytes by an
// unknown field.
func padded(n int) string {
	const head, tail = `{"id":"127","ts":192322800,"pad":"`, `"}`
	return head + strings.Repeat("x", n-len(head)-len(tail)) + tail
}

// commonBad holds the invalid payloads every decoder rejects the same way; the
// extra fields make them otherwise valid for all three (move and focus).
func commonBad() []bad {
	const rest = `,"x":3,"y":7,"dep":"Boys"`
	return []bad{
		{"missing id", `{"ts":192322800` + rest + `}`, event.ReasonMissingField, "id"},
		{"null id", `{"id":null,"ts":192322800` + rest + `}`, event.ReasonMissingField, "id"},
		{"empty id", `{"id":"","ts":192322800` + rest + `}`, event.ReasonInvalidField, "id"},
		{"id float 1.5", `{"id":1.5,"ts":192322800` + rest + `}`, event.ReasonInvalidField, "id"},
		{"negative id", `{"id":-127,"ts":192322800` + rest + `}`, event.ReasonInvalidField, "id"},
		{"id object", `{"id":{"v":"127"},"ts":192322800` + rest + `}`, event.ReasonInvalidField, "id"},
		{"id array", `{"id":["127"],"ts":192322800` + rest + `}`, event.ReasonInvalidField, "id"},
		{"id bool", `{"id":true,"ts":192322800` + rest + `}`, event.ReasonInvalidField, "id"},
		{"id 65 bytes", `{"id":"` + strings.Repeat("a", 65) + `","ts":192322800` + rest + `}`, event.ReasonInvalidField, "id"},
		{"id number over 2^64", `{"id":18446744073709551616,"ts":192322800` + rest + `}`, event.ReasonInvalidField, "id"},
		{"id float form at 2^53", `{"id":9.007199254740992e15,"ts":192322800` + rest + `}`, event.ReasonInvalidField, "id"},
		{"id invalid UTF-8", "{\"id\":\"12\xff7\",\"ts\":192322800" + rest + "}", event.ReasonInvalidField, "id"},
		{"id truncated UTF-8", "{\"id\":\"12\xc3\",\"ts\":192322800" + rest + "}", event.ReasonInvalidField, "id"},
		// encoding/json would read these as U+FFFD: two different ids, one shopper.
		{"id lone high surrogate", `{"id":"12\ud83d","ts":192322800` + rest + `}`, event.ReasonInvalidField, "id"},
		{"id lone low surrogate", `{"id":"\ude00","ts":192322800` + rest + `}`, event.ReasonInvalidField, "id"},
		{"id surrogates reversed", `{"id":"\ude00\ud83d","ts":192322800` + rest + `}`, event.ReasonInvalidField, "id"},
		// Names match exactly; a field given twice is refused (scan.go says why).
		{"upper-case ID is another name", `{"ID":"127","ts":192322800` + rest + `}`, event.ReasonMissingField, "id"},
		{"Unicode-folded name", `{"id":"127","\u017f":1,"t\u017f":192322800` + rest + `}`, event.ReasonMissingField, "ts"},
		{"id given twice", `{"id":"127","id":"128","ts":192322800` + rest + `}`, event.ReasonInvalidField, "id"},
		{"id given twice, once escaped", `{"id":"127","\u0069d":"128","ts":192322800` + rest + `}`, event.ReasonInvalidField, "id"},
		{"ts given twice", `{"id":"127","ts":192322800,"ts":192322801` + rest + `}`, event.ReasonInvalidField, "ts"},
		// JSON's space only, as encoding/json.
		{"vertical tab after", `{"id":"127","ts":192322800` + rest + "}\v", event.ReasonMalformed, ""},
		{"no-break space before", "\u00a0{\"id\":\"127\",\"ts\":192322800" + rest + "}", event.ReasonMalformed, ""},
		{"missing ts", `{"id":"127"` + rest + `}`, event.ReasonMissingField, "ts"},
		{"null ts", `{"id":"127","ts":null` + rest + `}`, event.ReasonMissingField, "ts"},
		{"ts string", `{"id":"127","ts":"192322800"` + rest + `}`, event.ReasonInvalidField, "ts"},
		{"ts bool", `{"id":"127","ts":true` + rest + `}`, event.ReasonInvalidField, "ts"},
		{"ts 0", `{"id":"127","ts":0` + rest + `}`, event.ReasonInvalidField, "ts"},
		{"ts 0.5 truncates to 0", `{"id":"127","ts":0.5` + rest + `}`, event.ReasonInvalidField, "ts"},
		{"negative ts", `{"id":"127","ts":-192322800` + rest + `}`, event.ReasonInvalidField, "ts"},
		{"ts in milliseconds", `{"id":"127","ts":1.7e12` + rest + `}`, event.ReasonInvalidField, "ts"},
		{"ts past 9999", `{"id":"127","ts":253402300800` + rest + `}`, event.ReasonInvalidField, "ts"},
		{"ts overflows float64", `{"id":"127","ts":1e400` + rest + `}`, event.ReasonInvalidField, "ts"},
		{"array", `[{"id":"127","ts":192322800}]`, event.ReasonMalformed, ""},
		{"string", `"{\"id\":\"127\"}"`, event.ReasonMalformed, ""},
		{"number", `127`, event.ReasonMalformed, ""},
		{"null", `null`, event.ReasonMalformed, ""},
		{"empty", ``, event.ReasonMalformed, ""},
		{"only whitespace", " \n\t ", event.ReasonMalformed, ""},
		{"truncated", `{"id":"127","ts":1923`, event.ReasonMalformed, ""},
		{"unclosed string", `{"id":"127`, event.ReasonMalformed, ""},
		{"trailing garbage", `{"id":"127","ts":192322800` + rest + `} x`, event.ReasonMalformed, ""},
		{"two objects", `{"id":"127","ts":192322800` + rest + `}{}`, event.ReasonMalformed, ""},
		{"trailing comma", `{"id":"127","ts":192322800` + rest + `,}`, event.ReasonMalformed, ""},
		{"single quotes", `{'id':'127','ts':192322800}`, event.ReasonMalformed, ""},
		{"over MaxPayload", padded(event.MaxPayload + 1), event.ReasonTooLarge, ""},
		{"10 KB string ts", `{"id":"127","ts":"` + strings.Repeat("9", 10<<10) + `"` + rest + `}`, event.ReasonTooLarge, ""},
		// Hostile values under the size limit: the message quotes at most a
		// clip of them.
		{"4 KB string ts", `{"id":"127","ts":"` + strings.Repeat("9", 4000) + `"` + rest + `}`, event.ReasonInvalidField, "ts"},
		{"4 KB invalid UTF-8 ts", "{\"id\":\"127\",\"ts\":\"" + strings.Repeat("\xff", 4000) + "\"" + rest + "}", event.ReasonInvalidField, "ts"},
		{"4 KB escapes ts", `{"id":"127","ts":"` + strings.Repeat(`\"`, 1900) + `"` + rest + `}`, event.ReasonInvalidField, "ts"},
		{"4 KB object id", "{\"id\":{\"k\":\"" + strings.Repeat("\xfe", 3900) + "\"},\"ts\":192322800" + rest + "}", event.ReasonInvalidField, "id"},
	}
}

func TestDecodePresence(t *testing.T) {
	good := []decoded[event.Presence]{
		{"seed example", `{"id":"127","ts":192322800}`, event.Presence{ID: "127", TS: 192322800}},
		{"seed example pretty", "{\n  \"id\": \"127\",\n  \"ts\": 192322800\n}", event.Presence{ID: "127", TS: 192322800}},
		{"numeric id", `{"id":127,"ts":192322800}`, event.Presence{ID: "127", TS: 192322800}},
		{"numeric id 0", `{"id":0,"ts":192322800}`, event.Presence{ID: "0", TS: 192322800}},
		{"numeric id float form", `{"id":127.0,"ts":192322800}`, event.Presence{ID: "127", TS: 192322800}},
		{"numeric id exponent", `{"id":1.27e2,"ts":192322800}`, event.Presence{ID: "127", TS: 192322800}},
		{"numeric id above 2^53 kept exact", `{"id":9007199254740993,"ts":192322800}`, event.Presence{ID: "9007199254740993", TS: 192322800}},
		{"numeric id max uint64", `{"id":18446744073709551615,"ts":192322800}`, event.Presence{ID: "18446744073709551615", TS: 192322800}},
		{"float ts", `{"id":"127","ts":192322800.9}`, event.Presence{ID: "127", TS: 192322800}},
		{"exponent ts", `{"id":"127","ts":1.923228e8}`, event.Presence{ID: "127", TS: 192322800}},
		{"ts 1", `{"id":"127","ts":1}`, event.Presence{ID: "127", TS: 1}},
		{"ts 9999-12-31", `{"id":"127","ts":253402300799}`, event.Presence{ID: "127", TS: 253402300799}},
		{"fields reversed", `{"ts":192322800,"id":"127"}`, event.Presence{ID: "127", TS: 192322800}},
		{"unknown fields ignored", `{"id":"127","ts":192322800,"x":3,"y":7,"dep":"Nowhere","extra":{"a":[1,2,null]}}`, event.Presence{ID: "127", TS: 192322800}},
		{"whitespace around", " \r\n\t{\"id\":\"127\",\"ts\":192322800}\n\n ", event.Presence{ID: "127", TS: 192322800}},
		{"id escaped", `{"id":"a\"b\\c\u00e9","ts":192322800}`, event.Presence{ID: "a\"b\\cé", TS: 192322800}},
		{"id non-ASCII", `{"id":"Zoë-日本","ts":192322800}`, event.Presence{ID: "Zoë-日本", TS: 192322800}},
		// The payload: valid JSON for "id", as encoding/json reads it.
		{"name escaped", `{"\u0069d":"21","ts":192322800}`, event.Presence{ID: "21", TS: 192322800}},
		{"names escaped", `{"i\u0064":"21","\u0074\u0073":192322800}`, event.Presence{ID: "21", TS: 192322800}},
		{"id surrogate pair", `{"id":"\ud83d\ude00","ts":192322800}`, event.Presence{ID: "\U0001F600", TS: 192322800}},
		{"id U+FFFD as sent", `{"id":"\ufffd\uFFFD","ts":192322800}`, event.Presence{ID: "\ufffd\ufffd", TS: 192322800}},
		{"other-case names ignored", `{"ID":"7","Id":"8","id":"21","TS":1,"ts":192322800}`, event.Presence{ID: "21", TS: 192322800}},
		{"id 64 bytes", `{"id":"` + strings.Repeat("a", 64) + `","ts":192322800}`, event.Presence{ID: strings.Repeat("a", 64), TS: 192322800}},
		{"exactly MaxPayload", padded(event.MaxPayload), event.Presence{ID: "127", TS: 192322800}},
	}
	checkDecoder(t, "DecodePresence", event.DecodePresence, good, commonBad())
}

func TestDecodeMove(t *testing.T) {
	good := []decoded[event.Move]{
		{"seed example", `{"id":"127","ts":192322800,"x":3,"y":7}`, event.Move{ID: "127", TS: 192322800, X: 3, Y: 7}},
		{"numeric id", `{"id":127,"ts":192322800,"x":3,"y":7}`, event.Move{ID: "127", TS: 192322800, X: 3, Y: 7}},
		{"float ts", `{"id":"127","ts":192322800.9,"x":3,"y":7}`, event.Move{ID: "127", TS: 192322800, X: 3, Y: 7}},
		{"float x y rounded", `{"id":"127","ts":192322800,"x":3.4,"y":6.6}`, event.Move{ID: "127", TS: 192322800, X: 3, Y: 7}},
		{"half rounds away from zero", `{"id":"127","ts":192322800,"x":2.5,"y":-2.5}`, event.Move{ID: "127", TS: 192322800, X: 3, Y: -3}},
		{"zero coordinates", `{"id":"127","ts":192322800,"x":0,"y":0}`, event.Move{ID: "127", TS: 192322800}},
		{"negative coordinates", `{"id":"127","ts":192322800,"x":-4,"y":-0.2}`, event.Move{ID: "127", TS: 192322800, X: -4, Y: 0}},
		{"pixel plan", `{"id":"42","ts":1700000000,"x":1071,"y":50}`, event.Move{ID: "42", TS: 1700000000, X: 1071, Y: 50}},
		{"exponent coordinates", `{"id":"127","ts":192322800,"x":1e3,"y":1.5e1}`, event.Move{ID: "127", TS: 192322800, X: 1000, Y: 15}},
		{"coordinate limit", `{"id":"127","ts":192322800,"x":1e6,"y":-1e6}`, event.Move{ID: "127", TS: 192322800, X: 1000000, Y: -1000000}},
		{"unknown fields ignored", `{"id":"127","ts":192322800,"x":3,"y":7,"z":9,"dep":42,"speed":"fast"}`, event.Move{ID: "127", TS: 192322800, X: 3, Y: 7}},
		{"whitespace around", "\n {\"id\" : \"127\" , \"ts\" : 192322800 , \"x\" : 3 , \"y\" : 7 } \n", event.Move{ID: "127", TS: 192322800, X: 3, Y: 7}},
	}
	badCases := append(commonBad(), []bad{
		{"missing x", `{"id":"127","ts":192322800,"y":7}`, event.ReasonMissingField, "x"},
		{"missing y", `{"id":"127","ts":192322800,"x":3}`, event.ReasonMissingField, "y"},
		{"missing x and y", `{"id":"127","ts":192322800}`, event.ReasonMissingField, "x"},
		{"null x", `{"id":"127","ts":192322800,"x":null,"y":7}`, event.ReasonMissingField, "x"},
		{"x string", `{"id":"127","ts":192322800,"x":"3","y":7}`, event.ReasonInvalidField, "x"},
		{"y string", `{"id":"127","ts":192322800,"x":3,"y":"7"}`, event.ReasonInvalidField, "y"},
		{"x object", `{"id":"127","ts":192322800,"x":{"v":3},"y":7}`, event.ReasonInvalidField, "x"},
		{"y bool", `{"id":"127","ts":192322800,"x":3,"y":false}`, event.ReasonInvalidField, "y"},
		{"x out of range", `{"id":"127","ts":192322800,"x":1e7,"y":7}`, event.ReasonInvalidField, "x"},
		{"y out of range", `{"id":"127","ts":192322800,"x":3,"y":-1e300}`, event.ReasonInvalidField, "y"},
		// The first bad field, in id, ts, x, y order, is the one reported.
		{"bad id and ts", `{"id":"","ts":"x","x":3,"y":7}`, event.ReasonInvalidField, "id"},
		{"bad ts and x", `{"id":"127","ts":"x","x":"3","y":7}`, event.ReasonInvalidField, "ts"},
	}...)
	checkDecoder(t, "DecodeMove", event.DecodeMove, good, badCases)
}

func TestDecodeFocus(t *testing.T) {
	good := []decoded[event.Focus]{
		{"seed example", `{"id":"127","ts":192322800,"dep":"Boys"}`, event.Focus{ID: "127", TS: 192322800, Dep: store.Boys}},
		{"seed example pretty", "{\n  \"id\": \"127\",\n  \"ts\": 192322800,\n  \"dep\": \"Boys\"\n}", event.Focus{ID: "127", TS: 192322800, Dep: store.Boys}},
		{"spec example with x y", `{"id":"127","ts":192322800,"dep":"Boys","x":3,"y":7}`, event.Focus{ID: "127", TS: 192322800, Dep: store.Boys, X: 3, Y: 7, HasPos: true}},
		{"Girls", `{"id":"1","ts":192322800,"dep":"Girls"}`, event.Focus{ID: "1", TS: 192322800, Dep: store.Girls}},
		{"Men", `{"id":"1","ts":192322800,"dep":"Men"}`, event.Focus{ID: "1", TS: 192322800, Dep: store.Men}},
		{"Sports", `{"id":"1","ts":192322800,"dep":"Sports"}`, event.Focus{ID: "1", TS: 192322800, Dep: store.Sports}},
		{"Sport alias", `{"id":"1","ts":192322800,"dep":"Sport"}`, event.Focus{ID: "1", TS: 192322800, Dep: store.Sports}},
		{"Women", `{"id":"1","ts":192322800,"dep":"Women"}`, event.Focus{ID: "1", TS: 192322800, Dep: store.Women}},
		{"numeric id float ts", `{"id":127,"ts":192322800.9,"dep":"Men"}`, event.Focus{ID: "127", TS: 192322800, Dep: store.Men}},
		{"float x y rounded", `{"id":"127","ts":192322800,"dep":"Women","x":3.4,"y":6.5}`, event.Focus{ID: "127", TS: 192322800, Dep: store.Women, X: 3, Y: 7, HasPos: true}},
		{"x y zero is a position", `{"id":"127","ts":192322800,"dep":"Men","x":0,"y":0}`, event.Focus{ID: "127", TS: 192322800, Dep: store.Men, HasPos: true}},
		{"x y null is no position", `{"id":"127","ts":192322800,"dep":"Men","x":null,"y":null}`, event.Focus{ID: "127", TS: 192322800, Dep: store.Men}},
		{"unknown fields ignored", `{"id":"127","ts":192322800,"dep":"Boys","confidence":0.9,"sensor":{"id":"s1"}}`, event.Focus{ID: "127", TS: 192322800, Dep: store.Boys}},
		{"whitespace around", "\t\r\n{\"id\":\"127\",\"ts\":192322800,\"dep\":\"Boys\"}\r\n", event.Focus{ID: "127", TS: 192322800, Dep: store.Boys}},
		{"names and dep escaped", `{"\u0069d":"21","ts":192322800,"\u0064ep":"B\u006fys","\u0078":3,"\u0079":7}`, event.Focus{ID: "21", TS: 192322800, Dep: store.Boys, X: 3, Y: 7, HasPos: true}},
	}
	badCases := append(commonBad(), []bad{
		{"missing dep", `{"id":"127","ts":192322800}`, event.ReasonMissingField, "dep"},
		{"null dep", `{"id":"127","ts":192322800,"dep":null}`, event.ReasonMissingField, "dep"},
		{"empty dep", `{"id":"127","ts":192322800,"dep":""}`, event.ReasonUnknownDep, "dep"},
		{"unknown dep", `{"id":"127","ts":192322800,"dep":"Toys"}`, event.ReasonUnknownDep, "dep"},
		{"dep wrong case", `{"id":"127","ts":192322800,"dep":"boys"}`, event.ReasonUnknownDep, "dep"},
		{"dep given twice", `{"id":"127","ts":192322800,"dep":"Boys","d\u0065p":"Men"}`, event.ReasonInvalidField, "dep"},
		{"dep with a lone surrogate", `{"id":"127","ts":192322800,"dep":"Boys\ud800"}`, event.ReasonUnknownDep, "dep"},
		{"dep padded", `{"id":"127","ts":192322800,"dep":" Boys"}`, event.ReasonUnknownDep, "dep"},
		{"dep long", `{"id":"127","ts":192322800,"dep":"` + strings.Repeat("Z", 3000) + `"}`, event.ReasonUnknownDep, "dep"},
		{"dep number", `{"id":"127","ts":192322800,"dep":3}`, event.ReasonInvalidField, "dep"},
		{"dep array", `{"id":"127","ts":192322800,"dep":["Boys"]}`, event.ReasonInvalidField, "dep"},
		{"x without y", `{"id":"127","ts":192322800,"dep":"Boys","x":3}`, event.ReasonMissingField, "y"},
		{"y without x", `{"id":"127","ts":192322800,"dep":"Boys","y":7}`, event.ReasonMissingField, "x"},
		{"x with null y", `{"id":"127","ts":192322800,"dep":"Boys","x":3,"y":null}`, event.ReasonMissingField, "y"},
		{"x string", `{"id":"127","ts":192322800,"dep":"Boys","x":"3","y":7}`, event.ReasonInvalidField, "x"},
		{"y string", `{"id":"127","ts":192322800,"dep":"Boys","x":3,"y":"7"}`, event.ReasonInvalidField, "y"},
		{"x out of range", `{"id":"127","ts":192322800,"dep":"Boys","x":-2e6,"y":7}`, event.ReasonInvalidField, "x"},
	}...)
	checkDecoder(t, "DecodeFocus", event.DecodeFocus, good, badCases)
}

func TestDecodeBrowsing(t *testing.T) {
	good := []struct {
		name    string
		payload string
		want    event.Browsing
	}{
		{"storeflow's own, in a department", `{"id":"127","ts":192322800,"dep":"Boys","x":3,"y":1}`,
			event.Browsing{ID: "127", TS: 192322800, Dep: store.Boys, X: 3, Y: 1, HasPos: true}},
		{"storeflow's own, in an aisle", `{"id":"127","ts":192322800,"x":2,"y":5}`,
			event.Browsing{ID: "127", TS: 192322800, X: 2, Y: 5, HasPos: true}},
		// What the original scenario player publishes for the BROWSING step
		// of demo-scenario/scenarios/scenario_18.json: a numeric id, pixel
		// coordinates and the float ts it sets at publish time.
		{"original scenario step", `{"id": 18, "x": 1040.3088057901086, "y": 966.9820674338519, "ts": 1765069200.5123}`,
			event.Browsing{ID: "18", TS: 1765069200, X: 1040, Y: 967, HasPos: true}},
		{"no position", `{"id":"127","ts":192322800}`, event.Browsing{ID: "127", TS: 192322800}},
		{"dep null is an aisle", `{"id":"127","ts":192322800,"dep":null}`, event.Browsing{ID: "127", TS: 192322800}},
		{"Sport alias", `{"id":"1","ts":192322800,"dep":"Sport"}`, event.Browsing{ID: "1", TS: 192322800, Dep: store.Sports}},
		{"unknown fields ignored", `{"id":"127","ts":192322800,"alert":"staff"}`, event.Browsing{ID: "127", TS: 192322800}},
	}
	for _, tc := range good {
		t.Run(tc.name, func(t *testing.T) {
			got, err := event.DecodeBrowsing([]byte(tc.payload))
			if err != nil {
				t.Fatalf("DecodeBrowsing(%q): %v", tc.payload, err)
			}
			if got != tc.want {
				t.Errorf("DecodeBrowsing(%q) = %+v, want %+v", tc.payload, got, tc.want)
			}
		})
	}
	badCases := append(commonBad(), []bad{
		{"empty dep", `{"id":"127","ts":192322800,"dep":""}`, event.ReasonUnknownDep, "dep"},
		{"unknown dep", `{"id":"127","ts":192322800,"dep":"Unknown"}`, event.ReasonUnknownDep, "dep"},
		{"dep number", `{"id":"127","ts":192322800,"dep":3}`, event.ReasonInvalidField, "dep"},
		{"dep given twice", `{"id":"127","ts":192322800,"dep":"Boys","d\u0065p":"Men"}`, event.ReasonInvalidField, "dep"},
		{"x without y", `{"id":"127","ts":192322800,"x":3}`, event.ReasonMissingField, "y"},
		{"y without x", `{"id":"127","ts":192322800,"y":7}`, event.ReasonMissingField, "x"},
		{"x string", `{"id":"127","ts":192322800,"x":"3","y":7}`, event.ReasonInvalidField, "x"},
		{"y out of range", `{"id":"127","ts":192322800,"x":3,"y":2e6}`, event.ReasonInvalidField, "y"},
	}...)
	for _, tc := range badCases {
		t.Run("bad/"+tc.name, func(t *testing.T) {
			_, err := event.DecodeBrowsing([]byte(tc.payload))
			checkBad(t, tc, err)
		})
	}
}

// TestUnknownDepMessage pins the wording: the department is quoted once.
func TestUnknownDepMessage(t *testing.T) {
	_, err := event.DecodeFocus([]byte(`{"id":"127","ts":192322800,"dep":"Toys"}`))
	const want = `event: field "dep": unknown department "Toys" (want Boys, Girls, Men, Sports or Women)`
	if err == nil || err.Error() != want {
		t.Errorf("error = %v, want %s", err, want)
	}
}

// TestErrorMessageBound feeds each decoder the worst input for message length
// that fits under MaxPayload: clip keeps 32 bytes, and each may quote to 4.
func TestErrorMessageBound(t *testing.T) {
	ctl := strings.Repeat(`\u0001`, 600)
	inv := strings.Repeat("\xff", 1500)
	cases := []struct {
		name    string
		decode  func([]byte) error
		payload string
	}{
		{"presence ts", decPresence, `{"id":"1","ts":"` + inv + `"}`},
		{"presence id", decPresence, `{"id":["` + inv + `"],"ts":1}`},
		{"move x", decMove, `{"id":"1","ts":1,"x":["` + inv + `"],"y":1}`},
		{"move y", decMove, `{"id":"1","ts":1,"x":1,"y":{"` + inv + `":1}}`},
		{"focus dep control characters", decFocus, `{"id":"1","ts":1,"dep":"` + ctl + `"}`},
		{"focus dep not a string", decFocus, `{"id":"1","ts":1,"dep":["` + inv + `"]}`},
		{"malformed", decFocus, `{"id":"1","ts":1,"dep":"` + inv + `"` + inv},
		{"browsing dep control characters", decBrowsing, `{"id":"1","ts":1,"dep":"` + ctl + `"}`},
		{"browsing x", decBrowsing, `{"id":"1","ts":1,"x":["` + inv + `"],"y":1}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.payload) > event.MaxPayload {
				t.Fatalf("payload of %d bytes is over MaxPayload", len(tc.payload))
			}
			err := tc.decode([]byte(tc.payload))
			if err == nil {
				t.Fatal("no error")
			}
			if n := len(err.Error()); n > 256 {
				t.Errorf("message is %d bytes, want <= 256: %q", n, err)
			}
		})
	}
}

func decPresence(b []byte) error { _, err := event.DecodePresence(b); return err }
func decMove(b []byte) error     { _, err := event.DecodeMove(b); return err }
func decFocus(b []byte) error    { _, err := event.DecodeFocus(b); return err }
func decBrowsing(b []byte) error { _, err := event.DecodeBrowsing(b); return err }

func TestReasonOf(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want event.Reason
	}{
		{"event error", &event.Error{Reason: event.ReasonUnknownDep, Field: "dep", Detail: "x"}, event.ReasonUnknownDep},
		{"wrapped event error", errors.Join(errors.New("context"), &event.Error{Reason: event.ReasonTooLarge, Detail: "x"}), event.ReasonTooLarge},
		{"other error", errors.New("boom"), event.ReasonMalformed},
		{"nil", nil, event.ReasonMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := event.ReasonOf(tc.err); got != tc.want {
				t.Errorf("ReasonOf(%v) = %s, want %s", tc.err, got, tc.want)
			}
		})
	}
}

func TestReasons(t *testing.T) {
	want := []event.Reason{event.ReasonTooLarge, event.ReasonMalformed, event.ReasonMissingField, event.ReasonInvalidField, event.ReasonUnknownDep}
	if len(event.Reasons) != len(want) {
		t.Fatalf("Reasons = %v, want %v", event.Reasons, want)
	}
	seen := map[event.Reason]bool{}
	for i, r := range event.Reasons {
		if r != want[i] {
			t.Errorf("Reasons[%d] = %s, want %s", i, r, want[i])
		}
		if seen[r] {
			t.Errorf("Reasons lists %s twice", r)
		}
		seen[r] = true
	}
}

func TestErrorString(t *testing.T) {
	cases := []struct {
		name string
		err  *event.Error
		want string
	}{
		{"field", &event.Error{Reason: event.ReasonMissingField, Field: "ts", Detail: "missing"}, `event: field "ts": missing`},
		{"whole payload", &event.Error{Reason: event.ReasonMalformed, Detail: "payload is not a JSON object"}, `event: payload is not a JSON object`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("Error() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestAppendShapes(t *testing.T) {
	cases := []struct {
		name string
		got  []byte
		want string
	}{
		{"presence", event.AppendPresence(nil, event.Presence{ID: "127", TS: 192322800}),
			`{"id":"127","ts":192322800}`},
		{"move", event.AppendMove(nil, event.Move{ID: "127", TS: 192322800, X: 3, Y: 7}),
			`{"id":"127","ts":192322800,"x":3,"y":7}`},
		{"move negative", event.AppendMove(nil, event.Move{ID: "a", TS: 1, X: -4, Y: -1000000}),
			`{"id":"a","ts":1,"x":-4,"y":-1000000}`},
		{"focus without position", event.AppendFocus(nil, event.Focus{ID: "127", TS: 192322800, Dep: store.Boys}),
			`{"id":"127","ts":192322800,"dep":"Boys"}`},
		{"focus with position", event.AppendFocus(nil, event.Focus{ID: "127", TS: 192322800, Dep: store.Boys, X: 3, Y: 7, HasPos: true}),
			`{"id":"127","ts":192322800,"dep":"Boys","x":3,"y":7}`},
		{"focus position ignored without HasPos", event.AppendFocus(nil, event.Focus{ID: "127", TS: 192322800, Dep: store.Men, X: 3, Y: 7}),
			`{"id":"127","ts":192322800,"dep":"Men"}`},
		{"focus Sports never Sport", event.AppendFocus(nil, event.Focus{ID: "9", TS: 5, Dep: store.Sports}),
			`{"id":"9","ts":5,"dep":"Sports"}`},
		{"browsing in a department", event.AppendBrowsing(nil, event.Browsing{ID: "127", TS: 192322800, Dep: store.Boys, X: 3, Y: 1, HasPos: true}),
			`{"id":"127","ts":192322800,"dep":"Boys","x":3,"y":1}`},
		{"browsing in an aisle", event.AppendBrowsing(nil, event.Browsing{ID: "127", TS: 192322800, X: 2, Y: 5, HasPos: true}),
			`{"id":"127","ts":192322800,"x":2,"y":5}`},
		{"browsing without position", event.AppendBrowsing(nil, event.Browsing{ID: "127", TS: 192322800, Dep: store.Sports}),
			`{"id":"127","ts":192322800,"dep":"Sports"}`},
		{"id quote", event.AppendPresence(nil, event.Presence{ID: `a"b`, TS: 1}),
			`{"id":"a\"b","ts":1}`},
		{"id backslash", event.AppendPresence(nil, event.Presence{ID: `a\b`, TS: 1}),
			`{"id":"a\\b","ts":1}`},
		{"id newline", event.AppendPresence(nil, event.Presence{ID: "a\nb", TS: 1}),
			`{"id":"a\nb","ts":1}`},
		{"id NUL", event.AppendPresence(nil, event.Presence{ID: "\x00", TS: 1}),
			`{"id":"\u0000","ts":1}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if string(tc.got) != tc.want {
				t.Errorf("got  %s\nwant %s", tc.got, tc.want)
			}
		})
	}
}

// hostileIDs need escaping or take the slow path of the encoder.
var hostileIDs = []struct{ name, id string }{
	{"plain", "127"},
	{"quote", `say "hi"`},
	{"backslash", `C:\shoppers\7`},
	{"slash", "a/b"},
	{"newline tab CR", "a\nb\tc\rd"},
	{"NUL", "\x00"},
	{"all C0 controls", "\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f\x10\x1f"},
	{"DEL", "a\x7fb"},
	{"latin", "Zoë"},
	{"CJK", "日本語"},
	{"emoji", "🛒-7"},
	{"line separators", "a\u2028b\u2029c"},
	{"HTML", "<script>&amp;</script>"},
	{"replacement char", "\ufffd"},
	{"64 bytes escaped", strings.Repeat(`"\`, 32)},
}

func TestAppendEscapesRoundTrip(t *testing.T) {
	for _, tc := range hostileIDs {
		t.Run(tc.name, func(t *testing.T) {
			p := event.Presence{ID: tc.id, TS: 192322800}
			b := event.AppendPresence(nil, p)
			if !json.Valid(b) {
				t.Fatalf("AppendPresence: invalid JSON %q", b)
			}
			var plain struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(b, &plain); err != nil || plain.ID != tc.id {
				t.Errorf("encoding/json reads id %q (err %v), want %q", plain.ID, err, tc.id)
			}
			if got, err := event.DecodePresence(b); err != nil || got != p {
				t.Errorf("DecodePresence(%s) = %+v, %v; want %+v", b, got, err, p)
			}

			m := event.Move{ID: tc.id, TS: 192322800, X: 3, Y: 7}
			b = event.AppendMove(nil, m)
			if got, err := event.DecodeMove(b); err != nil || got != m {
				t.Errorf("DecodeMove(%s) = %+v, %v; want %+v", b, got, err, m)
			}

			f := event.Focus{ID: tc.id, TS: 192322800, Dep: store.Girls, X: 3, Y: 7, HasPos: true}
			b = event.AppendFocus(nil, f)
			if got, err := event.DecodeFocus(b); err != nil || got != f {
				t.Errorf("DecodeFocus(%s) = %+v, %v; want %+v", b, got, err, f)
			}

			br := event.Browsing{ID: tc.id, TS: 192322800, X: 3, Y: 7, HasPos: true}
			b = event.AppendBrowsing(nil, br)
			if got, err := event.DecodeBrowsing(b); err != nil || got != br {
				t.Errorf("DecodeBrowsing(%s) = %+v, %v; want %+v", b, got, err, br)
			}
		})
	}
}

func TestAppendRoundTrip(t *testing.T) {
	presences := []struct {
		name string
		p    event.Presence
	}{
		{"seed", event.Presence{ID: "127", TS: 192322800}},
		{"ts 1", event.Presence{ID: "x", TS: 1}},
		{"ts max", event.Presence{ID: "x", TS: 253402300799}},
	}
	for _, tc := range presences {
		t.Run("presence/"+tc.name, func(t *testing.T) {
			b := event.AppendPresence(nil, tc.p)
			if got, err := event.DecodePresence(b); err != nil || got != tc.p {
				t.Errorf("DecodePresence(%s) = %+v, %v; want %+v", b, got, err, tc.p)
			}
		})
	}
	moves := []struct {
		name string
		m    event.Move
	}{
		{"seed", event.Move{ID: "127", TS: 192322800, X: 3, Y: 7}},
		{"origin", event.Move{ID: "127", TS: 192322800}},
		{"negative", event.Move{ID: "127", TS: 192322800, X: -3, Y: -7}},
		{"pixel plan", event.Move{ID: "127", TS: 1700000000, X: 1808, Y: 1315}},
		{"limits", event.Move{ID: "127", TS: 1700000000, X: 1000000, Y: -1000000}},
	}
	for _, tc := range moves {
		t.Run("move/"+tc.name, func(t *testing.T) {
			b := event.AppendMove(nil, tc.m)
			if got, err := event.DecodeMove(b); err != nil || got != tc.m {
				t.Errorf("DecodeMove(%s) = %+v, %v; want %+v", b, got, err, tc.m)
			}
		})
	}
	for _, dep := range store.Departments {
		for _, hasPos := range []bool{false, true} {
			f := event.Focus{ID: "127", TS: 192322800, Dep: dep}
			if hasPos {
				f.X, f.Y, f.HasPos = 1300, 990, true
			}
			name := dep.String()
			if hasPos {
				name += " with position"
			}
			t.Run("focus/"+name, func(t *testing.T) {
				b := event.AppendFocus(nil, f)
				if got, err := event.DecodeFocus(b); err != nil || got != f {
					t.Errorf("DecodeFocus(%s) = %+v, %v; want %+v", b, got, err, f)
				}
			})
		}
	}
	for _, dep := range append([]store.Department{store.NoDepartment}, store.Departments[:]...) {
		br := event.Browsing{ID: "127", TS: 192322800, Dep: dep, X: 1300, Y: 990, HasPos: true}
		name := dep.String()
		if dep == store.NoDepartment {
			name = "aisle"
		}
		t.Run("browsing/"+name, func(t *testing.T) {
			b := event.AppendBrowsing(nil, br)
			if got, err := event.DecodeBrowsing(b); err != nil || got != br {
				t.Errorf("DecodeBrowsing(%s) = %+v, %v; want %+v", b, got, err, br)
			}
		})
	}
}

func TestAppendKeepsPrefix(t *testing.T) {
	const prefix = "prefix:"
	cases := []struct {
		name   string
		append func([]byte) []byte
		want   string
	}{
		{"presence", func(b []byte) []byte { return event.AppendPresence(b, event.Presence{ID: "127", TS: 192322800}) },
			`{"id":"127","ts":192322800}`},
		{"move", func(b []byte) []byte { return event.AppendMove(b, event.Move{ID: "127", TS: 192322800, X: 3, Y: 7}) },
			`{"id":"127","ts":192322800,"x":3,"y":7}`},
		{"focus", func(b []byte) []byte {
			return event.AppendFocus(b, event.Focus{ID: "127", TS: 192322800, Dep: store.Boys, X: 3, Y: 7, HasPos: true})
		}, `{"id":"127","ts":192322800,"dep":"Boys","x":3,"y":7}`},
		{"escaped id", func(b []byte) []byte { return event.AppendPresence(b, event.Presence{ID: "a\"é", TS: 1}) },
			`{"id":"a\"é","ts":1}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Exact capacity: the encoder must grow a copy.
			dst := []byte(prefix)[:len(prefix):len(prefix)]
			if got := tc.append(dst); string(got) != prefix+tc.want {
				t.Errorf("got %q, want %q", got, prefix+tc.want)
			}
			// Spare capacity: the bytes before len are untouched and the
			// bytes past the result are not written.
			backing := bytes.Repeat([]byte{'#'}, 256)
			copy(backing, prefix)
			got := tc.append(backing[:len(prefix)])
			if string(got) != prefix+tc.want {
				t.Errorf("got %q, want %q", got, prefix+tc.want)
			}
			if &got[0] != &backing[0] {
				t.Errorf("encoder reallocated although capacity sufficed")
			}
			if rest := backing[len(got):]; len(bytes.Trim(rest, "#")) != 0 {
				t.Errorf("encoder wrote past its result: %q", rest)
			}
			// Appending twice concatenates.
			twice := tc.append(tc.append(nil))
			if string(twice) != tc.want+tc.want {
				t.Errorf("appending twice = %q", twice)
			}
		})
	}
}

func TestAppendMoveAllocs(t *testing.T) {
	m := event.Move{ID: "shopper-0127", TS: 192322800, X: 1071, Y: 50}
	buf := make([]byte, 0, 128)
	allocs := testing.AllocsPerRun(1000, func() {
		buf = event.AppendMove(buf[:0], m)
	})
	if allocs != 0 {
		t.Errorf("AppendMove with a reused buffer: %v allocs/op, want 0", allocs)
	}
}

// The dwell worker encodes a browsing event into its own buffer.
func TestAppendBrowsingAllocs(t *testing.T) {
	br := event.Browsing{ID: "shopper-0127", TS: 192322800, Dep: store.Women, X: 1071, Y: 50, HasPos: true}
	buf := make([]byte, 0, 128)
	allocs := testing.AllocsPerRun(1000, func() {
		buf = event.AppendBrowsing(buf[:0], br)
	})
	if allocs != 0 {
		t.Errorf("AppendBrowsing with a reused buffer: %v allocs/op, want 0", allocs)
	}
}

func TestFloatMarshal(t *testing.T) {
	cases := []struct {
		name string
		f    event.Float
		want string
	}{
		{"whole", 14, "14.0"},
		{"cents", 7.12, "7.12"},
		{"zero", 0, "0.0"},
		{"negative", -1.5, "-1.5"},
		{"negative whole", -3, "-3.0"},
		{"hundred", 100, "100.0"},
		{"small", 0.05, "0.05"},
		{"shortest exact", 19.99, "19.99"},
		{"large", 1e21, "1000000000000000000000.0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.f.MarshalJSON()
			if err != nil || string(b) != tc.want {
				t.Errorf("MarshalJSON(%v) = %s, %v; want %s", float64(tc.f), b, err, tc.want)
			}
			// Through encoding/json too, as a field.
			b, err = json.Marshal(struct {
				V event.Float `json:"v"`
			}{tc.f})
			if want := `{"v":` + tc.want + `}`; err != nil || string(b) != want {
				t.Errorf("json.Marshal = %s, %v; want %s", b, err, want)
			}
			var back float64
			if err := json.Unmarshal([]byte(tc.want), &back); err != nil || back != float64(tc.f) {
				t.Errorf("%s reads back as %v, %v; want %v", tc.want, back, err, float64(tc.f))
			}
		})
	}
}

func mustDay(t *testing.T, s string) store.Day {
	t.Helper()
	d, err := store.ParseDay(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// goldenPrediction is the seed's example message, with ids as ints (the seed's
// schema wins over its example) and a second product.
func goldenPrediction(t *testing.T) event.Prediction {
	c := store.Coupon{
		ID:                22,
		Type:              store.BuyMore,
		Department:        store.Men,
		Discount:          14,
		HowMany:           3,
		Start:             mustDay(t, "2010-01-01"),
		End:               mustDay(t, "2010-01-31"),
		ProductMeanPrice:  13.56,
		ProductsAvailable: 2,
	}
	products := []store.Product{
		{
			ID:          33,
			Name:        "NGESNEALAND - Deep taupe Denim cut-offs for Women",
			Category:    "Denim cut-offs",
			Sizes:       "S-XL",
			Vendor:      "TinyCottons",
			Description: "NGESNEALAND - Deep...",
			BuyPrice:    7.12,
			Department:  store.Women,
		},
		{
			ID:          34,
			Name:        "Slim fit chinos for Men",
			Category:    "Chinos",
			Sizes:       "30-38",
			Vendor:      "BlueLine",
			Description: `Classic "slim" chinos`,
			BuyPrice:    20,
			Department:  store.Men,
		},
	}
	return event.NewPrediction("11", 192322800, c, products)
}

func TestPredictionGolden(t *testing.T) {
	got, err := goldenPrediction(t).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", "prediction.golden.json")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", path)
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestPredictionGolden -update ./event to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("Marshal() differs from %s (rerun with -update if intended)\ngot  %s\nwant %s", path, got, want)
	}
}

// TestPredictionShape checks the message key by key against seed 000: exactly
// these keys, with these JSON types.
func TestPredictionShape(t *testing.T) {
	b, err := goldenPrediction(t).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var msg map[string]any
	if err := dec.Decode(&msg); err != nil {
		t.Fatal(err)
	}
	const (
		str   = "string"
		int_  = "int"
		float = "float"
		obj   = "object"
		arr   = "array"
	)
	kind := func(v any) string {
		switch v := v.(type) {
		case string:
			return str
		case json.Number:
			if strings.ContainsAny(string(v), ".eE") {
				return float
			}
			return int_
		case map[string]any:
			return obj
		case []any:
			return arr
		}
		return "other"
	}
	checkKeys := func(where string, m map[string]any, want map[string]string) {
		t.Helper()
		for k, typ := range want {
			v, ok := m[k]
			if !ok {
				t.Errorf("%s: missing key %q", where, k)
				continue
			}
			if got := kind(v); got != typ {
				t.Errorf("%s.%s: JSON %s (%v), want %s", where, k, got, v, typ)
			}
		}
		for k := range m {
			if _, ok := want[k]; !ok {
				t.Errorf("%s: unexpected key %q", where, k)
			}
		}
	}
	checkKeys("message", msg, map[string]string{"customer": obj, "coupon": obj, "ts": int_})
	customer, _ := msg["customer"].(map[string]any)
	checkKeys("customer", customer, map[string]string{"id": str})
	coupon, _ := msg["coupon"].(map[string]any)
	checkKeys("coupon", coupon, map[string]string{
		"id": int_, "type": str, "department": str, "discount": float, "how_many": int_,
		"start_date": str, "end_date": str, "products": arr,
	})
	products, _ := coupon["products"].([]any)
	if len(products) != 2 {
		t.Fatalf("products: %d, want 2", len(products))
	}
	for i, p := range products {
		pm, _ := p.(map[string]any)
		checkKeys("products["+string(rune('0'+i))+"]", pm, map[string]string{
			"id": int_, "name": str, "category": str, "sizes": str, "vendor": str,
			"description": str, "buy_price": float, "department": str,
		})
	}

	values := []struct {
		name string
		got  any
		want string
	}{
		{"customer.id", customer["id"], "11"},
		{"coupon.id", coupon["id"], "22"},
		{"coupon.type", coupon["type"], "buy_more"},
		{"coupon.department", coupon["department"], "Men"},
		{"coupon.discount", coupon["discount"], "14.0"},
		{"coupon.how_many", coupon["how_many"], "3"},
		{"coupon.start_date", coupon["start_date"], "2010-01-01"},
		{"coupon.end_date", coupon["end_date"], "2010-01-31"},
		{"products[0].id", products[0].(map[string]any)["id"], "33"},
		{"products[0].buy_price", products[0].(map[string]any)["buy_price"], "7.12"},
		{"products[0].department", products[0].(map[string]any)["department"], "Women"},
		{"products[1].buy_price", products[1].(map[string]any)["buy_price"], "20.0"},
		{"products[1].description", products[1].(map[string]any)["description"], `Classic "slim" chinos`},
		{"ts", msg["ts"], "192322800"},
	}
	for _, v := range values {
		var got string
		switch x := v.got.(type) {
		case string:
			got = x
		case json.Number:
			got = string(x)
		}
		if got != v.want {
			t.Errorf("%s = %v, want %s", v.name, v.got, v.want)
		}
	}
}

func TestPredictionCouponTypes(t *testing.T) {
	cases := []struct {
		name    string
		typ     store.CouponType
		dep     store.Department
		howMany int
	}{
		{"buy_more", store.BuyMore, store.Men, 3},
		{"buy_all", store.BuyAll, store.Girls, 2},
		{"just_discount", store.JustDiscount, store.Women, 1},
		{"department", store.DeptCoupon, store.Sports, -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := store.Coupon{ID: 5, Type: tc.typ, Department: tc.dep, Discount: 25, HowMany: tc.howMany,
				Start: mustDay(t, "2024-02-28"), End: mustDay(t, "2024-03-01")}
			b, err := event.NewPrediction("7", 1709164800, c, nil).Marshal()
			if err != nil {
				t.Fatal(err)
			}
			var got struct {
				Coupon struct {
					Type       string            `json:"type"`
					Department string            `json:"department"`
					HowMany    int               `json:"how_many"`
					StartDate  string            `json:"start_date"`
					EndDate    string            `json:"end_date"`
					Products   []json.RawMessage `json:"products"`
				} `json:"coupon"`
			}
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if got.Coupon.Type != tc.name || got.Coupon.Department != tc.dep.String() || got.Coupon.HowMany != tc.howMany {
				t.Errorf("coupon = %+v, want type %s department %s how_many %d", got.Coupon, tc.name, tc.dep, tc.howMany)
			}
			if got.Coupon.StartDate != "2024-02-28" || got.Coupon.EndDate != "2024-03-01" {
				t.Errorf("dates = %s..%s, want 2024-02-28..2024-03-01", got.Coupon.StartDate, got.Coupon.EndDate)
			}
			// No products is an empty list, never null.
			if !bytes.Contains(b, []byte(`"products":[]`)) {
				t.Errorf("no products: %s, want \"products\":[]", b)
			}
		})
	}
}

func BenchmarkDecodeMove(b *testing.B) {
	payload := []byte(`{"id":"127","ts":192322800,"x":3,"y":7}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		if _, err := event.DecodeMove(payload); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendMove(b *testing.B) {
	m := event.Move{ID: "127", TS: 192322800, X: 3, Y: 7}
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf = event.AppendMove(buf[:0], m)
	}
	if len(buf) == 0 {
		b.Fatal("empty")
	}
}

func TestDecodeOffer(t *testing.T) {
	tests := map[string]struct {
		in     string
		want   event.Offer
		reason event.Reason
		field  string
	}{
		"schema ints":                  {`{"customer":{"id":"11"},"coupon":{"id":22,"type":"buy_more"},"ts":192322800}`, event.Offer{CustomerID: "11", CouponID: 22, TS: 192322800}, "", ""},
		"seed example ids":             {`{"customer":{"id":"11"},"coupon":{"id":"22"},"ts":192322800}`, event.Offer{CustomerID: "11", CouponID: 22, TS: 192322800}, "", ""},
		"not json":                     {`{"customer":`, event.Offer{}, event.ReasonMalformed, ""},
		"no customer":                  {`{"coupon":{"id":1},"ts":1}`, event.Offer{}, event.ReasonMissingField, "customer.id"},
		"no coupon id":                 {`{"customer":{"id":"1"},"coupon":{},"ts":1}`, event.Offer{}, event.ReasonMissingField, "coupon.id"},
		"negative coupon":              {`{"customer":{"id":"1"},"coupon":{"id":-3},"ts":1}`, event.Offer{}, event.ReasonInvalidField, "coupon.id"},
		"fraction coupon":              {`{"customer":{"id":"1"},"coupon":{"id":2.5},"ts":1}`, event.Offer{}, event.ReasonInvalidField, "coupon.id"},
		"no ts":                        {`{"customer":{"id":"1"},"coupon":{"id":2}}`, event.Offer{}, event.ReasonMissingField, "ts"},
		"escaped names":                {`{"\u0063ustomer":{"\u0069d":"1\u0031"},"coupon":{"i\u0064":"\u0032\u0032"},"t\u0073":192322800}`, event.Offer{CustomerID: "11", CouponID: 22, TS: 192322800}, "", ""},
		"coupon id number in a string": {`{"customer":{"id":"11"},"coupon":{"id":"2.2e1"},"ts":1}`, event.Offer{CustomerID: "11", CouponID: 22, TS: 1}, "", ""},
		"coupon id not a JSON number":  {`{"customer":{"id":"11"},"coupon":{"id":"+22"},"ts":1}`, event.Offer{}, event.ReasonInvalidField, "coupon.id"},
		"other-case names":             {`{"Customer":{"id":"11"},"coupon":{"ID":22},"ts":1}`, event.Offer{}, event.ReasonMissingField, "customer.id"},
		"coupon twice":                 {`{"customer":{"id":"1"},"coupon":{"id":2},"coupon":{"id":3},"ts":1}`, event.Offer{}, event.ReasonInvalidField, "coupon"},
		"customer.id twice":            {`{"customer":{"id":"1","id":"2"},"coupon":{"id":2},"ts":1}`, event.Offer{}, event.ReasonInvalidField, "customer.id"},
		"customer a list":              {`{"customer":["1"],"coupon":{"id":2},"ts":1}`, event.Offer{}, event.ReasonMalformed, ""},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := event.DecodeOffer([]byte(tt.in))
			if tt.reason == "" {
				if err != nil || got != tt.want {
					t.Fatalf("DecodeOffer = %+v, %v; want %+v", got, err, tt.want)
				}
				return
			}
			var e *event.Error
			if !errors.As(err, &e) || e.Reason != tt.reason || e.Field != tt.field {
				t.Fatalf("DecodeOffer error = %v; want reason %s field %q", err, tt.reason, tt.field)
			}
		})
	}
}

// BenchmarkPredictionMarshal is the coupon message's encoding, with the 20
// products a prediction lists at most.
func BenchmarkPredictionMarshal(b *testing.B) {
	c := store.Coupon{ID: 492, Type: store.BuyMore, Department: store.Women, Discount: 32, HowMany: 4, Start: 20400, End: 20414}
	products := make([]store.Product, 20)
	for i := range products {
		products[i] = store.Product{ID: 2972 + i, Name: "LINDQUARA - Coral Jeans for Women", Category: "Jeans", Sizes: "24-32",
			Vendor: "Ravenfield Leather", Description: "LINDQUARA - Coral Jeans for Women. Recycled polyester with a relaxed fit.",
			BuyPrice: 38.5, Department: store.Women}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := event.NewPrediction("127", 192322811, c, products).Marshal(); err != nil {
			b.Fatal(err)
		}
	}
}

// Marshal writes exactly what encoding/json writes for the same message,
// for awkward strings and numbers too.
func TestPredictionMarshalMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", `quote " and \ backslash`, "H&M <b>bold</b>", "tab\tnew\nline", "é ü 世界", "\u2028\u2029", "bad \xff utf8", "\x00\x1f"} {
		for _, f := range []float64{0, 14, 7.12, 0.1 + 0.2, 1e21, 123456789.5} {
			p := event.Prediction{
				Customer: event.PredictionCustomer{ID: s},
				Coupon: event.PredictionCoupon{ID: 7, Type: s, Department: "Men", Discount: event.Float(f), HowMany: -1,
					StartDate: "2026-11-22", EndDate: s, Products: []event.PredictionProduct{{ID: 1, Name: s, Category: s, Sizes: s,
						Vendor: s, Description: s, BuyPrice: event.Float(f), Department: s}}},
				TS: 192322800,
			}
			got, err := p.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			want, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("string %q, float %v:\ngot  %s\nwant %s", s, f, got, want)
			}
		}
	}
	nilProducts := event.Prediction{Coupon: event.PredictionCoupon{Type: "x"}}
	got, _ := nilProducts.Marshal()
	want, _ := json.Marshal(nilProducts)
	if !bytes.Equal(got, want) {
		t.Fatalf("nil products:\ngot  %s\nwant %s", got, want)
	}
	if _, err := (event.Prediction{Coupon: event.PredictionCoupon{Discount: event.Float(math.NaN())}}).Marshal(); err == nil {
		t.Fatal("a NaN discount was encoded")
	}
}

// BenchmarkDecodeOffer reads a coupon message as a phone (or the simulator)
// does: the golden message, three products.
func BenchmarkDecodeOffer(b *testing.B) {
	payload, err := os.ReadFile("testdata/prediction.golden.json")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		if _, err := event.DecodeOffer(payload); err != nil {
			b.Fatal(err)
		}
	}
}
