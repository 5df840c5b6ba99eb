package app

import (
	"context"
	"time"

	"github.com/storeflow/storeflow/liveview"
)

// experimentTimeout bounds the experiment's figures for the view (a Redis
// read with several instances).
const experimentTimeout = 500 * time.Millisecond

// viewFigures fills the live view's figures that the pipeline and the
// simulated shoppers count.
func (a *App) viewFigures(f *liveview.Figures) {
	c := a.pipeline.Counts()
	f.Rejected = c.Rejected
	f.Dropped = c.Dropped - c.PrefetchSkipped // a skipped prefetch loses no event
	ctx, cancel := context.WithTimeout(context.Background(), experimentTimeout)
	defer cancel()
	for _, ar := range a.loop.Report(ctx).Arms {
		f.Experiment = append(f.Experiment, liveview.ExperimentArm{Arm: string(ar.Arm), Focus: ar.Focus, Coupons: ar.Coupons,
			Redemptions: ar.Redemptions, OffersUsed: ar.OffersUsed, Rate: ar.Rate.Value, Low: ar.Rate.Low, High: ar.Rate.High})
	}
	if a.accept == nil {
		return
	}
	t := a.accept.Tally()
	f.Acceptance = &liveview.Acceptance{Received: t.Received, WouldUse: t.Used}
	if t.Received > 0 {
		f.Acceptance.ExpectedRate = t.Expected / float64(t.Received)
		f.Acceptance.RandomRate = t.Random / float64(t.Received)
	}
}
