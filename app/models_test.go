package app

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/storeflow/storeflow/config"
	"github.com/storeflow/storeflow/event"
	"github.com/storeflow/storeflow/experiment"
	"github.com/storeflow/storeflow/internal/harness"
	"github.com/storeflow/storeflow/internal/metrictest"
	"github.com/storeflow/storeflow/pipeline"
	"github.com/storeflow/storeflow/recommender"
	"github.com/storeflow/storeflow/recommender/train"
	"github.com/storeflow/storeflow/store"
	"github.com/storeflow/storeflow/store/csvdir"
	"github.com/storeflow/storeflow/store/world"
)

// modelShop is a small shop in a DATA_DIR with two model files: one trained
// on its own history (right) and one on another catalog seed's history read
// against its catalog (wrong). The two pick different coupons for many of
// its shoppers.
type modelShop struct {
	dir          string // DATA_DIR, with coupon_history.csv
	right, wrong string // model files
	rightM       *recommender.Model
	wrongM       *recommender.Model
}

func newModelShop(t *testing.T) *modelShop {
	t.Helper()
	now := time.Now()
	w, err := world.Generate(world.Config{Seed: 1, Reference: now, Customers: 200, Days: 30})
	if err != nil {
		t.Fatal(err)
	}
	other, err := world.Generate(world.Config{Seed: 2, Reference: now, Customers: 200, Days: 30})
	if err != nil {
		t.Fatal(err)
	}
	s := &modelShop{dir: t.TempDir()}
	if err := csvdir.Write(s.dir, &csvdir.Tables{Catalog: w.Catalog, Preferences: w.Preferences(), History: w.History}); err != nil {
		t.Fatal(err)
	}
	models := t.TempDir()
	for _, m := range []struct {
		path  *string
		model **recommender.Model
		hist  []store.HistoryEntry
		name  string
	}{{&s.right, &s.rightM, w.History, "right.json"}, {&s.wrong, &s.wrongM, other.History, "wrong.json"}} {
		trained, _, err := train.World(&world.World{Catalog: w.Catalog, History: m.hist}, train.Options{MaxTrees: 20}, false)
		if err != nil {
			t.Fatal(err)
		}
		*m.path, *m.model = filepath.Join(models, m.name), trained
		if err := trained.Save(*m.path); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// pick is the coupon model m offers id at a focus in dep today (threshold 0).
func (s *modelShop) pick(t *testing.T, a *App, m recommender.Scorer, id string, dep store.Department) int {
	t.Helper()
	ctx := context.Background()
	c, err := a.Catalog().Customer(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	coupons, _ := a.Catalog().ValidCoupons(ctx, dep, store.DayOf(time.Now().Unix()), nil)
	probs := make([]float64, len(coupons))
	if err := m.Score(ctx, &c, coupons, probs); err != nil {
		t.Fatal(err)
	}
	i, ok := recommender.Best(coupons, probs, 0, nil)
	if !ok {
		return -1
	}
	return coupons[i].ID
}

// differing lists the focus events (shopper, department) for which the two
// models pick different coupons.
func (s *modelShop) differing(t *testing.T, a *App) []event.Focus {
	t.Helper()
	var out []event.Focus
	for _, c := range a.Catalog().Customers() {
		for _, dep := range store.Departments {
			if r, w := s.pick(t, a, s.rightM, c.ID, dep), s.pick(t, a, s.wrongM, c.ID, dep); r != w && r >= 0 && w >= 0 {
				out = append(out, event.Focus{ID: c.ID, Dep: dep})
				break
			}
		}
	}
	if len(out) < 10 {
		t.Fatalf("the two models pick differently for %d shoppers only", len(out))
	}
	return out
}

// focusNow runs a focus of id in dep through the app's focus stages and
// returns the outcome and the coupon offered (0 without one).
func focusNow(t *testing.T, a *App, id string, dep store.Department, ts int64) (string, int) {
	t.Helper()
	res, err := a.Pipeline().FocusNow(context.Background(), fmt.Appendf(nil, `{"id":%q,"ts":%d,"dep":%q}`, id, ts, dep))
	if err != nil {
		t.Error(err)
		return "", 0
	}
	if res.Outcome != pipeline.OutcomePublished {
		return res.Outcome, 0
	}
	var p event.Prediction
	if err := json.Unmarshal(res.Prediction, &p); err != nil {
		t.Fatal(err)
	}
	return res.Outcome, p.Coupon.ID
}

func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// The model swapped under load: focus events flow through the focus stages
// from two goroutines while MODEL_FILE is replaced four times (once by a
// broken file). No focus fails, each swap's model picks the coupons after
// it, and the broken file is refused with the model in use kept.
func TestModelSwapUnderLoad(t *testing.T) {
	s := newModelShop(t)
	path := filepath.Join(t.TempDir(), "model.json")
	wrong, _ := os.ReadFile(s.wrong)
	right, _ := os.ReadFile(s.right)
	replaceFile(t, path, wrong)
	a, err := newApp(t, map[string]string{"BROKER_LISTEN_ADDR": "127.0.0.1:0", "HTTP_ADDR": "off", "SIMULATOR_ENABLED": "false",
		"DATA_DIR": s.dir, "MODEL_FILE": path, "MODEL_CHECK_EVERY": "10ms", "PREDICTION_THRESHOLD": "0",
		"COUPONS_PER_SHOPPER_PER_DAY": "0", "COUPON_DEPARTMENT_COOLDOWN": "0"}) // the same shoppers focus again and again
	if err != nil {
		t.Fatal(err)
	}
	stop := harness.Start(t, "storeflow", a.Run, a.Ready())
	defer stop(10 * time.Second)
	checks := s.differing(t, a)
	used := 0
	ts := time.Now().Unix()

	// The load: every shopper of the catalog in turn, each focus in another
	// department, until told to stop.
	var outcomes sync.Map // outcome → *atomic.Int64
	var done atomic.Bool
	var wg sync.WaitGroup
	customers := a.Catalog().Customers()
	for g := range 2 {
		wg.Go(func() {
			for i := g; !done.Load(); i += 2 {
				c := customers[i%len(customers)]
				outcome, _ := focusNow(t, a, c.ID, store.Departments[i%len(store.Departments)], ts+int64(i))
				n, _ := outcomes.LoadOrStore(outcome, new(atomic.Int64))
				n.(*atomic.Int64).Add(1)
			}
		})
	}
	total := func() int64 {
		var sum int64
		outcomes.Range(func(_, v any) bool { sum += v.(*atomic.Int64).Load(); return true })
		return sum
	}
	// inUse waits until the app's scorer picks as m does for a shopper
	// whose pick tells the two models apart, then checks that a focus of
	// a shopper not seen yet gets m's coupon through the pipeline.
	inUse := func(m *recommender.Model, name string) {
		t.Helper()
		before := total()
		harness.Until(t, 10*time.Second, name+" in use", func() bool {
			f := checks[0]
			return s.pick(t, a, a.Scorer(), f.ID, f.Dep) == s.pick(t, a, m, f.ID, f.Dep)
		})
		harness.Until(t, 10*time.Second, "focus events flowing", func() bool { return total() > before })
		f := checks[1+used]
		used++
		if outcome, got := focusNow(t, a, f.ID, f.Dep, ts); got != s.pick(t, a, m, f.ID, f.Dep) {
			t.Fatalf("after the swap to %s, %s's focus in %s: %s coupon %d, want %s's pick %d", name, f.ID, f.Dep, outcome, got, name, s.pick(t, a, m, f.ID, f.Dep))
		}
	}
	reloads := func(outcome string) float64 {
		return metrictest.Value(t, a.Registry(), "storeflow_model_reloads_total", "arm=a", "outcome="+outcome)
	}

	inUse(s.wrongM, "the wrong model")
	replaceFile(t, path, right)
	inUse(s.rightM, "the right model")
	replaceFile(t, path, right[:len(right)/2]) // broken: half a model
	harness.Until(t, 10*time.Second, "the broken file refused", func() bool { return reloads("refused") == 1 })
	inUse(s.rightM, "the right model, kept")
	replaceFile(t, path, wrong)
	inUse(s.wrongM, "the wrong model again")
	replaceFile(t, path, right)
	inUse(s.rightM, "the right model again")
	done.Store(true)
	wg.Wait()

	if got := reloads("loaded"); got != 3 {
		t.Errorf("storeflow_model_reloads_total{outcome=loaded} = %v, want 3", got)
	}
	normal := map[string]bool{pipeline.OutcomePublished: true, pipeline.OutcomeAlreadyIssued: true,
		pipeline.OutcomeNoCoupons: true, pipeline.OutcomeBelowThreshold: true}
	var counts []string
	outcomes.Range(func(k, v any) bool {
		counts = append(counts, fmt.Sprintf("%s=%d", k, v.(*atomic.Int64).Load()))
		if !normal[k.(string)] {
			t.Errorf("focus outcome %q during the swaps", k)
		}
		return true
	})
	t.Logf("focus events during the swaps: %d (%s)", total(), strings.Join(counts, " "))
}

// The challenger: with MODEL_B_FILE, arm b's shoppers get its picks and
// everyone else the main model's; MODEL_B_FILE=random starts; a
// MODEL_B_FILE that is no model stops the start with an error naming it.
func TestChallengerScoresArmB(t *testing.T) {
	s := newModelShop(t)
	env := map[string]string{"BROKER_LISTEN_ADDR": "127.0.0.1:0", "HTTP_ADDR": "off", "SIMULATOR_ENABLED": "false",
		"DATA_DIR": s.dir, "MODEL_FILE": s.wrong, "MODEL_B_FILE": s.right, "MODEL_B_FRACTION": "0.5", "PREDICTION_THRESHOLD": "0"}
	a, err := newApp(t, env)
	if err != nil {
		t.Fatal(err)
	}
	stop := harness.Start(t, "storeflow", a.Run, a.Ready())
	defer stop(10 * time.Second)
	arms := map[experiment.Arm]int{}
	ts := time.Now().Unix()
	for _, f := range s.differing(t, a) {
		arm := a.Config().Experiment.Assign(f.ID)
		want := s.pick(t, a, s.wrongM, f.ID, f.Dep)
		if arm == experiment.B {
			want = s.pick(t, a, s.rightM, f.ID, f.Dep)
		}
		if outcome, got := focusNow(t, a, f.ID, f.Dep, ts); got != want {
			t.Errorf("%s (arm %s) in %s: %s coupon %d, want %d", f.ID, arm, f.Dep, outcome, got, want)
		}
		arms[arm]++
	}
	if arms[experiment.A] == 0 || arms[experiment.B] == 0 {
		t.Fatalf("shoppers per arm %v: want both arms", arms)
	}
	if metrictest.Sum(t, a.Registry(), "storeflow_model_info", "arm=b", "source=file") != 1 {
		t.Error("storeflow_model_info says nothing of arm b's model")
	}

	env["MODEL_B_FILE"] = experiment.RandomPick
	a, err = newApp(t, env)
	if err != nil {
		t.Fatalf("MODEL_B_FILE=random: %v", err)
	}
	_ = a.conn.Close()
	if _, ok := a.scorerB.(recommender.Random); !ok {
		t.Errorf("MODEL_B_FILE=random: arm b scored by %T", a.scorerB)
	}

	env["MODEL_B_FILE"] = filepath.Join(s.dir, "coupon_history.csv")
	cfg, err := config.Load(env)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "MODEL_B_FILE") {
		t.Fatalf("MODEL_B_FILE that is no model: %v, want an error naming it", err)
	}
}

// RETRAIN_EVERY: a storeflow started with a model of a wrong history
// retrains on HISTORY_FILE and puts the retrained model in use, while it
// runs.
func TestRetrainInUse(t *testing.T) {
	s := newModelShop(t)
	a, err := newApp(t, map[string]string{"BROKER_LISTEN_ADDR": "127.0.0.1:0", "HTTP_ADDR": "off", "SIMULATOR_ENABLED": "false",
		"DATA_DIR": s.dir, "MODEL_FILE": s.wrong, "RETRAIN_EVERY": "1s",
		"HISTORY_FILE": filepath.Join(s.dir, "coupon_history.csv")})
	if err != nil {
		t.Fatal(err)
	}
	stop := harness.Start(t, "storeflow", a.Run, a.Ready())
	defer stop(10 * time.Second)
	harness.Until(t, 60*time.Second, "a retrained model in use", func() bool {
		return metrictest.Sum(t, a.Registry(), "storeflow_model_info", "arm=a", "source=retrained") == 1
	})
	cur := metrictest.Value(t, a.Registry(), "storeflow_model_retrain_auc", "model=current")
	cand := metrictest.Value(t, a.Registry(), "storeflow_model_retrain_auc", "model=candidate")
	t.Logf("held-out ROC AUC: wrong model %.4f, retrained %.4f", cur, cand)
	if a.model.Current() == nil || cand < cur+0.1 {
		t.Fatalf("retrained %.4f against the wrong model's %.4f: want well above", cand, cur)
	}
}
