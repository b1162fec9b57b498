package autodiff

import (
	"fmt"
	"math"
	"strings"

	pb "github.com/diagd/diagd/internal/onnx/onnxpb"
)

type inferFunc func(s *shapes, n *pb.NodeProto, a *attrs, in [][]int64) ([][]int64, error)

func init() {
	same := func(s *shapes, n *pb.NodeProto, a *attrs, in [][]int64) ([][]int64, error) {
		return [][]int64{in[0]}, nil
	}
	for _, op := range []string{"Relu", "LeakyRelu", "Sigmoid", "Neg", "Exp", "Log", "Abs", "Sqrt", "Tanh",
		"Softplus", "Cast", "Clip", "Erf", "Reciprocal", "Floor", "Ceil", "Not"} {
		inferers[op] = same
	}
	for _, op := range []string{"Add", "Sub", "Mul", "Div", "Pow", "Equal", "Greater", "Less", "Where",
		"Max", "Min", "Sum", "And", "Or", "GreaterOrEqual", "LessOrEqual"} {
		inferers[op] = inferBroadcast
	}
	for _, op := range []string{"ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceSumSquare", "ReduceProd"} {
		inferers[op] = inferReduce
	}
}

var inferers = map[string]inferFunc{
	"Identity": inferIdentity, "Dropout": inferIdentity,
	"BatchNormalization": inferBatchNorm,
	"Conv":               inferConv, "MaxPool": inferPool, "AveragePool": inferPool,
	"GlobalAveragePool": inferGlobalPool, "GlobalMaxPool": inferGlobalPool,
	"Flatten": inferFlatten, "Reshape": inferReshape, "Squeeze": inferSqueeze, "Unsqueeze": inferUnsqueeze,
	"Transpose": inferTranspose, "Concat": inferConcat, "Slice": inferSlice, "Split": inferSplit,
	"Gemm": inferGemm, "MatMul": inferMatMul, "Resize": inferResize,
	"Shape": inferShapeOp, "Gather": inferGather, "Constant": inferConstant,
}

func inferIdentity(s *shapes, n *pb.NodeProto, a *attrs, in [][]int64) ([][]int64, error) {
	if v, ok := s.ints[n.Input[0]]; ok {
		s.ints[n.Output[0]] = v
	}
	if v, ok := s.floats[n.Input[0]]; ok {
		s.floats[n.Output[0]] = v
	}
	return [][]int64{in[0]}, nil
}

func broadcast(shs ...[]int64) ([]int64, error) {
	r := 0
	for _, s := range shs {
		r = max(r, len(s))
	}
	out := make([]int64, r)
	for i := range out {
		out[i] = 1
	}
	for _, s := range shs {
		lead := r - len(s)
		for i, d := range s {
			switch {
			case d == out[lead+i] || d == 1:
			case out[lead+i] == 1:
				out[lead+i] = d
			default:
				return nil, fmt.Errorf("shapes %v do not broadcast", shs)
			}
		}
	}
	return out, nil
}

func inferBroadcast(s *shapes, n *pb.NodeProto, a *attrs, in [][]int64) ([][]int64, error) {
	out, err := broadcast(in...)
	return [][]int64{out}, err
}

func inferBatchNorm(s *shapes, n *pb.NodeProto, a *attrs, in [][]int64) ([][]int64, error) {
	out := [][]int64{in[0]}
	for range n.Output[1:] {
		out = append(out, in[1])
	}
	return out, nil
}

// geometry is a convolution's or pool's window along the spatial axes.
type geometry struct {
	kernel, strides, dilations, pads []int64 // pads: all begins, then all ends
	ceil                             bool
	autoPad                          string // NOTSET, VALID, SAME_UPPER or SAME_LOWER
}

