package train_test

import (
	"math"
	"reflect"
	"testing"

	"github.com/storeflow/storeflow/internal/modeltest"
	"github.com/storeflow/storeflow/recommender/train"
	"github.com/storeflow/storeflow/store/world"
)

// The target: on customers the model never saw, its ROC AUC is within
// 0.02 of the ground truth's own, and well above the popularity baseline.
func TestTrainWorldMeetsTarget(t *testing.T) {
	ref := modeltest.Reference(t)
	m, rep := ref.Model, ref.Report
	t.Logf("model %.4f / %.4f, baseline %.4f / %.4f, ceiling %.4f / %.4f (ROC / PR), %d trees in %s",
		rep.Model.ROC, rep.Model.PR, rep.Baseline.ROC, rep.Baseline.PR, rep.Ceiling.ROC, rep.Ceiling.PR, rep.Trees, rep.Took)
	if !rep.CeilingKnown {
		t.Fatal("the generated world has ground truth, but no ceiling was computed")
	}
	if gap := rep.Ceiling.ROC - rep.Model.ROC; gap > 0.02 {
		t.Errorf("model ROC AUC %.4f is %.4f below the ceiling %.4f; target is within 0.02", rep.Model.ROC, gap, rep.Ceiling.ROC)
	}
	if rep.Model.ROC < rep.Baseline.ROC+0.05 {
		t.Errorf("model ROC AUC %.4f barely beats the popularity baseline %.4f", rep.Model.ROC, rep.Baseline.ROC)
	}
	if rep.Model.PR <= rep.Baseline.PR {
		t.Errorf("model PR AUC %.4f does not beat the baseline %.4f", rep.Model.PR, rep.Baseline.PR)
	}
	if rep.TestCustomers < 150 || rep.TestOffers == 0 || rep.TestCustomers == rep.Customers {
		t.Errorf("held out %d of %d customers (%d offers): want about a fifth", rep.TestCustomers, rep.Customers, rep.TestOffers)
	}
	if len(m.Trees) != rep.Trees || m.Linear == nil {
		t.Errorf("model has %d trees (report %d), linear part %v", len(m.Trees), rep.Trees, m.Linear != nil)
	}
}

func TestTrainWorldWithoutHistory(t *testing.T) {
	w := modeltest.World(t)
	if _, _, err := train.World(&world.World{Catalog: w.Catalog}, train.Options{}, true); err == nil {
		t.Fatal("training without history must fail with a clear error")
	}
}

func TestTrainingIsDeterministic(t *testing.T) {
	w, err := world.Generate(world.Config{Seed: 4, Reference: modeltest.Day, Customers: 200, Days: 60})
	if err != nil {
		t.Fatal(err)
	}
	a, _, err := train.World(w, train.Options{MaxTrees: 20}, false)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := train.World(w, train.Options{MaxTrees: 20}, false)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatal("two trainings on the same data gave different models")
	}
}

func TestROCAUC(t *testing.T) {
	tests := map[string]struct {
		scores []float64
		labels []bool
		roc    float64
		ap     float64
	}{
		"perfect":          {[]float64{0.9, 0.8, 0.2, 0.1}, []bool{true, true, false, false}, 1, 1},
		"reversed":         {[]float64{0.1, 0.2, 0.8, 0.9}, []bool{true, true, false, false}, 0, (1.0/3 + 2.0/4) / 2},
		"all tied":         {[]float64{0.5, 0.5, 0.5, 0.5}, []bool{true, false, true, false}, 0.5, 0.5},
		"one swap":         {[]float64{0.9, 0.8, 0.7, 0.6}, []bool{true, false, true, false}, 0.75, (1 + 2.0/3) / 2},
		"no positives":     {[]float64{0.1, 0.2}, []bool{false, false}, math.NaN(), math.NaN()},
		"tie across class": {[]float64{0.9, 0.5, 0.5, 0.1}, []bool{true, true, false, false}, 0.875, (1 + 2.0/3) / 2},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			same := func(a, b float64) bool { return math.Abs(a-b) < 1e-12 || (math.IsNaN(a) && math.IsNaN(b)) }
			if got := train.ROCAUC(tt.scores, tt.labels); !same(got, tt.roc) {
				t.Errorf("ROCAUC = %v, want %v", got, tt.roc)
			}
			if got := train.AveragePrecision(tt.scores, tt.labels); !same(got, tt.ap) {
				t.Errorf("AveragePrecision = %v, want %v", got, tt.ap)
			}
		})
	}
}

// HeldOut gives a model the figure World's report gives it, on the same
// held-out offers; a model trained on another shop's history ranks them
// worse.
func TestHeldOutIsTheReportsFigure(t *testing.T) {
	w, err := world.Generate(world.Config{Seed: 4, Reference: modeltest.Day, Customers: 300, Days: 60})
	if err != nil {
		t.Fatal(err)
	}
	m, rep, err := train.World(w, train.Options{MaxTrees: 30}, true)
	if err != nil {
		t.Fatal(err)
	}
	q, err := train.HeldOut(w, m)
	if err != nil {
		t.Fatal(err)
	}
	if q != rep.Model {
		t.Fatalf("HeldOut = %+v, the report says %+v", q, rep.Model)
	}
	other, err := world.Generate(world.Config{Seed: 5, Reference: modeltest.Day, Customers: 300, Days: 60})
	if err != nil {
		t.Fatal(err)
	}
	// Another shop's history read against this shop's catalog: the same
	// ids, offers and uses of other shoppers, as a history file of another
	// catalog seed would be.
	wrong, _, err := train.World(&world.World{Catalog: w.Catalog, History: other.History}, train.Options{MaxTrees: 30}, false)
	if err != nil {
		t.Fatal(err)
	}
	qw, err := train.HeldOut(w, wrong)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("held-out ROC AUC: own history %.4f, another shop's %.4f", q.ROC, qw.ROC)
	if qw.ROC >= q.ROC {
		t.Errorf("a model of another shop ranks the held-out offers at %.4f, the shop's own at %.4f", qw.ROC, q.ROC)
	}
}
