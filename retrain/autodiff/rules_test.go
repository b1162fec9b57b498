package autodiff

import (
	"testing"

	"github.com/diagd/diagd/internal/onnx/build"
)

// Convolutions are float32-only in ORT's CPU provider; they are bilinear in input and
// weight, so central differences are exact up to rounding and a large step is safe.
func TestConvGradients(t *testing.T) {
	type conv struct {
		name          string
		x, w          []int64
		strides, pads []int64
		dil           []int64
		group         int64
		bias          bool
	}
	cases := []conv{
		{name: "3x3 stride 2 pad 1 odd sizes", x: []int64{2, 3, 7, 9}, w: []int64{4, 3, 3, 3}, strides: []int64{2, 2}, pads: []int64{1, 1, 1, 1}, bias: true},
		{name: "3x3 stride 1 pad 1", x: []int64{2, 4, 6, 5}, w: []int64{3, 4, 3, 3}, strides: []int64{1, 1}, pads: []int64{1, 1, 1, 1}},
		{name: "7x7 stride 2 pad 3 stem", x: []int64{2, 3, 11, 13}, w: []int64{4, 3, 7, 7}, strides: []int64{2, 2}, pads: []int64{3, 3, 3, 3}},
		{name: "1x1 stride 1", x: []int64{2, 5, 4, 3}, w: []int64{6, 5, 1, 1}, strides: []int64{1, 1}, pads: []int64{0, 0, 0, 0}, bias: true},
		{name: "1x1 stride 2 downsample", x: []int64{2, 5, 7, 6}, w: []int64{3, 5, 1, 1}, strides: []int64{2, 2}, pads: []int64{0, 0, 0, 0}},
		{name: "asymmetric pads and strides", x: []int64{1, 2, 8, 7}, w: []int64{3, 2, 3, 2}, strides: []int64{3, 2}, pads: []int64{0, 1, 2, 1}},
		{name: "dilation 2", x: []int64{2, 2, 9, 8}, w: []int64{2, 2, 3, 3}, strides: []int64{1, 2}, pads: []int64{2, 1, 2, 1}, dil: []int64{2, 2}},
		{name: "group 2", x: []int64{2, 4, 6, 6}, w: []int64{6, 2, 3, 3}, strides: []int64{2, 2}, pads: []int64{1, 1, 1, 1}, group: 2, bias: true},
	}
	policies := map[string]ConvPolicy{
		"conv":    func(ConvShape) ConvForms { return ConvForms{Weight: WeightConv} },
		"gemm":    func(ConvShape) ConvForms { return ConvForms{Weight: WeightGemm, Input: InputMatMul} },
		"im2col":  func(ConvShape) ConvForms { return ConvForms{Weight: WeightIm2col} },
		"batched": func(ConvShape) ConvForms { return ConvForms{Weight: WeightBatched} },
	}
	for _, c := range cases {
		for pname, pol := range policies {
			t.Run(c.name+"/"+pname, func(t *testing.T) {
				f := newFD(build.Float, 1)
				x := f.param("x", 1, 0, c.x...)
				w := f.param("w", 0.5, 0, c.w...)
				in := []string{x, w}
				if c.bias {
					in = append(in, f.param("b", 1, 0, c.w[0]))
				}
				dil := c.dil
				if dil == nil {
					dil = []int64{1, 1}
				}
				group := max(c.group, 1)
				y := f.g.Op("Conv", in, build.Ints("kernel_shape", c.w[2:]...), build.Ints("strides", c.strides...),
					build.Ints("pads", c.pads...), build.Ints("dilations", dil...), build.Int("group", group))
				f.check(t, y, fdOpts{policy: pol, h: 0.05, tol: 2e-3})
			})
		}
	}
}

// rulesCase builds one op (or a few) on trainable operands and names the output.
type rulesCase struct {
	name  string
	dt    build.DType
	opts  fdOpts
	build func(f *fdGraph) string
}

func runCases(t *testing.T, cases []rulesCase) {
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFD(c.dt, uint64(i+7))
			f.check(t, c.build(f), c.opts)
		})
	}
}

