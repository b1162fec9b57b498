package features

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/onnx/zoo"
	"github.com/diagd/diagd/internal/testenv"
	"github.com/diagd/diagd/retrain/rtest"
)

// writeResNet writes a SmallResNet detector folder, a float16 export (model.half())
// when fp16; both exports of one seed have the same weights up to float16 rounding.
func writeResNet(t *testing.T, fp16 bool) string {
	t.Helper()
	dir := t.TempDir()
	cfg := zoo.SmallResNet(rtest.H, rtest.W, 11)
	cfg.FP16 = fp16
	if err := zoo.WriteResNet(cfg, filepath.Join(dir, detect.ModelFile)); err != nil {
		t.Fatal(err)
	}
	m := detect.DefaultMetadata("v")
	m.Input.Height, m.Input.Width = rtest.H, rtest.W
	if err := detect.WriteMetadata(dir, m); err != nil {
		t.Fatal(err)
	}
	return dir
}

// A float16 detector is extracted through detect's float16 boundary: its logits are
// what serving (detect.Model) gives for the same images, and its features and logits
// are the float32 export's within float16's precision.
func TestFloat16Detector(t *testing.T) {
	testenv.ORT(t)
	log := testenv.Logger(t)
	its := items(t, 5)
	extract := func(dir string) *Result {
		ex, err := Open(log, dir, Options{Session: cpu, Batch: 2})
		if err != nil {
			t.Fatal(err)
		}
		defer ex.Close()
		r, err := ex.Extract(t.Context(), its, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r.Failed != 0 {
			t.Fatalf("%d images failed: %v", r.Failed, r.Errs)
		}
		return r
	}
	dir16 := writeResNet(t, true)
	r16, r32 := extract(dir16), extract(writeResNet(t, false))

	m, err := detect.LoadModel(log, dir16, detect.Options{Session: cpu, MaxBatch: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var paths []string
	for _, it := range its {
		paths = append(paths, it.Path)
	}
	served, err := m.ScoreFiles(t.Context(), paths, nil)
	if err != nil {
		t.Fatal(err)
	}
	var worst float64
	for i := range its {
		// Same boundary, same preprocessing, same batches: the serving logit to within
		// one float16 step.
		if d := math.Abs(float64(r16.Logits[i] - served[i].Logit)); d > math.Abs(float64(served[i].Logit))/1024 {
			t.Errorf("image %d: extracted fp16 logit %v, served %v", i, r16.Logits[i], served[i].Logit)
		}
		// float16 keeps 11 significant bits; through a few layers values move by a few
		// thousandths of their scale.
		if d := math.Abs(float64(r16.Logits[i] - r32.Logits[i])); d > 0.005*max(1, math.Abs(float64(r32.Logits[i]))) {
			t.Errorf("image %d: fp16 logit %v, fp32 %v", i, r16.Logits[i], r32.Logits[i])
		}
		if len(r16.Features[i]) != len(r32.Features[i]) || len(r16.Features[i]) == 0 {
			t.Fatalf("image %d: %d fp16 features, %d fp32", i, len(r16.Features[i]), len(r32.Features[i]))
		}
		for j, f := range r32.Features[i] {
			d := math.Abs(float64(r16.Features[i][j] - f))
			worst = max(worst, d/max(1, math.Abs(float64(f))))
			if d > 0.005*max(1, math.Abs(float64(f))) {
				t.Errorf("image %d feature %d: fp16 %v, fp32 %v", i, j, r16.Features[i][j], f)
			}
		}
	}
	t.Logf("largest fp16−fp32 feature difference: %.2g of max(1, |value|)", worst)
}
