// Package head trains the detector's last layer, Linear(F,1), on frozen backbone
// features, the way the paper trains its classifier (BCEWithLogits, Adam lr 1e-4,
// batch 32, 30 epochs, spec §1.6) but with the backbone fixed, and writes the trained
// weights back into a complete ONNX detector.
package head

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
)

// Imbalance names how class imbalance is handled.
type Imbalance string

const (
	// PosWeight scales the positive term of the BCE by neg/pos (PyTorch's pos_weight),
	// so both classes carry equal total weight in every epoch. It keeps every sample
	// and the paper's batch/epoch schedule; the default.
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

// Config is the optimisation recipe. Zero values take the paper's.
type Config struct {
	Epochs    int
	LR        float64
	Batch     int
	Seed      uint64
	Beta1     float64
	Beta2     float64
	Eps       float64
	Imbalance Imbalance
}

// WithDefaults fills the paper's values (spec §1.6).
func (c Config) WithDefaults() Config {
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
	if c.Imbalance == "" {
		c.Imbalance = PosWeight
	}
	return c
}

// Head is a trained Linear(F,1): logit = W·x + B.
type Head struct {
	W []float32
	B float32
	// PosWeight is the BCE weight used for positives (1 without weighting).
	PosWeight float64
	// Loss is the mean (weighted) training loss after each epoch.
	Loss []float64
}

// Logit applies the head to one feature vector in float64.
func (h *Head) Logit(x []float32) float64 {
	s := float64(h.B)
	for i, w := range h.W {
		s += float64(w) * float64(x[i])
	}
	return s
}

// Progress is reported after every epoch.
type Progress struct {
	Epoch, Epochs int
	Loss          float64
}

// Fit trains a head from init (nil: PyTorch's default Linear init, U(±1/sqrt(F)), from
// the seed). X rows must all have the same width; y holds the labels.
func Fit(ctx context.Context, X [][]float32, y []bool, init *Head, c Config, progress func(Progress)) (*Head, error) {
	c = c.WithDefaults()
	if len(X) != len(y) {
		return nil, fmt.Errorf("head: %d feature rows but %d labels", len(X), len(y))
	}
	if len(X) == 0 {
		return nil, errors.New("head: no training samples")
	}
	f := len(X[0])
	pos := 0
	for i, x := range X {
		if len(x) != f {
			return nil, fmt.Errorf("head: row %d has %d features; row 0 has %d", i, len(x), f)
		}
		for j, v := range x {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, fmt.Errorf("head: row %d feature %d is %v", i, j, v)
			}
		}
		if y[i] {
			pos++
		}
	}
	if pos == 0 || pos == len(y) {
		return nil, fmt.Errorf("head: %d samples with %d positives; training needs both classes", len(y), pos)
	}
	rng := rand.New(rand.NewPCG(c.Seed, 0x4ead))
	h := &Head{W: make([]float32, f), PosWeight: 1}
	// Parameters are kept in float64 for the update and rounded to float32 at the end,
	// which is what the ONNX file stores.
	w := make([]float64, f)
	b := 0.0
	if init != nil {
		if len(init.W) != f {
			return nil, fmt.Errorf("head: initial weights have %d inputs; features have %d", len(init.W), f)
		}
		for i, v := range init.W {
			w[i] = float64(v)
		}
		b = float64(init.B)
	} else {
		bound := 1 / math.Sqrt(float64(f))
		for i := range w {
			w[i] = (2*rng.Float64() - 1) * bound
		}
		b = (2*rng.Float64() - 1) * bound
	}
	if c.Imbalance == PosWeight {
		h.PosWeight = float64(len(y)-pos) / float64(pos)
	}
	// Adam state.
	mw, vw := make([]float64, f), make([]float64, f)
	var mb, vb float64
	gw := make([]float64, f)
	order := make([]int, len(X))
	for i := range order {
		order[i] = i
	}
	step := 0
	for ep := range c.Epochs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		epochLoss := 0.0
		for start := 0; start < len(order); start += c.Batch {
			batch := order[start:min(start+c.Batch, len(order))]
			clear(gw)
			gb := 0.0
			for _, i := range batch {
				x := X[i]
				z := b
				for j, v := range x {
					z += w[j] * float64(v)
				}
				// BCEWithLogits with pos_weight p: l = p·y·softplus(-z) + (1-y)·softplus(z);
				// dl/dz = p·y·(σ(z)-1) + (1-y)·σ(z).
				s := sigmoid(z)
				var g float64
				if y[i] {
					epochLoss += h.PosWeight * softplus(-z)
					g = h.PosWeight * (s - 1)
				} else {
					epochLoss += softplus(z)
					g = s
				}
				// reduction='mean' over the batch (PyTorch divides by the count, not the weights).
				g /= float64(len(batch))
				for j, v := range x {
					gw[j] += g * float64(v)
				}
				gb += g
			}
			step++
			bc1 := 1 - math.Pow(c.Beta1, float64(step))
			bc2 := 1 - math.Pow(c.Beta2, float64(step))
			for j := range w {
				mw[j] = c.Beta1*mw[j] + (1-c.Beta1)*gw[j]
				vw[j] = c.Beta2*vw[j] + (1-c.Beta2)*gw[j]*gw[j]
				w[j] -= c.LR * (mw[j] / bc1) / (math.Sqrt(vw[j]/bc2) + c.Eps)
			}
			mb = c.Beta1*mb + (1-c.Beta1)*gb
			vb = c.Beta2*vb + (1-c.Beta2)*gb*gb
			b -= c.LR * (mb / bc1) / (math.Sqrt(vb/bc2) + c.Eps)
		}
		h.Loss = append(h.Loss, epochLoss/float64(len(X)))
		if progress != nil {
			progress(Progress{Epoch: ep + 1, Epochs: c.Epochs, Loss: h.Loss[ep]})
		}
	}
	for j := range w {
		h.W[j] = float32(w[j])
	}
	h.B = float32(b)
	return h, nil
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
