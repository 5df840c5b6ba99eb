package event

import (
	"encoding/json"
	"os"
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

// FuzzValid holds the walker to encoding/json's idea of valid JSON.
func FuzzValid(f *testing.F) {
	for _, s := range validCases {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := valid(b), json.Valid(b); got != want {
			t.Fatalf("valid(%q) = %v, json.Valid = %v", b, got, want)
		}
		if len(b) > 0 && b[0] == '{' {
			var members []string
			ok := object(b, func(key, val []byte) { members = append(members, string(val)) })
			if ok != json.Valid(b) {
				t.Fatalf("object(%q) = %v, json.Valid = %v", b, ok, !ok)
			}
			for _, m := range members {
				if ok && !json.Valid([]byte(m)) {
					t.Fatalf("member value %q of %q is not valid JSON", m, b)
				}
			}
		}
	})
}
