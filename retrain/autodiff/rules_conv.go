package autodiff

import "github.com/diagd/diagd/internal/onnx/build"

func init() {
	rules["Conv"] = rule{fn: ruleConv}
}

// convShape reads a Conv node's geometry and checks what the rule supports.
func convShape(c *ruleCtx) (ConvShape, geometry) {
	x := c.wantRank(c.in(0), 4)
	w := c.wantRank(c.in(1), 4)
	y := c.shape(c.out(0))
	if c.err != nil {
		return ConvShape{}, geometry{}
	}
	kernel := c.a.ints("kernel_shape", w[2:])
	g, err := readGeometry(c.a, kernel, 2)
	if err == nil && g.autoPad != "NOTSET" && g.autoPad != "VALID" {
		c.fail("auto_pad", "%s is not supported (use explicit pads)", g.autoPad)
	}
	if err != nil {
		c.fail("kernel_shape", "%v", err)
		return ConvShape{}, g
	}
	if kernel[0] != w[2] || kernel[1] != w[3] {
		c.fail("kernel_shape", "%v differs from the weight's %v", kernel, w[2:])
	}
	group := c.a.int("group", 1)
	if group < 1 || x[1]%group != 0 || w[0]%group != 0 || w[1]*group != x[1] {
		c.fail("group", "group %d does not fit input %v and weight %v", group, x, w)
	}
	s := ConvShape{N: x[0], C: x[1], H: x[2], W: x[3], M: w[0], KH: w[2], KW: w[3], OH: y[2], OW: y[3],
		SH: g.strides[0], SW: g.strides[1], DH: g.dilations[0], DW: g.dilations[1],
		Pads: [4]int64{g.pads[0], g.pads[1], g.pads[2], g.pads[3]}, Group: group}
	return s, g
}

func ruleConv(c *ruleCtx) {
	s, _ := convShape(c)
	if c.err != nil {
		return
	}
	forms := c.t.forms.resolve(s)
	if c.t.chosen != nil {
		c.t.chosen[nodeName(c.n)] = ConvChoice{Shape: s, Forms: forms}
	}
	e := c.e()
	if len(c.n.Input) > 2 && c.need[2] {
		c.dx[2] = e.reduceSum(c.dy0(), []int64{0, 2, 3}, false)
	}
	if c.need[0] {
		c.dx[0] = convInputGrad(e, s, forms.Input, c.dy0(), c.in(1))
	}
	if c.need[1] {
		c.dx[1] = convWeightGrad(e, s, forms.Weight, c.in(0), c.dy0())
	}
}

// transposedPads returns the end pads and output_padding that make a ConvTranspose (or a
// transposed pooling) over an output of size out give back exactly size in.
func transposedPads(in, out, k, stride, dil, begin, end int64) (int64, int64) {
	full := (out-1)*stride - begin - end + dil*(k-1) + 1
	op := in - full
	if op < 0 { // ceil-mode windows ran past the input: crop them off the end
		return end - op, 0
	}
	return end, op
}

func convInputGrad(e *emitter, s ConvShape, form InputForm, dY, w string) string {
	if form == InputMatMul {
		return pointwiseInputGrad(e, s, dY, w)
	}
	endH, opH := transposedPads(s.H, s.OH, s.KH, s.SH, s.DH, s.Pads[0], s.Pads[2])
	endW, opW := transposedPads(s.W, s.OW, s.KW, s.SW, s.DW, s.Pads[1], s.Pads[3])
	return e.op("ConvTranspose", []string{dY, w},
		build.Ints("kernel_shape", s.KH, s.KW), build.Ints("strides", s.SH, s.SW),
		build.Ints("dilations", s.DH, s.DW), build.Ints("pads", s.Pads[0], s.Pads[1], endH, endW),
		build.Ints("output_padding", opH, opW), build.Int("group", s.Group))
}

