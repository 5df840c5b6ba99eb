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

	"github.com/storeflow/storeflow/internal/bounded"
)

// maxKeys bounds the keys remembered: keys come from a fixed set in practice,
// but a key built from outside input must not grow the map without end.
const maxKeys = 4096

// Gate decides, per key, whether a line may be written now: at most one per
// interval. It is safe for concurrent use.
type Gate struct {
	every time.Duration
	mu    sync.Mutex
	keys  map[string]*key
}

type key struct {
	next       time.Time
	suppressed int
}

// NewGate returns a Gate that lets one line per key through every interval.
func NewGate(every time.Duration) *Gate {
	return &Gate{every: every, keys: make(map[string]*key)}
}

// Allow reports whether a line for k may be written now and, if so, how many
// were held back since the last one.
func (g *Gate) Allow(k string) (suppressed int, ok bool) {
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.keys[k]
	if e == nil {
		// Forget keys whose interval has passed. A new key is let in even
		// when none has: the next new key sweeps again.
		bounded.MakeRoom(g.keys, maxKeys, func(v *key) bool { return now.After(v.next) })
		e = &key{}
		g.keys[k] = e
	}
	if now.Before(e.next) {
		e.suppressed++
		return 0, false
	}
	suppressed = e.suppressed
	e.suppressed, e.next = 0, now.Add(g.every)
	return suppressed, true
}

// Logger is a rate-limited front of a *slog.Logger. It is safe for
// concurrent use.
type Logger struct {
	out  *slog.Logger
	gate *Gate
}

// New returns a Logger that writes at most one line per key every interval.
func New(log *slog.Logger, every time.Duration) *Logger {
	return &Logger{out: log, gate: NewGate(every)}
}

// Log writes msg with args unless a line with the same key was written less
// than the interval ago; the next line written for key carries "suppressed",
// the number held back meanwhile.
func (r *Logger) Log(level slog.Level, k, msg string, args ...any) {
	if !r.out.Enabled(context.Background(), level) {
		return
	}
	suppressed, ok := r.gate.Allow(k)
	if !ok {
		return
	}
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	r.out.Log(context.Background(), level, msg, args...)
}
