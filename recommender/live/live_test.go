package live_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/storeflow/storeflow/internal/metrictest"
	"github.com/storeflow/storeflow/internal/modeltest"
	"github.com/storeflow/storeflow/recommender"
	"github.com/storeflow/storeflow/recommender/live"
	"github.com/storeflow/storeflow/recommender/train"
	"github.com/storeflow/storeflow/store"
	"github.com/storeflow/storeflow/store/csvdir"
	"github.com/storeflow/storeflow/store/world"
)

// worlds are the shop the tests score against (seed 4), with its history,
// and another catalog seed's, whose history read against the shop's catalog
// is a wrong history: the same ids, other shoppers' uses.
var worlds = sync.OnceValues(func() ([2]*world.World, error) {
	var ws [2]*world.World
	for i, seed := range []int64{4, 5} {
		w, err := world.Generate(world.Config{Seed: seed, Reference: modeltest.Day, Customers: 300, Days: 60})
		if err != nil {
			return ws, err
		}
		ws[i] = w
	}
	return ws, nil
})

// models are a model of shop's own history and one of the wrong history.
var models = sync.OnceValues(func() ([2]*recommender.Model, error) {
	var ms [2]*recommender.Model
	ws, err := worlds()
	if err != nil {
		return ms, err
	}
	for i, h := range [][]store.HistoryEntry{ws[0].History, ws[1].History} {
		m, _, err := train.World(&world.World{Catalog: ws[0].Catalog, History: h}, train.Options{MaxTrees: 30}, false)
		if err != nil {
			return ms, err
		}
		ms[i] = m
	}
	return ms, nil
})

func testWorlds(t *testing.T) (shop, other *world.World) {
	t.Helper()
	ws, err := worlds()
	if err != nil {
		t.Fatal(err)
	}
	return ws[0], ws[1]
}

func testModels(t *testing.T) (right, wrong *recommender.Model) {
	t.Helper()
	ms, err := models()
	if err != nil {
		t.Fatal(err)
	}
	return ms[0], ms[1]
}

// writeModel writes m to path the safe way: a temporary file renamed over it.
func writeModel(t *testing.T, path string, m *recommender.Model) {
	t.Helper()
	if err := m.Save(path); err != nil {
		t.Fatal(err)
	}
}

