package zoo_test

import (
	"path/filepath"
	"strings"
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/diagd/diagd/internal/onnx/build"
	"github.com/diagd/diagd/internal/onnx/zoo"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/internal/testenv"
)

// TestResNet50MatchesTorchvisionExport checks the generated ResNet-50 against what the
// README's export of torchvision's resnet50 (fc -> Linear(2048,1)) produces: the same
// input and output names, shapes and dtypes, and the same parameter layout. torchvision
// documents 25,557,032 parameters for resnet50; replacing the 1000-way fc (2048·1000+1000)
// with a 1-way one (2048+1) leaves 23,510,081. BN running statistics are buffers, not
// parameters, so they are not counted.
func TestResNet50MatchesTorchvisionExport(t *testing.T) {
	testenv.ORT(t)
	path := filepath.Join(t.TempDir(), "model.onnx")
	if err := zoo.WriteResNet(zoo.ResNet50(1), path); err != nil {
		t.Fatal(err)
	}
	ins, outs, err := ortenv.Describe(testenv.Logger(t), path)
	if err != nil {
		t.Fatal(err)
	}
	if len(ins) != 1 || ins[0].Name != "input" || ins[0].DataType != ort.TensorElementDataTypeFloat ||
		!ins[0].Dimensions.Equals(ort.NewShape(-1, 3, 704, 256)) {
		t.Errorf("inputs %v; want input float [batch,3,704,256]", ins)
	}
	if len(outs) != 2 || outs[0].Name != "logit" || !outs[0].Dimensions.Equals(ort.NewShape(-1, 1)) ||
		outs[1].Name != "features" || !outs[1].Dimensions.Equals(ort.NewShape(-1, 2048)) {
		t.Errorf("outputs %v; want logit [batch,1], features [batch,2048]", outs)
	}
	m, err := build.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var params int64
	names := map[string]bool{}
	for _, init := range m.Graph.Initializer {
		names[init.GetName()] = true
		if strings.HasSuffix(init.GetName(), ".running_mean") || strings.HasSuffix(init.GetName(), ".running_var") {
			continue
		}
		n := int64(1)
		for _, d := range init.Dims {
			n *= d
		}
		params += n
	}
	if params != 23_510_081 {
		t.Errorf("parameters: %d, want 23,510,081", params)
	}
	for _, n := range []string{"conv1.weight", "bn1.running_var", "layer1.0.downsample.0.weight", "layer3.5.conv3.weight",
		"layer4.2.bn3.bias", "fc.weight", "fc.bias"} {
		if !names[n] {
			t.Errorf("missing torchvision parameter %s", n)
		}
	}
	if names["layer3.6.conv1.weight"] || names["layer4.3.conv1.weight"] {
		t.Error("more blocks than resnet50's [3,4,6,3]")
	}
}

func TestSmallResNetInterface(t *testing.T) {
	testenv.ORT(t)
	cfg := zoo.SmallResNet(64, 32, 1)
	path := filepath.Join(t.TempDir(), "m.onnx")
	if err := zoo.WriteResNet(cfg, path); err != nil {
		t.Fatal(err)
	}
	ins, outs, err := ortenv.Describe(testenv.Logger(t), path)
	if err != nil {
		t.Fatal(err)
	}
	if !ins[0].Dimensions.Equals(ort.NewShape(-1, 3, 64, 32)) || outs[1].Dimensions[1] != int64(cfg.FeatureDim()) {
		t.Errorf("small resnet: %v -> %v", ins, outs)
	}
}
