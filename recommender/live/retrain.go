package live

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/storeflow/storeflow/recommender/train"
	"github.com/storeflow/storeflow/store"
	"github.com/storeflow/storeflow/store/csvdir"
	"github.com/storeflow/storeflow/store/world"
)

// Retrainer trains a model on the coupon history now and then and puts it
// in use when it ranks the held-out customers' offers (the split storeflow
// train evaluates on) no worse than the model in use does. Training runs in
// the caller's goroutine: one core at most, off the focus path.
type Retrainer struct {
	History string         // the history file (HISTORY_FILE)
	Catalog *store.Catalog // the catalog in use: the features of each offer
	Model   *Model         // the arm it retrains
	Options train.Options
	Log     *slog.Logger
}

// Retrained is what one retraining found.
type Retrained struct {
	Outcome            string  // OutcomeSwapped, OutcomeKept or OutcomeFailed
	Current, Candidate float64 // held-out ROC AUC of the model in use before, and of the retrained one
	Offers             int     // history rows trained on
	Unknown            int     // history rows naming a customer or coupon the catalog lacks: skipped
}

// Run retrains every interval until ctx is done.
func (r *Retrainer) Run(ctx context.Context, every time.Duration) error {
	return repeat(ctx, every, func() { _, _ = r.Retrain() })
}

// Retrain trains once on the history file and swaps the result in if it
// ranks no worse; the error says why there was nothing to compare (the
// outcome is then OutcomeFailed). Every outcome is counted and logged.
func (r *Retrainer) Retrain() (Retrained, error) {
	res, err := r.retrain()
	if err != nil {
		res.Outcome = OutcomeFailed
		r.Log.Warn("retraining failed: the model in use is kept", "history", r.History, "error", err)
	}
	r.Model.m.retrains.WithLabelValues(res.Outcome).Inc()
	return res, err
}

func (r *Retrainer) retrain() (Retrained, error) {
	var res Retrained
	start := time.Now()
	rows, err := csvdir.ReadHistory(r.History)
	if err != nil {
		return res, err
	}
	ctx := context.Background()
	known := rows[:0]
	for _, o := range rows {
		_, errC := r.Catalog.Customer(ctx, o.CustomerID)
		_, errP := r.Catalog.Coupon(ctx, o.CouponID)
		if errC != nil || errP != nil {
			res.Unknown++
			continue
		}
		known = append(known, o)
	}
	res.Offers = len(known)
	w := &world.World{Catalog: r.Catalog, History: known}
	candidate, rep, err := train.World(w, r.Options, true)
	if err != nil {
		return res, err
	}
	inUse := r.Model.Current()
	current, err := train.HeldOut(w, inUse)
	if err != nil {
		return res, err
	}
	res.Current, res.Candidate = current.ROC, rep.Model.ROC
	r.Model.m.auc.WithLabelValues("current").Set(res.Current)
	r.Model.m.auc.WithLabelValues("candidate").Set(res.Candidate)
	args := []any{"history", r.History, "offers", res.Offers, "unknown_rows", res.Unknown, "held_out_offers", rep.TestOffers,
		"current_auc", fmt.Sprintf("%.4f", res.Current), "candidate_auc", fmt.Sprintf("%.4f", res.Candidate),
		"took", time.Since(start).Round(time.Millisecond)}
	if !(res.Candidate >= res.Current) {
		res.Outcome = OutcomeKept
		r.Log.Info("retrained model ranks the held-out offers worse: the model in use is kept", args...)
		return res, nil
	}
	hash, ok := r.Model.swapFrom(inUse, candidate, "retrained", nil)
	if !ok {
		res.Outcome = OutcomeKept
		r.Log.Info("a reloaded model came in use while retraining: it is kept", args...)
		return res, nil
	}
	res.Outcome = OutcomeSwapped
	r.Log.Info("retrained model in use", append(args, "arm", r.Model.arm, "trees", len(candidate.Trees), "hash", hash)...)
	return res, nil
}