// replace renames a temporary file holding data over path.
func replace(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// same tells whether the live model scores every offer of w as m does.
func same(t *testing.T, l *live.Model, m *recommender.Model, w *world.World) bool {
	t.Helper()
	ctx := context.Background()
	got, want := make([]float64, 1), make([]float64, 1)
	for _, o := range w.History[:200] {
		c, _ := w.Catalog.Customer(ctx, o.CustomerID)
		cp, _ := w.Catalog.Coupon(ctx, o.CouponID)
		if err := l.Score(ctx, &c, []store.Coupon{cp}, got); err != nil {
			t.Fatal(err)
		}
		_ = m.Score(ctx, &c, []store.Coupon{cp}, want)
		if got[0] != want[0] {
			return false
		}
	}
	return true
}

// A model file replaced on disk is put in use once it holds still for a
// poll, or at once on SIGHUP (Check(true)); a file being written is never
// read half; a file that is no model, or none at all, is refused with one
// log line naming the file and the reason, and the model in use stays.
func TestFileReload(t *testing.T) {
	shop, _ := testWorlds(t)
	right, wrong := testModels(t)
	path := filepath.Join(t.TempDir(), "model.json")
	writeModel(t, path, wrong)
	reg := prometheus.NewRegistry()
	var log bytes.Buffer
	f, err := live.LoadFile("MODEL_FILE", path, "a", live.NewMetrics(reg), slog.New(slog.NewTextHandler(&log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	l := f.Model()
	if !same(t, l, wrong, shop) {
		t.Fatal("the loaded model is not the file's")
	}
	count := func(outcome string) float64 {
		return metrictest.Value(t, reg, "storeflow_model_reloads_total", "arm=a", "outcome="+outcome)
	}
	hashOf := func(m *recommender.Model) string {
		t.Helper()
		p := filepath.Join(t.TempDir(), "m.json")
		writeModel(t, p, m)
		g, err := live.LoadFile("MODEL_FILE", p, "a", live.NewMetrics(prometheus.NewRegistry()), slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		return g.Model().Hash()
	}
	info := func(hash string) float64 {
		return metrictest.Sum(t, reg, "storeflow_model_info", "arm=a", "hash="+hash, "source=file")
	}
	if info(hashOf(wrong)) != 1 {
		t.Fatal("storeflow_model_info does not name the loaded model")
	}

	// Replaced by a rename: seen at one poll, read at the next.
	writeModel(t, path, right)
	f.Check(false)
	if !same(t, l, wrong, shop) {
		t.Fatal("the replacement was read at the poll that first saw it")
	}
	f.Check(false)
	if !same(t, l, right, shop) || count(live.OutcomeLoaded) != 1 {
		t.Fatalf("the replaced file's model is not in use (loaded %v)", count(live.OutcomeLoaded))
	}
	if info(hashOf(right)) != 1 || metrictest.Sum(t, reg, "storeflow_model_info", "arm=a") != 1 {
		t.Fatal("storeflow_model_info does not name the model in use alone")
	}

	// Written in place, in pieces, with a poll between each: read only once
	// it holds still, whole.
	data, err := json.Marshal(wrong)
	if err != nil {
		t.Fatal(err)
	}
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if _, err := fh.Write(data[i*len(data)/4 : (i+1)*len(data)/4]); err != nil {
			t.Fatal(err)
		}
		f.Check(false)
	}
	if err := fh.Close(); err != nil {
		t.Fatal(err)
	}
	if !same(t, l, right, shop) || count(live.OutcomeRefused) != 0 {
		t.Fatalf("a file being written was read (refused %v)", count(live.OutcomeRefused))
	}
	f.Check(false)
	if !same(t, l, wrong, shop) || count(live.OutcomeLoaded) != 2 {
		t.Fatal("the file written in place is not in use once it held still")
	}

	// SIGHUP: read at once.
	writeModel(t, path, right)
	f.Check(true)
	if !same(t, l, right, shop) || count(live.OutcomeLoaded) != 3 {
		t.Fatal("SIGHUP did not put the replaced file's model in use")
	}

	// Broken files: refused once each, the model in use kept.
	for i, bad := range []struct{ data, reason string }{
		{"{\"format\":\"storeflow-gbt\",\"version\":1,\"tre", "not a model file"},
		{"{\"format\":\"storeflow-gbt\",\"version\":9}", "version 9"},
	} {
		log.Reset()
		replace(t, path, []byte(bad.data))
		f.Check(false)
		f.Check(false)
		f.Check(false)
		lines := strings.Split(strings.TrimSpace(log.String()), "\n")
		if len(lines) != 1 || !strings.Contains(lines[0], "model file refused") || !strings.Contains(lines[0], path) ||
			!strings.Contains(lines[0], bad.reason) {
			t.Fatalf("log after a broken file: %q, want one line naming the file and the reason %q", lines, bad.reason)
		}
		if !same(t, l, right, shop) || count(live.OutcomeRefused) != float64(i+1) {
			t.Fatal("a broken file replaced the model in use")
		}
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	f.Check(false)
	f.Check(false)
	if !same(t, l, right, shop) || count(live.OutcomeRefused) != 3 {
		t.Fatalf("a removed file: refused %v times, want once more", count(live.OutcomeRefused))
	}
	writeModel(t, path, wrong)
	f.Check(false)
	f.Check(false)
	if !same(t, l, wrong, shop) {
		t.Fatal("the file put back is not in use")
	}
}

// At start a file that is no model is an error naming the setting and the file.
func TestLoadFileRefuses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "challenger.json")
	if err := os.WriteFile(path, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := live.LoadFile("MODEL_B_FILE", path, "b", live.NewMetrics(prometheus.NewRegistry()), slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "MODEL_B_FILE") || !strings.Contains(err.Error(), path) {
		t.Fatalf("LoadFile of a file that is no model: %v", err)
	}
}

// Retraining from the history file replaces a model trained on a wrong
// history (another catalog seed's), and keeps the model in use when the
// retrained one ranks the held-out offers worse.
func TestRetrain(t *testing.T) {
	shop, _ := testWorlds(t)
	_, wrong := testModels(t)
	dir := t.TempDir()
	if err := csvdir.Write(dir, &csvdir.Tables{Catalog: shop.Catalog, History: shop.History}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	var log bytes.Buffer
	l := live.NewModel("a", wrong, "file", nil, live.NewMetrics(reg))
	r := &live.Retrainer{History: filepath.Join(dir, "coupon_history.csv"), Catalog: shop.Catalog, Model: l,
		Options: train.Options{MaxTrees: 30}, Log: slog.New(slog.NewTextHandler(&log, nil))}
	res, err := r.Retrain()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("wrong model %.4f, retrained %.4f (held-out ROC AUC), %d offers", res.Current, res.Candidate, res.Offers)
	if res.Outcome != live.OutcomeSwapped || l.Current() == wrong || res.Candidate < res.Current+0.1 {
		t.Fatalf("retraining on the right history: %+v, want the retrained model in use, well above the wrong one", res)
	}
	if !strings.Contains(log.String(), "current_auc=") || !strings.Contains(log.String(), "candidate_auc=") {
		t.Errorf("log %q, want both AUCs", log.String())
	}
	if metrictest.Value(t, reg, "storeflow_model_retrain_auc", "model=candidate") != res.Candidate {
		t.Error("storeflow_model_retrain_auc does not say the candidate's AUC")
	}
	good := l.Current()

	// A weaker learner (one stump) ranks worse: kept out.
	r.Options = train.Options{MaxTrees: 1, MaxDepth: 1, NoLinear: true}
	res, err = r.Retrain()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("in use %.4f, retrained %.4f", res.Current, res.Candidate)
	if res.Outcome != live.OutcomeKept || l.Current() != good || !(res.Candidate < res.Current) {
		t.Fatalf("a worse retraining: %+v, want the model in use kept", res)
	}

	// No history: failed, counted, the model kept.
	r.History = filepath.Join(dir, "none.csv")
	if res, err = r.Retrain(); err == nil || res.Outcome != live.OutcomeFailed || l.Current() != good {
		t.Fatalf("retraining without a history file: %+v, %v", res, err)
	}
	for outcome, want := range map[string]float64{live.OutcomeSwapped: 1, live.OutcomeKept: 1, live.OutcomeFailed: 1} {
		if got := metrictest.Value(t, reg, "storeflow_model_retrains_total", "outcome="+outcome); got != want {
			t.Errorf("storeflow_model_retrains_total{outcome=%q} = %v, want %v", outcome, got, want)
		}
	}
}

// How long one retraining takes on the demo's history (997 customers, 180
// days): reading the file, training, and both held-out evaluations.
func BenchmarkRetrain(b *testing.B) {
	w := modeltest.World(b)
	dir := b.TempDir()
	if err := csvdir.Write(dir, &csvdir.Tables{Catalog: w.Catalog, History: w.History}); err != nil {
		b.Fatal(err)
	}
	m, _, err := train.World(w, train.Options{MaxTrees: 5}, false)
	if err != nil {
		b.Fatal(err)
	}
	l := live.NewModel("a", m, "trained", nil, live.NewMetrics(prometheus.NewRegistry()))
	r := &live.Retrainer{History: filepath.Join(dir, "coupon_history.csv"), Catalog: w.Catalog, Model: l, Log: slog.New(slog.DiscardHandler)}
	b.ResetTimer()
	for range b.N {
		if _, err := r.Retrain(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(w.History)), "offers")
}
