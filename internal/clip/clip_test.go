package clip

import (
	"testing"
	"unicode/utf8"
)

func TestString(t *testing.T) {
	tests := map[string]struct {
		s    string
		n    int
		want string
	}{
		"short":                 {"abc", 5, "abc"},
		"exactly n":             {"abcde", 5, "abcde"},
		"cut":                   {"abcdef", 5, "abcde…"},
		"not inside a rune":     {"abcdé", 5, "abcd…"}, // é is 2 bytes: byte 5 is its second
		"invalid UTF-8 is kept": {"\xff\xff\xff", 2, "\xff\xff…"},
		"zero":                  {"abc", 0, "…"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got := String(tt.s, tt.n)
			if got != tt.want {
				t.Fatalf("String(%q, %d) = %q, want %q", tt.s, tt.n, got, tt.want)
			}
			if utf8.ValidString(tt.s) && !utf8.ValidString(got) {
				t.Fatalf("String(%q, %d) = %q: cut a rune", tt.s, tt.n, got)
			}
		})
	}
}

func TestQuote(t *testing.T) {
	if got, want := Quote("a\nb"+string(make([]byte, 40)), 4), `"a\nb\x00…"`; got != want {
		t.Fatalf("Quote = %s, want %s", got, want)
	}
}
