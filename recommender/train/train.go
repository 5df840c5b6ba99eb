// Package train fits the recommender's model on a redemption history and
// measures it on customers it has never seen: the gradient-boosted trees
// over a logistic-regression start, the held-out split, and the ranking
// measures (ROC AUC, average precision). Serving the model is the
// recommender package's; nothing here runs on the focus path.
package train

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/storeflow/storeflow/recommender"
)

// Options tune the gradient boosting. Zero values take the defaults.
type Options struct {
	MaxTrees     int     // default 400; early stopping usually ends sooner
	LearningRate float64 // default 0.1
	MaxDepth     int     // default 4
	MinLeaf      int     // rows per leaf at least; default 40
	Lambda       float64 // L2 penalty on leaf values; default 1
	Bins         int     // histogram bins per feature, at most 255; default 64
	Patience     int     // stop after this many trees without a better validation loss; default 30
	NoLinear     bool    // start the trees from the base rate instead of a logistic regression
}

func (o Options) withDefaults() Options {
	o.MaxTrees = cmp.Or(o.MaxTrees, 400)
	o.LearningRate = cmp.Or(o.LearningRate, 0.1)
	o.MaxDepth = cmp.Or(o.MaxDepth, 4)
	o.MinLeaf = cmp.Or(o.MinLeaf, 40)
	o.Lambda = cmp.Or(o.Lambda, 1)
	o.Bins = cmp.Or(o.Bins, 64)
	o.Patience = cmp.Or(o.Patience, 30)
	return o
}

// Dataset is a set of labelled rows: n rows of recommender.recommender.NumFeatures
// values, row-major.
type Dataset struct {
	Rows   []float32
	Labels []bool
}

// Len is the number of rows.
func (d *Dataset) Len() int { return len(d.Labels) }

// Add appends one row.
func (d *Dataset) Add(row []float32, label bool) {
	d.Rows = append(d.Rows, row[:recommender.NumFeatures]...)
	d.Labels = append(d.Labels, label)
}

// Fit fits a model on train, stopping early when the log loss on valid has
// not improved for Patience trees (valid may be empty: then all MaxTrees are
// grown). Training is deterministic: the same data gives the same model.
func Fit(train, valid *Dataset, opts Options) (*recommender.Model, error) {
	o := opts.withDefaults()
	n := train.Len()
	switch {
	case n == 0:
		return nil, errors.New("recommender: train: no rows")
	case len(train.Rows) != n*recommender.NumFeatures || len(valid.Rows) != valid.Len()*recommender.NumFeatures:
		return nil, errors.New("recommender: train: rows and labels disagree")
	case o.Bins < 2 || o.Bins > 255 || o.MaxDepth < 1 || o.MaxDepth > 12 || o.MinLeaf < 1 || o.LearningRate <= 0 || o.LearningRate > 1:
		return nil, fmt.Errorf("recommender: train: options out of range: %+v", o)
	}
	pos := 0
	for _, y := range train.Labels {
		if y {
			pos++
		}
	}
	if pos == 0 || pos == n {
		return nil, fmt.Errorf("recommender: train: all %d rows have the same label", n)
	}
	for i, v := range train.Rows {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("recommender: train: row %d, %s: not a finite number", i/recommender.NumFeatures, recommender.FeatureNames[i%recommender.NumFeatures])
		}
	}

	xs := extendAll(train)
	vx := extendAll(valid)
	edges := binEdges(xs, n, o.Bins)
	bins := binAll(xs, n, edges)

	base := math.Log(float64(pos) / float64(n-pos))
	m := recommender.NewModel(base, recommender.TrainInfo{Rows: n, Positives: pos, LearningRate: o.LearningRate, MaxDepth: o.MaxDepth})
	g := &grower{o: o, n: n, bins: bins, edges: edges, nb: o.Bins + 1,
		grad: make([]float64, n), hess: make([]float64, n), idx: make([]int32, n)}
	start := func(x []float32) float64 { return base }
	if !o.NoLinear {
		m.Linear = fitLinear(xs, train.Labels, 1)
		start = func(x []float32) float64 { return m.Linear.Logit((*[recommender.Width]float32)(x)) }
	}
	f := make([]float64, n) // log-odds per training row
	for i := range f {
		f[i] = start(xs[i*width : (i+1)*width])
	}
	vf := make([]float64, valid.Len())
	for i := range vf {
		vf[i] = start(vx[i*width : (i+1)*width])
	}
	best, bestAt := math.Inf(1), 0
	for t := 0; t < o.MaxTrees; t++ {
		for i := range n {
			p := recommender.Sigmoid(f[i])
			y := 0.0
			if train.Labels[i] {
				y = 1
			}
			g.grad[i] = p - y
			g.hess[i] = max(p*(1-p), 1e-9)
		}
		tree := g.grow(f)
		m.Trees = append(m.Trees, tree)
		if valid.Len() == 0 {
			continue
		}
		loss := 0.0
		for i := range vf {
			vf[i] += tree.Leaf((*[recommender.Width]float32)(vx[i*width : (i+1)*width]))
			loss += logLoss(vf[i], valid.Labels[i])
		}
		if loss < best-1e-9 {
			best, bestAt = loss, t+1
		} else if t+1-bestAt >= o.Patience {
			break
		}
	}
	if valid.Len() > 0 {
		m.Trees = m.Trees[:bestAt]
	}
	if len(m.Trees) == 0 {
		return nil, errors.New("recommender: train: no tree improved on the base rate")
	}
	return m, nil
}

