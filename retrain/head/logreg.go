package head

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"

	"github.com/diagd/diagd/retrain/metrics"
)

// Why this solver: on standardised features the L2-regularised logistic loss is smooth
// and strongly convex, so L-BFGS (written here: gonum's optimize would add a module) reaches its unique minimum to a gradient tolerance in
// tens to hundreds of iterations whatever the width, and the result does not depend on
// a seed, a learning rate or an epoch count. The one free parameter, λ, is chosen by
// stratified k-fold cross-validation on the training rows (pooled out-of-fold AP; ties,
// common when folds separate perfectly, go to the lower out-of-fold log-loss, which
// prefers the direction that separates with the wider margin), walking the grid from strong to weak with warm starts and
// stopping once the AP has fallen cvPatience steps in a row by more than cvDrop below
// the best (weak λ on wide features only overfit, and they are the slow fits).
const (
	cvPatience = 2
	cvDrop     = 0.02
	// fallbackLambda is used when a class has fewer than 2 training rows, so no fold
	// split can hold both classes.
	fallbackLambda = 0.01
)

// objective is the class-weighted mean logistic loss plus λ/2·‖w‖² on a standardised
// matrix z; parameters are [w..., b] and b is not regularised.
type objective struct {
	z      blas64.General
	y      []float64 // 0 or 1
	c      []float64 // sample weights
	sumC   float64
	lambda float64
	lastX  []float64 // the point s was computed at
	s      []float64 // logits at lastX
	r      []float64
}

func newObjective(z blas64.General, y []bool, rows []int, pw float64) *objective {
	o := &objective{z: z, y: make([]float64, z.Rows), c: make([]float64, z.Rows), s: make([]float64, z.Rows), r: make([]float64, z.Rows)}
	for k, i := range rows {
		o.c[k] = 1
		if y[i] {
			o.y[k], o.c[k] = 1, pw
		}
		o.sumC += o.c[k]
	}
	return o
}

// logits computes z·w + b, once per point (L-BFGS asks for the value and the gradient
// at the same point).
func (o *objective) logits(x []float64) []float64 {
	if o.lastX != nil && slices.Equal(o.lastX, x) {
		return o.s
	}
	f := o.z.Cols
	blas64.Gemv(blas.NoTrans, 1, o.z, blas64.Vector{N: f, Inc: 1, Data: x[:f]}, 0, blas64.Vector{N: o.z.Rows, Inc: 1, Data: o.s})
	for i := range o.s {
		o.s[i] += x[f]
	}
	o.lastX = append(o.lastX[:0], x...)
	return o.s
}

func (o *objective) Func(x []float64) float64 {
	s := o.logits(x)
	l := 0.0
	for i, v := range s {
		// softplus(v) − y·v is the logistic loss for label y.
		l += o.c[i] * (softplus(v) - o.y[i]*v)
	}
	f := o.z.Cols
	return l/o.sumC + 0.5*o.lambda*blas64.Dot(blas64.Vector{N: f, Inc: 1, Data: x[:f]}, blas64.Vector{N: f, Inc: 1, Data: x[:f]})
}

func (o *objective) Grad(grad, x []float64) {
	s := o.logits(x)
	gb := 0.0
	for i, v := range s {
		o.r[i] = o.c[i] * (sigmoid(v) - o.y[i]) / o.sumC
		gb += o.r[i]
	}
	f := o.z.Cols
	blas64.Gemv(blas.Trans, 1, o.z, blas64.Vector{N: o.z.Rows, Inc: 1, Data: o.r}, 0, blas64.Vector{N: f, Inc: 1, Data: grad[:f]})
	for j := range f {
		grad[j] += o.lambda * x[j]
	}
	grad[f] = gb
}

// fitResult is one L-BFGS minimisation.
type fitResult struct {
	x          []float64
	iterations int
	gradNorm   float64
	converged  bool
	status     string
	losses     []float64
}

// L-BFGS settings: memory, the Armijo constant, and how many iterations in a row the
// loss may stop moving (relative change below lbfgsStallRel) before the fit counts as
// converged even if the gradient test has not passed (flat valleys at weak λ).
const (
	lbfgsMemory   = 10
	lbfgsArmijo   = 1e-4
	lbfgsStallRel = 1e-12
	lbfgsStalls   = 5
	lbfgsHalvings = 50
)

// lbfgsState is the curvature memory of L-BFGS.
type lbfgsState struct {
	s, y [][]float64
	rho  []float64
}

func (m *lbfgsState) push(s, y []float64) {
	sy := dot(s, y)
	if !(sy > 1e-300) { // strong convexity makes sᵀy > 0; skip a pair that lost it to rounding
		return
	}
	if len(m.s) == lbfgsMemory {
		m.s, m.y, m.rho = m.s[1:], m.y[1:], m.rho[1:]
	}
	m.s, m.y, m.rho = append(m.s, slices.Clone(s)), append(m.y, slices.Clone(y)), append(m.rho, 1/sy)
}

