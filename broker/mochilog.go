package broker

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// throttledHandler is mochi's logger. mochi logs some warnings once per
// packet or per message ("client store quota reached", "error processing
// packet"), so one misbehaving client could flood the log; at most one line
// per message text and interval gets through, carrying the number held back.
// Lines below WARN pass unchanged (they are off at the default level).
type throttledHandler struct {
	slog.Handler
	every time.Duration
	state *throttleState
}

type throttleState struct {
	mu   sync.Mutex
	next map[string]time.Time
	held map[string]int
}

func newThrottledHandler(h slog.Handler, every time.Duration) *throttledHandler {
	return &throttledHandler{Handler: h, every: every,
		state: &throttleState{next: map[string]time.Time{}, held: map[string]int{}}}
}

func (h *throttledHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn {
		return h.Handler.Handle(ctx, r)
	}
	s := h.state
	s.mu.Lock()
	if r.Time.Before(s.next[r.Message]) {
		s.held[r.Message]++
		s.mu.Unlock()
		return nil
	}
	held := s.held[r.Message]
	if len(s.next) > 1024 { // messages are constants; bound it anyway
		clear(s.next)
		clear(s.held)
	}
	s.next[r.Message] = r.Time.Add(h.every)
	delete(s.held, r.Message)
	s.mu.Unlock()
	if held > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int("suppressed", held))
	}
	return h.Handler.Handle(ctx, r)
}

func (h *throttledHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &throttledHandler{Handler: h.Handler.WithAttrs(attrs), every: h.every, state: h.state}
}

func (h *throttledHandler) WithGroup(name string) slog.Handler {
	return &throttledHandler{Handler: h.Handler.WithGroup(name), every: h.every, state: h.state}
}