func logLoss(z float64, y bool) float64 {
	// log(1+e^-z) for y, log(1+e^z) otherwise, computed without overflow.
	if !y {
		z = -z
	}
	if z > 0 {
		return math.Log1p(math.Exp(-z))
	}
	return -z + math.Log1p(math.Exp(z))
}

// width is the length of an extended row.
const width = recommender.Width

func extendAll(d *Dataset) []float32 {
	out := make([]float32, d.Len()*width)
	var x [width]float32
	for i := range d.Len() {
		recommender.Extend(d.Rows[i*recommender.NumFeatures:(i+1)*recommender.NumFeatures], &x)
		copy(out[i*width:], x[:])
	}
	return out
}

// binEdges picks, per feature, at most bins-1 thresholds at quantiles of the
// distinct values, so each bin holds about as many rows.
func binEdges(xs []float32, rows, bins int) [][]float32 {
	// Quantiles of a systematic sample are as good as the whole column's.
	n := min(rows, 50*1024)
	edges := make([][]float32, width)
	col := make([]float32, n)
	for f := range width {
		for k := range n {
			col[k] = xs[(k*rows/n)*width+f]
		}
		slices.Sort(col)
		var e []float32
		for k := 1; k < bins; k++ {
			v := col[k*n/bins]
			// A threshold between two distinct values: the lower one, so
			// "x <= t" keeps the lower value on the left.
			j := k * n / bins
			for j > 0 && col[j-1] == v {
				j--
			}
			if j == 0 {
				continue
			}
			t := col[j-1]
			if len(e) == 0 || t > e[len(e)-1] {
				e = append(e, t)
			}
		}
		edges[f] = e
	}
	return edges
}

// binAll maps every value to its bin: the number of edges below it.
func binAll(xs []float32, n int, edges [][]float32) []uint8 {
	out := make([]uint8, n*width)
	for i := range n {
		for f := range width {
			e := edges[f]
			v := xs[i*width+f]
			b, _ := slices.BinarySearch(e, v) // first edge >= v: v <= e[b]
			out[i*width+f] = uint8(b)
		}
	}
	return out
}

// grower grows one tree at a time over the binned training rows.
type grower struct {
	o          Options
	n, nb      int
	bins       []uint8
	edges      [][]float32
	grad, hess []float64
	idx        []int32 // row indexes, partitioned by node
	tree       recommender.Tree
}

// hist holds gradient sums, hessian sums and counts per feature and bin.
type hist struct {
	g, h []float64
	c    []int32
}

func (gr *grower) newHist() *hist {
	k := width * gr.nb
	return &hist{g: make([]float64, k), h: make([]float64, k), c: make([]int32, k)}
}

