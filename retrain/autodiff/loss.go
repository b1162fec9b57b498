package autodiff

import (
	"fmt"

	"github.com/diagd/diagd/internal/onnx/build"
)

// bce emits binary cross-entropy with logits, elementwise, and its derivative:
// l = (1−y)·z + (1+(pw−1)·y)·softplus(−z),  dl/dz = σ(z)·(1+(pw−1)·y) − pw·y.
// softplus(−z) = relu(−z) + log(1+exp(−|z|)) stays finite for any z. With a weight map
// w both are multiplied by w. It returns the mean loss and the unscaled derivative.
func bce(e *emitter, z, y, w string, pw float64) (mean, dz string) {
	sp := e.add(e.op("Relu", []string{e.neg(z)}),
		e.op("Log", []string{e.add(e.scalar(1), e.op("Exp", []string{e.neg(e.op("Abs", []string{z}))}))}))
	l := e.mul(e.sub(e.scalar(1), y), z)
	sig := e.op("Sigmoid", []string{z})
	if pw == 1 {
		l = e.add(l, sp)
		dz = e.sub(sig, y)
	} else {
		wpos := e.add(e.scalar(1), e.mul(y, e.scalar(pw-1)))
		l = e.add(l, e.mul(wpos, sp))
		dz = e.sub(e.mul(sig, wpos), e.mul(y, e.scalar(pw)))
	}
	if w != "" {
		l, dz = e.mul(l, w), e.mul(dz, w)
	}
	return e.op("ReduceMean", []string{l}, build.Int("keepdims", 0)), dz
}

// one is the shape of the graph's scalar inputs and outputs: [1] rather than 0-d, which
// onnxruntime_go's tensors cannot express.
var one = []int64{1}

// emitLoss emits the configured loss and returns the gradient seeds for the logits.
func (b *builder) emitLoss() (map[string]string, error) {
	e, L := b.e, b.cfg.Loss
	e.scope = "loss/"
	scale := b.input(InputLossScale, RoleLossScale, one, "")
	both := L.Logit != "" && L.PixelLogit != ""
	var wPix, wImg string
	if both {
		wPix = b.input(InputPixelLossW, RoleLossWeight, one, "")
		wImg = b.input(InputImageLossW, RoleLossWeight, one, "")
	}
	seeds := map[string]string{}
	var total []string
	if L.Logit != "" {
		sh, ok := b.s.shape[L.Logit]
		n := int64(b.cfg.Batch)
		if !ok || !(sameShape(sh, []int64{n}) || sameShape(sh, []int64{n, 1})) {
			return nil, fmt.Errorf("autodiff: image logit %q must have shape [%d] or [%d,1], has %v %s", L.Logit, n, n, sh, b.s.why[L.Logit])
		}
		y := b.input(InputLabels, RoleLabels, []int64{n}, "")
		mean, dz := bce(e, e.reshape(L.Logit, []int64{n}), y, "", L.posWeight())
		seeds[L.Logit] = e.reshape(e.mul(dz, b.lossFactor(scale, wImg, n)), sh)
		total = append(total, b.weighted(mean, wImg))
		if both {
			b.output(e.reshape(mean, one), OutputImageLoss, RoleLoss, one, "")
		}
	}
	if L.PixelLogit != "" {
		sh, ok := b.s.shape[L.PixelLogit]
		if !ok {
			return nil, fmt.Errorf("autodiff: pixel logit %q: shape unknown (%s)", L.PixelLogit, b.s.why[L.PixelLogit])
		}
		t := b.input(InputPixelTargets, RolePixelTarget, sh, "")
		w := b.input(InputPixelWeights, RolePixelWeight, sh, "")
		mean, dz := bce(e, L.PixelLogit, t, w, 1)
		seeds[L.PixelLogit] = e.mul(dz, b.lossFactor(scale, wPix, numel(sh)))
		total = append(total, b.weighted(mean, wPix))
		if both {
			b.output(e.reshape(mean, one), OutputPixelLoss, RoleLoss, one, "")
		}
	}
	b.output(e.mul(scale, e.sum(total)), OutputLoss, RoleLoss, one, "")
	return seeds, e.err
}

// lossFactor is the scalar that turns a per-element derivative into the derivative of
// scale·w·mean: scale·w/count.
func (b *builder) lossFactor(scale, w string, count int64) string {
	f := b.e.mul(scale, b.e.scalar(1/float64(count)))
	if w != "" {
		f = b.e.mul(f, w)
	}
	return f
}

func (b *builder) weighted(v, w string) string {
	if w == "" {
		return v
	}
	return b.e.mul(v, w)
}
