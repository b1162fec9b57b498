package autodiff

import (
	"encoding/binary"
	"fmt"
	"math"

	"google.golang.org/protobuf/proto"

	pb "github.com/diagd/diagd/internal/onnx/onnxpb"
)

// FloatValues decodes a float initializer (raw or float_data; external data must be
// loaded into the model first).
func FloatValues(t *pb.TensorProto) ([]float32, error) {
	if pb.TensorProto_DataType(t.GetDataType()) != pb.TensorProto_FLOAT {
		return nil, fmt.Errorf("autodiff: initializer %q is %s, not float", t.GetName(),
			dtypeName(pb.TensorProto_DataType(t.GetDataType())))
	}
	if t.GetDataLocation() == pb.TensorProto_EXTERNAL {
		return nil, fmt.Errorf("autodiff: initializer %q is stored outside the model; load its data first", t.GetName())
	}
	n := int(numel(t.Dims))
	switch {
	case len(t.FloatData) == n:
		return append([]float32{}, t.FloatData...), nil
	case len(t.RawData) == 4*n:
		out := make([]float32, n)
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.RawData[4*i:]))
		}
		return out, nil
	}
	return nil, fmt.Errorf("autodiff: initializer %q holds no data for shape %v", t.GetName(), t.Dims)
}

// InitialValues returns the named float initializers' values.
func InitialValues(m *pb.ModelProto, names []string) (map[string][]float32, error) {
	by := map[string]*pb.TensorProto{}
	for _, t := range m.GetGraph().GetInitializer() {
		by[t.GetName()] = t
	}
	out := map[string][]float32{}
	for _, n := range names {
		t := by[n]
		if t == nil {
			return nil, fmt.Errorf("autodiff: no initializer %q", n)
		}
		v, err := FloatValues(t)
		if err != nil {
			return nil, err
		}
		out[n] = v
	}
	return out, nil
}

// WriteBack returns a copy of the forward model with the given initializers replaced
// (trained weights and BatchNormalization running statistics). The forward model's
// BatchNormalization nodes are inference-mode already, so the copy runs in eval mode.
func WriteBack(fwd *pb.ModelProto, values map[string][]float32) (*pb.ModelProto, error) {
	m := proto.Clone(fwd).(*pb.ModelProto)
	seen := map[string]bool{}
	for _, t := range m.GetGraph().GetInitializer() {
		v, ok := values[t.GetName()]
		if !ok {
			continue
		}
		if pb.TensorProto_DataType(t.GetDataType()) != pb.TensorProto_FLOAT || int64(len(v)) != numel(t.Dims) {
			return nil, fmt.Errorf("autodiff: write-back of %q: %d values for a %s tensor of shape %v", t.GetName(), len(v),
				dtypeName(pb.TensorProto_DataType(t.GetDataType())), t.Dims)
		}
		raw := make([]byte, 4*len(v))
		for i, f := range v {
			binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(f))
		}
		t.RawData, t.FloatData, t.ExternalData = raw, nil, nil
		t.DataLocation = nil
		seen[t.GetName()] = true
	}
	for name := range values {
		if !seen[name] {
			return nil, fmt.Errorf("autodiff: write-back: the model has no initializer %q", name)
		}
	}
	return m, nil
}