func TestElementwiseGradients(t *testing.T) {
	D := build.Double
	runCases(t, []rulesCase{
		{"relu", D, fdOpts{}, func(f *fdGraph) string { return f.g.Relu(f.param("x", 1, 0, 2, 3, 4)) }},
		{"leaky relu", D, fdOpts{}, func(f *fdGraph) string {
			return f.g.Op("LeakyRelu", []string{f.param("x", 1, 0, 2, 3, 4)}, build.Float32("alpha", 0.2))
		}},
		{"sigmoid", D, fdOpts{}, func(f *fdGraph) string { return f.g.Sigmoid(f.param("x", 2, 0, 3, 5)) }},
		{"identity", D, fdOpts{}, func(f *fdGraph) string { return f.g.Op("Identity", []string{f.param("x", 1, 0, 3, 2)}) }},
		{"add broadcast", D, fdOpts{}, func(f *fdGraph) string {
			return f.g.Add(f.param("a", 1, 0, 2, 3, 4, 5), f.param("b", 1, 0, 3, 1, 5))
		}},
		{"sub broadcast both ways", D, fdOpts{}, func(f *fdGraph) string {
			return f.g.Op("Sub", []string{f.param("a", 1, 0, 2, 1, 4), f.param("b", 1, 0, 3, 1)})
		}},
		{"mul broadcast", D, fdOpts{}, func(f *fdGraph) string {
			return f.g.Mul(f.param("a", 1, 0, 2, 3, 4), f.param("b", 1, 0, 3, 1))
		}},
		{"div broadcast", D, fdOpts{}, func(f *fdGraph) string {
			return f.g.Op("Div", []string{f.param("a", 1, 0, 2, 3, 4), f.param("b", 0.2, 2, 4)})
		}},
		{"same operand twice", D, fdOpts{}, func(f *fdGraph) string {
			x := f.param("x", 1, 0, 3, 4)
			return f.g.Mul(x, f.g.Sigmoid(x))
		}},
	})
}

func TestShapeGradients(t *testing.T) {
	D := build.Double
	runCases(t, []rulesCase{
		{"concat", D, fdOpts{}, func(f *fdGraph) string {
			return f.g.Op("Concat", []string{f.param("a", 1, 0, 2, 3, 4), f.param("b", 1, 0, 2, 1, 4)}, build.Int("axis", -2))
		}},
		{"slice negative bounds", D, fdOpts{}, func(f *fdGraph) string {
			x := f.param("x", 1, 0, 3, 5, 6)
			return f.g.Op("Slice", []string{x, f.g.Const([]int64{2}, []int64{1, -5}), f.g.Const([]int64{2}, []int64{100, -1}),
				f.g.Const([]int64{2}, []int64{1, 2})})
		}},
		{"split with an unused piece", D, fdOpts{}, func(f *fdGraph) string {
			x := f.param("x", 1, 0, 2, 5, 3)
			f.g.Node("Split", []string{x, f.g.Const([]int64{3}, []int64{1, 3, 1})}, []string{"s0", "s1", "s2"}, build.Int("axis", 1))
			return f.g.Mul(f.g.Op("Concat", []string{"s0", "s2"}, build.Int("axis", 1)), f.param("w", 1, 0, 2, 2, 3))
		}},
		{"flatten", D, fdOpts{}, func(f *fdGraph) string {
			return f.g.Mul(f.g.Flatten(f.param("x", 1, 0, 2, 3, 2), 1), f.param("w", 1, 0, 6))
		}},
		{"reshape", D, fdOpts{}, func(f *fdGraph) string {
			return f.g.Op("Reshape", []string{f.param("x", 1, 0, 2, 6), f.g.Const([]int64{3}, []int64{0, -1, 2})})
		}},
		{"transpose", D, fdOpts{}, func(f *fdGraph) string {
			return f.g.Op("Transpose", []string{f.param("x", 1, 0, 2, 3, 4)}, build.Ints("perm", 2, 0, 1))
		}},
		{"squeeze unsqueeze", D, fdOpts{}, func(f *fdGraph) string {
			x := f.g.Op("Squeeze", []string{f.param("x", 1, 0, 2, 1, 4), f.g.Const([]int64{1}, []int64{1})})
			return f.g.Op("Unsqueeze", []string{x, f.g.Const([]int64{1}, []int64{0})})
		}},
	})
}

