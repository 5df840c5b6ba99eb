package pipeline

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/storeflow/storeflow/event"
	"github.com/storeflow/storeflow/experiment"
	"github.com/storeflow/storeflow/internal/breaker"
	"github.com/storeflow/storeflow/store"
)

// focusJob carries one focus event through the stages.
type focusJob struct {
	focus    event.Focus
	received time.Time // when the focus event came in, for storeflow_focus_seconds
	customer store.Customer
	coupons  []store.Coupon // the department's coupons valid on the focus day
	probs    []float64      // one per coupon
	claim    string         // DWELL_STATE=redis: the token of this instance's claim on the focus
	capHeld  bool           // the coupon's place under the caps is reserved
	capPrev  int64          // what giving that place back restores
	ack      func()         // acknowledges the focus message to the broker once settled (nil: nothing to do)

	// How it ended, for a caller that runs the stages itself (FocusNow).
	outcome    string
	prediction []byte // the published message, when outcome is OutcomePublished
}

// loadContext is the context stage: who the shopper is and which of the
// department's coupons are valid at the focus time.
// The event counts in p.pending until settled. Like every stage it returns
// the job even when it ends it (ok false), so the job carries its outcome.
func (p *Pipeline) loadContext(ctx context.Context, in focusIn) (*focusJob, bool) {
	start := time.Now()
	defer func() { p.m.stageContext.Observe(time.Since(start).Seconds()) }()
	j := &focusJob{focus: in.focus, received: in.received, ack: in.ack}
	f := in.focus
	if p.shared != nil {
		token, err := p.shared.claim(ctx, f)
		switch {
		case err != nil:
			if ctx.Err() == nil {
				p.m.sharedErrors.WithLabelValues(opClaim).Inc()
			}
			p.outcome(OutcomeRedisError, slog.LevelError, "focus claim failed: no coupon", j, err)
			return j, false
		case token == "":
			p.outcome(OutcomeDuplicate, slog.LevelDebug, "focus handled already, here or by another instance", j, nil)
			return j, false
		}
		j.claim = token
	}
	p.firstFocus(f)
	// The gates come before any central call: a shopper in the holdout or
	// capped already costs no context and no scoring.
	if p.arms.Assign(f.ID) == experiment.Holdout {
		p.outcome(OutcomeHoldout, slog.LevelDebug, "shopper in the holdout: no coupon", j, nil)
		return j, false
	}
	if p.caps != nil {
		capped, err := p.caps.capped(ctx, f)
		if err != nil {
			if ctx.Err() == nil {
				p.m.sharedErrors.WithLabelValues(opCaps).Inc()
			}
			p.outcome(OutcomeRedisError, slog.LevelError, "frequency caps lookup failed: no coupon", j, err)
			return j, false
		}
		if capped {
			p.outcome(OutcomeCapped, slog.LevelDebug, "shopper capped: no coupon", j, nil)
			return j, false
		}
	}
	c, err := p.central.Customer(ctx, f.ID)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			p.outcome(OutcomeUnknownCustomer, slog.LevelWarn, "focus of an unknown customer", j, err)
		} else {
			p.outcome(centralOutcome(err), slog.LevelError, "customer context failed", j, err)
		}
		return j, false
	}
	coupons, err := p.central.ValidCoupons(ctx, f.Dep, store.DayOf(f.TS), nil)
	if err != nil {
		p.outcome(centralOutcome(err), slog.LevelError, "coupon lookup failed", j, err)
		return j, false
	}
	if len(coupons) == 0 {
		p.outcome(OutcomeNoCoupons, slog.LevelDebug, "no coupon valid in the department", j, nil)
		return j, false
	}
	j.customer, j.coupons = c, coupons
	return j, true
}

// score is the prediction stage: the challenger's scorer for a shopper of
// arm b, the model's for everyone else.
func (p *Pipeline) score(ctx context.Context, j *focusJob) (*focusJob, bool) {
	j.probs = make([]float64, len(j.coupons))
	scorer := p.scorer
	if p.scorerB != nil && p.arms.Assign(j.focus.ID) == experiment.B {
		scorer = p.scorerB
	}
	start := time.Now()
	err := scorer.Score(ctx, &j.customer, j.coupons, j.probs)
	took := time.Since(start).Seconds()
	p.m.predictionSeconds.Observe(took)
	p.m.stageScore.Observe(took)
	if err != nil {
		p.m.predictionsError.Inc()
		if errors.Is(err, breaker.ErrOpen) {
			p.outcome(OutcomePredictorUnavailable, slog.LevelWarn, "prediction service not called: circuit breaker open", j, err)
		} else {
			p.outcome(OutcomeScoreError, slog.LevelError, "scoring failed", j, err)
		}
		return j, false
	}
	p.m.predictionsOK.Inc()
	return j, true
}

