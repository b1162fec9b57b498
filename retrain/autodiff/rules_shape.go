package autodiff

import "github.com/diagd/diagd/internal/onnx/build"

func init() {
	rules["Flatten"] = rule{diff: []int{0}, fn: func(c *ruleCtx) {
		c.a.ignore("axis")
		c.dx[0] = c.e().reshape(c.dy0(), c.shape(c.in(0)))
	}}
	rules["Reshape"] = rule{diff: []int{0}, fn: func(c *ruleCtx) {
		c.a.ignore("allowzero")
		c.dx[0] = c.e().reshape(c.dy0(), c.shape(c.in(0)))
	}}
	rules["Squeeze"] = rule{diff: []int{0}, fn: func(c *ruleCtx) {
		c.a.ignore("axes")
		c.dx[0] = c.e().reshape(c.dy0(), c.shape(c.in(0)))
	}}
	rules["Unsqueeze"] = rules["Squeeze"]
	rules["Transpose"] = rule{fn: ruleTranspose}
	rules["Concat"] = rule{fn: ruleConcat}
	rules["Split"] = rule{diff: []int{0}, fn: ruleSplit}
	rules["Slice"] = rule{diff: []int{0}, fn: ruleSlice}
}

func ruleTranspose(c *ruleCtx) {
	x := c.shape(c.in(0))
	perm := transposePerm(c.a, len(x))
	inv := make([]int64, len(perm))
	for i, p := range perm {
		inv[p] = int64(i)
	}
	c.dx[0] = c.e().transpose(c.dy0(), inv...)
}

// ruleConcat splits the output gradient back into the inputs' pieces.
func ruleConcat(c *ruleCtx) {
	z := c.shape(c.out(0))
	axes, err := normAxes([]int64{c.a.int("axis", 0)}, len(z))
	if err != nil {
		c.fail("axis", "%v", err)
		return
	}
	var sizes []int64
	outs := make([]string, len(c.n.Input))
	for i, in := range c.n.Input {
		sizes = append(sizes, c.shape(in)[axes[0]])
		outs[i] = c.e().fresh("concat_grad")
	}
	e := c.e()
	e.node("Split", []string{c.dy0(), e.i64(sizes...)}, outs, build.Int("axis", axes[0]))
	for i := range outs {
		if c.need[i] {
			c.dx[i] = outs[i]
		}
	}
}

// ruleSplit concatenates the pieces' gradients, with zeros for pieces nobody used.
func ruleSplit(c *ruleCtx) {
	x := c.shape(c.in(0))
	ax, _, err := splitSizes(c.t.s, c.n, c.a, x)
	c.a.ignore("num_outputs")
	if err != nil {
		c.setErr(unsupported(c.n, "split", "%v", err))
		return
	}
	parts := make([]string, len(c.dy))
	for i, g := range c.dy {
		if g == "" {
			g = c.e().zeros(c.shape(c.out(i)))
		}
		parts[i] = g
	}
	c.dx[0] = c.e().op("Concat", parts, build.Int("axis", ax))
}

// ruleSlice pads the gradient back to the input's shape (unit steps only).
func ruleSlice(c *ruleCtx) {
	x := c.shape(c.in(0))
	sp, err := resolveSlice(c.t.s, c.n, x)
	if err != nil {
		c.setErr(err)
		return
	}
	pads := make([]int64, 2*len(x))
	for ax := range x {
		if sp.step[ax] != 1 {
			c.fail("steps", "step %d on axis %d (only steps of 1 are differentiated)", sp.step[ax], ax)
			return
		}
		pads[ax] = sp.start[ax]
		pads[len(x)+ax] = x[ax] - sp.start[ax] - sp.count[ax]
	}
	e := c.e()
	c.dx[0] = e.op("Pad", []string{c.dy0(), e.i64(pads...)})
}
