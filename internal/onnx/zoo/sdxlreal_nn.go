package zoo

import (
	"fmt"
	"math"

	"github.com/diagd/diagd/internal/half"
	"github.com/diagd/diagd/internal/onnx/build"
)

// wnet builds a real-size stand-in graph whose weights are only described while the
// graph is built: each is an external initializer at its place in model.onnx_data, and a
// wspec says how to draw its values when (and if) the data file is written. Counting
// parameters therefore costs a graph, not gigabytes. Constants that are not module
// parameters (norm helpers, frequencies, masks, shapes) are Constant nodes, so
// Graph.Params counts exactly what PyTorch's parameters() would.
type wnet struct {
	g     *build.Graph
	dt    build.DType // weights, activations and float inputs/outputs
	esize int64
	off   int64
	specs []wspec
}

// wspec is one weight's values: uniform with standard deviation std (variance-keeping
// 1/√fan_in for matrices), or the constant fill when std is 0 (norm weights 1, biases 0).
type wspec struct {
	n    int64
	off  int64
	std  float32
	fill float32
}

// DataFile is where real-size stand-ins keep their weights, beside model.onnx, as optimum
// writes exports over 2 GB.
const DataFile = "model.onnx_data"

// Tensors of at least alignMin bytes start at multiples of alignTo in the data file, as
// onnx's external-data writer aligns them, so ONNX Runtime may map them.
const (
	alignMin = 1 << 20
	alignTo  = 1 << 16
)

func newWNet(name string, fp16 bool) *wnet {
	n := &wnet{g: build.New(name), dt: build.Float, esize: 4}
	if fp16 {
		n.dt, n.esize = build.Float16, 2
	}
	n.g.SetMetadata("diagd.standin", "sdxl-inpaint real-size "+name)
	return n
}

func (n *wnet) add(name string, s wspec, dims []int64) string {
	s.n = 1
	for _, d := range dims {
		s.n *= d
	}
	bytes := s.n * n.esize
	if bytes >= alignMin && n.off%alignTo != 0 {
		n.off += alignTo - n.off%alignTo
	}
	s.off = n.off
	n.off += bytes
	n.specs = append(n.specs, s)
	return n.g.Extern(name, dims, n.dt, DataFile, s.off, bytes)
}

// weight is a matrix or kernel whose fan-in is the product of all but its first dim
// (or of all dims but the last for a [in, out] MatMul weight, see linear).
func (n *wnet) weight(name string, fanIn int64, dims ...int64) string {
	return n.add(name, wspec{std: float32(1 / math.Sqrt(float64(fanIn)))}, dims)
}

func (n *wnet) bias(name string, dims ...int64) string {
	return n.add(name, wspec{std: 0.02}, dims)
}

func (n *wnet) ones(name string, dims ...int64) string { return n.add(name, wspec{fill: 1}, dims) }

func (n *wnet) zeros(name string, dims ...int64) string { return n.add(name, wspec{}, dims) }

// konst is a Constant node (not a parameter) of Go data: []float32 is stored in the
// net's float type, other types as they are.
func (n *wnet) konst(dims []int64, data any) string {
	if f, ok := data.([]float32); ok && n.dt == build.Float16 {
		h := make([]uint16, len(f))
		for i, v := range f {
			h[i] = half.FromFloat32(v)
		}
		data = h
	}
	return n.konst32(dims, data)
}

// konst32 is a Constant node stored exactly as given (float32 stays float32).
func (n *wnet) konst32(dims []int64, data any) string {
	t, err := build.Tensor("value", dims, data)
	if err != nil {
		panic(fmt.Sprintf("zoo: constant %v: %v", dims, err)) // a programming error in a builder
	}
	out := n.g.Fresh("const")
	n.g.Node("Constant", nil, []string{out}, build.TensorAttr("value", t))
	return out
}

func (n *wnet) scalar(v float32) string { return n.konst(nil, []float32{v}) }

func (n *wnet) ints(v ...int64) string { return n.konst32([]int64{int64(len(v))}, v) }

func (n *wnet) op(op string, in []string, attrs ...build.Attr) string {
	return n.g.Op(op, in, attrs...)
}

// linear is PyTorch's Linear as torch.onnx exports it for 3-D inputs: MatMul by the
// [in, out] transposed weight, then the bias.
func (n *wnet) linear(x, name string, in, out int, bias bool) string {
	y := n.op("MatMul", []string{x, n.weight(name+".weight", int64(in), int64(in), int64(out))})
	if bias {
		y = n.g.Add(y, n.bias(name+".bias", int64(out)))
	}
	return y
}

func (n *wnet) conv(x, name string, in, out, k, stride, pad int) string {
	w := n.weight(name+".weight", int64(in*k*k), int64(out), int64(in), int64(k), int64(k))
	return n.g.Conv2D(x, w, n.bias(name+".bias", int64(out)), int64(k), int64(stride), int64(pad))
}

// groupNorm is GroupNorm as torch.onnx exports it: InstanceNormalization over the
// groups, then the per-channel affine (weight and bias stored [C,1,1]).
func (n *wnet) groupNorm(x, name string, c, groups int, eps float32) string {
	ones, zeros := make([]float32, groups), make([]float32, groups)
	for i := range ones {
		ones[i] = 1
	}
	shape := n.op("Shape", []string{x})
	r := n.op("Reshape", []string{x, n.ints(0, int64(groups), -1)})
	r = n.op("InstanceNormalization", []string{r, n.konst([]int64{int64(groups)}, ones), n.konst([]int64{int64(groups)}, zeros)},
		build.Float32("epsilon", eps))
	r = n.op("Reshape", []string{r, shape})
	d := []int64{int64(c), 1, 1}
	return n.g.Add(n.g.Mul(r, n.ones(name+".weight", d...)), n.zeros(name+".bias", d...))
}

