package zoo_test

import (
	"math"
	"path/filepath"
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/diagd/diagd/internal/onnx/zoo"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/internal/testenv"
	"github.com/diagd/diagd/retrain/fid/inception"
)

// The stand-in has the interface the README's export of pytorch-fid's InceptionV3 gives:
// input float [batch,3,299,299] and four float outputs [batch,d] named by dimension,
// and it runs: a batch of 2 gives finite, non-constant features for every output.
func TestInceptionStandInInterface(t *testing.T) {
	testenv.ORT(t)
	path := filepath.Join(t.TempDir(), "inception.onnx")
	if err := zoo.WriteInception(zoo.InceptionConfig{Seed: 1, Input: inception.Input, Size: inception.Size, Output: inception.Output}, path); err != nil {
		t.Fatal(err)
	}
	ins, outs, err := ortenv.Describe(testenv.Logger(t), path)
	if err != nil {
		t.Fatal(err)
	}
	if len(ins) != 1 || ins[0].Name != inception.Input || ins[0].DataType != ort.TensorElementDataTypeFloat ||
		!ins[0].Dimensions.Equals(ort.NewShape(-1, 3, 299, 299)) {
		t.Errorf("inputs %v; want input float [batch,3,299,299]", ins)
	}
	want := inception.Dims()
	if len(outs) != len(want) {
		t.Fatalf("outputs %v", outs)
	}
	var names []string
	for i, d := range want {
		o := outs[i]
		name, _ := inception.Output(d)
		if o.Name != name || o.DataType != ort.TensorElementDataTypeFloat || !o.Dimensions.Equals(ort.NewShape(-1, int64(d))) {
			t.Errorf("output %d is %v; want %s float [batch,%d]", i, o, name, d)
		}
		names = append(names, o.Name)
	}
	sess, err := ortenv.OpenSession(testenv.Logger(t), path, []string{"input"}, names, ortenv.Options{Provider: ortenv.CPU})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Destroy()
	x := make([]float32, 2*3*299*299)
	for i := range x {
		x[i] = float32(math.Sin(float64(i) * 0.001))
	}
	in, err := ort.NewTensor(ort.NewShape(2, 3, 299, 299), x)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Destroy()
	res := make([]ort.Value, len(names))
	if err := sess.Run([]ort.Value{in}, res); err != nil {
		t.Fatal(err)
	}
	for i, v := range res {
		data := v.(*ort.Tensor[float32]).GetData()
		if len(data) != 2*want[i] {
			t.Fatalf("%s: %d values", names[i], len(data))
		}
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, f := range data {
			if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
				t.Fatalf("%s: non-finite value", names[i])
			}
			lo, hi = min(lo, float64(f)), max(hi, float64(f))
		}
		if !(hi > lo) {
			t.Errorf("%s: constant output %v", names[i], lo)
		}
		v.Destroy()
	}
}
