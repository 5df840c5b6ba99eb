package event

import "bytes"

// A one-pass JSON walker for the decoders of this package. It checks the
// syntax exactly as encoding/json.Valid does (the fuzz test holds it to that)
// while it walks, and hands out object members as slices of the payload, so a
// decoder validates and picks its fields in one pass with no allocation. It
// replaced json.Valid followed by a trusting scanner: json.Valid's state
// machine, one indirect call per byte, was the largest single cost of
// decoding a move.

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
		return eachMember(b, i, depth+1, nil)
	case c == '[':
		if depth+1 > maxDepth {
			return -1
		}
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == ']' {
			return i + 1
		}
		for {
			if i = scanValue(b, i, depth+1); i < 0 {
				return -1
			}
			i = skipWS(b, i)
			if i >= len(b) {
				return -1
			}
			switch b[i] {
			case ']':
				return i + 1
			case ',':
				i = skipWS(b, i+1)
			default:
				return -1
			}
		}
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

// eachMember validates the object that starts at b[i] (b[i] is '{') and
// calls member, when not nil, with each key (raw, between its quotes) and
// value (raw JSON, a slice of b). It returns the index just past the object,
// or -1 when it is not valid JSON; member has then seen a prefix only.
func eachMember(b []byte, i, depth int, member func(key, val []byte)) int {
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
			member(key, b[i:end])
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

// object walks b, which must hold one JSON object and nothing else but
// space, calling member for each of its members. It reports whether b is
// valid JSON; whether it is an object the caller checks first.
func object(b []byte, member func(key, val []byte)) bool {
	i := skipWS(b, 0)
	end := eachMember(b, i, 1, member)
	return end >= 0 && skipWS(b, end) == len(b)
}

// valid reports whether b is one valid JSON value, as json.Valid does.
func valid(b []byte) bool {
	i := skipWS(b, 0)
	end := scanValue(b, i, 0)
	return end >= 0 && skipWS(b, end) == len(b)
}

// keyIs matches a member key as encoding/json matches a field name:
// case-insensitively.
func keyIs(key []byte, name string) bool {
	return len(key) == len(name) && bytes.EqualFold(key, []byte(name))
}
