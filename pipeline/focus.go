package pipeline

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/storeflow/storeflow/event"
	"github.com/storeflow/storeflow/store"
)

// focusJob carries one focus event through the stages.
type focusJob struct {
	focus    event.Focus
	customer store.Customer
	coupons  []store.Coupon // the department's coupons valid on the focus day
	probs    []float64      // one per coupon
}

// loadContext is the context stage: who the shopper is and which of the
// department's coupons are valid at the focus time.
func (p *Pipeline) loadContext(ctx context.Context, f event.Focus) (*focusJob, bool) {
	c, err := p.central.Customer(ctx, f.ID)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			p.outcome(OutcomeUnknownCustomer, slog.LevelWarn, "focus of an unknown customer", f, err)
		} else {
			p.outcome(OutcomeContextError, slog.LevelError, "customer context failed", f, err)
		}
		return nil, false
	}
	coupons, err := p.central.ValidCoupons(ctx, f.Dep, store.DayOf(f.TS), nil)
	if err != nil {
		p.outcome(OutcomeContextError, slog.LevelError, "coupon lookup failed", f, err)
		return nil, false
	}
	if len(coupons) == 0 {
		p.outcome(OutcomeNoCoupons, slog.LevelDebug, "no coupon valid in the department", f, nil)
		return nil, false
	}
	return &focusJob{focus: f, customer: c, coupons: coupons}, true
}

// score is the prediction stage.
func (p *Pipeline) score(ctx context.Context, j *focusJob) (*focusJob, bool) {
	j.probs = make([]float64, len(j.coupons))
	if err := p.scorer.Score(ctx, &j.customer, j.coupons, j.probs); err != nil {
		p.outcome(OutcomeScoreError, slog.LevelError, "scoring failed", j.focus, err)
		return nil, false
	}
	return j, true
}

// offer is the select-and-publish stage: the best coupon not yet offered this
// visit, with its products, as a Prediction Results Message.
func (p *Pipeline) offer(ctx context.Context, j *focusJob) {
	f := j.focus
	c, ok, already := p.visits.claim(f.ID, p.now().Unix(), j.coupons, j.probs, p.threshold)
	if !ok {
		if already {
			p.outcome(OutcomeAlreadyIssued, slog.LevelDebug, "every qualifying coupon was offered this visit", f, nil)
		} else {
			p.outcome(OutcomeBelowThreshold, slog.LevelDebug, "no coupon above the threshold", f, nil)
		}
		return
	}
	products, err := p.central.CouponProducts(ctx, c.ID)
	if err != nil {
		p.visits.release(f.ID, c.ID)
		p.outcome(OutcomeContextError, slog.LevelError, "coupon products lookup failed", f, err)
		return
	}
	// A department-wide coupon covers the whole department, hundreds of
	// products: a phone shows a few, so the message lists the first ones.
	products = products[:min(len(products), p.cfg.MaxProducts)]
	msg, err := event.NewPrediction(f.ID, f.TS, c, products).Marshal()
	if err == nil {
		err = p.pub.Publish(ctx, p.cfg.PredictionTopic, msg)
	}
	if err != nil {
		p.visits.release(f.ID, c.ID)
		p.outcome(OutcomePublishError, slog.LevelError, "prediction publish failed", f, err)
		return
	}
	p.m.focusOutcome.WithLabelValues(OutcomePublished).Inc()
	p.log.Debug("coupon published", "customer_id", f.ID, "department", f.Dep.String(), "coupon_id", c.ID)
}

// outcome counts a focus that ended without a coupon and logs why.
func (p *Pipeline) outcome(outcome string, level slog.Level, msg string, f event.Focus, err error) {
	p.m.focusOutcome.WithLabelValues(outcome).Inc()
	if level == slog.LevelDebug {
		p.log.Debug(msg, "customer_id", f.ID, "department", f.Dep.String())
		return
	}
	p.warn.log(level, "focus:"+outcome, msg, "customer_id", f.ID, "department", f.Dep.String(), "error", err)
}

// stage runs fn on each value from in with n workers and sends kept results
// to out, until ctx is done. fn handles its own per-item failures and returns
// keep=false to stop an item.
func stage[In, Out any](ctx context.Context, n int, in <-chan In, out chan<- Out, fn func(context.Context, In) (Out, bool)) {
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case v := <-in:
					res, keep := fn(ctx, v)
					if !keep {
						continue
					}
					select {
					case out <- res:
					case <-ctx.Done():
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

// sink is the last stage: fn consumes each value and nothing goes on.
func sink[In any](ctx context.Context, n int, in <-chan In, fn func(context.Context, In)) {
	stage(ctx, n, in, nil, func(ctx context.Context, v In) (struct{}, bool) {
		fn(ctx, v)
		return struct{}{}, false // never sent: out may be nil
	})
}
