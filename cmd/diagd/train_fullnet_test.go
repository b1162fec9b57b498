package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/onnx/build"
	"github.com/diagd/diagd/internal/testenv"
	"github.com/diagd/diagd/retrain/dataset"
	"github.com/diagd/diagd/retrain/registry"
	"github.com/diagd/diagd/retrain/rtest"
)

// diagd train --trainable all: every layer trains through the training graphs, the
// estimates for every setting are printed first (--budget), progress shows epochs, and
// model.json records the setting, what trained and the recipe.
func TestTrainCommandAllLayers(t *testing.T) {
	testenv.ORT(t)
	data := t.TempDir()
	rtest.Folder(t, filepath.Join(data, dataset.NegativesDir), 48, false, false, 1)
	rtest.Folder(t, filepath.Join(data, dataset.DefectsDir), 16, true, true, 2)
	base := rtest.Model(t, filepath.Join(t.TempDir(), "base"), "base", 5)
	reg := filepath.Join(t.TempDir(), "reg")
	code, out, errs := runTrainCLI(t, "train", "--registry", reg, "--base-model", base, "--data", data, "--mode", "full-shot",
		"--trainable", "all", "--budget", "1h", "--epochs", "2", "--batch", "16", "--micro-batch", "8", "--lr", "1e-3",
		"--provider", "cpu", "--threads", "1", "--no-promote", "--min-defects", "2")
	if code != exitNotPromoted {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	t.Logf("stdout:\n%s", out)
	for _, want := range []string{"trainable: all (as asked)", "  head  estimate", "  last  estimate", "  all   estimate", "per step of 16 images × 8 steps (2 epochs)"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	for _, want := range []string{"train: scan", "train: train epoch 1/2 step", "train: train epoch 2/2 step 4/4"} {
		if !strings.Contains(errs, want) {
			t.Errorf("progress lacks %q:\n%s", want, errs)
		}
	}
	m, err := detect.ReadMetadata(filepath.Join(reg, registry.ModelsDir, "v2"))
	if err != nil {
		t.Fatal(err)
	}
	tr := m.Training
	if tr["trainer"] != "fullnet" || tr["trainable"] != "all" || tr["trained_tensors"] != float64(20) {
		t.Errorf("model.json training: trainer %v, trainable %v, %v tensors; want fullnet, all, 20 (6 convolutions, scale and bias of 6 BatchNormalizations, fc)", tr["trainer"], tr["trainable"], tr["trained_tensors"])
	}
	if r, _ := tr["recipe"].(map[string]any); r["epochs"] != float64(2) || r["micro_batch"] != float64(8) || r["batch_norm"] != "paper" {
		t.Errorf("recipe %v", tr["recipe"])
	}
	if _, err := os.Stat(filepath.Join(reg, "training")); !os.IsNotExist(err) {
		t.Errorf("the finished run left its folder (%v)", err)
	}
}

// --trainable last on a network without downsampling is refused, naming why.
func TestTrainCommandLastNeedsStages(t *testing.T) {
	testenv.ORT(t)
	data := t.TempDir()
	rtest.Folder(t, filepath.Join(data, dataset.NegativesDir), 12, false, false, 1)
	rtest.Folder(t, filepath.Join(data, dataset.DefectsDir), 8, true, true, 2)
	base := filepath.Join(t.TempDir(), "flat")
	g := build.New("flat")
	x := g.Input("input", build.Float, "batch", 3, rtest.H, rtest.W)
	w := g.Init("c.weight", []int64{4, 3, 3, 3}, make([]float32, 108))
	f := g.Identity(g.Flatten(g.GlobalAveragePool(g.Relu(g.Conv2D(x, w, "", 3, 1, 1))), 1), "features")
	g.Identity(g.Gemm(f, g.Init("fc.weight", []int64{1, 4}, make([]float32, 4)), g.Init("fc.bias", []int64{1}, []float32{0})), "logit")
	g.Output("logit", build.Float, "batch", 1)
	g.Output("features", build.Float, "batch", 4)
	os.MkdirAll(base, 0o755)
	if err := g.Save(filepath.Join(base, detect.ModelFile)); err != nil {
		t.Fatal(err)
	}
	meta := detect.DefaultMetadata("flat")
	meta.Input.Height, meta.Input.Width = rtest.H, rtest.W
	if err := detect.WriteMetadata(base, meta); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runTrainCLI(t, "train", "--registry", filepath.Join(t.TempDir(), "reg"), "--base-model", base, "--data", data,
		"--mode", "full-shot", "--trainable", "last", "--provider", "cpu")
	if code != 1 || !strings.Contains(errs, "no recognisable stages") || !strings.Contains(errs, "no strided convolution") {
		t.Errorf("exit %d\n%s\n%s", code, out, errs)
	}
	code, _, errs = runTrainCLI(t, "train", "--registry", "r", "--data", data, "--trainable", "some")
	if code != 1 || !strings.Contains(errs, `unknown trainable setting "some"`) {
		t.Errorf("--trainable some: %d %s", code, errs)
	}
}
