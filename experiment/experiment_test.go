package experiment

import (
	"fmt"
	"math"
	"strings"
	"testing"
)

// The split follows the fractions, is the same for a customer every time
// (and on every instance: nothing but the id and the salt goes in), and a
// new salt draws a new one.
func TestAssign(t *testing.T) {
	c := Config{HoldoutFraction: 0.1, ModelBFraction: 0.3, ModelBFile: RandomPick, Salt: "storeflow"}
	const n = 100_000
	count := map[Arm]int{}
	moved := 0
	other := c
	other.Salt = "another"
	for i := range n {
		id := fmt.Sprint(i)
		arm := c.Assign(id)
		if c.Assign(id) != arm {
			t.Fatalf("customer %s changed arm", id)
		}
		count[arm]++
		if other.Assign(id) != arm {
			moved++
		}
	}
	for arm, want := range map[Arm]float64{Holdout: 0.1, B: 0.3, A: 0.6} {
		if got := float64(count[arm]) / n; math.Abs(got-want) > 0.01 {
			t.Errorf("arm %s: %.3f of shoppers, want %.2f", arm, got, want)
		}
	}
	if moved < n/4 {
		t.Errorf("another salt moved %d of %d shoppers: not a new split", moved, n)
	}
	if got := (Config{Salt: "storeflow"}).Assign("127"); got != A {
		t.Errorf("no experiment: arm %s, want a", got)
	}
}

// The fractions hold for any salt and for a store's first few hundred
// shoppers, whose ids (1, 2, 3…) differ in their last characters only.
func TestAssignSpreadsConsecutiveIDs(t *testing.T) {
	for _, salt := range []string{"storeflow", "caps", "a", "2027-spring"} {
		c := Config{HoldoutFraction: 0.25, Salt: salt}
		const n = 400
		holdout := 0
		for i := 1; i <= n; i++ {
			if c.Assign(fmt.Sprint(i)) == Holdout {
				holdout++
			}
		}
		if got := float64(holdout) / n; math.Abs(got-0.25) > 0.07 {
			t.Errorf("salt %q: %d of customers 1..%d in a holdout of 0.25 (%.3f)", salt, holdout, n, got)
		}
	}
}

// The demo's shoppers are the catalog's customers "1" to "997": ids that
// differ in their last characters only must spread over the arms as the
// fractions say, as must ids with a common prefix.
func TestAssignSequentialIDs(t *testing.T) {
	c := Config{HoldoutFraction: 0.1, ModelBFraction: 0.3, ModelBFile: RandomPick, Salt: "storeflow"}
	for _, form := range []string{"%d", "customer-%06d"} {
		const n = 997
		count := map[Arm]int{}
		for i := 1; i <= n; i++ {
			count[c.Assign(fmt.Sprintf(form, i))]++
		}
		// 4 standard deviations of a binomial over 997 at most.
		for arm, want := range map[Arm]float64{Holdout: 0.1, B: 0.3, A: 0.6} {
			if got := float64(count[arm]) / n; math.Abs(got-want) > 4*math.Sqrt(want*(1-want)/n) {
				t.Errorf("ids %q: arm %s has %.3f of the shoppers, want %.2f", form, arm, got, want)
			}
		}
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{HoldoutFraction: -0.1, Salt: "s"}, "HOLDOUT_FRACTION=-0.1"},
		{Config{HoldoutFraction: 0.6, ModelBFraction: 0.5, ModelBFile: "m", Salt: "s"}, "together more than 1"},
		{Config{ModelBFraction: 0.2, Salt: "s"}, "MODEL_B_FRACTION=0.2 needs MODEL_B_FILE"},
		{Config{}, "EXPERIMENT_SALT"},
	} {
		if err := c.cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
	if err := (Config{HoldoutFraction: 0.2, ModelBFraction: 0.2, ModelBFile: RandomPick, Salt: "s"}).Validate(); err != nil {
		t.Error(err)
	}
}
