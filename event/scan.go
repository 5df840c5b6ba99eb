package event

import (
	"errors"
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
)

// A one-pass JSON walker for the decoders of this package. It checks the
// syntax exactly as encoding/json.Valid does (the fuzz test holds it to that)
// while it walks, and hands out the members a decoder asks for by name as
// slices of the payload, so a decoder validates and picks its fields in one
// pass with no allocation. It replaced json.Valid followed by a trusting
// scanner: json.Valid's state machine, one indirect call per byte, was the
// largest single cost of decoding a move.
//
// Member names and string values read as encoding/json reads them: escapes
// decoded ({"\u0069d":…} is "id"), surrogate pairs joined, invalid UTF-8 and
// lone surrogates replaced by U+FFFD (the fuzz tests compare both). The
// decoders read a payload differently from encoding/json unmarshalling into
// a struct in three ways, on purpose, so that one message cannot name one
// shopper to storeflow and another to a phone or screen reading the same
// topic (encoding/json/v2 makes the same choices by default):
//
//   - Names match exactly, as JavaScript's JSON.parse, Python's json and jq
//     match them. encoding/json matches struct fields case-insensitively,
//     with Unicode folding (K, the Kelvin sign, is "k"): {"id":"1","ID":"2"}
//     would be shopper 2 to storeflow and shopper 1 to the phone. "ID" is an
//     unknown name, ignored.
//   - A name a decoder reads, given twice, is an invalid field: readers
//     differ on which one counts (encoding/json and JSON.parse keep the
//     last), so a payload with two ids is refused, not guessed at.
//   - An id that is not valid Unicode as sent (invalid UTF-8, a lone
//     surrogate escape) is an invalid field: encoding/json replaces both with
//     U+FFFD, so different ids on the wire would name one shopper.

// maxDepth is encoding/json's nesting limit.
const maxDepth = 10000

// skipWS returns the index of the first non-space byte at or after i.
func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanString returns the index just past the string that starts at b[i]
// (b[i] is '"'), or -1 when it is not a valid JSON string.
func scanString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		c := b[i]
		switch {
		case c == '"':
			return i + 1
		case c == '\\':
			i++
			if i >= len(b) {
				return -1
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(b) || !isHex(b[i+1]) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) {
					return -1
				}
				i += 4
			default:
				return -1
			}
		case c < 0x20:
			return -1
		}
	}
	return -1
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// scanNumber returns the index just past the number that starts at b[i], or
// -1: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func scanNumber(b []byte, i int) int {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		for i++; i < len(b) && isDigit(b[i]); i++ {
		}
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			return -1
		}
		for i++; i < len(b) && isDigit(b[i]); i++ {
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return -1
		}
		for i++; i < len(b) && isDigit(b[i]); i++ {
		}
	}
	return i
}

// scanValue returns the index just past the value that starts at b[i] (no
// space before it), or -1 when it is not valid JSON. depth is the nesting
// of the containers around it.
func scanValue(b []byte, i, depth int) int {
	if i >= len(b) {
		return -1
	}
	switch c := b[i]; {
	case c == '"':
		return scanString(b, i)
	case c == '{':
		return eachMember(b, i, depth+1, nil, nil)
	case c == '[':
		end, _ := eachElement(b, i, depth+1, nil)
		return end
	case c == '-' || isDigit(c):
		return scanNumber(b, i)
	case c == 't':
		return literal(b, i, "true")
	case c == 'f':
		return literal(b, i, "false")
	case c == 'n':
		return literal(b, i, "null")
	}
	return -1
}

func literal(b []byte, i int, lit string) int {
	if len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit {
		return i + len(lit)
	}
	return -1
}

// eachElement validates the list that starts at b[i] (b[i] is '[') and
// calls elem, when not nil, with each element's index and value (raw JSON, a
// slice of b). It returns the index just past the list, or -1 when it is not
// valid JSON or elem failed; err is elem's error.
func eachElement(b []byte, i, depth int, elem func(k int, val []byte) error) (end int, err error) {
	if depth > maxDepth {
		return -1, nil
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, nil
	}
	for k := 0; ; k++ {
		end := scanValue(b, i, depth)
		if end < 0 {
			return -1, nil
		}
		if elem != nil {
			if err := elem(k, b[i:end]); err != nil {
				return -1, err
			}
		}
		i = skipWS(b, end)
		if i >= len(b) {
			return -1, nil
		}
		switch b[i] {
		case ']':
			return i + 1, nil
		case ',':
			i = skipWS(b, i+1)
		default:
			return -1, nil
		}
	}
}

// eachMember validates the object that starts at b[i] (b[i] is '{') and
// calls member, when not nil, for each member whose name is one of names,
// with the index of that name in names and the member's value (raw JSON, a
// slice of b). It returns the index just past the object, or -1 when it is
// not valid JSON; member has then seen a prefix only.
func eachMember(b []byte, i, depth int, names []string, member func(field int, val []byte)) int {
	if depth > maxDepth {
		return -1
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return -1
		}
		keyEnd := scanString(b, i)
		if keyEnd < 0 {
			return -1
		}
		key := b[i+1 : keyEnd-1]
		i = skipWS(b, keyEnd)
		if i >= len(b) || b[i] != ':' {
			return -1
		}
		i = skipWS(b, i+1)
		end := scanValue(b, i, depth)
		if end < 0 {
			return -1
		}
		if member != nil {
			if f := lookup(key, names); f >= 0 {
				member(f, b[i:end])
			}
		}
		i = skipWS(b, end)
		if i >= len(b) {
			return -1
		}
		switch b[i] {
		case '}':
			return i + 1
		case ',':
			i = skipWS(b, i+1)
		default:
			return -1
		}
	}
}

