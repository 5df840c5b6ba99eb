// Package live owns the models in use while storeflow runs: each is held
// behind an atomic pointer and replaced whole, so every focus is scored by
// one complete model, the old or the new. A model comes from its file
// (MODEL_FILE, MODEL_B_FILE), reloaded when the file is replaced on disk or
// on SIGHUP, or from retraining in-process on the coupon history
// (RETRAIN_EVERY), swapped in only when it ranks the held-out offers no
// worse than the model in use.
package live

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/storeflow/storeflow/internal/metric"
	"github.com/storeflow/storeflow/recommender"
	"github.com/storeflow/storeflow/store"
)

// Config sets how models are kept current.
type Config struct {
	CheckEvery   time.Duration `env:"MODEL_CHECK_EVERY" envDefault:"5s"` // how often MODEL_FILE and MODEL_B_FILE are checked for a replacement
	RetrainEvery time.Duration `env:"RETRAIN_EVERY" envDefault:"0"`      // retrain from the history (History) this often; 0: never
}

// Validate names the variable of each bad setting.
func (c Config) Validate() error {
	var errs []error
	if c.CheckEvery < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("MODEL_CHECK_EVERY=%s: must be at least 10ms", c.CheckEvery))
	}
	if c.RetrainEvery < 0 || (c.RetrainEvery > 0 && c.RetrainEvery < time.Second) {
		errs = append(errs, fmt.Errorf("RETRAIN_EVERY=%s: must be 0 (off) or at least 1s", c.RetrainEvery))
	}
	return errors.Join(errs...)
}

// History is the history file retraining reads: historyFile (HISTORY_FILE,
// where storeflow appends what became of its offers), or else DATA_DIR's
// coupon_history.csv; "" when neither is set.
func History(historyFile, dataDir string) string {
	if historyFile != "" || dataDir == "" {
		return historyFile
	}
	return filepath.Join(dataDir, "coupon_history.csv")
}

// The outcomes of storeflow_model_reloads_total and storeflow_model_retrains_total.
const (
	OutcomeLoaded  = "loaded"  // a replaced file's model is in use
	OutcomeRefused = "refused" // a replaced file is no model: the old one is kept
	OutcomeSwapped = "swapped" // the retrained model ranks no worse: in use
	OutcomeKept    = "kept"    // the retrained model ranks worse: the old one is kept
	OutcomeFailed  = "failed"  // no retrained model: no history, too little, or training failed
)

// Metrics are the series every live model reports to.
type Metrics struct {
	reloads  *prometheus.CounterVec
	retrains *prometheus.CounterVec
	info     *prometheus.GaugeVec
	auc      *prometheus.GaugeVec
}

// NewMetrics registers the series with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reloads: metric.CounterVec("storeflow_model_reloads_total",
			"Model files read again after a replacement or SIGHUP, by arm and outcome (loaded; refused: the model in use kept).", "arm", "outcome"),
		retrains: metric.CounterVec("storeflow_model_retrains_total",
			"Retrainings on HISTORY_FILE (RETRAIN_EVERY), by outcome: swapped, kept (the retrained model ranked worse), failed.", "outcome"),
		info: metric.GaugeVec("storeflow_model_info",
			"The model in use per arm: 1 for its hash (12 hex digits of the SHA-256 of its file form) and source (file, trained, retrained).", "arm", "hash", "source"),
		auc: metric.GaugeVec("storeflow_model_retrain_auc",
			"The last retraining's held-out ROC AUC: of the model in use before it (current) and of the retrained one (candidate).", "model"),
	}
	reg.MustRegister(m.reloads, m.retrains, m.info, m.auc)
	for _, o := range []string{OutcomeSwapped, OutcomeKept, OutcomeFailed} {
		m.retrains.WithLabelValues(o)
	}
	for _, which := range []string{"current", "candidate"} {
		m.auc.WithLabelValues(which).Set(math.NaN()) // until the first retraining
	}
	return m
}

// Model is one arm's model in use. It is a recommender.Scorer and a
// recommender.RowScorer that asks whichever model is in use at the call.
type Model struct {
	arm  string
	cur  atomic.Pointer[recommender.Model]
	m    *Metrics
	mu   sync.Mutex // one swap at a time: the file watcher and the retrainer may both swap
	hash string     // the model in use's; under mu
}

// NewModel puts m in use for arm (a or b); source says where it came from
// (file, trained) and data, when known, is its file form for the hash.
func NewModel(arm string, m *recommender.Model, source string, data []byte, metrics *Metrics) *Model {
	l := &Model{arm: arm, m: metrics}
	for _, o := range []string{OutcomeLoaded, OutcomeRefused} {
		metrics.reloads.WithLabelValues(arm, o)
	}
	l.swap(m, source, data)
	return l
}

// Current is the model in use.
func (l *Model) Current() *recommender.Model { return l.cur.Load() }

// Hash is the model in use's hash, as storeflow_model_info shows it.
func (l *Model) Hash() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.hash
}

// Score implements recommender.Scorer with the model in use.
func (l *Model) Score(ctx context.Context, c *store.Customer, coupons []store.Coupon, out []float64) error {
	return l.cur.Load().Score(ctx, c, coupons, out)
}

// ScoreRows implements recommender.RowScorer with the model in use.
func (l *Model) ScoreRows(rows []float32, out []float64) { l.cur.Load().ScoreRows(rows, out) }

// swap puts m in use and says so in storeflow_model_info; it returns the
// model's hash.
func (l *Model) swap(m *recommender.Model, source string, data []byte) string {
	hash, _ := l.swapFrom(nil, m, source, data)
	return hash
}

// swapFrom is swap when old (unless nil) is still in use: a model retrained
// against one that a reload has since replaced is not put in use.
func (l *Model) swapFrom(old, m *recommender.Model, source string, data []byte) (string, bool) {
	if data == nil {
		data, _ = json.Marshal(m) // a checked model always encodes
	}
	sum := sha256.Sum256(data)
	hash := hex.EncodeToString(sum[:6])
	l.mu.Lock()
	defer l.mu.Unlock()
	if old != nil && l.cur.Load() != old {
		return l.hash, false
	}
	l.cur.Store(m)
	l.hash = hash
	l.m.info.DeletePartialMatch(prometheus.Labels{"arm": l.arm})
	l.m.info.WithLabelValues(l.arm, hash, source).Set(1)
	return hash, true
}
