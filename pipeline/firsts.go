package pipeline

import (
	"context"
	"fmt"
	"sort"
	"sync/atomic"
	"time"

	"github.com/storeflow/storeflow/event"
	"github.com/storeflow/storeflow/store"
)

// firsts tells a new user, at INFO, that the store works before the first
// coupon comes (which at real speed can take a minute or more): the first
// focus and the first coupon are logged once each, and when
// FIRST_COUPON_WAIT passes after the first focus with no coupon, one line
// says why from the focus outcome counts.
type firsts struct {
	focusAt atomic.Int64  // unix nanoseconds of the first focus; 0 until then
	focused chan struct{} // closed at the first focus
	coupon  atomic.Bool   // a coupon was published
}

func newFirsts() *firsts { return &firsts{focused: make(chan struct{})} }

// firstFocus logs the first focus the focus stages take in.
func (p *Pipeline) firstFocus(f event.Focus) {
	if p.first.focusAt.Load() != 0 || !p.first.focusAt.CompareAndSwap(0, time.Now().UnixNano()) {
		return
	}
	close(p.first.focused)
	p.log.Info("first focus", "customer_id", f.ID, "department", f.Dep.String(), "ts", f.TS)
}

// firstCoupon logs the first coupon published.
func (p *Pipeline) firstCoupon(f event.Focus, c store.Coupon) {
	if p.first.coupon.Load() || !p.first.coupon.CompareAndSwap(false, true) {
		return
	}
	p.log.Info("first coupon published", "customer_id", f.ID, "department", f.Dep.String(), "coupon_id", c.ID,
		"after_first_focus", time.Since(time.Unix(0, p.first.focusAt.Load())).Round(time.Millisecond))
}

// watchFirstCoupon waits for the first focus, then FIRST_COUPON_WAIT, and
// says why no coupon came if none did. 0 turns it off.
func (p *Pipeline) watchFirstCoupon(ctx context.Context) {
	if p.cfg.FirstCouponWait == 0 {
		return
	}
	select {
	case <-p.first.focused:
	case <-ctx.Done():
		return
	}
	t := time.NewTimer(p.cfg.FirstCouponWait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return
	}
	if p.first.coupon.Load() {
		return
	}
	attrs := []any{"after_first_focus", p.cfg.FirstCouponWait}
	var settled int64
	type count struct {
		outcome string
		n       int64
	}
	var counts []count
	for _, o := range outcomes {
		if n := counterValue(p.m.outcome[o]); n > 0 {
			counts = append(counts, count{o, n})
			settled += n
		}
	}
	sort.SliceStable(counts, func(i, j int) bool { return counts[i].n > counts[j].n })
	attrs = append(attrs, "focus_events", settled, "in_flight", p.pending.Load())
	for _, c := range counts {
		attrs = append(attrs, c.outcome, c.n)
	}
	why := "the focus events are still in the pipeline: a slow prediction service or central?"
	if len(counts) > 0 {
		why = p.whyNoCoupon(counts[0].outcome)
	}
	p.log.Warn("no coupon yet", append(attrs, "why", why)...)
}

// whyNoCoupon explains the most frequent outcome of the focus events that
// got no coupon, naming the setting to look at.
func (p *Pipeline) whyNoCoupon(outcome string) string {
	switch outcome {
	case OutcomeBelowThreshold:
		return fmt.Sprintf("the model scores every valid coupon below PREDICTION_THRESHOLD=%g for the shoppers so far (unlikely to be used): more shoppers will come, or lower the threshold", p.threshold)
	case OutcomeNoCoupons:
		return "no coupon of the department is valid on the focus day: check the catalog's coupon dates (DATA_DIR) against the events' ts"
	case OutcomeUnknownCustomer:
		return "the focus events name customers the catalog does not know"
	case OutcomeAlreadyIssued:
		return "every coupon that qualifies was already offered in this visit"
	case OutcomeScoreError, OutcomePredictorUnavailable:
		return "scoring fails: see the errors above (PREDICTION_URL)"
	case OutcomeContextError, OutcomeCentralUnavailable, OutcomeCentralLimited:
		return "customer context fails: see the errors above (CENTRAL_URL, REDIS_URL)"
	case OutcomePublishError:
		return "publishing the coupon fails: see the broker errors above"
	case OutcomeDuplicate:
		return "the focus events were deliveries of ones already handled"
	case OutcomeHoldout:
		return "the shoppers so far are in the experiment's holdout (HOLDOUT_FRACTION), who get no coupon"
	case OutcomeCapped:
		return "the shoppers so far reached COUPONS_PER_SHOPPER_PER_DAY or COUPON_DEPARTMENT_COOLDOWN"
	}
	return outcome
}