func readGeometry(a *attrs, kernel []int64, spatial int) (geometry, error) {
	g := geometry{kernel: kernel}
	g.strides = a.ints("strides", ones(spatial))
	g.dilations = a.ints("dilations", ones(spatial))
	g.pads = a.ints("pads", make([]int64, 2*spatial))
	g.ceil = a.int("ceil_mode", 0) != 0
	g.autoPad = a.str("auto_pad", "NOTSET")
	if g.autoPad == "VALID" {
		g.pads = make([]int64, 2*spatial)
	}
	if len(kernel) != spatial || len(g.strides) != spatial || len(g.dilations) != spatial || len(g.pads) != 2*spatial {
		return g, fmt.Errorf("kernel %v, strides %v, dilations %v, pads %v do not match %d spatial axes",
			kernel, g.strides, g.dilations, g.pads, spatial)
	}
	return g, nil
}

func ones(n int) []int64 {
	v := make([]int64, n)
	for i := range v {
		v[i] = 1
	}
	return v
}

// out returns the output size along spatial axis i for input size in. In ceil mode the
// last window must start inside the input or its leading padding (PyTorch and ORT).
func (g geometry) out(i int, in int64) int64 {
	if strings.HasPrefix(g.autoPad, "SAME") {
		return ceilDiv(in, g.strides[i])
	}
	span := in + g.pads[i] + g.pads[len(g.kernel)+i] - g.dilations[i]*(g.kernel[i]-1) - 1
	if !g.ceil {
		return floorDiv(span, g.strides[i]) + 1
	}
	o := ceilDiv(span, g.strides[i]) + 1
	if (o-1)*g.strides[i] >= in+g.pads[i] {
		o--
	}
	return o
}

func floorDiv(a, b int64) int64 { return int64(math.Floor(float64(a) / float64(b))) }
func ceilDiv(a, b int64) int64  { return int64(math.Ceil(float64(a) / float64(b))) }

func (g geometry) outShape(x []int64, channels int64) []int64 {
	out := []int64{x[0], channels}
	for i := range g.kernel {
		out = append(out, g.out(i, x[2+i]))
	}
	return out
}

func inferConv(s *shapes, n *pb.NodeProto, a *attrs, in [][]int64) ([][]int64, error) {
	x, w := in[0], in[1]
	if len(x) < 3 || len(w) != len(x) {
		return nil, fmt.Errorf("conv input %v and weight %v", x, w)
	}
	g, err := readGeometry(a, a.ints("kernel_shape", w[2:]), len(x)-2)
	if err != nil {
		return nil, err
	}
	return [][]int64{g.outShape(x, w[0])}, nil
}

func inferPool(s *shapes, n *pb.NodeProto, a *attrs, in [][]int64) ([][]int64, error) {
	x := in[0]
	g, err := readGeometry(a, a.ints("kernel_shape", nil), len(x)-2)
	if err != nil {
		return nil, err
	}
	out := g.outShape(x, x[1])
	return [][]int64{out, out}, nil
}

func inferGlobalPool(s *shapes, n *pb.NodeProto, a *attrs, in [][]int64) ([][]int64, error) {
	out := append([]int64{}, in[0][:2]...)
	for range in[0][2:] {
		out = append(out, 1)
	}
	return [][]int64{out}, nil
}

// normAxes makes axes non-negative for a tensor of rank r.
func normAxes(axes []int64, r int) ([]int64, error) {
	out := make([]int64, len(axes))
	for i, ax := range axes {
		if ax < 0 {
			ax += int64(r)
		}
		if ax < 0 || ax >= int64(r) {
			return nil, fmt.Errorf("axis %d out of range for rank %d", axes[i], r)
		}
		out[i] = ax
	}
	return out, nil
}

