package autodiff

func init() {
	rules["Identity"] = rule{fn: func(c *ruleCtx) { c.dx[0] = c.dy0() }}
	rules["Add"] = rule{fn: ruleAddSub(false)}
	rules["Sub"] = rule{fn: ruleAddSub(true)}
	rules["Mul"] = rule{fn: ruleMul}
	rules["Div"] = rule{fn: ruleDiv}
	rules["Neg"] = rule{fn: func(c *ruleCtx) { c.dx[0] = c.e().neg(c.dy0()) }}
	rules["Relu"] = rule{fn: ruleRelu}
	rules["LeakyRelu"] = rule{fn: ruleLeakyRelu}
	rules["Sigmoid"] = rule{fn: ruleSigmoid}
	rules["Sum"] = rule{fn: ruleSum}
}

// binaryShapes returns the shapes of a broadcasting binary node's operands and output.
func (c *ruleCtx) binaryShapes() (a, b, z []int64) {
	return c.shape(c.in(0)), c.shape(c.in(1)), c.shape(c.out(0))
}

func ruleAddSub(sub bool) func(c *ruleCtx) {
	return func(c *ruleCtx) {
		a, b, z := c.binaryShapes()
		e := c.e()
		if c.need[0] {
			c.dx[0] = e.unbroadcast(c.dy0(), z, a)
		}
		if c.need[1] {
			g := e.unbroadcast(c.dy0(), z, b)
			if sub {
				g = e.neg(g)
			}
			c.dx[1] = g
		}
	}
}

func ruleSum(c *ruleCtx) {
	z := c.shape(c.out(0))
	for i := range c.n.Input {
		if c.need[i] {
			c.dx[i] = c.e().unbroadcast(c.dy0(), z, c.shape(c.in(i)))
		}
	}
}

func ruleMul(c *ruleCtx) {
	a, b, z := c.binaryShapes()
	e := c.e()
	if c.need[0] {
		c.dx[0] = e.unbroadcast(e.mul(c.dy0(), c.in(1)), z, a)
	}
	if c.need[1] {
		c.dx[1] = e.unbroadcast(e.mul(c.dy0(), c.in(0)), z, b)
	}
}

// ruleDiv: z = a/b, dz/da = 1/b, dz/db = -z/b.
func ruleDiv(c *ruleCtx) {
	a, b, z := c.binaryShapes()
	e := c.e()
	if c.need[0] {
		c.dx[0] = e.unbroadcast(e.div(c.dy0(), c.in(1)), z, a)
	}
	if c.need[1] {
		c.dx[1] = e.neg(e.unbroadcast(e.div(e.mul(c.dy0(), c.out(0)), c.in(1)), z, b))
	}
}

// ruleRelu passes the gradient where the output is positive (0 at the kink, as PyTorch).
func ruleRelu(c *ruleCtx) {
	e := c.e()
	pos := e.op("Greater", []string{c.out(0), e.scalar(0)})
	c.dx[0] = e.op("Where", []string{pos, c.dy0(), e.scalar(0)})
}

func ruleLeakyRelu(c *ruleCtx) {
	alpha := c.a.float("alpha", 0.01)
	e := c.e()
	pos := e.op("Greater", []string{c.in(0), e.scalar(0)})
	c.dx[0] = e.op("Where", []string{pos, c.dy0(), e.mul(c.dy0(), e.scalar(float64(alpha)))})
}

// ruleSigmoid: dσ/dx = σ(1-σ), from the saved output.
func ruleSigmoid(c *ruleCtx) {
	e := c.e()
	y := c.out(0)
	c.dx[0] = e.mul(c.dy0(), e.mul(y, e.sub(e.scalar(1), y)))
}
