package fid

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// randomOrthogonal is Q of the QR decomposition of a Gaussian matrix.
func randomOrthogonal(rng *rand.Rand, d int) *mat.Dense {
	a := mat.NewDense(d, d, nil)
	for i := range d {
		for j := range d {
			a.Set(i, j, rng.NormFloat64())
		}
	}
	var qr mat.QR
	qr.Factorize(a)
	var q mat.Dense
	qr.QTo(&q)
	return &q
}

// withEigen is Q·diag(ev)·Qᵀ.
func withEigen(q *mat.Dense, ev []float64) *mat.SymDense {
	d := len(ev)
	var t, full mat.Dense
	t.Mul(q, mat.NewDiagDense(d, ev))
	full.Mul(&t, q.T())
	return symmetrize(&full)
}

func randomVec(rng *rand.Rand, d int, scale float64) []float64 {
	v := make([]float64, d)
	for i := range v {
		v[i] = rng.NormFloat64() * scale
	}
	return v
}

func sqDist(a, b []float64) float64 {
	s := 0.0
	for i := range a {
		s += (a[i] - b[i]) * (a[i] - b[i])
	}
	return s
}

// For covariances sharing eigenvectors (S1 = Q·diag(a)·Qᵀ, S2 = Q·diag(b)·Qᵀ) the product
// S1·S2 = Q·diag(a·b)·Qᵀ, so Tr(sqrtm(S1·S2)) = Σ sqrt(a_i b_i) and
// FID = |Δmu|² + Σ (sqrt(a_i) − sqrt(b_i))². Q = I is the diagonal case; zero
// eigenvalues in a make S1 singular (as with fewer images than dims).
func TestFrechetCommutingClosedForm(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, d := range []int{1, 3, 16, 64} {
		for _, v := range [][2]bool{{true, false}, {false, false}, {false, true}} {
			diagonal, singular := v[0], v[1]
			q := randomOrthogonal(rng, d)
			if diagonal {
				q = mat.NewDense(d, d, nil)
				for i := range d {
					q.Set(i, i, 1)
				}
			}
			a, b := make([]float64, d), make([]float64, d)
			want := 0.0
			for i := range d {
				a[i], b[i] = 0.1+rng.Float64()*3, 0.1+rng.Float64()*3
				if singular && i%3 == 0 {
					a[i] = 0 // rank-deficient: Cholesky fails, the eigen square root is used
				}
				want += (math.Sqrt(a[i]) - math.Sqrt(b[i])) * (math.Sqrt(a[i]) - math.Sqrt(b[i]))
			}
			mu1, mu2 := randomVec(rng, d, 1), randomVec(rng, d, 1)
			want += sqDist(mu1, mu2)
			got, err := FrechetDistance(mu1, withEigen(q, a), mu2, withEigen(q, b))
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(got-want) > 1e-9*float64(d) {
				t.Errorf("d=%d diagonal=%v singular=%v: FID %v, closed form %v", d, diagonal, singular, got, want)
			}
		}
	}
}

// For 2×2 matrices with positive eigenvalues, a matrix square root's trace is
// sqrt(tr(M) + 2·sqrt(det(M))) (if sqrt(M) has eigenvalues s1, s2 then
// (s1+s2)² = tr(M) + 2·s1·s2). With M = S1·S2, det(M) = det(S1)·det(S2). Random,
// non-commuting covariances test the general path against this.
func TestFrechet2x2ClosedForm(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	for range 100 {
		s1 := randomSPD(rng, 2)
		s2 := randomSPD(rng, 2)
		var m mat.Dense
		m.Mul(s1, s2)
		trM := m.At(0, 0) + m.At(1, 1)
		trSqrt := math.Sqrt(trM + 2*math.Sqrt(mat.Det(s1)*mat.Det(s2)))
		mu1, mu2 := randomVec(rng, 2, 2), randomVec(rng, 2, 2)
		want := sqDist(mu1, mu2) + trace(s1) + trace(s2) - 2*trSqrt
		got, err := FrechetDistance(mu1, s1, mu2, s2)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(got-want) > 1e-10*(trace(s1)+trace(s2)) {
			t.Fatalf("FID %v, closed form %v", got, want)
		}
	}
}

