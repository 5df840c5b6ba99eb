package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
)

// validCases are JSON texts, good and bad, at the edges of the grammar.
var validCases = []string{
	`{}`, ` { } `, `[]`, `[ ]`, `""`, `0`, `-0`, `1.5e+10`, `1E-2`, `-12.0e3`, `true`, `false`, `null`,
	`{"a":[1,{"b":null}],"c":"\"\\\/\b\f\n\r\t\u00e9\uD83D\uDE00"}`,
	"{\"a\":\"\xff\xfe\"}", // encoding/json does not check UTF-8
	``, ` `, `{`, `}`, `{"a"}`, `{"a":}`, `{"a":1,}`, `[1,]`, `[,1]`, `{,}`, `{"a" 1}`, `{"a":1 "b":2}`,
	`{a:1}`, `{'a':1}`, `01`, `-`, `1.`, `.5`, `1e`, `1e+`, `+1`, `0x10`, `NaN`, `Infinity`, `tru`, `nul`, `nulll`,
	`"abc`, `"\x"`, `"\u12"`, `"\u12G4"`, "\"a\tb\"", "\"a\nb\"", "\"\x00\"", `"\`, `{"a":1}{`, `{"a":1} 2`, `[1] ]`,
	"\ufeff{}", "{}\x00", "{\"a\":1}\v",
	strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
	strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	strings.Repeat(`{"a":`, 9999) + `{}` + strings.Repeat("}", 9999),
	strings.Repeat(`{"a":`, 10000) + `{}` + strings.Repeat("}", 10000),
}

func TestValidMatchesEncodingJSON(t *testing.T) {
	golden, err := os.ReadFile("testdata/prediction.golden.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range append(validCases, string(golden), string(golden[:len(golden)/2])) {
		if got, want := valid([]byte(s)), json.Valid([]byte(s)); got != want {
			t.Errorf("valid(%.60q) = %v, json.Valid = %v", s, got, want)
		}
	}
}

// FuzzValid holds the walker to encoding/json: the same idea of valid JSON,
// and, for an object, the same members under the same names (escapes decoded,
// invalid UTF-8 replaced) with the same values, string values read to the
// same text.
func FuzzValid(f *testing.F) {
	for _, s := range validCases {
		f.Add([]byte(s))
	}
	for _, s := range memberCases {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ok := valid(b)
		if want := json.Valid(b); ok != want {
			t.Fatalf("valid(%q) = %v, json.Valid = %v", b, ok, want)
		}
		if i := skipWS(b, 0); i == len(b) || b[i] != '{' {
			return
		}
		names, vals, _ := ReferenceMembers(b)
		// Ask for every name encoding/json saw, once, in an order of its own.
		asked := slices.Compact(slices.Sorted(slices.Values(names)))
		var gotNames []string
		var gotVals []json.RawMessage
		if got := object(b, asked, func(f int, val []byte) {
			gotNames = append(gotNames, asked[f])
			gotVals = append(gotVals, val)
		}); got != ok {
			t.Fatalf("object(%q) = %v, json.Valid = %v", b, got, ok)
		}
		if !ok {
			return
		}
		if !slices.Equal(gotNames, names) || !slices.EqualFunc(gotVals, vals, func(a, b json.RawMessage) bool { return bytes.Equal(a, b) }) {
			t.Fatalf("object(%q) read\n%q = %q\nencoding/json read\n%q = %q", b, gotNames, gotVals, names, vals)
		}
		for _, v := range vals {
			if v[0] == '"' {
				checkUnquote(t, v)
			}
		}
	})
}

// memberCases are objects whose names and strings are spelt in awkward ways.
var memberCases = []string{
	`{"\u0069d":"21","ts":1}`,
	`{"id":"\u0032\u0031","\u0074\u0073":1}`,
	`{"i\u0064":1,"\/":2,"\\":3,"\"":4,"\b\f\n\r\t":5}`,
	`{"\uD83D\uDE00":"\ud83d\ude00","\ud83d":"\ude00\ud83d","\ud83d\u0041":"\uDBFF\uDFFF"}`,
	`{"\udc00\ud800":1,"\ud800\ud800\udc00":"\ud800\\udc00"}`,
	"{\"\xff\":1,\"\xfe\":2,\"id\xff\":\"\xed\xa0\x80\",\"\xc0\xaf\":\"\xef\xbf\xbd\"}",
	`{"ID":1,"Id":2,"id":3,"\u212aey":4,"\u017f":5,"key":6}`,
	`{"a":1,"a":2,"\u0061":3}`,
	`{"\u0000":"\u0000","\u007f":"\u0080\u07ff\u0800\uffff\ufffd"}`,
}

// TestUnquoteMatchesEncodingJSON pins the strings where decoding JSON text is
// easy to get wrong.
func TestUnquoteMatchesEncodingJSON(t *testing.T) {
	cases := []struct {
		raw   string
		valid bool
	}{
		{`"plain"`, true},
		{`"\"\\\/\b\f\n\r\t"`, true},
		{`"\u0069\u0044\u00e9\u2028\uFFFD\ufffd"`, true},
		{`"\ud83d\ude00"`, true},        // a pair: one rune
		{`"\uD83D\uDE00x"`, true},       // upper case hex
		{`"\udbff\udfff"`, true},        // the last pair
		{`"\ud83d"`, false},             // a lone high surrogate
		{`"\ude00"`, false},             // a lone low surrogate
		{`"\ude00\ud83d"`, false},       // a pair the wrong way round
		{`"\ud83d\ud83d\ude00"`, false}, // high, then a pair
		{`"\ud83d\u0041"`, false},       // high, then not a surrogate
		{`"\ud83dx\ude00"`, false},      // high, a letter, low
		{`"\ud83d\\ude00"`, false},      // high, an escaped backslash
		{"\"\xff\"", false},
		{"\"a\xc3\"", false},        // truncated
		{"\"\xc0\xaf\"", false},     // overlong
		{"\"\xed\xa0\x80\"", false}, // a surrogate in UTF-8
		{"\"\xef\xbf\xbd\"", true},  // U+FFFD itself
		{"\"Zoë-日本\U0001F600\"", true},
		{`"\u0000"`, true},
	}
	for _, tc := range cases {
		got, valid := checkUnquote(t, []byte(tc.raw))
		if valid != tc.valid {
			t.Errorf("unquote(%s) = %q, valid %v, want valid %v", tc.raw, got, valid, tc.valid)
		}
	}
}

// checkUnquote compares unquote with encoding/json on raw, a valid JSON
// string, and ReferenceString's idea of valid Unicode.
func checkUnquote(t *testing.T, raw []byte) (string, bool) {
	t.Helper()
	want, wantValid := ReferenceString(raw)
	got, valid := unquote(nil, raw[1:len(raw)-1])
	if string(got) != want || valid != wantValid {
		t.Fatalf("unquote(%q) = %q, valid %v; encoding/json reads %q, valid %v", raw, got, valid, want, wantValid)
	}
	return string(got), valid
}

// TestLookupAllocatesNothing: a name with escapes is decoded on the stack.
func TestLookupAllocatesNothing(t *testing.T) {
	b := []byte(`{"\u0069d":"21","\u0074\u0073":1,"d\u00e9p":2,"\ud83d\ude00\u0078":3,"x":4}`)
	n := 0
	if allocs := testing.AllocsPerRun(100, func() {
		object(b, wireNames, func(int, []byte) { n++ })
	}); allocs != 0 {
		t.Errorf("object allocates %v times, want 0", allocs)
	}
	if n != 3*101 {
		t.Errorf("%d members matched in 101 runs, want 3 a run", n)
	}
}

// FuzzUnquote holds unquote to encoding/json on any valid JSON string.
func FuzzUnquote(f *testing.F) {
	for _, s := range []string{`""`, `"\u0069d"`, `"\ud83d\ude00"`, `"\ud83d"`, `"\ude00\ud83d"`, `"\ud83d\\ude00"`,
		"\"\xff\xed\xa0\x80\xef\xbf\xbd\"", `"\ufffd\uFFFD"`, `"\"\\\/\b\f\n\r\t"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < 2 || b[0] != '"' || scanString(b, 0) != len(b) {
			return
		}
		checkUnquote(t, b)
	})
}

