// Package fid computes the Fréchet Inception Distance between two image folders the way
// pytorch-fid does (spec §1.8): Inception-v3 block activations (64, 192, 768 or 2048
// dims) of images resized to 299×299 (bilinear, align_corners=False) and scaled to
// [-1,1], their mean and covariance, and the Fréchet distance between the two Gaussians.
package fid

import (
	"errors"
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/stat"
)

// Stats are the Gaussian fitted to a set's activations.
type Stats struct {
	N     int           // activations (images) used
	Mu    []float64     // mean, length d
	Sigma *mat.SymDense // covariance, d×d, with N−1 in the denominator (np.cov rowvar=False)

	// factor is (X − mu)ᵀ/sqrt(N−1), d×N, kept when N <= d: Sigma = factor·factorᵀ, and
	// the distance can then be computed in N dimensions instead of d (see Frechet).
	factor *mat.Dense
}

// Dims is the feature dimension.
func (s Stats) Dims() int { return len(s.Mu) }

// NewStats fits mean and covariance to acts (one row per image). It needs two rows:
// np.cov of one row is NaN. With fewer rows than dims+1 the covariance is singular;
// the distance is still defined (see FrechetDistance), only noisier.
func NewStats(acts mat.Matrix) (Stats, error) {
	n, d := acts.Dims()
	if n < 2 {
		return Stats{}, fmt.Errorf("fid: %d activations; a covariance needs at least 2 images", n)
	}
	mu := make([]float64, d)
	for j := range d {
		s := 0.0
		for i := range n {
			s += acts.At(i, j)
		}
		mu[j] = s / float64(n)
	}
	for j, v := range mu {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return Stats{}, fmt.Errorf("fid: activation column %d has a non-finite mean (%v); the model produced NaN or Inf", j, v)
		}
	}
	sigma := mat.NewSymDense(d, nil)
	stat.CovarianceMatrix(sigma, acts, nil)
	st := Stats{N: n, Mu: mu, Sigma: sigma}
	if n <= d {
		st.factor = mat.NewDense(d, n, nil)
		k := 1 / math.Sqrt(float64(n-1))
		for i := range n {
			for j := range d {
				st.factor.Set(j, i, (acts.At(i, j)-mu[j])*k)
			}
		}
	}
	return st, nil
}

// Eps is pytorch-fid's diagonal offset, added to both covariances when the matrix
// square root cannot be computed.
const Eps = 1e-6

// ErrDims is returned when the two sides have different feature dimensions.
var ErrDims = errors.New("feature dimensions differ")

// Frechet is FrechetDistance of two fitted sets. A set with no more images than dims
// (the usual case at 2048 dims) enters through its centred activations instead of a
// d×d square root: any L with Sigma = L·Lᵀ gives the same singular values of L1ᵀ·L2
// (see traceSqrt), and with L = (X − mu)ᵀ/sqrt(N−1) that matrix is only N1×N2, so
// 2048-dim FIDs of a few hundred images take milliseconds rather than minutes of
// 2048×2048 eigendecompositions.
func Frechet(a, b Stats) (float64, error) {
	if a.Dims() != b.Dims() {
		return math.NaN(), fmt.Errorf("fid: %w: %d and %d", ErrDims, a.Dims(), b.Dims())
	}
	if a.factor == nil && b.factor == nil {
		return FrechetDistance(a.Mu, a.Sigma, b.Mu, b.Sigma)
	}
	return frechet(a.Mu, a.Sigma, a.factor, b.Mu, b.Sigma, b.factor)
}

// FrechetDistance is |mu1−mu2|² + Tr(S1) + Tr(S2) − 2·Tr(sqrtm(S1·S2)).
//
// pytorch-fid takes scipy's sqrtm of the non-symmetric product S1·S2 and drops a small
// imaginary part. Here the trace comes from the symmetric form instead:
// S1·S2 = S1^½·(S1^½·S2·S1^½)·S1^−½ is similar to the symmetric PSD matrix
// M = S1^½·S2·S1^½ (for singular S1, AB and BA still share their nonzero eigenvalues), so
// Tr(sqrtm(S1·S2)) = Σ sqrt(eig(M)) = the sum of singular values of S1^½·S2^½. The
// square roots S^½ come from symmetric eigendecompositions, which are stable and real; eigenvalues within rounding of zero (below λmax·d·ε, numpy's
// rank tolerance) count as zero. Should a decomposition fail, Eps is added to both diagonals and the
// computation repeated, as pytorch-fid does when sqrtm is not finite. The result is not
// clamped: for identical inputs it is zero to rounding (|d| ≲ 1e-12·Tr(S)).
func FrechetDistance(mu1 []float64, s1 mat.Symmetric, mu2 []float64, s2 mat.Symmetric) (float64, error) {
	d := len(mu1)
	if len(mu2) != d || s1.SymmetricDim() != d || s2.SymmetricDim() != d {
		return math.NaN(), fmt.Errorf("fid: %w: mu %d and %d, sigma %d and %d", ErrDims, len(mu1), len(mu2), s1.SymmetricDim(), s2.SymmetricDim())
	}
	return frechet(mu1, s1, nil, mu2, s2, nil)
}