func TestReduceAndMatrixGradients(t *testing.T) {
	D := build.Double
	runCases(t, []rulesCase{
		{"reduce mean", D, fdOpts{}, func(f *fdGraph) string {
			return f.g.Op("ReduceMean", []string{f.param("x", 1, 0, 2, 3, 4, 5)}, build.Ints("axes", 2, -1), build.Int("keepdims", 0))
		}},
		{"reduce max keepdims", D, fdOpts{}, func(f *fdGraph) string {
			return f.g.Op("ReduceMax", []string{f.param("x", 1, 0, 2, 3, 4)}, build.Ints("axes", 1))
		}},
		{"gemm", D, fdOpts{}, func(f *fdGraph) string {
			return f.g.Op("Gemm", []string{f.param("a", 1, 0, 3, 4), f.param("b", 1, 0, 4, 5), f.param("c", 1, 0, 5)},
				build.Float32("alpha", 0.5), build.Float32("beta", 2))
		}},
		{"gemm transposed", D, fdOpts{}, func(f *fdGraph) string {
			return f.g.Op("Gemm", []string{f.param("a", 1, 0, 4, 3), f.param("b", 1, 0, 5, 4), f.param("c", 1, 0, 3, 1)},
				build.Int("transA", 1), build.Int("transB", 1))
		}},
		{"gemm transA only", D, fdOpts{}, func(f *fdGraph) string {
			return f.g.Op("Gemm", []string{f.param("a", 1, 0, 4, 3), f.param("b", 1, 0, 4, 2)}, build.Int("transA", 1))
		}},
		// ORT fuses MatMul with Transpose into FusedMatMul, which has no float64 kernel.
		{"matmul linear", build.Float, fdOpts{h: 0.05, tol: 2e-3}, func(f *fdGraph) string {
			return f.g.Op("MatMul", []string{f.param("a", 1, 0, 2, 3, 4), f.param("b", 1, 0, 4, 5)})
		}},
		{"matmul broadcast batch", build.Float, fdOpts{h: 0.05, tol: 2e-3}, func(f *fdGraph) string {
			return f.g.Op("MatMul", []string{f.param("a", 1, 0, 2, 1, 3, 4), f.param("b", 1, 0, 3, 4, 2)})
		}},
	})
}

// Pools: MaxPool takes float64; the average pools are float32-only (linear, so a large
// step is exact up to rounding).
func TestPoolGradients(t *testing.T) {
	F, D := build.Float, build.Double
	pool := func(op string, x []int64, attrs ...build.Attr) func(f *fdGraph) string {
		return func(f *fdGraph) string { return f.g.Op(op, []string{f.param("x", 1, 0, x...)}, attrs...) }
	}
	k3s2p1 := []build.Attr{build.Ints("kernel_shape", 3, 3), build.Ints("strides", 2, 2), build.Ints("pads", 1, 1, 1, 1)}
	lin := fdOpts{h: 0.05, tol: 2e-3}
	runCases(t, []rulesCase{
		{"maxpool overlapping 3x3/2 pad 1", D, fdOpts{coords: 40}, pool("MaxPool", []int64{2, 3, 9, 8}, k3s2p1...)},
		{"maxpool ceil mode", D, fdOpts{coords: 40}, pool("MaxPool", []int64{2, 2, 8, 7},
			build.Ints("kernel_shape", 3, 2), build.Ints("strides", 2, 2), build.Int("ceil_mode", 1))},
		{"maxpool 2x2/1", D, fdOpts{coords: 40}, pool("MaxPool", []int64{1, 2, 5, 5}, build.Ints("kernel_shape", 2, 2))},
		{"averagepool exclude pad", F, lin, pool("AveragePool", []int64{2, 3, 9, 8}, k3s2p1...)},
		{"averagepool include pad", F, lin, pool("AveragePool", []int64{2, 3, 9, 8}, append(k3s2p1, build.Int("count_include_pad", 1))...)},
		{"averagepool ceil mode", F, lin, pool("AveragePool", []int64{1, 2, 8, 7},
			build.Ints("kernel_shape", 3, 3), build.Ints("strides", 2, 2), build.Ints("pads", 1, 0, 1, 0), build.Int("ceil_mode", 1))},
		{"global average pool", F, lin, pool("GlobalAveragePool", []int64{2, 3, 4, 5})},
		{"global max pool", F, fdOpts{h: 1e-3, tol: 2e-3}, pool("GlobalMaxPool", []int64{2, 3, 4, 5})},
		{"global max pool of relu (ties)", F, fdOpts{h: 1e-3, tol: 2e-3}, func(f *fdGraph) string {
			return f.g.Op("GlobalMaxPool", []string{f.g.Relu(f.param("x", 1, -3, 2, 3, 2, 2))})
		}},
	})
}