// randomSPD is A·Aᵀ + 0.1·I for a Gaussian A.
func randomSPD(rng *rand.Rand, d int) *mat.SymDense {
	a := mat.NewDense(d, d, randomVec(rng, d*d, 1))
	var full mat.Dense
	full.Mul(a, a.T())
	s := symmetrize(&full)
	for i := range d {
		s.SetSym(i, i, s.At(i, i)+0.1)
	}
	return s
}

// Identical statistics give 0 (to rounding, relative to the covariance's scale), and
// swapping the sides gives the same distance, for general 64-dim covariances and for
// singular ones (rank 10 < 64, as with 11 images).
func TestFrechetIdentityAndSymmetry(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	d := 64
	s1, s2 := randomSPD(rng, d), randomSPD(rng, d)
	singular := func() *mat.SymDense {
		a := mat.NewDense(d, 10, randomVec(rng, d*10, 1))
		var full mat.Dense
		full.Mul(a, a.T())
		return symmetrize(&full)
	}
	z1, z2 := singular(), singular()
	mu1, mu2 := randomVec(rng, d, 1), randomVec(rng, d, 1)
	for _, c := range []struct {
		name   string
		s1, s2 *mat.SymDense
	}{{"full rank", s1, s2}, {"singular", z1, z2}, {"mixed", s1, z2}} {
		self, err := FrechetDistance(mu1, c.s1, mu1, c.s1)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(self) > 1e-6*trace(c.s1) {
			t.Errorf("%s: FID(x, x) = %v; want 0 within 1e-6·Tr(S) = %v", c.name, self, 1e-6*trace(c.s1))
		}
		ab, err := FrechetDistance(mu1, c.s1, mu2, c.s2)
		if err != nil {
			t.Fatal(err)
		}
		ba, err := FrechetDistance(mu2, c.s2, mu1, c.s1)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: FID(x,x) %.3g, FID(a,b) %.12g, FID(b,a) %.12g", c.name, self, ab, ba)
		if math.Abs(ab-ba) > 1e-9*ab || !(ab > 0) {
			t.Errorf("%s: FID(a,b) %v, FID(b,a) %v", c.name, ab, ba)
		}
	}
	if _, err := FrechetDistance(mu1, s1, mu2[:3], s2); err == nil {
		t.Error("dimension mismatch accepted")
	}
}

// NewStats is np.cov(rowvar=False) with N−1. By hand for rows (1,2), (3,4), (5,0):
// mean (3,2); deviations x (−2,0,2), y (0,2,−2): var x = 8/2 = 4, var y = 8/2 = 4,
// cov = (0+0−4)/2 = −2.
func TestNewStats(t *testing.T) {
	st, err := NewStats(mat.NewDense(3, 2, []float64{1, 2, 3, 4, 5, 0}))
	if err != nil {
		t.Fatal(err)
	}
	if st.N != 3 || st.Mu[0] != 3 || st.Mu[1] != 2 || st.Sigma.At(0, 0) != 4 || st.Sigma.At(1, 1) != 4 || st.Sigma.At(0, 1) != -2 {
		t.Errorf("stats %+v %v", st, mat.Formatted(st.Sigma))
	}
	if _, err := NewStats(mat.NewDense(1, 2, []float64{1, 2})); err == nil {
		t.Error("one row accepted")
	}
	if _, err := NewStats(mat.NewDense(2, 2, []float64{1, math.NaN(), 1, 2})); err == nil {
		t.Error("NaN accepted")
	}
}

