package fullnet

import (
	"fmt"
	"path/filepath"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/onnx/build"
	pb "github.com/diagd/diagd/internal/onnx/onnxpb"
)

// Preflight implements retrain.Preflighter: the training graphs are float32, so a
// float16 export (model.half()) is refused before any image is read, naming the value.
func (Trainer) Preflight(baseDir string, _ detect.Metadata) error {
	path := filepath.Join(baseDir, detect.ModelFile)
	m, err := build.Load(path)
	if err != nil {
		return err
	}
	if name := firstHalf(m.GetGraph()); name != "" {
		return fmt.Errorf("%s: %q is float16; training every layer needs a float32 export (export without .half(), or train the head of a float32 copy)", path, name)
	}
	return nil
}

// firstHalf names the first graph input, output or initializer stored as float16.
func firstHalf(g *pb.GraphProto) string {
	f16 := int32(pb.TensorProto_FLOAT16)
	for _, v := range append(append([]*pb.ValueInfoProto(nil), g.GetInput()...), g.GetOutput()...) {
		if v.GetType().GetTensorType().GetElemType() == f16 {
			return v.GetName()
		}
	}
	for _, t := range g.GetInitializer() {
		if t.GetDataType() == f16 {
			return t.GetName()
		}
	}
	return ""
}
