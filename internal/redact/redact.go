// Package redact owns what of a URL-valued setting (MQTT_HOST, PREDICTION_URL,
// CENTRAL_URL, REDIS_URL, a proxy URL) may appear in a log line or an error:
// everything but its credentials. Every package that shows such a setting,
// or passes on a library's error that may quote one, goes through here.
package redact

import (
	"net/url"
	"strings"
)

// Mask stands in for what is hidden.
const Mask = "*****"

// URL returns raw as a log line or an error may show it: its user info (user
// name and password) and its query values and fragment replaced by Mask.
// Everything before the last "@" counts as user info, so a password with an
// unescaped "/", "?", "#" or "@" in it is hidden too (a path or query that
// holds an "@" is hidden with it). raw need not parse: an MQTT_HOST entry may
// be a bare host:port.
func URL(raw string) string {
	prefix, rest := "", raw
	if i := strings.Index(raw, "://"); i >= 0 {
		prefix, rest = raw[:i+3], raw[i+3:]
	}
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		rest = Mask + rest[i:]
	}
	frag := ""
	if i := strings.IndexByte(rest, '#'); i >= 0 {
		rest, frag = rest[:i], "#"+Mask
	}
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		pairs := strings.Split(rest[i+1:], "&")
		for j, p := range pairs {
			if k, v, ok := strings.Cut(p, "="); ok && v != "" {
				pairs[j] = k + "=" + Mask
			}
		}
		rest = rest[:i+1] + strings.Join(pairs, "&")
	}
	return prefix + rest + frag
}

// URLs is URL for each entry of a comma-separated list (MQTT_HOST).
func URLs(list string) string {
	entries := strings.Split(list, ",")
	for i, e := range entries {
		entries[i] = URL(e)
	}
	return strings.Join(entries, ",")
}

// Text returns s with the credentials of settings masked: for text made by
// someone else (a library's error) that may quote a URL or a part of it.
// Each setting is a URL or a comma-separated list of them; of each, the user
// info as written, and its password (or, without one, its user name, which
// is then the token) as written and percent-decoded, are masked wherever they
// occur in s.
func Text(s string, settings ...string) string {
	for _, setting := range settings {
		for _, entry := range strings.Split(setting, ",") {
			for _, secret := range credentials(entry) {
				s = strings.ReplaceAll(s, secret, Mask)
			}
		}
	}
	return s
}

// credentials returns the secrets of one URL, longest first, so that a part
// is not masked before the whole it belongs to.
func credentials(entry string) []string {
	rest := entry
	if _, r, ok := strings.Cut(entry, "://"); ok {
		rest = r
	}
	i := strings.LastIndexByte(rest, '@')
	if i <= 0 {
		return nil
	}
	info := rest[:i]
	secret := info
	if user, password, ok := strings.Cut(info, ":"); ok && password != "" {
		secret = password
	} else {
		secret = user
	}
	out := []string{info}
	for _, s := range []string{secret, unescape(secret)} {
		if s != "" && s != info {
			out = append(out, s)
		}
	}
	return out
}

func unescape(s string) string {
	u, err := url.PathUnescape(s)
	if err != nil {
		return ""
	}
	return u
}

// Error returns err with its message passed through Text (nil stays nil);
// errors.Is and errors.As still see err and what it wraps.
func Error(err error, settings ...string) error {
	if err == nil {
		return nil
	}
	msg := Text(err.Error(), settings...)
	if msg == err.Error() {
		return err
	}
	return &redacted{msg: msg, err: err}
}

type redacted struct {
	msg string
	err error
}

func (e *redacted) Error() string { return e.msg }
func (e *redacted) Unwrap() error { return e.err }
