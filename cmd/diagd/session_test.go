package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/internal/testenv"
)

// Every tool that opens a model reads the GPU settings diagd run reads, and refuses a
// bad one by name (exit 78, as run does) before it loads anything.
func TestToolsCheckTheGPUSettings(t *testing.T) {
	d := t.TempDir()
	for _, args := range [][]string{
		{"detect", "--model", d, filepath.Join(d, "x.png")},
		{"eval", "--model", d, "--data", d},
		{"train", "--registry", d, "--data", d},
		{"augment", "--negatives", d, "--catalogue", filepath.Join(d, "defects.yaml"), "--out", d},
		{"fid", "--real", d, "--fake", d, "--model", filepath.Join(d, "inception.onnx")},
	} {
		for k, v := range map[string]string{"DIAGD_TRT_CACHE": "engines", "DIAGD_DEVICE_ID": "-1", "DIAGD_TRT_FP16": "maybe"} {
			t.Run(args[0]+"/"+k, func(t *testing.T) {
				t.Setenv(k, v)
				code, _, stderr := runCLI(t, args...)
				if code != exitConfig || !strings.Contains(stderr, k) {
					t.Errorf("%s=%s: exit %d, stderr %q; want %d naming the variable", k, v, code, stderr, exitConfig)
				}
			})
		}
	}
}

// The settings reach the sessions: under --provider auto, TensorRT is tried first with
// DIAGD_TRT_CACHE as its engine cache (created then, even where TensorRT cannot load and
// the CPU runs the model).
func TestDetectUsesTheTensorRTCache(t *testing.T) {
	testenv.ORT(t)
	model := writeTestModel(t)
	img := filepath.Join(t.TempDir(), "a.png")
	m := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(40, 100, 200, 0), 64, 32, gocv.MatTypeCV8UC3)
	defer m.Close()
	if !gocv.IMWrite(img, m) {
		t.Fatal("IMWrite")
	}
	cache := filepath.Join(t.TempDir(), "engines")
	t.Setenv("DIAGD_TRT_CACHE", cache)
	t.Setenv("DIAGD_TRT_FP16", "true")
	code, _, stderr := runCLI(t, "detect", "--provider", "auto", "--model", model, img)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if st, err := os.Stat(cache); err != nil || !st.IsDir() {
		t.Fatalf("DIAGD_TRT_CACHE %s was not used: %v", cache, err)
	}
}