// lookup returns the index in names of key, a member name as it stands
// between its quotes (valid), or -1. A name of plain ASCII without escapes,
// every name a sensor sends, is compared as it stands; any other is decoded
// first.
func lookup(key []byte, names []string) int {
	for _, c := range key {
		if c == '\\' || c >= utf8.RuneSelf {
			return lookupDecoded(key, names)
		}
	}
	return indexOf(key, names)
}

// lookupDecoded is lookup for a name to decode, decoded on the stack for the
// names the decoders look for.
func lookupDecoded(key []byte, names []string) int {
	longest := 0
	for _, name := range names {
		longest = max(longest, len(name))
	}
	// Every 6 bytes of a name decode to 1 byte at least (\u0069 to "i"), so a
	// longer one matches nothing; a shorter one decodes to at most 3 bytes a
	// byte (an invalid byte becomes U+FFFD): within buf for names up to 16
	// bytes.
	if len(key) > 6*longest {
		return -1
	}
	var buf [3 * 6 * 16]byte
	name, _ := unquote(buf[:0], key)
	return indexOf(name, names)
}

func indexOf(name []byte, names []string) int {
	for f, n := range names {
		if string(name) == n {
			return f
		}
	}
	return -1
}

// unquote appends to dst the text of the JSON string whose contents (between
// the quotes) are s, valid JSON, decoded exactly as encoding/json decodes
// it. valid is false when the text had to be repaired: invalid UTF-8 or a
// lone surrogate escape, each replaced by U+FFFD.
func unquote(dst, s []byte) (_ []byte, valid bool) {
	valid = true
	for i := 0; i < len(s); {
		switch c := s[i]; {
		case c == '\\':
			switch e := s[i+1]; e {
			case 'b':
				dst = append(dst, '\b')
			case 'f':
				dst = append(dst, '\f')
			case 'n':
				dst = append(dst, '\n')
			case 'r':
				dst = append(dst, '\r')
			case 't':
				dst = append(dst, '\t')
			case 'u':
				r := hex4(s[i+2:])
				i += 6
				if utf16.IsSurrogate(r) {
					// A high surrogate joined with the low one escaped right
					// after it; anything else stands alone and is replaced.
					if i+6 <= len(s) && s[i] == '\\' && s[i+1] == 'u' {
						if pair := utf16.DecodeRune(r, hex4(s[i+2:])); pair != utf8.RuneError {
							dst = utf8.AppendRune(dst, pair)
							i += 6
							continue
						}
					}
					r, valid = utf8.RuneError, false
				}
				dst = utf8.AppendRune(dst, r)
				continue
			default: // '"', '\\', '/'
				dst = append(dst, e)
			}
			i += 2
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			i++
		default:
			r, n := utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && n == 1 {
				valid = false
			}
			dst = utf8.AppendRune(dst, r)
			i += n
		}
	}
	return dst, valid
}

// hex4 reads the 4 hex digits at the start of s (valid: scanString checked
// them).
func hex4(s []byte) rune {
	var r rune
	for _, c := range s[:4] {
		switch {
		case c <= '9':
			c -= '0'
		case c >= 'a':
			c -= 'a' - 10
		default:
			c -= 'A' - 10
		}
		r = r<<4 | rune(c)
	}
	return r
}

// object walks b, which must hold one JSON object and nothing else but
// space, calling member for each member named in names. It reports whether b
// is valid JSON; whether it is an object the caller checks first.
func object(b []byte, names []string, member func(field int, val []byte)) bool {
	i := skipWS(b, 0)
	end := eachMember(b, i, 1, names, member)
	return end >= 0 && skipWS(b, end) == len(b)
}

// valid reports whether b is one valid JSON value, as json.Valid does.
func valid(b []byte) bool {
	i := skipWS(b, 0)
	end := scanValue(b, i, 0)
	return end >= 0 && skipWS(b, end) == len(b)
}

// The walker for the decoders of other packages that read outside input the
// event types do not cover (the prediction protocols' tensors): the same
// syntax rules, no second scanner.

// errSyntax is the error of a walk over input that is not valid JSON.
var errSyntax = errors.New("invalid JSON")

// EachElement calls elem, in order, with the index and the raw JSON text of
// each element of the list b holds (one JSON list, space around it allowed),
// checking the syntax as it goes. It returns elem's first error, an error
// naming what b holds when it is not a list, or one saying it is not valid JSON.
func EachElement(b []byte, elem func(k int, val []byte) error) error {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '[' {
		return fmt.Errorf("want a list, got %s", Kind(b))
	}
	end, err := eachElement(b, i, 1, elem)
	switch {
	case err != nil:
		return err
	case end < 0 || skipWS(b, end) != len(b):
		return errSyntax
	}
	return nil
}

// Kind names the kind of the JSON value b starts with (after space), for an
// error message and for a reader that takes one kind: KindString,
// KindObject, KindList, KindBoolean, KindNull, KindNumber, or "nothing" for
// no value. It reads the first byte only: b is a value the walker or
// encoding/json has checked.
func Kind(b []byte) string {
	i := skipWS(b, 0)
	if i >= len(b) {
		return "nothing"
	}
	switch c := b[i]; {
	case c == '"':
		return KindString
	case c == '{':
		return KindObject
	case c == '[':
		return KindList
	case c == 't', c == 'f':
		return KindBoolean
	case c == 'n':
		return KindNull
	case c == '-', isDigit(c):
		return KindNumber
	}
	return "invalid JSON"
}

// The kinds of JSON values, as Kind names them.
const (
	KindString  = "a string"
	KindObject  = "an object"
	KindList    = "a list"
	KindBoolean = "a boolean"
	KindNull    = "null"
	KindNumber  = "a number"
)
