package autodiff

import "github.com/diagd/diagd/internal/onnx/build"

func init() {
	rules["ReduceMean"] = rule{diff: []int{0}, fn: func(c *ruleCtx) { ruleReduce(c, false) }}
	rules["ReduceSum"] = rule{diff: []int{0}, fn: func(c *ruleCtx) { ruleReduce(c, false) }}
	rules["ReduceMax"] = rule{diff: []int{0}, fn: func(c *ruleCtx) { ruleReduce(c, true) }}
	rules["GlobalAveragePool"] = rule{fn: func(c *ruleCtx) { ruleGlobalPool(c, false) }}
	rules["GlobalMaxPool"] = rule{fn: func(c *ruleCtx) { ruleGlobalPool(c, true) }}
}

// ruleReduce handles ReduceMean, ReduceSum and ReduceMax over constant axes.
func ruleReduce(c *ruleCtx, isMax bool) {
	x := c.shape(c.in(0))
	axes, _, err := reduceAxes(c.t.s, c.n, c.a, len(x))
	if err != nil {
		c.setErr(unsupported(c.n, "axes", "%v", err))
		return
	}
	kept := reducedShape(x, axes, true)
	if isMax {
		c.dx[0] = maxGrad(c, x, kept, axes)
		return
	}
	e := c.e()
	g := e.reshape(c.dy0(), kept)
	if c.n.GetOpType() == "ReduceMean" {
		g = e.mul(g, e.scalar(float64(numel(kept))/float64(numel(x))))
	}
	c.dx[0] = e.op("Expand", []string{g, e.i64(x...)})
}

// maxGrad routes the gradient of a max to the positions that hold it, split evenly
// between ties (a valid subgradient; ties are common after Relu).
func maxGrad(c *ruleCtx, x, kept, axes []int64) string {
	e := c.e()
	y := e.reshape(c.out(0), kept)
	hit := e.op("Equal", []string{c.in(0), y})
	count := e.reduceSum(e.op("Cast", []string{hit}, build.Int("to", int64(e.dt))), axes, true)
	share := e.div(e.reshape(c.dy0(), kept), count)
	return e.op("Where", []string{hit, share, e.scalar(0)})
}

func ruleGlobalPool(c *ruleCtx, isMax bool) {
	x := c.wantRank(c.in(0), 3, 4, 5)
	var axes []int64
	for i := 2; i < len(x); i++ {
		axes = append(axes, int64(i))
	}
	kept := reducedShape(x, axes, true)
	if isMax {
		c.dx[0] = maxGrad(c, x, kept, axes)
		return
	}
	e := c.e()
	g := e.mul(c.dy0(), e.scalar(float64(numel(kept))/float64(numel(x))))
	c.dx[0] = e.op("Expand", []string{g, e.i64(x...)})
}
