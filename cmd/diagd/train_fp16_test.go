package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/onnx/zoo"
	"github.com/diagd/diagd/internal/testenv"
	"github.com/diagd/diagd/retrain/dataset"
	"github.com/diagd/diagd/retrain/rtest"
)

// A float16 detector (model.half()) serves and its features extract, but the head
// trainer writes float32 heads only: diagd train refuses it at once, saying so, before
// any feature is extracted (it used to fail after extraction and training, on "head
// weights are not float32").
func TestTrainRefusesAFloat16BaseAtOnce(t *testing.T) {
	testenv.ORT(t)
	data := t.TempDir()
	rtest.Folder(t, filepath.Join(data, dataset.NegativesDir), 20, false, false, 1)
	rtest.Folder(t, filepath.Join(data, dataset.DefectsDir), 10, true, true, 2)
	base := rtest.Model(t, filepath.Join(t.TempDir(), "base"), "base", 5)
	cfg := zoo.SmallResNet(rtest.H, rtest.W, 5)
	cfg.FP16 = true
	if err := zoo.WriteResNet(cfg, filepath.Join(base, detect.ModelFile)); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runTrainCLI(t, "train", "--registry", filepath.Join(t.TempDir(), "reg"), "--base-model", base,
		"--data", data, "--mode", "full-shot", "--provider", "cpu", "--seed", "1")
	if code != exitFailure || !strings.Contains(errs, "float16") || !strings.Contains(errs, "retrain from the float32 export") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	if strings.Contains(errs, "train: features 1") || strings.Contains(errs, "train: train") {
		t.Errorf("features were extracted before the refusal:\n%s", errs)
	}
}