// BatchNormalization in both modes: frozen uses the running statistics; train uses the
// batch's, so the gradient flows through the mean and variance too.
func TestBatchNormGradients(t *testing.T) {
	bn := func(x []int64) func(f *fdGraph) string {
		return func(f *fdGraph) string {
			c := x[1]
			stats := func(name string, off float64) string {
				v := make([]float64, c)
				for i := range v {
					v[i] = off + 0.3*f.rng.Float64()
				}
				return f.constant(name, []int64{c}, v)
			}
			in := f.param("x", 1.5, 0.5, x...)
			y := f.g.BatchNorm(in, f.param("scale", 0.5, 1, c), f.param("bias", 1, 0, c), stats("mean", 0), stats("var", 0.8), 1e-5)
			return f.g.Mul(y, f.g.Sigmoid(y)) // a nonlinear consumer, so the train-mode terms matter
		}
	}
	D := build.Double
	runCases(t, []rulesCase{
		{"frozen 4d", D, fdOpts{bn: BNFrozen}, bn([]int64{3, 4, 3, 2})},
		{"train 4d", D, fdOpts{bn: BNTrain, coords: 24}, bn([]int64{3, 4, 3, 2})},
		{"train 2d", D, fdOpts{bn: BNTrain}, bn([]int64{5, 3})},
	})
}

func TestResizeGradients(t *testing.T) {
	resize := func(x []int64, scales []float32, sizes []int64, attrs ...build.Attr) func(f *fdGraph) string {
		return func(f *fdGraph) string {
			in := []string{f.param("x", 1, 0, x...), ""}
			if scales != nil {
				in = append(in, f.g.Const([]int64{4}, scales))
			} else {
				in = append(in, "", f.g.Const([]int64{4}, sizes))
			}
			return f.g.Op("Resize", in, attrs...)
		}
	}
	F := build.Float
	lin := fdOpts{h: 0.05, tol: 2e-3}
	nearest := build.String("mode", "nearest")
	linear := build.String("mode", "linear")
	runCases(t, []rulesCase{
		{"nearest x2", F, lin, resize([]int64{2, 3, 3, 4}, []float32{1, 1, 2, 2}, nil, nearest)},
		{"nearest x3 by 1", F, lin, resize([]int64{1, 2, 3, 4}, []float32{1, 1, 3, 1}, nil, nearest)},
		{"nearest to odd sizes asymmetric floor", F, lin, resize([]int64{1, 2, 3, 4}, nil, []int64{1, 2, 7, 5}, nearest,
			build.String("coordinate_transformation_mode", "asymmetric"), build.String("nearest_mode", "floor"))},
		{"linear x2 half pixel", F, lin, resize([]int64{2, 2, 3, 4}, []float32{1, 1, 2, 2}, nil, linear)},
		{"linear align corners sizes", F, lin, resize([]int64{1, 2, 4, 3}, nil, []int64{1, 2, 7, 8}, linear,
			build.String("coordinate_transformation_mode", "align_corners"))},
		{"linear pytorch half pixel x1.5", F, lin, resize([]int64{1, 1, 4, 4}, []float32{1, 1, 1.5, 1.5}, nil, linear,
			build.String("coordinate_transformation_mode", "pytorch_half_pixel"))},
	})
}

// Conv followed by BatchNormalization: frozen, the pair is folded into one Conv whose
// weights and bias are computed from the BN parameters; train mode keeps the batch
// statistics. Both against finite differences (float32: Conv has no float64 kernel).
func TestConvBatchNormGradients(t *testing.T) {
	for _, mode := range []BNMode{BNFrozen, BNTrain} {
		t.Run(mode.String(), func(t *testing.T) {
			f := newFD(build.Float, 5)
			x := f.param("x", 1, 0.3, 2, 3, 6, 5)
			y := f.g.Conv2D(x, f.param("w", 0.5, 0, 4, 3, 3, 3), f.param("cb", 0.5, 0, 4), 3, 2, 1)
			mean := f.constant("mean", []int64{4}, []float64{0.1, -0.2, 0.3, 0})
			variance := f.constant("var", []int64{4}, []float64{0.9, 1.2, 0.7, 1.5})
			y = f.g.BatchNorm(y, f.param("scale", 0.3, 1, 4), f.param("bias", 0.5, 0, 4), mean, variance, 1e-5)
			y = f.g.Mul(y, f.g.Sigmoid(y))
			o := fdOpts{bn: mode, h: 1e-2, tol: 1e-2, coords: 24}
			f.check(t, y, o)
			m, _ := f.g.Model()
			prog, err := buildVJP(m, Config{Trainable: f.params, Batch: 1, BatchNorm: mode}, y)
			if err != nil {
				t.Fatal(err)
			}
			bns := 0
			for _, n := range prog.Model.Graph.Node {
				if n.GetOpType() == "BatchNormalization" {
					bns++
				}
			}
			if folded := bns == 0; folded != (mode == BNFrozen) {
				t.Errorf("%s mode: %d BatchNormalization nodes left in the graph", mode, bns)
			}
		})
	}
}
