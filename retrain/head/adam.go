package head

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
)

// adamConvergedRel is the relative change of the epoch loss over the last
// adamWindow epochs under which an Adam run is reported as converged.
const (
	adamConvergedRel = 1e-3
	adamWindow       = 5
)

// adam holds the optimiser's state for weights w and bias b.
type adam struct {
	c          Config
	mw, vw, gw []float64
	mb, vb     float64
	step       int
}

func (a *adam) update(w []float64, b *float64, gb float64) {
	c := a.c
	a.step++
	bc1 := 1 - math.Pow(c.Beta1, float64(a.step))
	bc2 := 1 - math.Pow(c.Beta2, float64(a.step))
	for j := range w {
		a.mw[j] = c.Beta1*a.mw[j] + (1-c.Beta1)*a.gw[j]
		a.vw[j] = c.Beta2*a.vw[j] + (1-c.Beta2)*a.gw[j]*a.gw[j]
		w[j] -= c.LR * (a.mw[j] / bc1) / (math.Sqrt(a.vw[j]/bc2) + c.Eps)
	}
	a.mb = c.Beta1*a.mb + (1-c.Beta1)*gb
	a.vb = c.Beta2*a.vb + (1-c.Beta2)*gb*gb
	*b -= c.LR * (a.mb / bc1) / (math.Sqrt(a.vb/bc2) + c.Eps)
}

// fitAdam is the paper's recipe on standardised rows Z: BCE-with-logits with pos_weight
// pw, reduction 'mean' over each minibatch, Adam. It returns weights on Z.
func fitAdam(ctx context.Context, Z [][]float64, y []bool, pw float64, init *Head, c Config, progress func(Progress)) ([]float64, float64, Report, []float64, error) {
	f := len(Z[0])
	rng := rand.New(rand.NewPCG(c.Seed, 0x4ead))
	w, b, err := adamInit(f, init, rng)
	if err != nil {
		return nil, 0, Report{}, nil, err
	}
	a := &adam{c: c, mw: make([]float64, f), vw: make([]float64, f), gw: make([]float64, f)}
	order := allRows(len(Z))
	var losses []float64
	for ep := range c.Epochs {
		if err := ctx.Err(); err != nil {
			return nil, 0, Report{}, nil, err
		}
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		epochLoss := 0.0
		for start := 0; start < len(order); start += c.Batch {
			batch := order[start:min(start+c.Batch, len(order))]
			clear(a.gw)
			gb := 0.0
			for _, i := range batch {
				l, g := bceTerm(Z[i], w, b, y[i], pw)
				epochLoss += l
				g /= float64(len(batch)) // PyTorch divides by the count, not the weights
				for j, v := range Z[i] {
					a.gw[j] += g * v
				}
				gb += g
			}
			a.update(w, &b, gb)
		}
		losses = append(losses, epochLoss/float64(len(Z)))
		if progress != nil {
			progress(Progress{Step: ep + 1, Steps: c.Epochs, Loss: losses[ep]})
		}
	}
	return w, b, adamReport(losses, a), losses, nil
}

func adamInit(f int, init *Head, rng *rand.Rand) ([]float64, float64, error) {
	w := make([]float64, f)
	if init != nil {
		if len(init.W) != f {
			return nil, 0, fmt.Errorf("head: initial weights have %d inputs; features have %d", len(init.W), f)
		}
		for i, v := range init.W {
			w[i] = float64(v)
		}
		return w, float64(init.B), nil
	}
	bound := 1 / math.Sqrt(float64(f))
	for i := range w {
		w[i] = (2*rng.Float64() - 1) * bound
	}
	return w, (2*rng.Float64() - 1) * bound, nil
}

// bceTerm is one sample's BCEWithLogits with pos_weight p and its derivative in the
// logit: l = p·y·softplus(-z) + (1-y)·softplus(z); dl/dz = p·y·(σ(z)-1) + (1-y)·σ(z).
func bceTerm(x, w []float64, b float64, y bool, p float64) (loss, grad float64) {
	z := b
	for j, v := range x {
		z += w[j] * v
	}
	s := sigmoid(z)
	if y {
		return p * softplus(-z), p * (s - 1)
	}
	return softplus(z), s
}

// adamReport calls a run converged when its epoch loss moved by less than
// adamConvergedRel (relative) over the last adamWindow epochs: Adam has no gradient
// test, and a loss still falling means more epochs would change the model.
func adamReport(losses []float64, a *adam) Report {
	r := Report{Iterations: len(losses), FinalLoss: losses[len(losses)-1], Status: "epoch limit"}
	gn := 0.0
	for _, g := range a.gw {
		gn = max(gn, math.Abs(g))
	}
	r.GradNorm = gn // of the last minibatch
	if len(losses) > adamWindow {
		prev := losses[len(losses)-1-adamWindow]
		if math.Abs(prev-r.FinalLoss) <= adamConvergedRel*max(math.Abs(prev), 1e-12) {
			r.Converged, r.Status = true, "loss stable"
		}
	}
	return r
}
