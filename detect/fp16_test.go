package detect_test

import (
	"math"
	"path/filepath"
	"testing"

	ort "github.com/yalue/onnxruntime_go"
	"gocv.io/x/gocv"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/half"
	"github.com/diagd/diagd/internal/onnx/zoo"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/internal/testenv"
)

// bareHalfLogits runs float32 tensors, rounded to float16, through a float16 export in
// a session of its own, and widens the logits: what detect must give for the model.
func bareHalfLogits(t *testing.T, modelPath string, in detect.InputSpec, tensors [][]float32) []float32 {
	t.Helper()
	var data []float32
	for _, x := range tensors {
		data = append(data, x...)
	}
	inHalf, outHalf := make([]byte, 2*len(data)), make([]byte, 2*len(tensors))
	half.Encode(inHalf, data)
	n := int64(len(tensors))
	input, err := ort.NewCustomDataTensor(ort.NewShape(n, 3, int64(in.Height), int64(in.Width)), inHalf, ort.TensorElementDataTypeFloat16)
	if err != nil {
		t.Fatal(err)
	}
	defer input.Destroy()
	output, err := ort.NewCustomDataTensor(ort.NewShape(n, 1), outHalf, ort.TensorElementDataTypeFloat16)
	if err != nil {
		t.Fatal(err)
	}
	defer output.Destroy()
	s, err := ort.NewAdvancedSession(modelPath, []string{"input"}, []string{"logit"}, []ort.Value{input}, []ort.Value{output}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()
	if err := s.Run(); err != nil {
		t.Fatal(err)
	}
	logits := make([]float32, n)
	half.Decode(logits, outHalf)
	return logits
}

// TestFloat16Detector: a model.half() export loads, its frames are converted to float16
// at the input and its logits back at the output — bit for bit what a bare float16 run
// gives — and it scores like the float32 export of the same weights within float16's
// precision.
func TestFloat16Detector(t *testing.T) {
	testenv.ORT(t)
	log := testenv.Logger(t)
	cfg := zoo.SmallResNet(64, 32, 21)
	dir32 := writeModel(t, cfg, "fp32")
	cfg.FP16 = true
	dir16 := writeModel(t, cfg, "fp16")
	open := func(dir string) *detect.Model {
		m, err := detect.LoadModel(log, dir, detect.Options{Session: ortenv.Options{Provider: ortenv.CPU}, MaxBatch: 4})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
		return m
	}
	m16, m32 := open(dir16), open(dir32)
	var frames []gocv.Mat
	var ref [][]float32
	for i, sz := range [][2]int{{1024, 1280}, {64, 32}, {480, 640}, {100, 50}, {70, 40}, {1024, 1280}} {
		f := randomFrame(t, sz[0], sz[1], uint64(40+i))
		frames = append(frames, f)
		ref = append(ref, referenceTensor(t, f, m16.Meta.Input))
	}
	defer closeAll(frames)
	logits := func(m *detect.Model) []float32 {
		out, errs := make([]float32, len(frames)), make([]error, len(frames))
		if err := m.Logits(frames, out, errs); err != nil {
			t.Fatal(err)
		}
		for i, err := range errs {
			if err != nil {
				t.Fatalf("frame %d: %v", i, err)
			}
		}
		return out
	}
	l16, l32 := logits(m16), logits(m32)
	var want []float32
	for start := 0; start < len(ref); start += 4 {
		want = append(want, bareHalfLogits(t, filepath.Join(dir16, detect.ModelFile), m16.Meta.Input, ref[start:min(start+4, len(ref))])...)
	}
	for i := range frames {
		// The reference tensor is computed in float64 and may round differently from the
		// Preprocessor's float32 in the last bit; after float16 rounding that almost never
		// shows, and then by one float16 step of the logit at most.
		if d := math.Abs(float64(l16[i] - want[i])); d > math.Abs(float64(want[i]))/1024 {
			t.Errorf("frame %d: detect fp16 logit %v, bare fp16 ORT %v", i, l16[i], want[i])
		}
		// float16 keeps 11 significant bits; through a few layers the logit moves by a
		// few thousandths of its scale.
		if d := math.Abs(float64(l16[i] - l32[i])); d > 0.005*max(1, math.Abs(float64(l32[i]))) {
			t.Errorf("frame %d: fp16 logit %v, fp32 logit %v", i, l16[i], l32[i])
		}
		t.Logf("frame %d: fp16 %.5f fp32 %.5f bare fp16 %.5f", i, l16[i], l32[i], want[i])
	}
}
