package detect_test

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/onnx/zoo"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/internal/testenv"
)

// gpuOnly skips unless DIAGD_GPU=1 (scripts/device-check.sh sets it, with DIAGD_ORT_LIB
// at the GPU build). With it set, a provider that does not load fails the test.
func gpuOnly(t *testing.T) {
	t.Helper()
	if os.Getenv("DIAGD_GPU") != "1" {
		t.Skip("GPU test: set DIAGD_GPU=1 on a machine with an NVIDIA GPU and the GPU build (scripts/device-check.sh)")
	}
	testenv.ORT(t)
}

// TestGPUScoresMatchCPU: the same frames on CUDA, TensorRT and TensorRT float16 score
// like on CPU, for a float32 and a float16 export. Tolerances: CUDA and TensorRT may run
// convolutions in TF32 (10 mantissa bits, as float16), so scores may move by ~1e-3;
// 0.02 leaves room for a few layers of that and flags a wrong provider setup (wrong
// preprocessing or fp16 overflow moves scores by far more).
func TestGPUScoresMatchCPU(t *testing.T) {
	gpuOnly(t)
	log := testenv.Logger(t)
	cache := t.TempDir()
	frames := []gocv.Mat{}
	for i, sz := range [][2]int{{1024, 1280}, {704, 256}, {480, 640}, {1024, 1280}} {
		frames = append(frames, randomFrame(t, sz[0], sz[1], uint64(70+i)))
	}
	defer closeAll(frames)
	for _, fp16 := range []bool{false, true} {
		// The detector's real input size; a small network keeps TensorRT's engine builds short.
		cfg := zoo.SmallResNet(704, 256, 3)
		cfg.FP16 = fp16
		dir := writeModel(t, cfg, map[bool]string{false: "fp32", true: "fp16"}[fp16])
		scores := func(o ortenv.Options) []float64 {
			m, err := detect.LoadModel(log, dir, detect.Options{Session: o, MaxBatch: 4})
			if err != nil {
				t.Fatalf("fp16 %v, %s: %v", fp16, o.Provider, err)
			}
			defer m.Close()
			if m.Provider != o.Provider {
				t.Fatalf("asked for %s, got %s", o.Provider, m.Provider)
			}
			logits, errs := make([]float32, len(frames)), make([]error, len(frames))
			if err := m.Logits(frames, logits, errs); err != nil {
				t.Fatal(err)
			}
			var s []float64
			for _, l := range logits {
				s = append(s, detect.Sigmoid(l))
			}
			return s
		}
		cpu := scores(ortenv.Options{Provider: ortenv.CPU})
		for _, o := range []ortenv.Options{{Provider: ortenv.CUDA}, {Provider: ortenv.TensorRT, TRTCacheDir: cache},
			{Provider: ortenv.TensorRT, TRTCacheDir: cache, TRTFP16: true}} {
			got := scores(o)
			worst := 0.0
			for i := range got {
				worst = max(worst, math.Abs(got[i]-cpu[i]))
			}
			t.Logf("fp16 export %v, %s (TRT fp16 %v): largest score difference from CPU %.2g", fp16, o.Provider, o.TRTFP16, worst)
			if worst > 0.02 {
				t.Errorf("fp16 export %v, %s (TRT fp16 %v): scores %v, CPU %v", fp16, o.Provider, o.TRTFP16, got, cpu)
			}
		}
	}
	// The engine cache was used: TensorRT wrote its engines where DIAGD_TRT_CACHE says.
	engines, _ := filepath.Glob(filepath.Join(cache, "*.engine"))
	if len(engines) == 0 {
		t.Errorf("no TensorRT engine in the cache folder %s", cache)
	}
}
