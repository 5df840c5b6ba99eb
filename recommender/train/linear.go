package train

import (
	"math"

	"github.com/storeflow/storeflow/recommender"
)

// fitLinear fits an L2-regularised logistic regression on extended rows by
// Newton's method: a handful of passes over the data, each solving a small
// linear system.
func fitLinear(xs []float32, labels []bool, lambda float64) *recommender.Linear {
	n := len(labels)
	numeric := recommender.NumericInputs()
	nn := len(numeric)
	l := &recommender.Linear{Mean: make([]float64, nn), Scale: make([]float64, nn), Weights: make([]float64, recommender.LinearWidth)}
	for k, f := range numeric {
		var s, ss float64
		for i := range n {
			v := float64(xs[i*recommender.Width+f])
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

	d := recommender.LinearWidth + 1 // weights, then the bias
	z := make([]float64, d)
	grad := make([]float64, d)
	hess := make([]float64, d*d)
	var x [recommender.Width]float32
	for range 8 {
		clear(grad)
		clear(hess)
		for i := range n {
			copy(x[:], xs[i*recommender.Width:(i+1)*recommender.Width])
			l.Inputs(&x, z[:recommender.LinearWidth])
			z[recommender.LinearWidth] = 1
			p := recommender.Sigmoid(l.Logit(&x))
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
		for a := range recommender.LinearWidth { // the bias is not penalised
			grad[a] += lambda * l.Weights[a]
			hess[a*d+a] += lambda
		}
		step, ok := solve(hess, grad, d)
		if !ok {
			break
		}
		change := 0.0
		for a := range recommender.LinearWidth {
			l.Weights[a] -= step[a]
			change = math.Max(change, math.Abs(step[a]))
		}
		l.Bias -= step[recommender.LinearWidth]
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