// reduceAxes reads a Reduce node's axes (attribute before opset 18, input after; ReduceSum
// takes an input from 13) and whether they are kept.
func reduceAxes(s *shapes, n *pb.NodeProto, a *attrs, rank int) (axes []int64, keep bool, err error) {
	axes = a.ints("axes", nil)
	if len(n.Input) > 1 && n.Input[1] != "" {
		if axes, err = s.constInts(n, 1, "axes"); err != nil {
			return nil, false, err
		}
	}
	keep = a.int("keepdims", 1) != 0
	if len(axes) == 0 {
		if a.int("noop_with_empty_axes", 0) != 0 {
			return nil, keep, fmt.Errorf("noop_with_empty_axes=1 with no axes is not supported")
		}
		for i := range rank {
			axes = append(axes, int64(i))
		}
	}
	axes, err = normAxes(axes, rank)
	return axes, keep, err
}

func reducedShape(x []int64, axes []int64, keep bool) []int64 {
	red := map[int64]bool{}
	for _, ax := range axes {
		red[ax] = true
	}
	var out []int64
	for i, d := range x {
		switch {
		case !red[int64(i)]:
			out = append(out, d)
		case keep:
			out = append(out, 1)
		}
	}
	if out == nil {
		out = []int64{}
	}
	return out
}

func inferReduce(s *shapes, n *pb.NodeProto, a *attrs, in [][]int64) ([][]int64, error) {
	axes, keep, err := reduceAxes(s, n, a, len(in[0]))
	if err != nil {
		return nil, err
	}
	return [][]int64{reducedShape(in[0], axes, keep)}, nil
}

func inferFlatten(s *shapes, n *pb.NodeProto, a *attrs, in [][]int64) ([][]int64, error) {
	ax := a.int("axis", 1)
	if ax < 0 {
		ax += int64(len(in[0]))
	}
	if ax < 0 || ax > int64(len(in[0])) {
		return nil, fmt.Errorf("flatten axis %d for rank %d", ax, len(in[0]))
	}
	return [][]int64{{numel(in[0][:ax]), numel(in[0][ax:])}}, nil
}

func inferReshape(s *shapes, n *pb.NodeProto, a *attrs, in [][]int64) ([][]int64, error) {
	target, err := s.constInts(n, 1, "shape")
	if err != nil {
		return nil, err
	}
	allowZero := a.int("allowzero", 0) != 0
	out := make([]int64, len(target))
	known, infer := int64(1), -1
	for i, d := range target {
		switch {
		case d == 0 && !allowZero:
			if i >= len(in[0]) {
				return nil, fmt.Errorf("reshape copies axis %d of a rank-%d tensor", i, len(in[0]))
			}
			out[i] = in[0][i]
		case d == -1:
			infer = i
			continue
		default:
			out[i] = d
		}
		known *= out[i]
	}
	total := numel(in[0])
	if infer >= 0 {
		if known == 0 || total%known != 0 {
			return nil, fmt.Errorf("cannot reshape %v to %v", in[0], target)
		}
		out[infer] = total / known
	} else if known != total {
		return nil, fmt.Errorf("cannot reshape %v to %v", in[0], target)
	}
	if v, ok := s.ints[n.Input[0]]; ok {
		s.ints[n.Output[0]] = v
	}
	return [][]int64{out}, nil
}

func squeezeAxes(s *shapes, n *pb.NodeProto, a *attrs, rank int) ([]int64, error) {
	axes := a.ints("axes", nil)
	if len(n.Input) > 1 && n.Input[1] != "" {
		var err error
		if axes, err = s.constInts(n, 1, "axes"); err != nil {
			return nil, err
		}
	}
	return normAxes(axes, rank)
}

func inferSqueeze(s *shapes, n *pb.NodeProto, a *attrs, in [][]int64) ([][]int64, error) {
	axes, err := squeezeAxes(s, n, a, len(in[0]))
	if err != nil {
		return nil, err
	}
	drop := map[int64]bool{}
	for _, ax := range axes {
		drop[ax] = true
	}
	out := []int64{}
	for i, d := range in[0] {
		if drop[int64(i)] || (len(axes) == 0 && d == 1) {
			continue
		}
		out = append(out, d)
	}
	if v, ok := s.ints[n.Input[0]]; ok {
		s.ints[n.Output[0]] = v
	}
	return [][]int64{out}, nil
}

