// Package modeltest gives tests a trained model file without paying for a
// full-size training in every test: training is quick, but under the race
// detector a full-size one takes seconds, and most tests only need a model.
package modeltest

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/storeflow/storeflow/recommender"
	"github.com/storeflow/storeflow/store/world"
)

var file = sync.OnceValues(func() (string, error) {
	w, err := world.Generate(world.Config{Seed: 1, Reference: time.Now(), Customers: 300, Days: 60})
	if err != nil {
		return "", err
	}
	m, _, err := recommender.TrainWorld(w, recommender.TrainOptions{MaxTrees: 30}, false)
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "storeflow-model-")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "model.json")
	return path, m.Save(path)
})

// File returns the path of a model trained on a small generated world, the
// same file for every caller in the test binary. It lives in the system's
// temporary directory; the test binary does not remove it.
func File(t testing.TB) string {
	t.Helper()
	path, err := file()
	if err != nil {
		t.Fatalf("modeltest: train a test model: %v", err)
	}
	return path
}