func (gr *grower) fill(hs *hist, rows []int32) {
	clear(hs.g)
	clear(hs.h)
	clear(hs.c)
	for _, r := range rows {
		b := gr.bins[int(r)*width : int(r)*width+width]
		g, h := gr.grad[r], gr.hess[r]
		for f, v := range b {
			k := f*gr.nb + int(v)
			hs.g[k] += g
			hs.h[k] += h
			hs.c[k]++
		}
	}
}

func (hs *hist) subtract(other *hist) {
	for k := range hs.g {
		hs.g[k] -= other.g[k]
		hs.h[k] -= other.h[k]
		hs.c[k] -= other.c[k]
	}
}

// grow builds one tree and adds its leaf values to f.
func (gr *grower) grow(f []float64) recommender.Tree {
	for i := range gr.idx {
		gr.idx[i] = int32(i)
	}
	gr.tree = recommender.Tree{}
	root := gr.newHist()
	gr.fill(root, gr.idx)
	gr.node(0, gr.n, 0, root, f)
	return gr.tree
}

func (gr *grower) addNode() int32 {
	t := &gr.tree
	t.Feature = append(t.Feature, -1)
	t.Threshold = append(t.Threshold, 0)
	t.Left = append(t.Left, 0)
	t.Right = append(t.Right, 0)
	t.Value = append(t.Value, 0)
	return int32(len(t.Feature) - 1)
}

// node makes the node for rows idx[lo:hi], whose histogram is hs, and returns
// its index.
func (gr *grower) node(lo, hi, depth int, hs *hist, f []float64) int32 {
	id := gr.addNode()
	lam := gr.o.Lambda
	var G, H float64
	for b := 0; b < gr.nb; b++ { // any feature's bins sum to the node's totals
		G += hs.g[b]
		H += hs.h[b]
	}
	bestGain, bestF, bestB := 0.0, -1, 0
	if depth < gr.o.MaxDepth && hi-lo >= 2*gr.o.MinLeaf {
		parent := G * G / (H + lam)
		for ft := range width {
			var gl, hl float64
			var cl int32
			base := ft * gr.nb
			for b := 0; b < gr.nb-1; b++ {
				gl += hs.g[base+b]
				hl += hs.h[base+b]
				cl += hs.c[base+b]
				cr := int32(hi-lo) - cl
				if int(cl) < gr.o.MinLeaf {
					continue
				}
				if int(cr) < gr.o.MinLeaf {
					break
				}
				gain := gl*gl/(hl+lam) + (G-gl)*(G-gl)/(H-hl+lam) - parent
				if gain > bestGain+1e-12 {
					bestGain, bestF, bestB = gain, ft, b
				}
			}
		}
	}
	if bestF < 0 || bestB >= len(gr.edges[bestF]) {
		v := -G / (H + lam) * gr.o.LearningRate
		gr.tree.Value[id] = float32(v)
		for _, r := range gr.idx[lo:hi] {
			f[r] += float64(float32(v))
		}
		return id
	}
	// Partition idx[lo:hi]: bin <= bestB to the left.
	rows := gr.idx[lo:hi]
	i, j := 0, len(rows)-1
	for i <= j {
		if gr.bins[int(rows[i])*width+bestF] <= uint8(bestB) {
			i++
		} else {
			rows[i], rows[j] = rows[j], rows[i]
			j--
		}
	}
	mid := lo + i
	// Histogram subtraction: fill the smaller child, derive the larger.
	small := gr.newHist()
	var leftH, rightH *hist
	if mid-lo <= hi-mid {
		gr.fill(small, gr.idx[lo:mid])
		hs.subtract(small)
		leftH, rightH = small, hs
	} else {
		gr.fill(small, gr.idx[mid:hi])
		hs.subtract(small)
		leftH, rightH = hs, small
	}
	gr.tree.Feature[id] = int16(bestF)
	gr.tree.Threshold[id] = gr.edges[bestF][bestB]
	l := gr.node(lo, mid, depth+1, leftH, f)
	r := gr.node(mid, hi, depth+1, rightH, f)
	gr.tree.Left[id], gr.tree.Right[id] = l, r
	return id
}