// pointwiseInputGrad: dX = Wᵀ·dY per image; with a stride, each value goes to the first
// pixel of its stride cell (a Pad after a unit axis puts zeros in the others).
func pointwiseInputGrad(e *emitter, s ConvShape, dY, w string) string {
	wt := e.transpose(e.reshape(w, []int64{s.M, s.C}), 1, 0)
	g := e.op("MatMul", []string{wt, e.reshape(dY, []int64{s.N, s.M, s.OH * s.OW})})
	if s.SH == 1 && s.SW == 1 {
		return e.reshape(g, []int64{s.N, s.C, s.H, s.W})
	}
	g = e.reshape(g, []int64{s.N, s.C, s.OH, 1, s.OW, 1})
	g = e.op("Pad", []string{g, e.i64(0, 0, 0, 0, 0, 0, 0, 0, 0, s.SH-1, 0, s.SW-1)})
	g = e.reshape(g, []int64{s.N, s.C, s.OH * s.SH, s.OW * s.SW})
	if s.OH*s.SH != s.H || s.OW*s.SW != s.W {
		g = e.op("Slice", []string{g, e.i64(0, 0), e.i64(s.H, s.W), e.i64(2, 3)})
	}
	return g
}

func convWeightGrad(e *emitter, s ConvShape, form WeightForm, x, dY string) string {
	switch form {
	case WeightConv:
		return weightGradConv(e, s, x, dY)
	case WeightIm2col:
		return weightGradIm2col(e, s, x, dY)
	case WeightBatched:
		return weightGradBatched(e, s, x, dY)
	default:
		return weightGradGemm(e, s, x, dY)
	}
}

// weightGradConv: with X and dY transposed to channel-major ([C,N,H,W], [M,N,OH,OW]),
// dW is a Conv of X whose kernel is dY, with stride and dilation swapped.
func weightGradConv(e *emitter, s ConvShape, x, dY string) string {
	xt := e.transpose(x, 1, 0, 2, 3)
	dt := e.transpose(dY, 1, 0, 2, 3)
	r := e.op("Conv", []string{xt, dt},
		build.Ints("kernel_shape", s.OH, s.OW), build.Ints("strides", s.DH, s.DW),
		build.Ints("dilations", s.SH, s.SW), build.Ints("pads", s.Pads[:]...))
	kh := floorDiv(s.H+s.Pads[0]+s.Pads[2]-s.SH*(s.OH-1)-1, s.DH) + 1
	kw := floorDiv(s.W+s.Pads[1]+s.Pads[3]-s.SW*(s.OW-1)-1, s.DW) + 1
	if kh != s.KH || kw != s.KW {
		r = e.op("Slice", []string{r, e.i64(0, 0), e.i64(s.KH, s.KW), e.i64(2, 3)})
	}
	return e.transpose(r, 1, 0, 2, 3)
}

// offsetSlices returns the channel-major padded input and, per kernel offset (row-major),
// the strided slice of it that meets the output grid: [C, N, OH, OW] each.
func offsetSlices(e *emitter, s ConvShape, x string) []string {
	if s.Pads != [4]int64{} {
		x = e.op("Pad", []string{x, e.i64(0, 0, s.Pads[0], s.Pads[1], 0, 0, s.Pads[2], s.Pads[3])})
	}
	xt := e.transpose(x, 1, 0, 2, 3)
	hp, wp := s.H+s.Pads[0]+s.Pads[2], s.W+s.Pads[1]+s.Pads[3]
	var out []string
	for i := range s.KH {
		for j := range s.KW {
			h0, w0 := i*s.DH, j*s.DW
			h1, w1 := h0+s.SH*(s.OH-1)+1, w0+s.SW*(s.OW-1)+1
			if h0 == 0 && w0 == 0 && h1 == hp && w1 == wp && s.SH == 1 && s.SW == 1 {
				out = append(out, xt)
				continue
			}
			out = append(out, e.op("Slice", []string{xt, e.i64(h0, w0), e.i64(h1, w1), e.i64(2, 3), e.i64(s.SH, s.SW)}))
		}
	}
	return out
}

