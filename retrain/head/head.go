// Package head trains the detector's last layer, Linear(F,1), on frozen backbone
// features and writes the trained weights back into a complete ONNX detector.
//
// Features are standardised first (mean 0, variance 1 per feature, statistics from the
// training rows), so one recipe suits 16-wide stand-ins and 2048-wide ResNet-50 pools
// alike; the statistics are folded into the written weights (w/σ, b − Σ w·μ/σ), so the
// served model is an ordinary Gemm. The default solver is L2-regularised logistic
// regression minimised by L-BFGS to a gradient tolerance, with the regularisation
// strength picked by stratified cross-validation on the training rows (see logreg.go).
// The paper's recipe (BCE-with-logits, Adam lr 1e-4, batch 32, 30 epochs, spec §1.6) is
// kept as the "adam" solver.
package head

import (
	"context"
	"errors"
	"fmt"
	"math"
)

// Imbalance names how class imbalance is handled.
type Imbalance string

const (
	// PosWeight scales the positive term of the loss by neg/pos (PyTorch's pos_weight),
	// so both classes carry equal total weight. It keeps every sample; the default.
	PosWeight Imbalance = "pos-weight"
	// NoWeighting is the paper's plain BCE (its data were imbalanced too).
	NoWeighting Imbalance = "none"
)

// ParseImbalance reads a method name.
func ParseImbalance(s string) (Imbalance, error) {
	switch m := Imbalance(s); m {
	case PosWeight, NoWeighting:
		return m, nil
	case "":
		return PosWeight, nil
	}
	return "", fmt.Errorf("unknown imbalance method %q (want %s or %s)", s, PosWeight, NoWeighting)
}

// Solver names an optimisation recipe.
type Solver string

const (
	// LogReg is L2-regularised logistic regression on standardised features, minimised
	// by L-BFGS, the strength chosen by inner cross-validation: no learning rate or epoch
	// count to tune. The default.
	LogReg Solver = "logreg"
	// Adam is the paper's recipe (minibatch Adam on BCE-with-logits), on standardised
	// features.
	Adam Solver = "adam"
)

// ParseSolver reads a solver name ("" is the default).
func ParseSolver(s string) (Solver, error) {
	switch m := Solver(s); m {
	case LogReg, Adam:
		return m, nil
	case "":
		return LogReg, nil
	}
	return "", fmt.Errorf("unknown solver %q (want %s or %s)", s, LogReg, Adam)
}

// Config is the optimisation recipe. Zero values take the defaults.
type Config struct {
	Solver    Solver
	Imbalance Imbalance
	Seed      uint64 // folds (logreg); initialisation and shuffling (adam)

	// LogReg: the regularisation strengths tried (default DefaultLambdas), the folds
	// of the inner cross-validation (default 5) and the L-BFGS limits.
	Lambdas []float64
	Folds   int
	MaxIter int     // L-BFGS iterations per fit (default 500)
	GradTol float64 // stop when the gradient's largest component is below this (default 1e-5)

	// Adam (the paper's values by default, spec §1.6).
	Epochs int
	LR     float64
	Batch  int
	Beta1  float64
	Beta2  float64
	Eps    float64
}

// DefaultLambdas is the L2 grid, strongest first, in half decades from 10 to 1e-4. The
// objective is the class-weighted mean loss plus λ/2·‖w‖² on standardised features, so
// λ means the same at any width and sample count (sklearn's C is 1/(λ·n)).
var DefaultLambdas = []float64{10, 3.16, 1, 0.316, 0.1, 0.0316, 0.01, 0.00316, 0.001, 0.000316, 0.0001}

// WithDefaults fills unset values of the chosen solver (the other solver's stay zero,
// which Validate requires).
func (c Config) WithDefaults() Config {
	if c.Solver == "" {
		c.Solver = LogReg
	}
	if c.Imbalance == "" {
		c.Imbalance = PosWeight
	}
	if c.Solver == Adam {
		c.adamDefaults()
		return c
	}
	if len(c.Lambdas) == 0 {
		c.Lambdas = DefaultLambdas
	}
	if c.Folds <= 0 {
		c.Folds = 5
	}
	if c.MaxIter <= 0 {
		c.MaxIter = 500
	}
	if c.GradTol <= 0 {
		c.GradTol = 1e-5
	}
	return c
}

// Validate refuses settings that the chosen solver would ignore, so nobody believes a
// learning rate was used when it was not.
func (c Config) Validate() error {
	if _, err := ParseSolver(string(c.Solver)); err != nil {
		return err
	}
	if _, err := ParseImbalance(string(c.Imbalance)); err != nil {
		return err
	}
	if c.Solver != Adam && (c.Epochs != 0 || c.LR != 0 || c.Batch != 0) {
		return fmt.Errorf("epochs, learning rate and batch apply to the %s solver only; the %s solver needs none", Adam, LogReg)
	}
	if c.Solver == Adam && (len(c.Lambdas) > 0 || c.Folds != 0 || c.MaxIter != 0 || c.GradTol != 0) {
		return fmt.Errorf("λ grid, folds and L-BFGS limits apply to the %s solver only", LogReg)
	}
	for _, l := range c.Lambdas {
		if !(l > 0) {
			return fmt.Errorf("λ %v must be positive", l)
		}
	}
	return nil
}

func (c *Config) adamDefaults() {
	if c.Epochs <= 0 {
		c.Epochs = 30
	}
	if c.LR <= 0 {
		c.LR = 1e-4
	}
	if c.Batch <= 0 {
		c.Batch = 32
	}
	if c.Beta1 == 0 {
		c.Beta1 = 0.9
	}
	if c.Beta2 == 0 {
		c.Beta2 = 0.999
	}
	if c.Eps == 0 {
		c.Eps = 1e-8
	}
}

