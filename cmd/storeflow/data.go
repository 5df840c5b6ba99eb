package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"

	"github.com/storeflow/storeflow/recommender/train"
	"github.com/storeflow/storeflow/store"
	"github.com/storeflow/storeflow/store/csvdir"
	"github.com/storeflow/storeflow/store/world"
)

// gen writes a generated world: the four catalog tables, the ground truth
// and the redemption history.
func gen(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "directory to write the CSV files into (created if missing)")
	seed := fs.Int64("seed", 1, "generator seed: the same seed and reference date give the same bytes")
	customers := fs.Int("customers", 997, "customers")
	products := fs.Int("products", 3000, "products (spread over the five departments)")
	coupons := fs.Int("coupons", 971, "coupons")
	days := fs.Int("days", 180, "days of redemption history before the reference date")
	ref := fs.String("reference", "", "reference date YYYY-MM-DD: coupons run around it, history ends the day before (default today, UTC)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() > 0 {
		fs.Usage()
		return errors.New("gen: --out DIR is required, and nothing else")
	}
	reference := time.Now().UTC()
	if *ref != "" {
		d, err := store.ParseDay(*ref)
		if err != nil {
			return fmt.Errorf("gen: --reference: %w", err)
		}
		reference = time.Unix(int64(d)*86400, 0).UTC()
	}
	reference = reference.Truncate(24 * time.Hour)
	start := time.Now()
	w, err := world.Generate(world.Config{Seed: *seed, Reference: reference,
		Customers: *customers, Products: *products, Coupons: *coupons, Days: *days})
	if err != nil {
		return err
	}
	if err := csvdir.Write(*out, &csvdir.Tables{Catalog: w.Catalog, Preferences: w.Preferences(), History: w.History}); err != nil {
		return err
	}
	used := 0
	for _, o := range w.History {
		if o.Used {
			used++
		}
	}
	nCust, nCoup, nProd, nLinks := w.Catalog.Sizes()
	fmt.Fprintf(stdout, "gen: wrote %s in %s: %d customers, %d coupons, %d products, %d coupon_product rows, %d preferences, %d offers in %d days of history (%.1f%% used); seed %d, reference %s\n",
		*out, time.Since(start).Round(time.Millisecond), nCust, nCoup, nProd, nLinks, len(w.Preferences()), len(w.History), *days,
		100*float64(used)/math.Max(1, float64(len(w.History))), *seed, store.DayOf(reference.Unix()))
	return nil
}

// trainModel trains on a directory's history, reports the held-out evaluation and
// saves the model. The last line is machine-readable.
func trainModel(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("train", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "", "directory with the CSV files (storeflow gen, or your own with coupon_history.csv)")
	out := fs.String("out", "", "file to write the model to (JSON; load it with MODEL_FILE)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *data == "" || *out == "" || fs.NArg() > 0 {
		fs.Usage()
		return errors.New("train: --data DIR and --out FILE are required")
	}
	t, err := csvdir.Load(*data)
	if err != nil {
		return err
	}
	w, err := world.New(t.Catalog, t.Preferences, t.History)
	if err != nil {
		return err
	}
	m, rep, err := train.World(w, train.Options{}, true)
	if err != nil {
		return err
	}
	if err := m.Save(*out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "train: %d offers (%.1f%% used) from %d customers; held out %d customers with %d offers (%d used)\n",
		rep.Offers, 100*float64(rep.Used)/float64(rep.Offers), rep.Customers, rep.TestCustomers, rep.TestOffers, rep.TestUsed)
	fmt.Fprintf(stdout, "train: %d trees on a logistic-regression start, trained in %s; saved to %s\n",
		rep.Trees, rep.Took.Round(time.Millisecond), *out)
	fmt.Fprintf(stdout, "%-24s %8s %8s\n", "held-out customers", "ROC AUC", "PR AUC")
	row := func(name string, q train.Quality) {
		fmt.Fprintf(stdout, "%-24s %8s %8s\n", name, f4(q.ROC), f4(q.PR))
	}
	row("model", rep.Model)
	row("popularity baseline", rep.Baseline)
	ceiling := "ground truth (ceiling)"
	if !rep.CeilingKnown {
		ceiling = "ceiling (no ground truth)"
	}
	row(ceiling, rep.Ceiling)
	fmt.Fprintf(stdout, "model_roc_auc=%s ceiling_roc_auc=%s baseline_roc_auc=%s\n", f4(rep.Model.ROC), f4(rep.Ceiling.ROC), f4(rep.Baseline.ROC))
	return nil
}

func f4(x float64) string { return strconv.FormatFloat(x, 'f', 4, 64) }
