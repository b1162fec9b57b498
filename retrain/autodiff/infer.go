package autodiff

import (
	"encoding/binary"
	"fmt"
	"math"

	pb "github.com/diagd/diagd/internal/onnx/onnxpb"
)

// shapes holds what is known statically about the forward graph's values: shapes for a
// fixed batch size, and the values of small integer and float constants (Reshape shapes,
// Slice bounds, Resize scales), which rules need to build exact backward ops.
type shapes struct {
	shape  map[string][]int64
	ints   map[string][]int64
	floats map[string][]float64
	why    map[string]string // why a value's shape is unknown
}

func newShapes() *shapes {
	return &shapes{shape: map[string][]int64{}, ints: map[string][]int64{},
		floats: map[string][]float64{}, why: map[string]string{}}
}

// of returns a value's shape or an error naming the node that needed it.
func (s *shapes) of(n *pb.NodeProto, v string) ([]int64, error) {
	if sh, ok := s.shape[v]; ok {
		return sh, nil
	}
	why := s.why[v]
	if why == "" {
		why = "no shape could be inferred"
	}
	return nil, unsupported(n, "", "shape of %q unknown: %s", v, why)
}

// constInts returns the value of a constant int64 input, or an error naming it.
func (s *shapes) constInts(n *pb.NodeProto, i int, what string) ([]int64, error) {
	if i >= len(n.Input) || n.Input[i] == "" {
		return nil, nil
	}
	v, ok := s.ints[n.Input[i]]
	if !ok {
		return nil, unsupported(n, what, "input %q must be a constant (an initializer or Constant node)", n.Input[i])
	}
	return v, nil
}

// tensorValues decodes an int64 or float tensor's values; ok is false for other types
// or external data.
func tensorValues(t *pb.TensorProto) (ints []int64, floats []float64, ok bool) {
	n := int(numel(t.Dims))
	raw := t.RawData
	switch pb.TensorProto_DataType(t.GetDataType()) {
	case pb.TensorProto_INT64:
		if len(t.Int64Data) == n {
			return append([]int64{}, t.Int64Data...), nil, true
		}
		if len(raw) == 8*n {
			out := make([]int64, n)
			for i := range out {
				out[i] = int64(binary.LittleEndian.Uint64(raw[8*i:]))
			}
			return out, nil, true
		}
	case pb.TensorProto_FLOAT:
		if len(t.FloatData) == n {
			out := make([]float64, n)
			for i, f := range t.FloatData {
				out[i] = float64(f)
			}
			return nil, out, true
		}
		if len(raw) == 4*n {
			out := make([]float64, n)
			for i := range out {
				out[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:])))
			}
			return nil, out, true
		}
	case pb.TensorProto_DOUBLE:
		if len(t.DoubleData) == n {
			return nil, append([]float64{}, t.DoubleData...), true
		}
		if len(raw) == 8*n {
			out := make([]float64, n)
			for i := range out {
				out[i] = math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:]))
			}
			return nil, out, true
		}
	}
	return nil, nil, false
}

// addTensor records an initializer's (or Constant's) shape and small values.
func (s *shapes) addTensor(name string, t *pb.TensorProto) {
	s.shape[name] = append([]int64{}, t.Dims...)
	if numel(t.Dims) > 64 {
		return
	}
	if ints, floats, ok := tensorValues(t); ok {
		if ints != nil {
			s.ints[name] = ints
		}
		if floats != nil {
			s.floats[name] = floats
		}
	}
}

// infer walks the graph in order (ONNX graphs are topologically sorted) and fills in
// shapes. A node it cannot infer leaves its outputs unknown with the reason; that only
// matters if a backward rule later needs them.
func (s *shapes) infer(g *pb.GraphProto) {
	for _, n := range g.Node {
		if err := s.inferNode(n); err != nil {
			for _, o := range n.Output {
				s.why[o] = err.Error()
			}
		}
	}
}

func (s *shapes) inferNode(n *pb.NodeProto) error {
	f := inferers[n.GetOpType()]
	if f == nil {
		return fmt.Errorf("%s nodes are not shape-inferred here", n.GetOpType())
	}
	in := make([][]int64, len(n.Input))
	for i, v := range n.Input {
		if v == "" {
			continue
		}
		sh, ok := s.shape[v]
		if !ok && !optionalShapeInput(n.GetOpType(), i) {
			return fmt.Errorf("input %q of %s node %q has no known shape", v, n.GetOpType(), nodeName(n))
		}
		in[i] = sh
	}
	outs, err := f(s, n, newAttrs(n), in)
	if err != nil {
		return err
	}
	for i, o := range outs {
		if i < len(n.Output) && n.Output[i] != "" {
			s.shape[n.Output[i]] = o
		}
	}
	return nil
}

// optionalShapeInput lists inputs whose shape inference can do without (Resize's roi).
func optionalShapeInput(op string, i int) bool {
	return op == "Resize" && i == 1 // roi
}
