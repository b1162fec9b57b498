package autodiff

import (
	"math"
	"testing"

	"github.com/diagd/diagd/internal/onnx/build"
)

func sigmoid(z float64) float64 { return 1 / (1 + math.Exp(-z)) }

// softplus(z) = log(1+e^z), computed without overflow.
func softplus(z float64) float64 { return max(z, 0) + math.Log1p(math.Exp(-math.Abs(z))) }

// bceRef is PyTorch's BCEWithLogits with pos_weight for one element, and its derivative.
func bceRef(z, y, pw float64) (l, dz float64) {
	l = pw*y*softplus(-z) + (1-y)*softplus(z)
	return l, sigmoid(z)*(pw*y+1-y) - pw*y
}

func near(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if math.Abs(got-want) > tol*max(1, math.Abs(want)) || math.IsNaN(got) {
		t.Errorf("%s: got %.9g, want %.9g", what, got, want)
	}
}

// Image-level BCE with pos_weight: the loss and the gradient an SGD step with lr 1 takes
// (w − w.next) match a hand computation, including logits far into the tails.
func TestImageBCEByHand(t *testing.T) {
	const n, d, pw = 6, 3, 3.0
	g := build.New("lin")
	x := g.Input("x", build.Float, "batch", d)
	w := []float32{0.5, -1, 2}
	g.Identity(g.Gemm(x, g.Init("w", []int64{1, d}, w), g.Init("b", []int64{1}, []float32{0.25})), "logit")
	g.Output("logit", build.Float, "batch", 1)
	m, err := g.Model()
	if err != nil {
		t.Fatal(err)
	}
	prog, err := BuildStep(m, Config{Trainable: []string{"w", "b"}, Batch: n, Loss: Loss{Logit: "logit", PosWeight: pw},
		Optimizer: Optimizer{Kind: SGD}})
	if err != nil {
		t.Fatal(err)
	}
	xs := []float64{1, 0, 0, 0, 1, 0, 0, 0, 1, 200, 0, 0, -300, 0, 0, 0.1, 0.2, -0.3}
	ys := []float64{1, 0, 1, 0, 1, 0}
	out := openProgram(t, prog).run(map[string][]float64{"x": xs, InputLabels: ys, InputLossScale: {1}, InputLR: {1},
		"w": {0.5, -1, 2}, "b": {0.25}})
	var loss float64
	gw := make([]float64, d)
	var gb float64
	for i := range n {
		z := 0.25
		for j := range d {
			z += float64(w[j]) * xs[i*d+j]
		}
		near(t, "logit", out["logit"][i], z, 1e-5)
		l, dz := bceRef(z, ys[i], pw)
		loss += l / n
		for j := range d {
			gw[j] += dz * xs[i*d+j] / n
		}
		gb += dz / n
	}
	near(t, "loss", out[OutputLoss][0], loss, 1e-5)
	for j := range d {
		near(t, "dL/dw", float64(w[j])-out["w"+SuffixNext][j], gw[j], 1e-5)
	}
	near(t, "dL/db", 0.25-out["b"+SuffixNext][0], gb, 1e-5)
}

// Per-pixel BCE with a weight map plus image BCE, weighted a and b, scaled by the
// micro-batch share: loss and gradient by hand. seg = w·x + c; logit = mean over pixels.
func TestPixelAndImageBCEByHand(t *testing.T) {
	const n, h, wd = 2, 3, 4
	const a, b, scale, wv, cv = 0.7, 1.3, 0.5, 0.8, -0.2
	g := build.New("seg")
	x := g.Input("x", build.Float, "batch", 1, h, wd)
	seg := g.Identity(g.Add(g.Mul(x, g.Init("w", []int64{1}, []float32{wv})), g.Init("c", []int64{1}, []float32{cv})), "seg")
	g.Identity(g.Flatten(g.GlobalAveragePool(seg), 1), "logit")
	g.Output("seg", build.Float, "batch", 1, h, wd)
	g.Output("logit", build.Float, "batch", 1)
	m, err := g.Model()
	if err != nil {
		t.Fatal(err)
	}
	prog, err := BuildStep(m, Config{Trainable: []string{"w", "c"}, Batch: n, Loss: Loss{Logit: "logit", PixelLogit: "seg"},
		Optimizer: Optimizer{Kind: SGD}})
	if err != nil {
		t.Fatal(err)
	}
	f := newFD(build.Float, 3)
	rnd := func(k int, lo, hi float64) []float64 {
		v := make([]float64, k)
		for i := range v {
			v[i] = float64(float32(lo + (hi-lo)*f.rng.Float64()))
		}
		return v
	}
	P := n * h * wd
	xs, tg, pw := rnd(P, -3, 3), rnd(P, 0, 1), rnd(P, 0, 2)
	ys := []float64{1, 0}
	out := openProgram(t, prog).run(map[string][]float64{"x": xs, InputLabels: ys, InputPixelTargets: tg, InputPixelWeights: pw,
		InputLossScale: {scale}, InputPixelLossW: {a}, InputImageLossW: {b}, InputLR: {1}, "w": {wv}, "c": {cv}})
	w32, c32 := float64(float32(wv)), float64(float32(cv))
	var lp, li, gw, gc float64
	for p := range P {
		z := w32*xs[p] + c32
		l, dz := bceRef(z, tg[p], 1)
		lp += pw[p] * l / float64(P)
		gw += scale * a * pw[p] * dz * xs[p] / float64(P)
		gc += scale * a * pw[p] * dz / float64(P)
	}
	for i := range n {
		var z, mx float64
		for p := i * h * wd; p < (i+1)*h*wd; p++ {
			z += (w32*xs[p] + c32) / (h * wd)
			mx += xs[p] / (h * wd)
		}
		l, dz := bceRef(z, ys[i], 1)
		li += l / n
		gw += scale * b * dz * mx / n
		gc += scale * b * dz / n
	}
	near(t, "pixel loss", out[OutputPixelLoss][0], lp, 1e-5)
	near(t, "image loss", out[OutputImageLoss][0], li, 1e-5)
	near(t, "loss", out[OutputLoss][0], scale*(a*lp+b*li), 1e-5)
	near(t, "dL/dw", w32-out["w"+SuffixNext][0], gw, 1e-5)
	near(t, "dL/dc", c32-out["c"+SuffixNext][0], gc, 1e-5)
}