// Sample-based: N draws from each of two Gaussians with known, non-commuting
// covariances (d = 4). The FID of the fitted statistics approaches the exact FID of the
// true ones. Its error comes from estimating mu and Sigma: E|mû1−mû2|² exceeds |Δmu|² by
// (Tr S1 + Tr S2)/N, and each covariance entry has a standard error of about
// sqrt(2/N)·σ², so with N = 20000 entries are within ~1% and the distance (a smooth
// function of them, with value and traces of order 10) within a few hundredths. The
// tolerance 0.02·(Tr S1 + Tr S2) allows about three standard errors; a wrong formula (a
// missing factor 2, a non-symmetric sqrt, N instead of N−1 is too small to see here)
// misses by far more. The exact value is from FrechetDistance on the true statistics,
// which the closed-form tests above pin down.
func TestFrechetFromSamples(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	d, n := 4, 20000
	s1, s2 := randomSPD(rng, d), randomSPD(rng, d)
	mu1, mu2 := randomVec(rng, d, 1), randomVec(rng, d, 1)
	exact, err := FrechetDistance(mu1, s1, mu2, s2)
	if err != nil {
		t.Fatal(err)
	}
	draw := func(mu []float64, s *mat.SymDense) *mat.Dense {
		var ch mat.Cholesky
		if !ch.Factorize(s) {
			t.Fatal("not positive definite")
		}
		var l mat.TriDense
		ch.LTo(&l)
		x := mat.NewDense(n, d, nil)
		z := make([]float64, d)
		for i := range n {
			for j := range z {
				z[j] = rng.NormFloat64()
			}
			for r := range d {
				v := mu[r]
				for c := 0; c <= r; c++ {
					v += l.At(r, c) * z[c]
				}
				x.Set(i, r, v)
			}
		}
		return x
	}
	a, err := NewStats(draw(mu1, s1))
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewStats(draw(mu2, s2))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Frechet(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if tol := 0.02 * (trace(s1) + trace(s2)); math.Abs(got-exact) > tol {
		t.Errorf("sample FID %v, exact %v, tolerance %v", got, exact, tol)
	}
	t.Logf("sample FID %.5f, exact %.5f (Tr S1 %.3f, Tr S2 %.3f)", got, exact, trace(s1), trace(s2))
}

// With no more images than dims, Frechet works from the centred activations in N
// dimensions; it must agree with the d-dimensional eigen route on the same mu and Sigma,
// also when only one side has few images, and give ~0 for a set against itself.
func TestFrechetFactorRouteMatchesEigenRoute(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 6))
	d := 48
	acts := func(n int, shift float64) *mat.Dense {
		x := mat.NewDense(n, d, nil)
		for i := range n {
			for j := range d {
				x.Set(i, j, rng.NormFloat64()*(1+float64(j%5))+shift*float64(j%3))
			}
		}
		return x
	}
	small1, err := NewStats(acts(20, 0))
	if err != nil {
		t.Fatal(err)
	}
	small2, err := NewStats(acts(30, 0.5))
	if err != nil {
		t.Fatal(err)
	}
	big, err := NewStats(acts(200, 0.2))
	if err != nil {
		t.Fatal(err)
	}
	if small1.factor == nil || big.factor != nil {
		t.Fatal("factor kept for the wrong sets")
	}
	for _, c := range []struct {
		name string
		a, b Stats
	}{{"both small", small1, small2}, {"small and big", small1, big}, {"big and small", big, small2}} {
		got, err := Frechet(c.a, c.b)
		if err != nil {
			t.Fatal(err)
		}
		want, err := FrechetDistance(c.a.Mu, c.a.Sigma, c.b.Mu, c.b.Sigma)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(got-want) > 1e-9*want {
			t.Errorf("%s: factor route %v, eigen route %v", c.name, got, want)
		}
	}
	self, err := Frechet(small1, small1)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(self) > 1e-12*trace(small1.Sigma) {
		t.Errorf("FID(x,x) = %v with Tr S = %v", self, trace(small1.Sigma))
	}
}
