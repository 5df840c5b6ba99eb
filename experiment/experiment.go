// Package experiment owns the split of shoppers into the arms of the coupon
// experiment: a holdout that gets no coupon, the model (arm a) and an
// optional challenger (arm b: another model file, or a random pick, the
// yardstick). The split is by a hash of the customer id, so it is the same
// on every instance and across restarts, and a shopper stays in one arm.
package experiment

import (
	"errors"
	"fmt"
	"hash/fnv"
)

// Arm is one arm of the experiment.
type Arm string

// The arms.
const (
	Holdout Arm = "holdout" // no coupon: the baseline
	A       Arm = "a"       // the model (MODEL_FILE, or trained at start)
	B       Arm = "b"       // the challenger (MODEL_B_FILE)
)

// Arms lists every arm, in a stable order.
var Arms = []Arm{Holdout, A, B}

// RandomPick is the MODEL_B_FILE value for a challenger that picks a coupon
// at random among the valid ones: the yardstick.
const RandomPick = "random"

// Config sets up the experiment.
type Config struct {
	HoldoutFraction float64 `env:"HOLDOUT_FRACTION" envDefault:"0"`        // shoppers who get no coupon
	ModelBFile      string  `env:"MODEL_B_FILE"`                           // the challenger's model file, or "random"; "" none
	ModelBFraction  float64 `env:"MODEL_B_FRACTION" envDefault:"0"`        // shoppers the challenger scores for
	Salt            string  `env:"EXPERIMENT_SALT" envDefault:"storeflow"` // a new salt draws a new split
}

// Validate names the variable of each bad setting.
func (c Config) Validate() error {
	var errs []error
	for _, f := range []struct {
		name string
		v    float64
	}{{"HOLDOUT_FRACTION", c.HoldoutFraction}, {"MODEL_B_FRACTION", c.ModelBFraction}} {
		if !(f.v >= 0 && f.v <= 1) {
			errs = append(errs, fmt.Errorf("%s=%v: must be between 0 and 1", f.name, f.v))
		}
	}
	if c.HoldoutFraction+c.ModelBFraction > 1 {
		errs = append(errs, fmt.Errorf("HOLDOUT_FRACTION=%v and MODEL_B_FRACTION=%v: together more than 1", c.HoldoutFraction, c.ModelBFraction))
	}
	if c.ModelBFraction > 0 && c.ModelBFile == "" {
		errs = append(errs, fmt.Errorf("MODEL_B_FRACTION=%v needs MODEL_B_FILE (a model file, or %q)", c.ModelBFraction, RandomPick))
	}
	if c.Salt == "" {
		errs = append(errs, errors.New("EXPERIMENT_SALT: must not be empty"))
	}
	return errors.Join(errs...)
}

// Assign returns the customer's arm: the customer id hashed with the salt
// to a point in [0, 1); the first HOLDOUT_FRACTION of the interval is the
// holdout, the next MODEL_B_FRACTION arm b, the rest arm a.
func (c Config) Assign(customerID string) Arm {
	u := c.point(customerID)
	switch {
	case u < c.HoldoutFraction:
		return Holdout
	case u < c.HoldoutFraction+c.ModelBFraction:
		return B
	}
	return A
}

// point hashes the customer id to [0, 1). FNV-1a alone leaves its top bits
// nearly unchanged by the last bytes of the input, so ids that differ only
// at their end (1, 2, 3…) landed next to each other, in one arm; the
// finalizer of MurmurHash3 spreads every input bit over the top bits.
func (c Config) point(customerID string) float64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(c.Salt))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(customerID))
	// FNV-1a alone leaves its high bits, the ones kept, nearly the same for
	// ids that differ in their last characters ("1" to "997" all fell in
	// two arms): the finalizer spreads every input bit over all of them.
	return float64(mix(h.Sum64())>>11) / (1 << 53)
}

// mix is MurmurHash3's 64-bit finalizer.
func mix(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}
