package event

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// ReferenceMembers is encoding/json's reading of b as an object: each
// member's name, decoded, and its raw value, in order, as a json.Decoder
// gives them. ok is false when b is not one valid JSON object. It is
// exported, like ReferenceString, for the decoders' fuzz targets.
func ReferenceMembers(b []byte) (names []string, vals []json.RawMessage, ok bool) {
	if !json.Valid(b) {
		return nil, nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, nil, false
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			panic(fmt.Sprintf("ReferenceMembers(%q): name: %v", b, err)) // json.Valid said it was valid
		}
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			panic(fmt.Sprintf("ReferenceMembers(%q): value of %q: %v", b, tok, err))
		}
		names = append(names, tok.(string))
		vals = append(vals, val)
	}
	return names, vals, true
}

// ReferenceString is raw, a valid JSON string, as encoding/json reads it,
// and whether that text is what was sent: raw is valid UTF-8 and every
// U+FFFD in the text was sent as one (as itself or escaped), none stands for
// a lone surrogate. It is exported for the decoders' fuzz targets.
func ReferenceString(raw []byte) (string, bool) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		panic(fmt.Sprintf("ReferenceString(%q): %v", raw, err))
	}
	sent := 0 // U+FFFD as sent
	for i := 1; i < len(raw)-1; i++ {
		switch {
		case raw[i] == '\\' && raw[i+1] == 'u':
			if strings.EqualFold(string(raw[i+2:i+6]), "fffd") {
				sent++
			}
			i += 5
		case raw[i] == '\\':
			i++
		case bytes.HasPrefix(raw[i:], []byte("\ufffd")):
			sent++
		}
	}
	return s, utf8.Valid(raw) && strings.Count(s, "\ufffd") == sent
}
