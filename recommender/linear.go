package recommender

import (
	"errors"
	"math"
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
	for f := range width {
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

// linearWidth is the number of weights.
var linearWidth = len(numericInputs) + nTypes + 2*nDepartments

// inputs writes the linear part's inputs for an extended row into z.
func (l *Linear) inputs(x *[width]float32, z []float64) {
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

// logit is the linear log-odds of an extended row.
func (l *Linear) logit(x *[width]float32) float64 {
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
	if len(l.Mean) != n || len(l.Scale) != n || len(l.Weights) != linearWidth {
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

// fitLinear fits an L2-regularised logistic regression on extended rows by
// Newton's method: a handful of passes over the data, each solving a small
// linear system.
func fitLinear(xs []float32, labels []bool, lambda float64) *Linear {
	n := len(labels)
	nn := len(numericInputs)
	l := &Linear{Mean: make([]float64, nn), Scale: make([]float64, nn), Weights: make([]float64, linearWidth)}
	for k, f := range numericInputs {
		var s, ss float64
		for i := range n {
			v := float64(xs[i*width+f])
			s += v
			ss += v * v
		}
		mean := s / float64(n)
		sd := math.Sqrt(math.Max(ss/float64(n)-mean*mean, 0))
		l.Mean[k] = mean
		l.Scale[k] = 1
		if sd > 1e-9 {
			l.Scale[k] = 1 / sd
		}
	}
	pos := float64(countTrue(labels))
	l.Bias = math.Log(pos / (float64(n) - pos))

	d := linearWidth + 1 // weights, then the bias
	z := make([]float64, d)
	grad := make([]float64, d)
	hess := make([]float64, d*d)
	var x [width]float32
	for range 8 {
		clear(grad)
		clear(hess)
		for i := range n {
			copy(x[:], xs[i*width:(i+1)*width])
			l.inputs(&x, z[:linearWidth])
			z[linearWidth] = 1
			p := sigmoid(l.logit(&x))
			y := 0.0
			if labels[i] {
				y = 1
			}
			w := max(p*(1-p), 1e-9)
			for a := range d { // upper triangle only: the Hessian is symmetric
				grad[a] += (p - y) * z[a]
				if z[a] == 0 {
					continue
				}
				za := w * z[a]
				row := hess[a*d : (a+1)*d]
				for b := a; b < d; b++ {
					row[b] += za * z[b]
				}
			}
		}
		for a := range d {
			for b := range a {
				hess[a*d+b] = hess[b*d+a]
			}
		}
		for a := range linearWidth { // the bias is not penalised
			grad[a] += lambda * l.Weights[a]
			hess[a*d+a] += lambda
		}
		step, ok := solve(hess, grad, d)
		if !ok {
			break
		}
		change := 0.0
		for a := range linearWidth {
			l.Weights[a] -= step[a]
			change = math.Max(change, math.Abs(step[a]))
		}
		l.Bias -= step[linearWidth]
		if change < 1e-6 {
			break
		}
	}
	return l
}

// solve solves the d×d system a·x = b by Gaussian elimination with partial
// pivoting; ok is false for a singular system. a and b are overwritten.
func solve(a, b []float64, d int) (x []float64, ok bool) {
	for c := range d {
		p := c
		for r := c + 1; r < d; r++ {
			if math.Abs(a[r*d+c]) > math.Abs(a[p*d+c]) {
				p = r
			}
		}
		if math.Abs(a[p*d+c]) < 1e-12 {
			return nil, false
		}
		if p != c {
			for k := range d {
				a[c*d+k], a[p*d+k] = a[p*d+k], a[c*d+k]
			}
			b[c], b[p] = b[p], b[c]
		}
		for r := c + 1; r < d; r++ {
			f := a[r*d+c] / a[c*d+c]
			if f == 0 {
				continue
			}
			for k := c; k < d; k++ {
				a[r*d+k] -= f * a[c*d+k]
			}
			b[r] -= f * b[c]
		}
	}
	x = make([]float64, d)
	for r := d - 1; r >= 0; r-- {
		s := b[r]
		for k := r + 1; k < d; k++ {
			s -= a[r*d+k] * x[k]
		}
		x[r] = s / a[r*d+r]
	}
	return x, true
}
