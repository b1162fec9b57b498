package sdxl

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/diagd/diagd/internal/onnx/build"
	pb "github.com/diagd/diagd/internal/onnx/onnxpb"
)

// castTimestep returns the UNet graph at path rewritten to take its timestep as a
// float32 scalar and cast it to float16 as its first node. An fp16 export from optimum
// ≥ 1.24 declares timestep as a rank-0 float16 tensor, which onnxruntime_go v1.27 cannot
// create (its custom-data tensors need at least one dimension, and ORT refuses a [1]
// tensor for a rank-0 input). ORT's Cast rounds to nearest even, as the Go-side
// conversion would, and SDXL's timesteps (integers ≤ 999) are exact in float16, so the
// UNet sees the same value. Only the graph is read and rewritten: the weights stay in
// model.onnx_data, which the session finds through the model's folder.
func castTimestep(path string) ([]byte, error) {
	m, err := build.Load(path)
	if err != nil {
		return nil, err
	}
	g := m.GetGraph()
	var in *pb.ValueInfoProto
	for _, v := range g.GetInput() {
		if v.GetName() == "timestep" {
			in = v
		}
	}
	tt := in.GetType().GetTensorType()
	if tt == nil || tt.GetElemType() != int32(pb.TensorProto_FLOAT16) || len(tt.GetShape().GetDim()) != 0 {
		return nil, fmt.Errorf("%s: timestep is not a rank-0 float16 input", path)
	}
	half := "timestep_fp16_diagd"
	if used(g, half) {
		return nil, fmt.Errorf("%s: the graph already has a value named %s", path, half)
	}
	renameInput(g, "timestep", half)
	for _, v := range g.GetValueInfo() {
		if v.GetName() == "timestep" {
			v.Name = proto.String(half)
		}
	}
	tt.ElemType = proto.Int32(int32(pb.TensorProto_FLOAT))
	cast := &pb.NodeProto{Name: proto.String("diagd_timestep_cast"), OpType: proto.String("Cast"),
		Input: []string{"timestep"}, Output: []string{half},
		Attribute: []*pb.AttributeProto{build.Int("to", int64(pb.TensorProto_FLOAT16))}}
	g.Node = append([]*pb.NodeProto{cast}, g.Node...)
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// renameInput makes every node of g, and of the graphs in its nodes' attributes (If and
// Loop bodies see outer values by name), read to instead of from.
func renameInput(g *pb.GraphProto, from, to string) {
	for _, n := range g.GetNode() {
		for i, in := range n.Input {
			if in == from {
				n.Input[i] = to
			}
		}
		for _, a := range n.GetAttribute() {
			if a.G != nil {
				renameInput(a.G, from, to)
			}
			for _, sg := range a.Graphs {
				renameInput(sg, from, to)
			}
		}
	}
}

// used reports whether name is already a value of g (input, initializer or node output).
func used(g *pb.GraphProto, name string) bool {
	for _, v := range g.GetInput() {
		if v.GetName() == name {
			return true
		}
	}
	for _, t := range g.GetInitializer() {
		if t.GetName() == name {
			return true
		}
	}
	for _, n := range g.GetNode() {
		for _, o := range n.GetOutput() {
			if o == name {
				return true
			}
		}
	}
	return false
}
