package head

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/diagd/diagd/retrain/metrics"
	"github.com/diagd/diagd/retrain/rtest"
)

// gaussTask: two Gaussian classes along a few directions, 10:1 imbalanced like the
// paper's 2085 negatives vs ~100 synthetic defects. shift sets how separable they are;
// the features get per-feature offsets and scales (like pooled CNN features, which
// are positive and of very different magnitudes), which standardisation must undo.
func gaussTask(n, f int, shift float64, seed uint64) ([][]float32, []bool) {
	rng := rand.New(rand.NewPCG(seed, 2))
	scale := rand.New(rand.NewPCG(77, 7)) // the same per-feature scales for every set
	off, mul := make([]float64, f), make([]float64, f)
	for j := range f {
		off[j], mul[j] = 5*scale.Float64(), math.Exp(3*scale.NormFloat64())
	}
	X := make([][]float32, n)
	y := make([]bool, n)
	for i := range X {
		y[i] = i%11 == 0
		X[i] = make([]float32, f)
		for j := range X[i] {
			v := rng.NormFloat64()
			if y[i] && j < 4 {
				v += shift * float64(1-2*(j%2))
			}
			X[i][j] = float32(off[j] + mul[j]*v)
		}
	}
	return X, y
}

func heldOutAP(t *testing.T, score func([]float32) float64, X [][]float32, y []bool) float64 {
	t.Helper()
	s := make([]float64, len(X))
	for i, x := range X {
		s[i] = score(x)
	}
	r, err := metrics.Evaluate(s, y)
	if err != nil {
		t.Fatal(err)
	}
	return r.AP
}

