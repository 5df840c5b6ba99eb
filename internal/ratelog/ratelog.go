// Package ratelog logs at most one line per key and interval, and says how
// many lines it held back, so a flood of bad input cannot flood the logs. The
// metrics keep the exact numbers; the log says that something is happening
// and names one example.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// maxKeys bounds the keys remembered: keys come from a fixed set in practice,
// but a key built from outside input must not grow the map without end.
const maxKeys = 4096

// Logger is a rate-limited front of a *slog.Logger. It is safe for
// concurrent use.
type Logger struct {
	out   *slog.Logger
	every time.Duration
	mu    sync.Mutex
	keys  map[string]*key
}

type key struct {
	next       time.Time
	suppressed int
}

// New returns a Logger that writes at most one line per key every interval.
func New(log *slog.Logger, every time.Duration) *Logger {
	return &Logger{out: log, every: every, keys: make(map[string]*key)}
}

// Log writes msg with args unless a line with the same key was written less
// than the interval ago; the next line written for key carries "suppressed",
// the number held back meanwhile.
func (r *Logger) Log(level slog.Level, k, msg string, args ...any) {
	if !r.out.Enabled(context.Background(), level) {
		return
	}
	now := time.Now()
	r.mu.Lock()
	e := r.keys[k]
	if e == nil {
		if len(r.keys) >= maxKeys {
			for old, v := range r.keys { // forget keys whose interval has passed
				if now.After(v.next) {
					delete(r.keys, old)
				}
			}
		}
		e = &key{}
		r.keys[k] = e
	}
	if now.Before(e.next) {
		e.suppressed++
		r.mu.Unlock()
		return
	}
	suppressed := e.suppressed
	e.suppressed, e.next = 0, now.Add(r.every)
	r.mu.Unlock()
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	r.out.Log(context.Background(), level, msg, args...)
}
