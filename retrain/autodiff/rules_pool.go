package autodiff

import "github.com/diagd/diagd/internal/onnx/build"

func init() {
	rules["MaxPool"] = rule{fn: ruleMaxPool}
	rules["AveragePool"] = rule{fn: ruleAveragePool}
}

// poolGeometry reads a 2-d pool's window.
func poolGeometry(c *ruleCtx) ([]int64, geometry) {
	x := c.wantRank(c.in(0), 4)
	g, err := readGeometry(c.a, c.a.ints("kernel_shape", nil), 2)
	if err == nil && g.autoPad != "NOTSET" && g.autoPad != "VALID" {
		c.fail("auto_pad", "%s is not supported (use explicit pads)", g.autoPad)
	}
	if err != nil {
		c.fail("kernel_shape", "%v", err)
	}
	return x, g
}

// ruleMaxPool scatters the output gradient onto the argmax positions the forward pass
// recorded (MaxPool's Indices output, flat over N·C·H·W), adding where windows overlap.
func ruleMaxPool(c *ruleCtx) {
	x, _ := poolGeometry(c)
	if so := c.a.int("storage_order", 0); so != 0 {
		c.fail("storage_order", "storage_order=%d (only row-major indices)", so)
	}
	if c.err != nil {
		return
	}
	if len(c.n.Output) < 2 || c.n.Output[1] == "" {
		c.fail("", "the forward MaxPool has no Indices output (internal error)")
		return
	}
	e := c.e()
	flat := e.op("ScatterElements", []string{e.zeros([]int64{numel(x)}), e.reshape(c.out(1), []int64{-1}),
		e.reshape(c.dy0(), []int64{-1})}, build.Int("axis", 0), build.String("reduction", "add"))
	c.dx[0] = e.reshape(flat, x)
}

// windowCount is how many elements of a window at output position o count towards the
// average: those inside the input, or (count_include_pad) inside input and padding.
func windowCount(o, in, k, stride, begin, end int64, includePad bool) int64 {
	lo, hi := o*stride-begin, o*stride-begin+k
	a, b := int64(0), in
	if includePad {
		a, b = -begin, in+end
	}
	return max(0, min(hi, b)-max(lo, a))
}

// ruleAveragePool spreads each output gradient evenly over its window: the gradient
// divided by the window's count, then a depthwise ConvTranspose with a kernel of ones.
func ruleAveragePool(c *ruleCtx) {
	x, g := poolGeometry(c)
	includePad := c.a.int("count_include_pad", 0) != 0
	if d := c.a.ints("dilations", nil); d != nil && (d[0] != 1 || d[1] != 1) {
		c.fail("dilations", "%v (only 1)", d)
	}
	y := c.shape(c.out(0))
	if c.err != nil {
		return
	}
	oh, ow := y[2], y[3]
	inv := make([]float64, oh*ow)
	for i := range oh {
		ch := windowCount(i, x[2], g.kernel[0], g.strides[0], g.pads[0], g.pads[2], includePad)
		for j := range ow {
			cw := windowCount(j, x[3], g.kernel[1], g.strides[1], g.pads[1], g.pads[3], includePad)
			if n := ch * cw; n > 0 {
				inv[i*ow+j] = 1 / float64(n)
			}
		}
	}
	e := c.e()
	kernel := make([]float64, x[1]*g.kernel[0]*g.kernel[1])
	for i := range kernel {
		kernel[i] = 1
	}
	w := e.floats([]int64{x[1], 1, g.kernel[0], g.kernel[1]}, kernel)
	scaled := e.mul(c.dy0(), e.floats([]int64{1, 1, oh, ow}, inv))
	endH, opH := transposedPads(x[2], oh, g.kernel[0], g.strides[0], 1, g.pads[0], g.pads[2])
	endW, opW := transposedPads(x[3], ow, g.kernel[1], g.strides[1], 1, g.pads[1], g.pads[3])
	c.dx[0] = e.op("ConvTranspose", []string{scaled, w},
		build.Ints("kernel_shape", g.kernel...), build.Ints("strides", g.strides...),
		build.Ints("pads", g.pads[0], g.pads[1], endH, endW), build.Ints("output_padding", opH, opW),
		build.Int("group", x[1]))
}
