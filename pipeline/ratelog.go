package pipeline

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// rateLog logs at most one line per key and interval, and says how many lines
// it held back, so a flood of bad events cannot flood the logs. The counters
// keep the exact numbers.
type rateLog struct {
	out   *slog.Logger
	every time.Duration
	mu    sync.Mutex
	keys  map[string]*rateKey
}

type rateKey struct {
	next       time.Time
	suppressed int
}

func newRateLog(log *slog.Logger, every time.Duration) *rateLog {
	return &rateLog{out: log, every: every, keys: make(map[string]*rateKey)}
}

func (r *rateLog) log(level slog.Level, key, msg string, args ...any) {
	if !r.out.Enabled(context.Background(), level) {
		return
	}
	now := time.Now()
	r.mu.Lock()
	k := r.keys[key]
	if k == nil {
		k = &rateKey{}
		r.keys[key] = k
	}
	if now.Before(k.next) {
		k.suppressed++
		r.mu.Unlock()
		return
	}
	suppressed := k.suppressed
	k.suppressed, k.next = 0, now.Add(r.every)
	r.mu.Unlock()
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	r.out.Log(context.Background(), level, msg, args...)
}
