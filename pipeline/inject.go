package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/storeflow/storeflow/event"
)

// Entry points for events that arrive without MQTT (the seeds' mock endpoints).
// Each runs exactly the path a message on the topic takes, so it is validated,
// counted and logged as one; the only difference is that the caller learns
// what went wrong.

// InjectEnter handles an enter payload as if it arrived on ENTRY_EVENT_TOPIC_NAME.
// The error is the decode error (an *event.Error naming the field), also
// counted as a rejection.
func (p *Pipeline) InjectEnter(payload []byte) error {
	_, err := event.DecodePresence(payload)
	p.onEnter(p.cfg.EntryTopic, payload)
	return err
}

// InjectMove handles a move payload as if it arrived on MOVE_TOPIC. A move off
// the store plan is an error too, as it is a rejection on the topic.
func (p *Pipeline) InjectMove(payload []byte) error {
	m, err := event.DecodeMove(payload)
	p.onMove(p.cfg.MoveTopic, payload)
	if err == nil && !p.plan.Contains(m.X, m.Y) {
		err = fmt.Errorf("event: position (%d,%d) is off the %s plan (%d×%d)", m.X, m.Y, p.plan.Name, p.plan.Width, p.plan.Height)
	}
	return err
}

// InjectExit handles an exit payload as if it arrived on EXIT_TOPIC.
func (p *Pipeline) InjectExit(payload []byte) error {
	_, err := event.DecodePresence(payload)
	p.onExit(p.cfg.ExitTopic, payload)
	return err
}

// FocusResult is what became of one focus event run by FocusNow.
type FocusResult struct {
	Outcome    string // one of the Outcome* values
	Prediction []byte // the Prediction Results Message when Outcome is OutcomePublished
}

// FocusNow runs one focus payload through the focus stages (context, score,
// select, publish) in the caller's goroutine, with the same validation, the
// same metrics and the same publish as a message on FOCUS_EVENT_TOPIC_NAME,
// and says what came of it. The error is a decode error (an *event.Error) or
// ctx's; every other failure is an Outcome.
func (p *Pipeline) FocusNow(ctx context.Context, payload []byte) (FocusResult, error) {
	f, err := event.DecodeFocus(payload)
	if err != nil {
		p.reject(kindFocus, p.cfg.FocusTopic, event.ReasonOf(err), err)
		return FocusResult{}, err
	}
	p.m.acceptedBy[kindFocus].Inc()

	p.pending.Add(1) // settled by the stage that ends it, as for a queued one
	j, ok := p.loadContext(ctx, focusIn{focus: f, received: time.Now()})
	if ok {
		j, ok = p.score(ctx, j)
	}
	if ok {
		p.offer(ctx, j)
	}
	res := FocusResult{Outcome: j.outcome, Prediction: j.prediction}
	if err := ctx.Err(); err != nil && res.Outcome != OutcomePublished {
		return res, err
	}
	return res, nil
}
