// Package modeltest gives tests a trained model without paying for a
// training in every test: training is quick, but under the race detector a
// full-size one takes seconds. File is a small model for tests that only
// need one; Reference is the full-size model, trained once per test binary,
// for the tests of the model itself.
package modeltest

import (
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/storeflow/storeflow/recommender"
	"github.com/storeflow/storeflow/recommender/train"
	"github.com/storeflow/storeflow/store/world"
)

var file = sync.OnceValues(func() (string, error) {
	w, err := world.Generate(world.Config{Seed: 1, Reference: time.Now(), Customers: 300, Days: 60})
	if err != nil {
		return "", err
	}
	m, _, err := train.World(w, train.Options{MaxTrees: 30}, false)
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
	return once(t, "train a test model", file)
}

// Day is the reference world's day: fixed, so its figures are too.
var Day = time.Date(2024, 5, 15, 13, 45, 0, 0, time.UTC)

// Trained is the reference world and the model trained on it with the
// held-out evaluation.
type Trained struct {
	World  *world.World
	Model  *recommender.Model
	Report *train.Report
}

var referenceWorld = sync.OnceValues(func() (*world.World, error) {
	return world.Generate(world.Config{Seed: 1, Reference: Day})
})

var reference = sync.OnceValues(func() (Trained, error) {
	w, err := referenceWorld()
	if err != nil {
		return Trained{}, err
	}
	m, rep, err := train.World(w, train.Options{}, true)
	return Trained{World: w, Model: m, Report: rep}, err
})

// World returns the reference-size world (seed 1, around Day), generated
// once per test binary.
func World(t testing.TB) *world.World {
	t.Helper()
	return once(t, "generate the reference world", referenceWorld)
}

// Reference returns the reference world and the full-size model trained on
// it, evaluated on the customers it held out; the training runs once per
// test binary.
func Reference(t testing.TB) Trained {
	t.Helper()
	return once(t, "train the reference model", reference)
}

// once returns the value made gives, or ends the test saying what it was doing.
func once[T any](t testing.TB, doing string, made func() (T, error)) T {
	t.Helper()
	v, err := made()
	if err != nil {
		t.Fatalf("modeltest: %s: %v", doing, err)
	}
	return v
}

// ExtremeAmounts are finite amounts at the edges of float64 and float32:
// zero, denormals, the smallest normals, values whose ratios leave float32's
// range, float32's largest, and values beyond it (a catalog may hold any
// finite amount). Every one must get a probability from the model.
var ExtremeAmounts = []float64{0, 5e-324, 1e-45, 1.4e-45, 1e-38, 1.2e-38, 1e-20, 1e-3, 1, 12.68, 1e19, 1e20,
	3.4e38, math.MaxFloat32, 1e39, 1e308, math.MaxFloat64}

// IsProbability reports whether p is in [0, 1]; false for NaN.
func IsProbability(p float64) bool { return p >= 0 && p <= 1 }