// frechet uses f1 and f2 as factors of s1 and s2 when they are not nil.
func frechet(mu1 []float64, s1 mat.Symmetric, f1 *mat.Dense, mu2 []float64, s2 mat.Symmetric, f2 *mat.Dense) (float64, error) {
	diff := 0.0
	for i := range mu1 {
		v := mu1[i] - mu2[i]
		diff += v * v
	}
	tr1, tr2 := trace(s1), trace(s2)
	tc, err := traceSqrt(s1, f1, s2, f2)
	if err != nil || math.IsNaN(tc) || math.IsInf(tc, 0) {
		o1, o2 := offset(s1, Eps), offset(s2, Eps)
		if tc, err = traceSqrt(o1, nil, o2, nil); err != nil {
			return math.NaN(), fmt.Errorf("fid: matrix square root failed even with %g added to the diagonals: %w", Eps, err)
		}
	}
	v := diff + tr1 + tr2 - 2*tc
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return math.NaN(), fmt.Errorf("fid: distance is %v; the statistics hold non-finite values", v)
	}
	return v, nil
}

func trace(s mat.Symmetric) float64 {
	t := 0.0
	for i := range s.SymmetricDim() {
		t += s.At(i, i)
	}
	return t
}

func offset(s mat.Symmetric, eps float64) *mat.SymDense {
	o := mat.NewSymDense(s.SymmetricDim(), nil)
	o.CopySym(s)
	for i := range s.SymmetricDim() {
		o.SetSym(i, i, o.At(i, i)+eps)
	}
	return o
}

// factorOf returns some L with S = L·Lᵀ: the Cholesky factor when S is positive
// definite (a fraction of an eigendecomposition's cost), else the symmetric square root,
// which also handles singular and slightly indefinite (rounded) covariances.
func factorOf(s mat.Symmetric) (mat.Matrix, error) {
	var ch mat.Cholesky
	if ch.Factorize(s) {
		var l mat.TriDense
		ch.LTo(&l)
		return &l, nil
	}
	return sqrtPSD(s)
}

// sqrtPSD is the symmetric square root V·diag(sqrt(max(λ,0)))·Vᵀ.
func sqrtPSD(s mat.Symmetric) (*mat.SymDense, error) {
	var es mat.EigenSym
	if !es.Factorize(s, true) {
		return nil, errors.New("symmetric eigendecomposition did not converge")
	}
	vals := es.Values(nil)
	var v mat.Dense
	es.VectorsTo(&v)
	d := len(vals)
	floor := rankTol(vals)
	// V·diag(sqrt λ) column by column, then times Vᵀ.
	vs := mat.NewDense(d, d, nil)
	for j, l := range vals {
		r := 0.0
		if l > floor {
			r = math.Sqrt(l)
		}
		for i := range d {
			vs.Set(i, j, v.At(i, j)*r)
		}
	}
	var full mat.Dense
	full.Mul(vs, v.T())
	return symmetrize(&full), nil
}

// symmetrize returns (A+Aᵀ)/2, removing rounding asymmetry before a symmetric solver.
func symmetrize(a *mat.Dense) *mat.SymDense {
	d, _ := a.Dims()
	s := mat.NewSymDense(d, nil)
	for i := range d {
		for j := i; j < d; j++ {
			s.SetSym(i, j, (a.At(i, j)+a.At(j, i))/2)
		}
	}
	return s
}

// traceSqrt is Tr(sqrtm(S1·S2)) as the nuclear norm of L1ᵀ·L2, where Si = Li·Liᵀ
// (Li = fi when given, else from factorOf). A = L1ᵀ·L2 has A·Aᵀ = L1ᵀ·S2·L1, whose
// nonzero eigenvalues are those of S2·L1·L1ᵀ = S2·S1, so A's singular values are the
// square roots of S1·S2's eigenvalues. Taking them from an SVD of A, rather than
// square-rooting the eigenvalues of a product, avoids squaring the condition number:
// small eigenvalues keep an absolute error of about ε·λmax instead of sqrt(ε)·λmax,
// which is what lets the distance of a set to itself cancel to ~1e-15 of its scale.
func traceSqrt(s1 mat.Symmetric, f1 *mat.Dense, s2 mat.Symmetric, f2 *mat.Dense) (float64, error) {
	l1, l2 := mat.Matrix(f1), mat.Matrix(f2)
	var err error
	if f1 == nil {
		if l1, err = factorOf(s1); err != nil {
			return math.NaN(), err
		}
	}
	if f2 == nil {
		if l2, err = factorOf(s2); err != nil {
			return math.NaN(), err
		}
	}
	var a mat.Dense
	a.Mul(l1.T(), l2)
	var svd mat.SVD
	if !svd.Factorize(&a, mat.SVDNone) {
		return math.NaN(), errors.New("SVD of S1^½·S2^½ did not converge")
	}
	sum := 0.0
	for _, v := range svd.Values(nil) {
		sum += v
	}
	return sum, nil
}

// rankTol is numpy's matrix_rank tolerance, λmax·d·ε: eigenvalues below it are zero
// to rounding. They must be dropped, not square-rooted: an exact zero computed as 1e-13
// would add 3e-7 each, and a singular covariance (fewer images than dims) has many.
func rankTol(vals []float64) float64 {
	m := 0.0
	for _, l := range vals {
		m = max(m, math.Abs(l))
	}
	return m * float64(len(vals)) * 0x1p-52
}
