package autodiff

import (
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/diagd/diagd/internal/onnx/build"
	pb "github.com/diagd/diagd/internal/onnx/onnxpb"
)

// emitter appends nodes and initializers to the graph being built. Values it creates get
// unique names; constants are shared by value. dt is the float type of the graph
// (float32 for real models, float64 where tests want tighter finite differences).
type emitter struct {
	g      *pb.GraphProto
	dt     pb.TensorProto_DataType
	names  map[string]bool
	seq    int
	consts map[string]string
	opset  int64
	err    error
	// onConst hears of every constant created, so shape inference knows its value.
	onConst func(name string, t *pb.TensorProto)
	// scope prefixes node names (e.g. "bwd/Conv/"), so profiles show where time goes.
	scope string
}

func newEmitter(g *pb.GraphProto, dt pb.TensorProto_DataType) *emitter {
	e := &emitter{g: g, dt: dt, names: map[string]bool{}, consts: map[string]string{}}
	for _, v := range g.Input {
		e.names[v.GetName()] = true
	}
	for _, t := range g.Initializer {
		e.names[t.GetName()] = true
	}
	for _, n := range g.Node {
		for _, o := range n.Output {
			e.names[o] = true
		}
	}
	return e
}

func (e *emitter) fail(err error) {
	if e.err == nil {
		e.err = err
	}
}

// fresh returns an unused value name built from stem.
func (e *emitter) fresh(stem string) string {
	for {
		e.seq++
		n := "ad/" + stem + "_" + strconv.Itoa(e.seq)
		if !e.names[n] {
			e.names[n] = true
			return n
		}
	}
}

// claim reserves a caller-chosen name (graph inputs and outputs of the training step).
func (e *emitter) claim(name string) string {
	if e.names[name] {
		e.fail(fmt.Errorf("autodiff: value name %q is already used in the forward graph", name))
	}
	e.names[name] = true
	return name
}

func (e *emitter) node(op string, in, out []string, at ...*pb.AttributeProto) {
	e.g.Node = append(e.g.Node, &pb.NodeProto{
		OpType: proto.String(op), Input: in, Output: out, Attribute: at,
		Name: proto.String(e.fresh(e.scope + op)),
	})
}

// op appends a one-output node and returns the output's name.
func (e *emitter) op(op string, in []string, at ...*pb.AttributeProto) string {
	out := e.fresh(strings.ToLower(op))
	e.node(op, in, []string{out}, at...)
	return out
}

func (e *emitter) addInit(t *pb.TensorProto) {
	e.g.Initializer = append(e.g.Initializer, t)
	if e.onConst != nil {
		e.onConst(t.GetName(), t)
	}
}

// floats adds a constant of the graph's float type.
func (e *emitter) floats(dims []int64, v []float64) string {
	key := fmt.Sprintf("f%v:%v", dims, v)
	if len(v) > 16 {
		key = "" // large constants are not worth a cache key
	}
	if n, ok := e.consts[key]; ok && key != "" {
		return n
	}
	name := e.fresh("const")
	var data any = v
	if e.dt == build.Float {
		f := make([]float32, len(v))
		for i, x := range v {
			f[i] = float32(x)
		}
		data = f
	}
	t, err := build.Tensor(name, dims, data)
	if err != nil {
		e.fail(err)
		return name
	}
	e.addInit(t)
	if key != "" {
		e.consts[key] = name
	}
	return name
}

// scalar is a 0-d constant of the graph's float type.
func (e *emitter) scalar(v float64) string { return e.floats([]int64{}, []float64{v}) }

// i64 is a 1-d int64 constant (axes, shapes, pads, slice bounds).
func (e *emitter) i64(v ...int64) string {
	key := fmt.Sprintf("i%v", v)
	if n, ok := e.consts[key]; ok {
		return n
	}
	name := e.fresh("ints")
	t, err := build.Tensor(name, []int64{int64(len(v))}, append([]int64{}, v...))
	if err != nil {
		e.fail(err)
		return name
	}
	e.addInit(t)
	e.consts[key] = name
	return name
}

func (e *emitter) add(a, b string) string { return e.op("Add", []string{a, b}) }
func (e *emitter) sub(a, b string) string { return e.op("Sub", []string{a, b}) }
func (e *emitter) mul(a, b string) string { return e.op("Mul", []string{a, b}) }
func (e *emitter) div(a, b string) string { return e.op("Div", []string{a, b}) }
func (e *emitter) neg(a string) string    { return e.op("Neg", []string{a}) }

func (e *emitter) reshape(x string, shape []int64) string {
	return e.op("Reshape", []string{x, e.i64(shape...)})
}

func (e *emitter) transpose(x string, perm ...int64) string {
	return e.op("Transpose", []string{x}, build.Ints("perm", perm...))
}

// reduceSum sums over axes (opset 13+: axes are an input).
func (e *emitter) reduceSum(x string, axes []int64, keep bool) string {
	k := int64(0)
	if keep {
		k = 1
	}
	return e.op("ReduceSum", []string{x, e.i64(axes...)}, build.Int("keepdims", k))
}

// zeros is a tensor of zeros of the graph's float type.
func (e *emitter) zeros(shape []int64) string {
	t, err := build.Tensor("value", []int64{1}, e.one(0))
	if err != nil {
		e.fail(err)
	}
	return e.op("ConstantOfShape", []string{e.i64(shape...)}, build.TensorAttr("value", t))
}

// one returns a single value of the graph's float type as Go data for build.Tensor.
func (e *emitter) one(v float64) any {
	if e.dt == build.Float {
		return []float32{float32(v)}
	}
	return []float64{v}
}

// sum adds a list of values with one Sum node (or returns the only one).
func (e *emitter) sum(vs []string) string {
	if len(vs) == 1 {
		return vs[0]
	}
	return e.op("Sum", vs)
}

func numel(s []int64) int64 {
	n := int64(1)
	for _, d := range s {
		n *= d
	}
	return n
}

func sameShape(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// unbroadcast sums a gradient of shape out down to the shape of an operand that was
// broadcast to it (numpy rules: align right, size-1 axes stretch).
func (e *emitter) unbroadcast(g string, out, in []int64) string {
	if sameShape(out, in) {
		return g
	}
	lead := len(out) - len(in)
	var axes []int64
	for i := range out {
		if i < lead || (in[i-lead] == 1 && out[i] != 1) {
			axes = append(axes, int64(i))
		}
	}
	if len(axes) > 0 {
		g = e.reduceSum(g, axes, true)
	}
	if lead > 0 || len(axes) == 0 {
		g = e.reshape(g, in)
	}
	return g
}

// dtypeName is used in messages.
func dtypeName(dt pb.TensorProto_DataType) string {
	return strings.ToLower(pb.TensorProto_DataType_name[int32(dt)])
}

// reduce emits a Reduce* node over axes, as an attribute before opset 18 (ReduceSum took
// an input from 13) and as an input from 18.
func (e *emitter) reduce(op, x string, axes []int64, keep bool) string {
	k := int64(0)
	if keep {
		k = 1
	}
	if op == "ReduceSum" || e.opset >= 18 {
		return e.op(op, []string{x, e.i64(axes...)}, build.Int("keepdims", k))
	}
	return e.op(op, []string{x}, build.Ints("axes", axes...), build.Int("keepdims", k))
}
