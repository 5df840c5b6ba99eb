package recommender

import (
	"errors"
	"slices"
)

// Linear is the logistic-regression part of a model: the trees start from
// its log-odds instead of the base rate, so smooth effects (a customer's
// coupon habit, a deeper discount) are carried by a straight line and the
// trees only model what bends. Its inputs are the extended row's numeric
// features, standardised, the two categorical features one-hot, and the
// department one-hot again for men only (who shops which department differs
// most by gender: a cross feature, as wide linear models use).
type Linear struct {
	Mean    []float64 `json:"mean"`    // per numeric input
	Scale   []float64 `json:"scale"`   // per numeric input: 1 / standard deviation
	Weights []float64 `json:"weights"` // numeric inputs, then one-hot coupon types, departments, departments of men
	Bias    float64   `json:"bias"`
}

// numericInputs are the extended-row features the linear part reads as
// numbers; the categorical ones are one-hot encoded after them.
var numericInputs = func() []int {
	var out []int
	for f := range Width {
		if f != fCouponType && f != fDepartment {
			out = append(out, f)
		}
	}
	return out
}()

const (
	nTypes       = 4
	nDepartments = 5
)

// NumericInputs returns the extended-row features the linear part reads as
// numbers, in the order of its Mean, Scale and first Weights.
func NumericInputs() []int { return slices.Clone(numericInputs) }

// LinearWidth is the number of weights of the linear part (Inputs writes as
// many inputs).
var LinearWidth = len(numericInputs) + nTypes + 2*nDepartments

// Inputs writes the linear part's inputs for an extended row into z: what
// its weights multiply (Logit).
func (l *Linear) Inputs(x *[Width]float32, z []float64) {
	for k, f := range numericInputs {
		z[k] = (float64(x[f]) - l.Mean[k]) * l.Scale[k]
	}
	o := len(numericInputs)
	clear(z[o:])
	if t := int(x[fCouponType]); t >= 0 && t < nTypes {
		z[o+t] = 1
	}
	if d := int(x[fDepartment]); d >= 0 && d < nDepartments {
		z[o+nTypes+d] = 1
		if x[fGender] == 1 {
			z[o+nTypes+nDepartments+d] = 1
		}
	}
}

// Logit is the linear log-odds of an extended row.
func (l *Linear) Logit(x *[Width]float32) float64 {
	s := l.Bias
	for k, f := range numericInputs {
		s += l.Weights[k] * (float64(x[f]) - l.Mean[k]) * l.Scale[k]
	}
	o := len(numericInputs)
	if t := int(x[fCouponType]); t >= 0 && t < nTypes {
		s += l.Weights[o+t]
	}
	if d := int(x[fDepartment]); d >= 0 && d < nDepartments {
		s += l.Weights[o+nTypes+d]
		if x[fGender] == 1 {
			s += l.Weights[o+nTypes+nDepartments+d]
		}
	}
	return s
}

func (l *Linear) check() error {
	n := len(numericInputs)
	if len(l.Mean) != n || len(l.Scale) != n || len(l.Weights) != LinearWidth {
		return errors.New("linear part has the wrong number of weights")
	}
	for _, v := range [][]float64{l.Mean, l.Scale, l.Weights, {l.Bias}} {
		for _, x := range v {
			if !finite(x) {
				return errors.New("linear part holds a number that is not finite")
			}
		}
	}
	return nil
}