// Head is a trained Linear(F,1) on raw features: logit = W·x + B, standardisation
// folded in.
type Head struct {
	W []float32
	B float32
	// PosWeight is the loss weight used for positives (1 without weighting).
	PosWeight float64
	// Loss is the training objective after each epoch (adam) or iteration of the final
	// fit (logreg).
	Loss []float64
	// Report says how the fit went; empty for heads read from a model.
	Report Report
}

// Report describes a fit: the solver, the regularisation chosen and why, and whether
// the optimiser converged.
type Report struct {
	Solver       Solver    `json:"solver"`
	Standardized bool      `json:"standardized"`
	Lambda       float64   `json:"lambda,omitempty"`
	CV           []CVPoint `json:"cv,omitempty"`
	CVFolds      int       `json:"cv_folds,omitempty"`
	// Iterations of the final fit (L-BFGS iterations, or Adam epochs).
	Iterations int `json:"iterations"`
	// GradNorm is the largest component of the objective's gradient at the end.
	GradNorm  float64 `json:"grad_norm"`
	Converged bool    `json:"converged"`
	Status    string  `json:"status"`
	FinalLoss float64 `json:"final_loss"`
	// ConstantFeatures had no spread in training and get weight 0.
	ConstantFeatures int `json:"constant_features,omitempty"`
}

// CVPoint is the pooled out-of-fold AP and class-weighted log-loss of one
// regularisation strength.
type CVPoint struct {
	Lambda  float64 `json:"lambda"`
	AP      float64 `json:"ap"`
	LogLoss float64 `json:"log_loss"`
}

// Logit applies the head to one feature vector in float64.
func (h *Head) Logit(x []float32) float64 {
	s := float64(h.B)
	for i, w := range h.W {
		s += float64(w) * float64(x[i])
	}
	return s
}

// RoundingBound bounds how far a float32 evaluation of W·x + B (ONNX Runtime's Gemm)
// may lie from Logit(x): each of the F+1 terms may carry a relative rounding error of
// up to about F·2⁻²⁴ in a sequential sum. Folded standardisation can make the terms
// much larger than the logit, so a check of the written model must allow for this.
func (h *Head) RoundingBound(x []float32) float64 {
	s := math.Abs(float64(h.B))
	for i, w := range h.W {
		s += math.Abs(float64(w) * float64(x[i]))
	}
	return float64(len(h.W)+1) * 0x1p-24 * s
}

// Progress is reported as the fit goes: Step of Steps (CV fits, then the final fit for
// logreg; epochs for adam) and the current training objective.
type Progress struct {
	Step, Steps int
	Loss        float64
}

// Fit trains a head on X (rows of equal width) with labels y. init, when not nil, is
// the starting point in standardised coordinates (adam only; nil is PyTorch's Linear
// init, U(±1/sqrt(F)), from the seed).
func Fit(ctx context.Context, X [][]float32, y []bool, init *Head, c Config, progress func(Progress)) (*Head, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("head: %w", err)
	}
	c = c.WithDefaults()
	pos, err := check(X, y)
	if err != nil {
		return nil, err
	}
	st := standardize(X)
	pw := 1.0
	if c.Imbalance == PosWeight {
		pw = float64(len(y)-pos) / float64(pos)
	}
	var (
		w   []float64
		b   float64
		rep Report
		los []float64
	)
	switch c.Solver {
	case LogReg:
		w, b, rep, los, err = fitLogReg(ctx, X, st, y, pw, c, progress)
	case Adam:
		w, b, rep, los, err = fitAdam(ctx, st.apply(X), y, pw, init, c, progress)
	default:
		err = fmt.Errorf("head: unknown solver %q", c.Solver)
	}
	if err != nil {
		return nil, err
	}
	rep.Solver, rep.Standardized, rep.ConstantFeatures = c.Solver, true, st.constant
	h := &Head{PosWeight: pw, Loss: los, Report: rep}
	h.W, h.B = st.fold(w, b)
	return h, nil
}

// check validates the training data and counts positives.
func check(X [][]float32, y []bool) (pos int, err error) {
	if len(X) != len(y) {
		return 0, fmt.Errorf("head: %d feature rows but %d labels", len(X), len(y))
	}
	if len(X) == 0 {
		return 0, errors.New("head: no training samples")
	}
	f := len(X[0])
	if f == 0 {
		return 0, errors.New("head: feature rows are empty")
	}
	for i, x := range X {
		if len(x) != f {
			return 0, fmt.Errorf("head: row %d has %d features; row 0 has %d", i, len(x), f)
		}
		for j, v := range x {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return 0, fmt.Errorf("head: row %d feature %d is %v", i, j, v)
			}
		}
		if y[i] {
			pos++
		}
	}
	if pos == 0 || pos == len(y) {
		return 0, fmt.Errorf("head: %d samples with %d positives; training needs both classes", len(y), pos)
	}
	return pos, nil
}

func sigmoid(z float64) float64 {
	if z >= 0 {
		return 1 / (1 + math.Exp(-z))
	}
	e := math.Exp(z)
	return e / (1 + e)
}

// softplus(z) = log(1+e^z), stable for large |z|.
func softplus(z float64) float64 {
	if z > 0 {
		return z + math.Log1p(math.Exp(-z))
	}
	return math.Log1p(math.Exp(z))
}