// newtonLogReg is the independent reference (rtest.LogReg: Newton's method with a
// dense Cholesky solve, no code shared with this package).
func newtonLogReg(t *testing.T, X [][]float32, y []bool, lambda, pw float64) func([]float32) float64 {
	t.Helper()
	f, err := rtest.LogReg(X, y, lambda, pw)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// The default recipe, with no tuning, reaches the held-out AP of an independently
// fitted standardised logistic regression (sklearn's default C=1, i.e. λ = 1/n) within
// 0.02, at widths from 16 to 128 and on hard and easy tasks; and at the λ it chose its
// solution is the reference's (the solver converges to the true minimum).
func TestDefaultRecipeMatchesLogisticRegression(t *testing.T) {
	for _, c := range []struct {
		f     int
		shift float64
	}{{16, 1.0}, {16, 2.5}, {128, 1.0}} {
		X, y := gaussTask(1100, c.f, c.shift, 1)
		Xv, yv := gaussTask(1100, c.f, c.shift, 2)
		var steps []Progress
		h, err := Fit(t.Context(), X, y, nil, Config{}, func(p Progress) { steps = append(steps, p) })
		if err != nil {
			t.Fatal(err)
		}
		pw := 1000.0 / 100
		ref := newtonLogReg(t, X, y, 1/float64(len(X)), pw)
		got, want := heldOutAP(t, h.Logit, Xv, yv), heldOutAP(t, ref, Xv, yv)
		r := h.Report
		t.Logf("F=%d shift %.1f: AP %.4f (λ %.4g, %d iterations, |grad| %.2g, %s) vs reference %.4f; CV %v",
			c.f, c.shift, got, r.Lambda, r.Iterations, r.GradNorm, r.Status, want, r.CV)
		if got < want-0.02 {
			t.Errorf("F=%d: default recipe AP %.4f; the reference logistic regression reaches %.4f", c.f, got, want)
		}
		if !r.Converged || r.GradNorm > 1e-5 || r.Solver != LogReg || !r.Standardized || r.CVFolds != 5 {
			t.Errorf("F=%d: report %+v; want a converged, standardised 5-fold logreg fit", c.f, r)
		}
		if last := steps[len(steps)-1]; last.Step != last.Steps {
			t.Errorf("progress ends at %d/%d", last.Step, last.Steps)
		}
		// The same λ in the reference gives the same model: compare logits.
		same := newtonLogReg(t, X, y, r.Lambda, pw)
		for i, x := range Xv[:50] {
			if d := math.Abs(h.Logit(x) - same(x)); d > 2e-3*max(1, math.Abs(same(x))) {
				t.Fatalf("F=%d: row %d logit %v; reference at λ %v gives %v", c.f, i, h.Logit(x), r.Lambda, same(x))
			}
		}
	}
}

// Standardisation makes the fit blind to per-feature units: rescaling and shifting
// every feature (as a different backbone's pooling might) gives the same scores, and the
// folded weights give them on raw features.
func TestStandardisationFoldedIntoWeights(t *testing.T) {
	X, y := gaussTask(440, 8, 1.5, 3)
	X2 := make([][]float32, len(X))
	for i, x := range X {
		X2[i] = make([]float32, len(x))
		for j, v := range x {
			X2[i][j] = v*float32(j+1)*10 + float32(100*j)
		}
	}
	// A constant feature gets weight 0 and is counted.
	for i := range X2 {
		X2[i][7] = 3
	}
	for i := range X {
		X[i][7] = 3
	}
	h1, err := Fit(t.Context(), X, y, nil, Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h2, err := Fit(t.Context(), X2, y, nil, Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range X {
		a, b := h1.Logit(X[i]), h2.Logit(X2[i])
		if math.Abs(a-b) > 1e-3*max(1, math.Abs(a)) {
			t.Fatalf("row %d: logit %v on raw units, %v on rescaled units", i, a, b)
		}
		if bound := h2.RoundingBound(X2[i]); bound <= 0 || bound > 1e-2 {
			t.Fatalf("row %d: rounding bound %v", i, bound)
		}
	}
	if h1.W[7] != 0 || h1.Report.ConstantFeatures != 1 {
		t.Errorf("constant feature weight %v, counted %d", h1.W[7], h1.Report.ConstantFeatures)
	}
}

// The paper's recipe is still available; its report says when the loss is still
// moving (lr 1e-4 for 30 epochs does not converge), and seeds decide its weights.
func TestAdamSolver(t *testing.T) {
	X, y := gaussTask(1100, 32, 2.5, 1)
	Xv, yv := gaussTask(550, 32, 2.5, 2)
	var losses []float64
	h, err := Fit(t.Context(), X, y, nil, Config{Solver: Adam, Epochs: 30, LR: 1e-2, Seed: 5}, func(p Progress) { losses = append(losses, p.Loss) })
	if err != nil {
		t.Fatal(err)
	}
	if a := heldOutAP(t, h.Logit, Xv, yv); a < 0.97 {
		t.Errorf("adam lr 1e-2 held-out AP %.3f; want >= 0.97", a)
	}
	if len(losses) != 30 || losses[29] >= losses[0] || h.PosWeight != 10 {
		t.Errorf("losses %v pos_weight %v", losses, h.PosWeight)
	}
	h2, _ := Fit(t.Context(), X, y, nil, Config{Solver: Adam, Epochs: 30, LR: 1e-2, Seed: 5}, nil)
	if !slices.Equal(h.W, h2.W) || h.B != h2.B {
		t.Error("same seed, different weights")
	}
	slow, err := Fit(t.Context(), X, y, nil, Config{Solver: Adam, Seed: 5}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if slow.Report.Converged || slow.Report.Status != "epoch limit" {
		t.Errorf("paper recipe report %+v; its loss is still falling after 30 epochs at lr 1e-4", slow.Report)
	}
}

// One full-batch Adam step from zero moves every standardised weight by exactly lr
// against the sign of its gradient (m̂ = g, sqrt(v̂) = |g|); on raw features that is
// W_j = −lr·sign(g_j)/σ_j. For w = 0 the BCE gradient with pos_weight p is the mean over
// samples of (p·y·(0.5−1) + (1−y)·0.5)·z.
func TestFirstAdamStep(t *testing.T) {
	X, y := gaussTask(44, 4, 2, 3)
	zero := &Head{W: make([]float32, 4)}
	h, err := Fit(t.Context(), X, y, zero, Config{Solver: Adam, Epochs: 1, Batch: 44, LR: 0.01}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := 40.0 / 4
	for j := range 4 {
		mu, ss := 0.0, 0.0
		for _, x := range X {
			mu += float64(x[j]) / 44
		}
		for _, x := range X {
			ss += (float64(x[j]) - mu) * (float64(x[j]) - mu) / 44
		}
		sd := math.Sqrt(ss)
		g := 0.0
		for i, x := range X {
			d := 0.5
			if y[i] {
				d = -0.5 * p
			}
			g += d * (float64(x[j]) - mu) / sd / 44
		}
		want := -0.01 * math.Copysign(1, g) / sd
		if math.Abs(float64(h.W[j])-want) > 1e-5*math.Abs(want) {
			t.Errorf("W[%d] = %v; want %v (standardised gradient %v, σ %v)", j, h.W[j], want, g, sd)
		}
	}
}

func TestFitRejectsBadInput(t *testing.T) {
	ctx := context.Background()
	if _, err := Fit(ctx, [][]float32{{1}, {2}}, []bool{true, true}, nil, Config{}, nil); err == nil {
		t.Error("single class accepted")
	}
	if _, err := Fit(ctx, [][]float32{{1}, {2, 3}}, []bool{true, false}, nil, Config{}, nil); err == nil {
		t.Error("ragged rows accepted")
	}
	if _, err := Fit(ctx, [][]float32{{float32(math.NaN())}, {2}}, []bool{true, false}, nil, Config{}, nil); err == nil {
		t.Error("NaN accepted")
	}
	if _, err := Fit(ctx, [][]float32{{1}, {2}}, []bool{true, false}, nil, Config{Solver: "sgd"}, nil); err == nil {
		t.Error("unknown solver accepted")
	}
	ctx2, cancel := context.WithCancel(ctx)
	cancel()
	X, y := gaussTask(22, 2, 1, 1)
	for _, s := range []Solver{LogReg, Adam} {
		if _, err := Fit(ctx2, X, y, nil, Config{Solver: s}, nil); err == nil {
			t.Errorf("%s: cancelled context ignored", s)
		}
	}
}

// Too few examples of a class for two folds: no cross-validation, the fallback λ, and
// the report says so.
func TestFewPositivesSkipCV(t *testing.T) {
	X, y := gaussTask(22, 3, 2, 4) // 2 positives
	y[11] = false                  // 1 positive left
	h, err := Fit(t.Context(), X, y, nil, Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if h.Report.CVFolds != 0 || h.Report.Lambda != fallbackLambda || len(h.Report.CV) != 0 {
		t.Errorf("report %+v; want no CV and λ %v", h.Report, fallbackLambda)
	}
}