// direction is −H·g by the two-loop recursion, H the inverse-Hessian estimate.
func (m *lbfgsState) direction(g, d []float64) {
	copy(d, g)
	a := make([]float64, len(m.s))
	for i := len(m.s) - 1; i >= 0; i-- {
		a[i] = m.rho[i] * dot(m.s[i], d)
		axpy(-a[i], m.y[i], d)
	}
	gamma := 1 / max(1, infNorm(g)) // first step: at most a unit move in any coordinate
	if k := len(m.s) - 1; k >= 0 {
		gamma = dot(m.s[k], m.y[k]) / dot(m.y[k], m.y[k])
	}
	for i := range d {
		d[i] *= gamma
	}
	for i := range m.s {
		b := m.rho[i] * dot(m.y[i], d)
		axpy(a[i]-b, m.s[i], d)
	}
	for i := range d {
		d[i] = -d[i]
	}
}

// minimize runs L-BFGS with a backtracking (Armijo) line search from x0 until the
// gradient's largest component is below c.GradTol, the loss stops moving, or
// c.MaxIter iterations.
func minimize(ctx context.Context, o *objective, x0 []float64, c Config) (fitResult, error) {
	n := len(x0)
	x, xn := slices.Clone(x0), make([]float64, n)
	g, gn, d := make([]float64, n), make([]float64, n), make([]float64, n)
	s, yv := make([]float64, n), make([]float64, n)
	f := o.Func(x)
	o.Grad(g, x)
	var mem lbfgsState
	fr := fitResult{status: "iteration limit"}
	stalls := 0
	for fr.iterations < c.MaxIter {
		if err := ctx.Err(); err != nil {
			return fitResult{}, err
		}
		if infNorm(g) <= c.GradTol {
			fr.converged, fr.status = true, "gradient below tolerance"
			break
		}
		mem.direction(g, d)
		gd := dot(g, d)
		if !(gd < 0) { // not a descent direction (rounding): restart from steepest descent
			mem = lbfgsState{}
			mem.direction(g, d)
			gd = dot(g, d)
		}
		fn, ok := lineSearch(o, x, d, f, gd, xn)
		if !ok {
			fr.status = "line search made no progress"
			fr.converged = infNorm(g) <= 10*c.GradTol
			break
		}
		o.Grad(gn, xn)
		for i := range s {
			s[i], yv[i] = xn[i]-x[i], gn[i]-g[i]
		}
		mem.push(s, yv)
		fr.iterations++
		fr.losses = append(fr.losses, fn)
		if f-fn <= lbfgsStallRel*max(1, math.Abs(f)) {
			stalls++
		} else {
			stalls = 0
		}
		x, xn, g, gn, f = xn, x, gn, g, fn
		if stalls >= lbfgsStalls {
			fr.converged, fr.status = true, "loss stopped moving"
			break
		}
	}
	for _, v := range x {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fitResult{}, errors.New("head: L-BFGS diverged (non-finite weights)")
		}
	}
	fr.x, fr.gradNorm = x, infNorm(g)
	return fr, nil
}

// lineSearch halves the step along d from x until the Armijo condition holds, writing
// the accepted point into xn.
func lineSearch(o *objective, x, d []float64, f, gd float64, xn []float64) (float64, bool) {
	t := 1.0
	for range lbfgsHalvings {
		for i := range xn {
			xn[i] = x[i] + t*d[i]
		}
		if fn := o.Func(xn); fn <= f+lbfgsArmijo*t*gd {
			return fn, true
		}
		t /= 2
	}
	return f, false
}

func dot(a, b []float64) float64 {
	return blas64.Dot(blas64.Vector{N: len(a), Inc: 1, Data: a}, blas64.Vector{N: len(b), Inc: 1, Data: b})
}

func axpy(alpha float64, x, y []float64) {
	blas64.Axpy(alpha, blas64.Vector{N: len(x), Inc: 1, Data: x}, blas64.Vector{N: len(y), Inc: 1, Data: y})
}

func infNorm(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		m = max(m, math.Abs(x))
	}
	return m
}

// fitLogReg picks λ by cross-validation and fits all rows with it. It returns weights on
// standardised features (st).
func fitLogReg(ctx context.Context, X [][]float32, st stats, y []bool, pw float64, c Config, progress func(Progress)) ([]float64, float64, Report, []float64, error) {
	folds := stratifiedFolds(y, c.Folds, c.Seed)
	steps := len(c.Lambdas)*len(folds) + 1
	step := 0
	tick := func(loss float64) {
		step++
		if progress != nil {
			progress(Progress{Step: step, Steps: steps, Loss: loss})
		}
	}
	rep := Report{Lambda: fallbackLambda}
	if len(folds) >= 2 {
		cv, best, err := crossValidate(ctx, X, y, pw, folds, c, tick)
		if err != nil {
			return nil, 0, Report{}, nil, err
		}
		rep.CV, rep.Lambda, rep.CVFolds = cv, best, len(folds)
	}
	o := newObjective(st.dense(X, nil), y, allRows(len(X)), pw)
	o.lambda = rep.Lambda
	fr, err := minimize(ctx, o, make([]float64, len(X[0])+1), c)
	if err != nil {
		return nil, 0, Report{}, nil, err
	}
	rep.Iterations, rep.GradNorm, rep.Converged, rep.Status = fr.iterations, fr.gradNorm, fr.converged, fr.status
	rep.FinalLoss = o.Func(fr.x)
	steps = step + 1 // early stopping may have skipped CV steps
	tick(rep.FinalLoss)
	f := len(X[0])
	return fr.x[:f], fr.x[f], rep, fr.losses, nil
}