func inferUnsqueeze(s *shapes, n *pb.NodeProto, a *attrs, in [][]int64) ([][]int64, error) {
	axes, err := squeezeAxes(s, n, a, len(in[0])+len(a.ints("axes", nil))+lenInts(s, n, 1))
	if err != nil {
		return nil, err
	}
	add := map[int64]bool{}
	for _, ax := range axes {
		add[ax] = true
	}
	var out []int64
	j := 0
	for i := 0; i < len(in[0])+len(axes); i++ {
		if add[int64(i)] {
			out = append(out, 1)
			continue
		}
		out = append(out, in[0][j])
		j++
	}
	if v, ok := s.ints[n.Input[0]]; ok {
		s.ints[n.Output[0]] = v
	}
	return [][]int64{out}, nil
}

func lenInts(s *shapes, n *pb.NodeProto, i int) int {
	if i < len(n.Input) {
		return len(s.ints[n.Input[i]])
	}
	return 0
}

func inferTranspose(s *shapes, n *pb.NodeProto, a *attrs, in [][]int64) ([][]int64, error) {
	perm := transposePerm(a, len(in[0]))
	if len(perm) != len(in[0]) {
		return nil, fmt.Errorf("perm %v for rank %d", perm, len(in[0]))
	}
	out := make([]int64, len(perm))
	for i, p := range perm {
		if p < 0 || p >= int64(len(in[0])) {
			return nil, fmt.Errorf("perm %v for rank %d", perm, len(in[0]))
		}
		out[i] = in[0][p]
	}
	return [][]int64{out}, nil
}

func transposePerm(a *attrs, rank int) []int64 {
	def := make([]int64, rank)
	for i := range def {
		def[i] = int64(rank - 1 - i)
	}
	return a.ints("perm", def)
}

func inferConcat(s *shapes, n *pb.NodeProto, a *attrs, in [][]int64) ([][]int64, error) {
	axes, err := normAxes([]int64{a.int("axis", 0)}, len(in[0]))
	if err != nil {
		return nil, err
	}
	ax := axes[0]
	out := append([]int64{}, in[0]...)
	out[ax] = 0
	var vals []int64
	allConst := true
	for i, sh := range in {
		if len(sh) != len(out) {
			return nil, fmt.Errorf("concat of ranks %d and %d", len(out), len(sh))
		}
		out[ax] += sh[ax]
		v, ok := s.ints[n.Input[i]]
		allConst = allConst && ok
		vals = append(vals, v...)
	}
	if allConst {
		s.ints[n.Output[0]] = vals
	}
	return [][]int64{out}, nil
}

// sliceSpec is a Slice resolved against a known input shape: per axis, the first index
// and the element count taken (steps of 1 only).
type sliceSpec struct {
	start, count []int64
	step         []int64
}

func resolveSlice(s *shapes, n *pb.NodeProto, x []int64) (sliceSpec, error) {
	sp := sliceSpec{start: make([]int64, len(x)), count: append([]int64{}, x...), step: ones(len(x))}
	starts, err := s.constInts(n, 1, "starts")
	if err != nil {
		return sp, err
	}
	ends, err := s.constInts(n, 2, "ends")
	if err != nil {
		return sp, err
	}
	axes, err := s.constInts(n, 3, "axes")
	if err != nil {
		return sp, err
	}
	steps, err := s.constInts(n, 4, "steps")
	if err != nil {
		return sp, err
	}
	if axes == nil {
		for i := range starts {
			axes = append(axes, int64(i))
		}
	}
	if axes, err = normAxes(axes, len(x)); err != nil {
		return sp, err
	}
	if len(starts) != len(axes) || len(ends) != len(axes) || (steps != nil && len(steps) != len(axes)) {
		return sp, fmt.Errorf("slice starts %v, ends %v, axes %v, steps %v differ in length", starts, ends, axes, steps)
	}
	for i, ax := range axes {
		step := int64(1)
		if steps != nil {
			step = steps[i]
		}
		if step <= 0 {
			return sp, unsupported(n, "steps", "step %d (only positive steps)", step)
		}
		d := x[ax]
		b, e := clampIndex(starts[i], d), clampIndex(ends[i], d)
		sp.start[ax], sp.step[ax] = b, step
		sp.count[ax] = max(0, ceilDiv(e-b, step))
	}
	return sp, nil
}

