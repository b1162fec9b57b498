package autodiff

import "github.com/diagd/diagd/internal/onnx/build"

// emitOptimizer declares the learning rate (and Adam's step count) and each parameter's
// optimizer state, and outputs every parameter's and state's next value. The formulas
// are PyTorch's (torch.optim.Adam, AdamW, SGD without dampening or Nesterov).
func (b *builder) emitOptimizer(grads map[string]string) {
	e, o := b.e, b.cfg.Optimizer
	e.scope = "opt/"
	lr := b.input(InputLR, RoleLR, one, "")
	// PyTorch: p −= lr/bc1 · m / (√v/√bc2 + eps). Multiplying through by √bc2 gives
	// p −= (lr·√bc2/bc1) · m / (√v + eps·√bc2): one activation-free scalar each, one pass
	// fewer per parameter.
	var stepSize, epsHat, decay string
	if o.Kind == Adam || o.Kind == AdamW {
		t := e.op("Cast", []string{b.input(InputStep, RoleStep, one, "")}, build.Int("to", int64(b.dt)))
		bc1 := e.sub(e.scalar(1), e.op("Pow", []string{e.scalar(o.Beta1), t}))
		sqrtBC2 := e.op("Sqrt", []string{e.sub(e.scalar(1), e.op("Pow", []string{e.scalar(o.Beta2), t}))})
		stepSize = e.div(e.mul(lr, sqrtBC2), bc1)
		epsHat = e.mul(e.scalar(o.Eps), sqrtBC2)
	}
	if o.Kind == AdamW && o.WeightDecay != 0 {
		decay = e.sub(e.scalar(1), e.mul(lr, e.scalar(o.WeightDecay)))
	}
	for _, p := range b.params {
		dims := b.inits[p].Dims
		state := map[string]string{}
		for _, suf := range o.stateSuffixes() {
			state[suf] = b.input(p+suf, RoleOptState, dims, p)
		}
		g := grads[p]
		if o.WeightDecay != 0 && o.Kind != AdamW {
			g = e.add(g, e.mul(p, e.scalar(o.WeightDecay)))
		}
		var next string
		switch o.Kind {
		case Adam, AdamW:
			m := e.add(e.mul(state[SuffixAdamM], e.scalar(o.Beta1)), e.mul(g, e.scalar(1-o.Beta1)))
			v := e.add(e.mul(state[SuffixAdamV], e.scalar(o.Beta2)), e.mul(e.mul(g, g), e.scalar(1-o.Beta2)))
			denom := e.add(e.op("Sqrt", []string{v}), epsHat)
			p0 := p
			if decay != "" {
				p0 = e.mul(p, decay)
			}
			next = e.sub(p0, e.mul(stepSize, e.div(m, denom)))
			b.output(m, p+SuffixAdamM+SuffixNext, RoleNext, dims, p+SuffixAdamM)
			b.output(v, p+SuffixAdamV+SuffixNext, RoleNext, dims, p+SuffixAdamV)
		case SGD:
			if o.Momentum != 0 {
				g = e.add(e.mul(state[SuffixMomentum], e.scalar(o.Momentum)), g)
				b.output(g, p+SuffixMomentum+SuffixNext, RoleNext, dims, p+SuffixMomentum)
			}
			next = e.sub(p, e.mul(lr, g))
		}
		b.output(next, p+SuffixNext, RoleNext, dims, p)
	}
}