// offer is the select-and-publish stage: the best coupon not yet offered this
// visit, with its products, as a Prediction Results Message.
func (p *Pipeline) offer(ctx context.Context, j *focusJob) {
	start := time.Now()
	defer func() { p.m.stagePublish.Observe(time.Since(start).Seconds()) }()
	f := j.focus
	c, ok, already, err := p.pick(ctx, j)
	if err != nil {
		p.m.sharedErrors.WithLabelValues(opOffer).Inc()
		p.outcome(OutcomeRedisError, slog.LevelError, "visit ledger failed: no coupon", j, err)
		return
	}
	if !ok {
		if already {
			p.outcome(OutcomeAlreadyIssued, slog.LevelDebug, "every qualifying coupon was offered this visit", j, nil)
		} else {
			p.outcome(OutcomeBelowThreshold, slog.LevelDebug, "no coupon above the threshold", j, nil)
		}
		return
	}
	if !p.reserveCaps(ctx, j) {
		p.unpick(ctx, f.ID, c.ID)
		return
	}
	// A department-wide coupon covers the whole department, hundreds of
	// products: a phone shows a few, so the message lists the first ones,
	// and only those are read (and cached, and asked of a remote central).
	products, err := p.central.CouponProducts(ctx, c.ID, p.cfg.MaxProducts)
	if err != nil {
		p.giveBack(ctx, j, c.ID)
		p.outcome(centralOutcome(err), slog.LevelError, "coupon products lookup failed", j, err)
		return
	}
	msg, err := event.NewPrediction(f.ID, f.TS, c, products).Marshal()
	if err == nil {
		err = p.pub.Publish(ctx, p.cfg.PredictionTopic, msg)
	}
	if err != nil {
		p.giveBack(ctx, j, c.ID)
		p.outcome(OutcomePublishError, slog.LevelError, "prediction publish failed", j, err)
		return
	}
	p.m.published.Inc()
	j.prediction = msg
	p.settle(OutcomePublished, j)
	p.firstCoupon(f, c)
	p.log.Debug("coupon published", "customer_id", f.ID, "department", f.Dep.String(), "coupon_id", c.ID)
}

// pick chooses the coupon to offer for j and records it in the visit ledger:
// in process, or shared with the other instances (DWELL_STATE=redis).
func (p *Pipeline) pick(ctx context.Context, j *focusJob) (c store.Coupon, ok, already bool, err error) {
	if p.shared == nil {
		c, ok, already = p.visits.claim(j.focus.ID, p.now().Unix(), j.coupons, j.probs, p.threshold)
		return c, ok, already, nil
	}
	return p.shared.offer(ctx, j.focus, j.coupons, j.probs, p.threshold)
}

// reserveCaps takes the place of j's coupon under the frequency caps. It
// reports false when the focus ended there: capped (another focus of the
// shopper took the last place meanwhile), or the caps failed.
func (p *Pipeline) reserveCaps(ctx context.Context, j *focusJob) bool {
	if p.caps == nil {
		return true
	}
	ok, prev, err := p.caps.reserve(ctx, j.focus)
	switch {
	case err != nil:
		p.m.sharedErrors.WithLabelValues(opCaps).Inc()
		p.outcome(OutcomeRedisError, slog.LevelError, "frequency caps reservation failed: no coupon", j, err)
		return false
	case !ok:
		p.outcome(OutcomeCapped, slog.LevelDebug, "shopper capped: no coupon", j, nil)
		return false
	}
	j.capHeld, j.capPrev = true, prev
	return true
}

// giveBack takes back what was recorded for j's coupon, not delivered: its
// visit ledger pick and its place under the caps, which only published
// coupons use up.
func (p *Pipeline) giveBack(ctx context.Context, j *focusJob, couponID int) {
	p.unpick(ctx, j.focus.ID, couponID)
	if j.capHeld {
		p.sharedErr(opCaps, j.focus.ID, p.caps.release(ctx, j.focus, j.capPrev))
		j.capHeld = false
	}
}