func clampIndex(i, d int64) int64 {
	if i < 0 {
		i += d
	}
	return min(max(i, 0), d)
}

func inferSlice(s *shapes, n *pb.NodeProto, a *attrs, in [][]int64) ([][]int64, error) {
	sp, err := resolveSlice(s, n, in[0])
	if err != nil {
		return nil, err
	}
	if v, ok := s.ints[n.Input[0]]; ok && len(in[0]) == 1 {
		var out []int64
		for i := int64(0); i < sp.count[0]; i++ {
			out = append(out, v[sp.start[0]+i*sp.step[0]])
		}
		s.ints[n.Output[0]] = out
	}
	return [][]int64{sp.count}, nil
}

// splitSizes resolves a Split node's pieces along its axis.
func splitSizes(s *shapes, n *pb.NodeProto, a *attrs, x []int64) (int64, []int64, error) {
	axes, err := normAxes([]int64{a.int("axis", 0)}, len(x))
	if err != nil {
		return 0, nil, err
	}
	ax := axes[0]
	sizes := a.ints("split", nil)
	if len(n.Input) > 1 && n.Input[1] != "" {
		if sizes, err = s.constInts(n, 1, "split"); err != nil {
			return 0, nil, err
		}
	}
	parts := int64(len(n.Output))
	if np := a.int("num_outputs", 0); np > 0 {
		parts = np
	}
	if sizes == nil {
		chunk := ceilDiv(x[ax], parts)
		for i := int64(0); i < parts; i++ {
			sizes = append(sizes, min(chunk, x[ax]-i*chunk))
		}
	}
	var total int64
	for _, sz := range sizes {
		total += sz
	}
	if total != x[ax] || len(sizes) != len(n.Output) {
		return 0, nil, fmt.Errorf("split %v of axis size %d into %d outputs", sizes, x[ax], len(n.Output))
	}
	return ax, sizes, nil
}

func inferSplit(s *shapes, n *pb.NodeProto, a *attrs, in [][]int64) ([][]int64, error) {
	ax, sizes, err := splitSizes(s, n, a, in[0])
	if err != nil {
		return nil, err
	}
	var out [][]int64
	for _, sz := range sizes {
		o := append([]int64{}, in[0]...)
		o[ax] = sz
		out = append(out, o)
	}
	return out, nil
}

func inferGemm(s *shapes, n *pb.NodeProto, a *attrs, in [][]int64) ([][]int64, error) {
	A, B := in[0], in[1]
	if len(A) != 2 || len(B) != 2 {
		return nil, fmt.Errorf("gemm of %v and %v", A, B)
	}
	m, k := A[0], A[1]
	if a.int("transA", 0) != 0 {
		m, k = k, m
	}
	k2, nn := B[0], B[1]
	if a.int("transB", 0) != 0 {
		k2, nn = nn, k2
	}
	if k != k2 {
		return nil, fmt.Errorf("gemm of %v and %v: inner sizes differ", A, B)
	}
	return [][]int64{{m, nn}}, nil
}

