package autodiff

import (
	"math"
)

func init() {
	rules["Resize"] = rule{diff: []int{0}, fn: ruleResize}
}

// resizeMode is a Resize node's interpolation along each axis, as ORT computes it.
type resizeMode struct {
	linear  bool
	coord   string
	nearest string
}

func readResizeMode(c *ruleCtx) resizeMode {
	m := resizeMode{
		coord:   c.a.str("coordinate_transformation_mode", "half_pixel"),
		nearest: c.a.str("nearest_mode", "round_prefer_floor"),
	}
	switch mode := c.a.str("mode", "nearest"); mode {
	case "nearest":
	case "linear":
		m.linear = true
	default:
		c.fail("mode", "%q (only nearest and linear)", mode)
	}
	switch m.coord {
	case "half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn":
	default:
		c.fail("coordinate_transformation_mode", "%q is not supported", m.coord)
	}
	switch m.nearest {
	case "round_prefer_floor", "round_prefer_ceil", "floor", "ceil":
	default:
		c.fail("nearest_mode", "%q is not supported", m.nearest)
	}
	if c.a.int("exclude_outside", 0) != 0 {
		c.fail("exclude_outside", "only 0")
	}
	if c.a.int("antialias", 0) != 0 {
		c.fail("antialias", "only 0")
	}
	if c.a.has("axes") {
		c.fail("axes", "give scales or sizes for every axis")
	}
	if p := c.a.str("keep_aspect_ratio_policy", "stretch"); p != "stretch" {
		c.fail("keep_aspect_ratio_policy", "%q (only stretch)", p)
	}
	c.a.ignore("cubic_coeff_a", "extrapolation_value")
	return m
}

// original maps an output coordinate to the input, in float32 as ORT does.
func (m resizeMode) original(o, in, out int64, scale float32) float32 {
	x := float32(o)
	switch m.coord {
	case "asymmetric":
		return x / scale
	case "pytorch_half_pixel":
		if out <= 1 {
			return 0
		}
		return (x+0.5)/scale - 0.5
	case "align_corners":
		if out == 1 {
			return 0
		}
		return x * float32(in-1) / float32(out-1)
	case "tf_half_pixel_for_nn":
		return (x + 0.5) / scale
	}
	return (x+0.5)/scale - 0.5
}

func (m resizeMode) nearestIndex(x float32) int64 {
	switch m.nearest {
	case "floor":
		return int64(math.Floor(float64(x)))
	case "ceil":
		return int64(math.Ceil(float64(x)))
	case "round_prefer_ceil":
		return int64(math.Round(float64(x)))
	}
	if x == float32(int64(x))+0.5 {
		return int64(math.Floor(float64(x)))
	}
	return int64(math.Round(float64(x)))
}

// matrix is the interpolation along one axis as an [out, in] matrix: y = A·x.
func (m resizeMode) matrix(in, out int64, scale float32) []float64 {
	a := make([]float64, out*in)
	for o := range out {
		x := m.original(o, in, out, scale)
		if !m.linear {
			i := min(max(m.nearestIndex(x), 0), in-1)
			a[o*in+i] = 1
			continue
		}
		x = max(0, min(x, float32(in-1)))
		i1 := min(int64(x), in-1)
		i2 := min(i1+1, in-1)
		if i1 == i2 {
			a[o*in+i1] = 1
			continue
		}
		a[o*in+i1] += float64(float32(i2) - x)
		a[o*in+i2] += float64(x - float32(i1))
	}
	return a
}

// blockFactor returns f when the matrix maps output o to input o/f (nearest upsampling by
// an integer factor), else 0.
func blockFactor(a []float64, in, out int64) int64 {
	if out%in != 0 {
		return 0
	}
	f := out / in
	for o := range out {
		if a[o*in+o/f] != 1 {
			return 0
		}
	}
	return f
}

func isIdentity(a []float64, in, out int64) bool {
	return in == out && blockFactor(a, in, out) == 1
}

// ruleResize: the backward of a separable interpolation Y = A_h·X·A_wᵀ is A_hᵀ·dY·A_w.
// Nearest upsampling by integer factors sums blocks instead.
func ruleResize(c *ruleCtx) {
	x := c.wantRank(c.in(0), 4)
	mode := readResizeMode(c)
	if c.err != nil {
		return
	}
	out, scales, err := resizeScales(c.t.s, c.n, x)
	if err != nil {
		c.setErr(err)
		return
	}
	if out[0] != x[0] || out[1] != x[1] {
		c.fail("scales", "resizing the batch or channel axis (%v → %v)", x, out)
		return
	}
	ah := mode.matrix(x[2], out[2], scales[2])
	aw := mode.matrix(x[3], out[3], scales[3])
	e := c.e()
	fh, fw := blockFactor(ah, x[2], out[2]), blockFactor(aw, x[3], out[3])
	if fh > 0 && fw > 0 {
		g := e.reshape(c.dy0(), []int64{x[0], x[1], x[2], fh, x[3], fw})
		c.dx[0] = e.reduceSum(g, []int64{3, 5}, false)
		return
	}
	g := c.dy0()
	if !isIdentity(aw, x[3], out[3]) {
		g = e.op("MatMul", []string{g, e.floats([]int64{out[3], x[3]}, aw)})
	}
	if !isIdentity(ah, x[2], out[2]) {
		aht := make([]float64, len(ah))
		for o := range out[2] {
			for i := range x[2] {
				aht[i*out[2]+o] = ah[o*x[2]+i]
			}
		}
		g = e.op("MatMul", []string{e.floats([]int64{x[2], out[2]}, aht), g})
	}
	c.dx[0] = g
}