// unpick takes back an offer pick recorded that could not be delivered.
func (p *Pipeline) unpick(ctx context.Context, id string, couponID int) {
	if p.shared == nil {
		p.visits.release(id, couponID)
		return
	}
	p.sharedErr(opRelease, id, p.shared.release(ctx, id, couponID))
}

// sharedErr counts and logs (rate-limited) a failed call to the shared
// state that ends no focus; it does nothing when err is nil.
func (p *Pipeline) sharedErr(op, id string, err error) {
	if err == nil {
		return
	}
	p.m.sharedErrors.WithLabelValues(op).Inc()
	p.warn.Log(slog.LevelError, "shared:"+op, "shared state call failed", "op", op, "customer_id", id, "error", err)
}

// retryable tells the outcomes that end a focus without a coupon for a
// passing reason: in DWELL_STATE=redis the claim is released, so that
// another copy of the focus (another instance's, a redelivery) is handled.
func retryable(outcome string) bool {
	switch outcome {
	case OutcomeContextError, OutcomeScoreError, OutcomePublishError, OutcomeRedisError,
		OutcomeCentralUnavailable, OutcomeCentralLimited, OutcomePredictorUnavailable:
		return true
	}
	return false
}

// finishClaim confirms j's claim once the focus was handled (a coupon
// published, or an answer another try would repeat: below the threshold,
// unknown customer…) and releases it otherwise.
func (p *Pipeline) finishClaim(j *focusJob, outcome string) {
	handled := !retryable(outcome) && (outcome == OutcomePublished || !p.abandoned.Load())
	ctx, cancel := context.WithTimeout(context.Background(), claimFinishTimeout)
	defer cancel()
	held, err := p.shared.finish(ctx, j.focus, j.claim, handled)
	if err != nil {
		p.sharedErr(opFinish, j.focus.ID, err)
		return
	}
	if !held {
		p.m.claimsExpired.Inc()
		p.warn.Log(slog.LevelWarn, "claim:expired", "focus settled after its claim expired: another instance may have handled it too; raise FOCUS_CLAIM_TTL",
			"customer_id", j.focus.ID, "department", j.focus.Dep.String(), "outcome", outcome)
	}
}

// outcome counts a focus that ended without a coupon and logs why.
func (p *Pipeline) outcome(outcome string, level slog.Level, msg string, j *focusJob, err error) {
	if !p.settle(outcome, j) {
		return // abandoned at shutdown: the cancellation is no failure to log
	}
	f := j.focus
	if level == slog.LevelDebug {
		p.log.Debug(msg, "customer_id", f.ID, "department", f.Dep.String())
		return
	}
	p.warn.Log(level, "focus:"+outcome, msg, "customer_id", f.ID, "department", f.Dep.String(), "error", err)
}

// settle records how a focus event ended: its outcome and how long it took.
// After SHUTDOWN_TIMEOUT whatever did not end in a coupon is counted as
// dropped "shutdown" instead, and settle returns false.
func (p *Pipeline) settle(outcome string, j *focusJob) bool {
	j.outcome = outcome
	if j.claim != "" {
		p.finishClaim(j, outcome)
	}
	acknowledge(j.ack) // after the claim ended: a redelivery finds it confirmed or free
	p.pending.Add(-1)
	if outcome != OutcomePublished && p.abandoned.Load() {
		p.m.dropShutdown.Inc()
		return false
	}
	p.m.outcome[outcome].Inc()
	p.m.focusSeconds.Observe(time.Since(j.received).Seconds())
	return true
}

// stage runs fn on each value from in with n workers and sends kept results
// to out, until in is closed and empty or ctx is done; then it closes out.
// fn handles its own per-item failures and returns keep=false to stop an
// item. lost counts a kept result that could not be handed on because ctx
// ended.
func stage[In, Out any](ctx context.Context, n int, in <-chan In, out chan<- Out, fn func(context.Context, In) (Out, bool), lost func()) {
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case v, ok := <-in:
					if !ok {
						return
					}
					res, keep := fn(ctx, v)
					if !keep {
						continue
					}
					select {
					case out <- res:
					case <-ctx.Done():
						lost()
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if out != nil {
		close(out)
	}
}

// sink is the last stage: fn consumes each value and nothing goes on.
func sink[In any](ctx context.Context, n int, in <-chan In, fn func(context.Context, In)) {
	stage(ctx, n, in, nil, func(ctx context.Context, v In) (struct{}, bool) {
		fn(ctx, v)
		return struct{}{}, false // never sent: out is nil
	}, nil)
}