func inferMatMul(s *shapes, n *pb.NodeProto, a *attrs, in [][]int64) ([][]int64, error) {
	A, B := in[0], in[1]
	if len(A) < 2 || len(B) < 2 {
		return nil, fmt.Errorf("matmul of rank-1 operands (%v, %v) is not inferred", A, B)
	}
	if A[len(A)-1] != B[len(B)-2] {
		return nil, fmt.Errorf("matmul of %v and %v: inner sizes differ", A, B)
	}
	batch, err := broadcast(A[:len(A)-2], B[:len(B)-2])
	if err != nil {
		return nil, err
	}
	return [][]int64{append(batch, A[len(A)-2], B[len(B)-1])}, nil
}

// resizeScales returns a Resize node's per-axis output sizes and scales (ORT's float32
// scales: given, or sizes/in when sizes are given).
func resizeScales(s *shapes, n *pb.NodeProto, x []int64) (out []int64, scales []float32, err error) {
	if len(n.Input) > 3 && n.Input[3] != "" {
		sizes, err := s.constInts(n, 3, "sizes")
		if err != nil {
			return nil, nil, err
		}
		if len(sizes) != len(x) {
			return nil, nil, fmt.Errorf("resize sizes %v for rank %d", sizes, len(x))
		}
		for i, d := range sizes {
			scales = append(scales, float32(d)/float32(x[i]))
		}
		return sizes, scales, nil
	}
	if len(n.Input) < 3 || n.Input[2] == "" {
		return nil, nil, fmt.Errorf("resize has neither scales nor sizes")
	}
	f, ok := s.floats[n.Input[2]]
	if !ok || len(f) != len(x) {
		return nil, nil, unsupported(n, "scales", "input %q must be a constant of %d floats", n.Input[2], len(x))
	}
	for i, sc := range f {
		scales = append(scales, float32(sc))
		out = append(out, int64(math.Floor(float64(float32(x[i])*float32(sc)))))
	}
	return out, scales, nil
}

func inferResize(s *shapes, n *pb.NodeProto, a *attrs, in [][]int64) ([][]int64, error) {
	out, _, err := resizeScales(s, n, in[0])
	return [][]int64{out}, err
}

func inferShapeOp(s *shapes, n *pb.NodeProto, a *attrs, in [][]int64) ([][]int64, error) {
	sh := in[0]
	b, e := int64(0), int64(len(sh))
	if a.has("start") {
		b = clampIndex(a.int("start", 0), int64(len(sh)))
	}
	if a.has("end") {
		e = clampIndex(a.int("end", 0), int64(len(sh)))
	}
	v := append([]int64{}, sh[b:max(b, e)]...)
	s.ints[n.Output[0]] = v
	return [][]int64{{int64(len(v))}}, nil
}

func inferGather(s *shapes, n *pb.NodeProto, a *attrs, in [][]int64) ([][]int64, error) {
	data, okD := s.ints[n.Input[0]]
	idx, okI := s.ints[n.Input[1]]
	if !okD || !okI || len(in[0]) != 1 {
		return nil, fmt.Errorf("gather is only folded on constant 1-d integer data")
	}
	var v []int64
	for _, i := range idx {
		v = append(v, data[clampIndex(i, int64(len(data)))%int64(len(data))])
	}
	s.ints[n.Output[0]] = v
	return [][]int64{in[1]}, nil
}

func inferConstant(s *shapes, n *pb.NodeProto, a *attrs, in [][]int64) ([][]int64, error) {
	if at := a.get("value"); at != nil && at.T != nil {
		s.addTensor(n.Output[0], at.T)
		return [][]int64{at.T.Dims}, nil
	}
	if at := a.get("value_ints"); at != nil {
		s.ints[n.Output[0]] = at.Ints
		return [][]int64{{int64(len(at.Ints))}}, nil
	}
	if at := a.get("value_int"); at != nil {
		s.ints[n.Output[0]] = []int64{at.GetI()}
		return [][]int64{{}}, nil
	}
	if at := a.get("value_float"); at != nil {
		s.floats[n.Output[0]] = []float64{float64(at.GetF())}
		return [][]int64{{}}, nil
	}
	return nil, fmt.Errorf("constant of an unsupported kind")
}