func (n *wnet) layerNorm(x, name string, c int, eps float32) string {
	return n.op("LayerNormalization", []string{x, n.ones(name+".weight", int64(c)), n.zeros(name+".bias", int64(c))},
		build.Int("axis", -1), build.Float32("epsilon", eps))
}

func (n *wnet) silu(x string) string { return n.g.Mul(x, n.g.Sigmoid(x)) }

// gelu is the exact (erf) GELU, as torch.onnx exports nn.GELU at opset 17.
func (n *wnet) gelu(x string) string {
	e := n.op("Erf", []string{n.g.Mul(x, n.scalar(float32(1/math.Sqrt2)))})
	return n.g.Mul(n.g.Mul(x, n.scalar(0.5)), n.g.Add(e, n.scalar(1)))
}

// quickGELU is CLIP ViT-L's x·σ(1.702x).
func (n *wnet) quickGELU(x string) string {
	return n.g.Mul(x, n.g.Sigmoid(n.g.Mul(x, n.scalar(1.702))))
}

func (n *wnet) transpose(x string, perm ...int64) string {
	return n.op("Transpose", []string{x}, build.Ints("perm", perm...))
}

func (n *wnet) unsqueeze(x string, axes ...int64) string {
	return n.op("Unsqueeze", []string{x, n.ints(axes...)})
}

// slice is x[start:end] along axis (end may be a value name, e.g. from Shape).
func (n *wnet) slice(x string, axis int64, start, end string) string {
	return n.op("Slice", []string{x, start, end, n.ints(axis)})
}

// attention is diffusers' Attention (and CLIP's): heads of c/heads channels, q from x,
// k and v from ctx ("" for self-attention), softmax(q·kᵀ/√d + mask)·v, then to_out.
// mask may be "".
func (n *wnet) attention(x, ctx, name string, c, ctxDim, heads int, qkvBias bool, mask string) string {
	if ctx == "" {
		ctx = x // self-attention
	}
	d := c / heads
	q := n.linear(x, name+".to_q", c, c, qkvBias)
	k := n.linear(ctx, name+".to_k", ctxDim, c, qkvBias)
	v := n.linear(ctx, name+".to_v", ctxDim, c, qkvBias)
	split := n.ints(0, 0, int64(heads), int64(d))
	// Scaling q before the product keeps float16 scores in range.
	qh := n.g.Mul(n.transpose(n.op("Reshape", []string{q, split}), 0, 2, 1, 3), n.scalar(float32(1/math.Sqrt(float64(d)))))
	kt := n.transpose(n.op("Reshape", []string{k, split}), 0, 2, 3, 1)
	vh := n.transpose(n.op("Reshape", []string{v, split}), 0, 2, 1, 3)
	s := n.op("MatMul", []string{qh, kt})
	if mask != "" {
		s = n.g.Add(s, mask)
	}
	p := n.op("Softmax", []string{s}, build.Int("axis", -1))
	o := n.transpose(n.op("MatMul", []string{p, vh}), 0, 2, 1, 3)
	o = n.op("Reshape", []string{o, n.ints(0, 0, int64(c))})
	return n.linear(o, name+".to_out.0", c, c, true)
}

// toTokens is [B,C,H,W] → [B,H·W,C]; fromTokens undoes it with x's spatial shape.
func (n *wnet) toTokens(x string, c int) string {
	return n.op("Reshape", []string{n.transpose(x, 0, 2, 3, 1), n.ints(0, -1, int64(c))})
}

func (n *wnet) fromTokens(t, like string, c int) string {
	shape := n.op("Shape", []string{like})
	bhw := n.op("Concat", []string{n.slice(shape, 0, n.ints(0), n.ints(1)), n.slice(shape, 0, n.ints(2), n.ints(4)), n.ints(int64(c))},
		build.Int("axis", 0))
	return n.transpose(n.op("Reshape", []string{t, bhw}), 0, 3, 1, 2)
}

// upsample2x is nearest-neighbour ×2 (F.interpolate(scale_factor=2)).
func (n *wnet) upsample2x(x string) string {
	return n.op("Resize", []string{x, "", n.konst32([]int64{4}, []float32{1, 1, 2, 2})},
		build.String("mode", "nearest"), build.String("coordinate_transformation_mode", "asymmetric"),
		build.String("nearest_mode", "floor"))
}

// input declares a float input in the net's type; output publishes one.
func (n *wnet) input(name string, dims ...any) string { return n.g.Input(name, n.dt, dims...) }

func (n *wnet) output(v, name string, dims ...any) {
	n.g.Identity(v, name)
	n.g.Output(name, n.dt, dims...)
}

// cast converts between the net's float type and float32 (a no-op in float32).
func (n *wnet) toF32(x string) string {
	if n.dt == build.Float {
		return x
	}
	return n.g.Cast(x, build.Float)
}

func (n *wnet) fromF32(x string) string {
	if n.dt == build.Float {
		return x
	}
	return n.g.Cast(x, n.dt)
}