// FuzzEachElement holds the exported list walker to encoding/json: a list
// is walked exactly when encoding/json reads it as one, element by element,
// and anything else is refused.
func FuzzEachElement(f *testing.F) {
	for _, s := range validCases {
		f.Add([]byte(s))
	}
	f.Add([]byte(` [1, [2,3] ,{"a":[]},"x",null] `))
	f.Fuzz(func(t *testing.T, b []byte) {
		var got []json.RawMessage
		err := EachElement(b, func(k int, val []byte) error {
			if k != len(got) {
				t.Fatalf("element %d handed out as %d", len(got), k)
			}
			got = append(got, val)
			return nil
		})
		var want []json.RawMessage
		isList := json.Unmarshal(b, &want) == nil && want != nil
		if (err == nil) != isList {
			t.Fatalf("EachElement(%q) = %v, encoding/json reads a list: %v", b, err, isList)
		}
		if isList && !slices.EqualFunc(got, want, func(a, b json.RawMessage) bool { return bytes.Equal(a, b) }) {
			t.Fatalf("EachElement(%q) read %q, encoding/json %q", b, got, want)
		}
	})
}

func TestEachElementStopsAtElemError(t *testing.T) {
	stop := errors.New("stop")
	var seen []int
	err := EachElement([]byte(`[1,2,3]`), func(k int, _ []byte) error {
		seen = append(seen, k)
		if k == 1 {
			return stop
		}
		return nil
	})
	if err != stop || !slices.Equal(seen, []int{0, 1}) {
		t.Fatalf("err %v after %v, want stop after [0 1]", err, seen)
	}
	if err := EachElement([]byte(`{"a":1}`), nil); err == nil || err.Error() != "want a list, got an object" {
		t.Fatalf("an object: %v", err)
	}
	if err := EachElement([]byte(`[1,`), func(int, []byte) error { return nil }); err != errSyntax {
		t.Fatalf("a broken list: %v, want the syntax error", err)
	}
}

func TestKind(t *testing.T) {
	for in, want := range map[string]string{
		`"x"`: "a string", ` {}`: "an object", `[1]`: KindList, `true`: "a boolean", `false`: "a boolean",
		`null`: "null", `-1`: KindNumber, `0.5`: KindNumber, ``: "nothing", `  `: "nothing",
	} {
		if got := Kind([]byte(in)); got != want {
			t.Errorf("Kind(%q) = %q, want %q", in, got, want)
		}
	}
}
