package app

import "github.com/storeflow/storeflow/liveview"

// viewFigures fills the live view's figures that the pipeline and the
// simulated shoppers count.
func (a *App) viewFigures(f *liveview.Figures) {
	c := a.pipeline.Counts()
	f.Rejected = c.Rejected
	f.Dropped = c.Dropped - c.PrefetchSkipped // a skipped prefetch loses no event
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
