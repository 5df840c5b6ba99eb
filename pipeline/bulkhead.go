package pipeline

import (
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/storeflow/storeflow/internal/breaker"
	"github.com/storeflow/storeflow/store"
)

// The focus stages are a bulkhead: a slow or hanging peer (the prediction
// service, the central) slows them, never the dwell detector. Two parts:
//
//   - The hand-off to the focus queue waits at most defaultFocusWait for room.
//     With the embedded broker the one waiting is the dwell worker that
//     detected the focus, with an external broker the client's delivery of
//     every topic: an unbounded wait there would stall the moves of every
//     shopper behind it. A wait that runs out means the stages are stuck,
//     not merely busy: from then on a focus event that finds the queue full
//     is dropped at once (storeflow_events_dropped_total{queue="focus"}),
//     until the stages have worked the queue down to half. A merely busy
//     stage — the bench's full-speed part — frees a slot in microseconds,
//     so it keeps PIPELINE_OVERFLOW=block's pacing and loses nothing.
//   - The peers' clients have circuit breakers (internal/breaker): a peer
//     that keeps failing is not called for a while, so the stages fail the
//     focus events fast (predictor_unavailable, central_unavailable) and the
//     queue drains instead of filling.

// defaultFocusWait bounds how long a focus event may wait for room in the
// focus queue (Pipeline.focusWait). Long enough for a busy stage on a loaded
// machine (the scheduler's time slice is 10 ms), short enough that a dwell
// worker caught by a stall pays it once.
const defaultFocusWait = 50 * time.Millisecond

const queueFocus = "focus"

// enqueueFocus hands a focus event to the focus stages, with the overflow
// policy above (PIPELINE_OVERFLOW=drop: never waits), and reports whether it
// was taken. Once shutdown has begun it refuses the event, counted as
// dropped "shutdown".
func (p *Pipeline) enqueueFocus(v focusIn) bool {
	if !p.focusGate.enter() {
		p.refuse()
		return false
	}
	defer p.focusGate.leave()
	select {
	case p.focusQ <- v:
		if p.focusStuck.Load() && len(p.focusQ) <= cap(p.focusQ)/2 {
			p.focusStuck.Store(false)
		}
		return true
	default:
	}
	if p.cfg.Overflow == OverflowBlock && !p.focusStuck.Load() {
		t := focusTimers.Get().(*time.Timer)
		t.Reset(p.focusWait)
		defer func() { t.Stop(); focusTimers.Put(t) }()
		select {
		case p.focusQ <- v:
			return true
		case <-p.focusGate.closed:
			p.refuse()
			return false
		case <-p.stop:
		case <-t.C:
			p.focusStuck.Store(true)
			p.warn.Log(slog.LevelWarn, "focus_stuck", "focus stages stuck: focus events are dropped until their queue is half empty",
				"waited", p.focusWait, "queue", cap(p.focusQ))
		}
	}
	p.m.dropFocus.Inc()
	p.warn.Log(slog.LevelWarn, "drop:"+queueFocus, "event dropped: queue full", "queue", queueFocus, "policy", p.cfg.Overflow)
	return false
}

// focusTimers are the timers of enqueueFocus's waits, reused: a stage that
// is busy, not stuck, makes the hand-off wait often.
var focusTimers = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}}

// centralOutcome names why a call to the central (through the cache) failed.
func centralOutcome(err error) string {
	switch {
	case errors.Is(err, store.ErrLimited):
		return OutcomeCentralLimited
	case errors.Is(err, breaker.ErrOpen):
		return OutcomeCentralUnavailable
	}
	return OutcomeContextError
}
