package broker

import (
	"context"
	"log/slog"
	"time"

	"github.com/storeflow/storeflow/internal/ratelog"
)

// throttledHandler is mochi's logger. mochi logs some warnings once per
// packet or per message ("client store quota reached", "error processing
// packet"), so one misbehaving client could flood the log; at most one line
// per message text and interval gets through, carrying the number held back.
// Lines below WARN pass unchanged (they are off at the default level).
type throttledHandler struct {
	slog.Handler
	gate *ratelog.Gate // one per message text
}

func newThrottledHandler(h slog.Handler, every time.Duration) *throttledHandler {
	return &throttledHandler{Handler: h, gate: ratelog.NewGate(every)}
}

func (h *throttledHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn {
		return h.Handler.Handle(ctx, r)
	}
	held, ok := h.gate.Allow(r.Message)
	if !ok {
		return nil
	}
	if held > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int("suppressed", held))
	}
	return h.Handler.Handle(ctx, r)
}

func (h *throttledHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &throttledHandler{Handler: h.Handler.WithAttrs(attrs), gate: h.gate}
}

func (h *throttledHandler) WithGroup(name string) slog.Handler {
	return &throttledHandler{Handler: h.Handler.WithGroup(name), gate: h.gate}
}
