package rtest

import (
	"errors"
	"math"

	"gonum.org/v1/gonum/mat"
)

// LogReg is the outside baseline that head training is measured against: a
// standardised, L2-regularised logistic regression fitted by Newton's method (IRLS)
// with a dense Cholesky solve, sharing no code with package head. It standardises each
// feature by its mean and population σ over X (a feature without spread is dropped),
// minimises the class-weighted mean logistic loss (positives weighted pw) plus
// λ/2·‖w‖² with the intercept unpenalised, to a gradient below 1e-10, and returns the
// fitted scorer. λ = 1/len(X) is scikit-learn's default C = 1.
func LogReg(X [][]float32, y []bool, lambda, pw float64) (func([]float32) float64, error) {
	n, f := len(X), len(X[0])
	mu, inv := colStats(X)
	Z := mat.NewDense(n, f+1, nil) // last column: 1 for the intercept
	c := make([]float64, n)
	t := make([]float64, n)
	wsum := 0.0
	for i := range n {
		for j := range f {
			Z.Set(i, j, (float64(X[i][j])-mu[j])*inv[j])
		}
		Z.Set(i, f, 1)
		c[i] = 1
		if y[i] {
			c[i], t[i] = pw, 1
		}
		wsum += c[i]
	}
	theta := mat.NewVecDense(f+1, nil)
	for it := 0; ; it++ {
		g, H := newtonSystem(Z, theta, c, t, wsum, lambda)
		if mat.Norm(g, math.Inf(1)) < 1e-10 {
			break
		}
		if it == 100 {
			return nil, errors.New("reference logistic regression: Newton did not converge in 100 steps")
		}
		var ch mat.Cholesky
		if !ch.Factorize(H) {
			return nil, errors.New("reference logistic regression: Hessian not positive definite")
		}
		var step mat.VecDense
		if err := ch.SolveVecTo(&step, g); err != nil {
			return nil, err
		}
		theta.SubVec(theta, &step)
	}
	return func(x []float32) float64 {
		s := theta.AtVec(f)
		for j := range f {
			s += theta.AtVec(j) * (float64(x[j]) - mu[j]) * inv[j]
		}
		return s
	}, nil
}

// colStats is each column's mean and 1/σ (0 for a constant column).
func colStats(X [][]float32) (mu, inv []float64) {
	n, f := float64(len(X)), len(X[0])
	mu, inv = make([]float64, f), make([]float64, f)
	for j := range f {
		for _, x := range X {
			mu[j] += float64(x[j]) / n
		}
		v := 0.0
		for _, x := range X {
			v += (float64(x[j]) - mu[j]) * (float64(x[j]) - mu[j]) / n
		}
		if sd := math.Sqrt(v); sd > 1e-6*max(1, math.Abs(mu[j])) {
			inv[j] = 1 / sd
		}
	}
	return mu, inv
}

// newtonSystem is the gradient and Hessian of the objective at theta.
func newtonSystem(Z *mat.Dense, theta *mat.VecDense, c, t []float64, wsum, lambda float64) (*mat.VecDense, *mat.SymDense) {
	n, k := Z.Dims()
	s := mat.NewVecDense(n, nil)
	s.MulVec(Z, theta)
	r := mat.NewVecDense(n, nil)
	D := mat.NewDense(n, k, nil)
	for i := range n {
		p := 1 / (1 + math.Exp(-s.AtVec(i)))
		r.SetVec(i, c[i]*(p-t[i])/wsum)
		for j := range k {
			D.Set(i, j, Z.At(i, j)*c[i]*p*(1-p)/wsum)
		}
	}
	g := mat.NewVecDense(k, nil)
	g.MulVec(Z.T(), r)
	var ZtD mat.Dense
	ZtD.Mul(Z.T(), D)
	H := mat.NewSymDense(k, nil)
	for a := range k {
		for b := a; b < k; b++ {
			H.SetSym(a, b, ZtD.At(a, b))
		}
	}
	for j := range k - 1 {
		g.SetVec(j, g.AtVec(j)+lambda*theta.AtVec(j))
		H.SetSym(j, j, H.At(j, j)+lambda)
	}
	return g, H
}
