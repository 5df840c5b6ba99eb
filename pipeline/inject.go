package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/storeflow/storeflow/event"
	"github.com/storeflow/storeflow/recommender"
	"github.com/storeflow/storeflow/store"
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
	p.m.accepted.WithLabelValues(kindFocus).Inc()

	// The stages report their outcome in metrics and logs only; the
	// recorder in ctx hears it from the observed central, scorer and
	// publisher that New installed.
	rec := &focusRecord{predictionTopic: p.cfg.PredictionTopic}
	ctx = context.WithValue(ctx, focusRecordKey{}, rec)
	p.pending.Add(1) // settled by the stage that ends it, as for a queued one
	j, ok := p.loadContext(ctx, focusIn{focus: f, received: time.Now()})
	if ok {
		j, ok = p.score(ctx, j)
	}
	if ok {
		p.offer(ctx, j)
	}
	res := rec.result()
	if res.Outcome == "" && ok {
		// offer claimed nothing: the same test claim makes.
		if _, qualified := recommender.Best(j.coupons, j.probs, p.threshold, nil); qualified {
			res.Outcome = OutcomeAlreadyIssued
		} else {
			res.Outcome = OutcomeBelowThreshold
		}
	}
	if err := ctx.Err(); err != nil && res.Outcome != OutcomePublished {
		return res, err
	}
	return res, nil
}

// focusRecord collects what the observed dependencies saw during one FocusNow.
type focusRecord struct {
	predictionTopic string

	mu         sync.Mutex
	outcome    string
	prediction []byte
}

type focusRecordKey struct{}

func recordOf(ctx context.Context) *focusRecord {
	r, _ := ctx.Value(focusRecordKey{}).(*focusRecord)
	return r
}

// note keeps the first outcome: the stage that failed first decided it.
func (r *focusRecord) note(outcome string, prediction []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.outcome == "" {
		r.outcome, r.prediction = outcome, prediction
	}
}

func (r *focusRecord) result() FocusResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	return FocusResult{Outcome: r.outcome, Prediction: r.prediction}
}

// observe wraps the focus stages' dependencies so that a FocusNow can learn
// its outcome. Outside a FocusNow (no record in ctx) they only pass through.
func observe(central Central, scorer recommender.Scorer, pub Publisher) (Central, recommender.Scorer, Publisher) {
	return observedCentral{central}, observedScorer{scorer}, observedPublisher{pub}
}

type observedCentral struct{ Central }

func (c observedCentral) Customer(ctx context.Context, id string) (store.Customer, error) {
	cu, err := c.Central.Customer(ctx, id)
	if r := recordOf(ctx); r != nil && err != nil {
		if errors.Is(err, store.ErrNotFound) {
			r.note(OutcomeUnknownCustomer, nil)
		} else {
			r.note(OutcomeContextError, nil)
		}
	}
	return cu, err
}

func (c observedCentral) ValidCoupons(ctx context.Context, dep store.Department, day store.Day, dst []store.Coupon) ([]store.Coupon, error) {
	cs, err := c.Central.ValidCoupons(ctx, dep, day, dst)
	if r := recordOf(ctx); r != nil {
		switch {
		case err != nil:
			r.note(OutcomeContextError, nil)
		case len(cs) == 0:
			r.note(OutcomeNoCoupons, nil)
		}
	}
	return cs, err
}

func (c observedCentral) CouponProducts(ctx context.Context, couponID int) ([]store.Product, error) {
	ps, err := c.Central.CouponProducts(ctx, couponID)
	if r := recordOf(ctx); r != nil && err != nil {
		r.note(OutcomeContextError, nil)
	}
	return ps, err
}

type observedScorer struct{ recommender.Scorer }

func (s observedScorer) Score(ctx context.Context, c *store.Customer, coupons []store.Coupon, out []float64) error {
	err := s.Scorer.Score(ctx, c, coupons, out)
	if r := recordOf(ctx); r != nil && err != nil {
		r.note(OutcomeScoreError, nil)
	}
	return err
}

type observedPublisher struct{ Publisher }

func (o observedPublisher) Publish(ctx context.Context, topic string, payload []byte) error {
	err := o.Publisher.Publish(ctx, topic, payload)
	if r := recordOf(ctx); r != nil && topic == r.predictionTopic {
		if err != nil {
			r.note(OutcomePublishError, nil)
		} else {
			r.note(OutcomePublished, append([]byte(nil), payload...))
		}
	}
	return err
}