// weightGradGemm: dW[:,:,i,j] = dYᵀ-major [M, N·OH·OW] × slice_ijᵀ, one Gemm per offset.
func weightGradGemm(e *emitter, s ConvShape, x, dY string) string {
	np := s.N * s.OH * s.OW
	dt := e.transpose(dY, 1, 0, 2, 3)
	slices := offsetSlices(e, s, x)
	parts := make([]string, len(slices))
	g := s.Group
	d2 := e.reshape(dt, []int64{s.M, np})
	if g > 1 {
		d2 = e.reshape(dt, []int64{g, s.M / g, np})
	}
	for k, xs := range slices {
		if g == 1 {
			parts[k] = e.gemm(d2, e.reshape(xs, []int64{s.C, np}), false, true, 1)
			continue
		}
		x3 := e.transpose(e.reshape(xs, []int64{g, s.C / g, np}), 0, 2, 1)
		parts[k] = e.reshape(e.op("MatMul", []string{d2, x3}), []int64{s.M, s.C / g})
	}
	cg := s.C / s.Group
	if len(parts) == 1 {
		return e.reshape(parts[0], []int64{s.M, cg, 1, 1})
	}
	for k := range parts {
		parts[k] = e.reshape(parts[k], []int64{s.M, cg, 1})
	}
	return e.reshape(e.op("Concat", parts, build.Int("axis", 2)), []int64{s.M, cg, s.KH, s.KW})
}

// weightGradIm2col stacks every offset's slice into one [KH·KW·C, N·OH·OW] matrix.
func weightGradIm2col(e *emitter, s ConvShape, x, dY string) string {
	np := s.N * s.OH * s.OW
	dt := e.reshape(e.transpose(dY, 1, 0, 2, 3), []int64{s.M, np})
	slices := offsetSlices(e, s, x)
	for k, xs := range slices {
		slices[k] = e.reshape(xs, []int64{s.C, np})
	}
	cols := slices[0]
	if len(slices) > 1 {
		cols = e.op("Concat", slices, build.Int("axis", 0))
	}
	g := e.reshape(e.gemm(dt, cols, false, true, 1), []int64{s.M, s.KH, s.KW, s.C})
	return e.transpose(g, 0, 3, 1, 2)
}

// weightGradBatched: dW[:,:,i,j] = Σ_n dY_n · slice_ij(X)_nᵀ, batch-major throughout.
func weightGradBatched(e *emitter, s ConvShape, x, dY string) string {
	p := s.OH * s.OW
	if s.Pads != [4]int64{} {
		x = e.op("Pad", []string{x, e.i64(0, 0, s.Pads[0], s.Pads[1], 0, 0, s.Pads[2], s.Pads[3])})
	}
	hp, wp := s.H+s.Pads[0]+s.Pads[2], s.W+s.Pads[1]+s.Pads[3]
	g := s.Group
	d3 := e.reshape(dY, []int64{s.N * g, s.M / g, p})
	var parts []string
	for i := range s.KH {
		for j := range s.KW {
			h0, w0 := i*s.DH, j*s.DW
			h1, w1 := h0+s.SH*(s.OH-1)+1, w0+s.SW*(s.OW-1)+1
			xs := x
			if h0 != 0 || w0 != 0 || h1 != hp || w1 != wp || s.SH != 1 || s.SW != 1 {
				xs = e.op("Slice", []string{x, e.i64(h0, w0), e.i64(h1, w1), e.i64(2, 3), e.i64(s.SH, s.SW)})
			}
			xt := e.transpose(e.reshape(xs, []int64{s.N * g, s.C / g, p}), 0, 2, 1)
			prod := e.op("MatMul", []string{d3, xt}) // [N·g, M/g, C/g]
			sum := e.reduceSum(e.reshape(prod, []int64{s.N, s.M, s.C / g}), []int64{0}, false)
			parts = append(parts, e.reshape(sum, []int64{s.M, s.C / g, 1}))
		}
	}
	if len(parts) == 1 {
		return e.reshape(parts[0], []int64{s.M, s.C / g, 1, 1})
	}
	return e.reshape(e.op("Concat", parts, build.Int("axis", 2)), []int64{s.M, s.C / g, s.KH, s.KW})
}