// crossValidate walks the λ grid (strongest first) and returns the pooled out-of-fold
// AP of each λ tried and the chosen λ.
func crossValidate(ctx context.Context, X [][]float32, y []bool, pw float64, folds [][]int, c Config, tick func(float64)) ([]CVPoint, float64, error) {
	type foldData struct {
		train, test blas64.General
		obj         *objective
		x           []float64 // warm start: the last solution of this fold
	}
	fd := make([]foldData, len(folds))
	for k := range folds {
		tr := trainRows(len(X), folds[k])
		s := standardizeRows(X, tr)
		fd[k] = foldData{train: s.dense(X, tr), test: s.dense(X, folds[k]), x: make([]float64, len(X[0])+1)}
		fd[k].obj = newObjective(fd[k].train, y, tr, pw)
	}
	oof := make([]float64, len(X))
	labels := y
	var cv []CVPoint
	best, bestAP, bestLL, worse := c.Lambdas[0], math.Inf(-1), math.Inf(1), 0
grid:
	for _, lam := range c.Lambdas {
		for k := range fd {
			fd[k].obj.lambda = lam
			fr, err := minimize(ctx, fd[k].obj, fd[k].x, c)
			if err != nil {
				return nil, 0, err
			}
			fd[k].x = fr.x
			scoreRows(fd[k].test, fr.x, folds[k], oof)
			tick(fd[k].obj.Func(fr.x))
		}
		ap, ll := metrics.AveragePrecision(oof, labels), weightedLogLoss(oof, labels, pw)
		cv = append(cv, CVPoint{Lambda: lam, AP: ap, LogLoss: ll})
		switch {
		case ap > bestAP+apTie:
			best, bestAP, bestLL, worse = lam, ap, ll, 0
		case ap >= bestAP-apTie && ll < bestLL:
			best, bestLL, worse = lam, ll, 0
		case ap < bestAP-cvDrop:
			if worse++; worse >= cvPatience {
				break grid
			}
		}
	}
	return cv, best, nil
}

// apTie is the AP difference under which two λ count as tied (rounding only).
const apTie = 1e-9

// weightedLogLoss is the class-weighted mean logistic loss of logits s.
func weightedLogLoss(s []float64, y []bool, pw float64) float64 {
	l, w := 0.0, 0.0
	for i, v := range s {
		if y[i] {
			l += pw * softplus(-v)
			w += pw
		} else {
			l += softplus(v)
			w++
		}
	}
	return l / w
}

// scoreRows writes z·w + b of each test row into out at the rows' indices.
func scoreRows(z blas64.General, x []float64, rows []int, out []float64) {
	f := z.Cols
	s := make([]float64, z.Rows)
	blas64.Gemv(blas.NoTrans, 1, z, blas64.Vector{N: f, Inc: 1, Data: x[:f]}, 0, blas64.Vector{N: z.Rows, Inc: 1, Data: s})
	for k, i := range rows {
		out[i] = s[k] + x[f]
	}
}

// stratifiedFolds splits row indices into k folds with each class spread evenly,
// shuffled by seed. k is capped by the smaller class; fewer than 2 gives no folds.
func stratifiedFolds(y []bool, k int, seed uint64) [][]int {
	var pos, neg []int
	for i, l := range y {
		if l {
			pos = append(pos, i)
		} else {
			neg = append(neg, i)
		}
	}
	k = min(k, len(pos), len(neg))
	if k < 2 {
		return nil
	}
	rng := rand.New(rand.NewPCG(seed, 0xf01d))
	folds := make([][]int, k)
	for _, class := range [][]int{pos, neg} {
		rng.Shuffle(len(class), func(i, j int) { class[i], class[j] = class[j], class[i] })
		for n, i := range class {
			folds[n%k] = append(folds[n%k], i)
		}
	}
	for _, f := range folds {
		slices.Sort(f)
	}
	return folds
}

// trainRows is every row not in test (sorted).
func trainRows(n int, test []int) []int {
	in := make([]bool, n)
	for _, i := range test {
		in[i] = true
	}
	var out []int
	for i := range n {
		if !in[i] {
			out = append(out, i)
		}
	}
	return out
}
