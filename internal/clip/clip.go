// Package clip cuts text that came from outside (a payload's value, a
// request's field, a peer's answer) to a size an error message or a log line
// can carry, whatever was sent.
package clip

import (
	"strconv"
	"unicode/utf8"
)

// String returns s cut to at most n bytes, on a rune boundary, with "…"
// marking the cut.
func String(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// Quote returns s cut as String cuts it, as a double-quoted Go string
// literal: control characters and invalid UTF-8 escaped, so the message stays
// on one line.
func Quote(s string, n int) string {
	return strconv.Quote(String(s, n))
}
