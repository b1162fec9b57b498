package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/testenv"
	"github.com/diagd/diagd/retrain/arch"
	"github.com/diagd/diagd/retrain/dataset"
	"github.com/diagd/diagd/retrain/registry"
	"github.com/diagd/diagd/retrain/rtest"
	"github.com/diagd/diagd/retrain/segdec"
)

// diagd train --arch segdec on an empty registry: the untrained network is imported as
// v1, the candidate (v2) is a segdec network with its segmentation output, trained by
// the segdec recipe (every layer, masks on the segmentation, the decision's gradient
// stopped), and model.json says so.
func TestTrainCommandSegDecFromScratch(t *testing.T) {
	testenv.ORT(t)
	data := t.TempDir()
	rtest.Folder(t, filepath.Join(data, dataset.NegativesDir), 12, false, false, 1)
	rtest.Folder(t, filepath.Join(data, dataset.DefectsDir), 8, true, true, 2)
	reg := filepath.Join(t.TempDir(), "reg")
	code, out, errs := runTrainCLI(t, "train", "--arch", "segdec", "--registry", reg, "--data", data, "--mode", "full-shot",
		"--epochs", "1", "--batch", "8", "--provider", "cpu", "--threads", "1", "--no-promote", "--min-defects", "2")
	if code != exitNotPromoted {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	for _, want := range []string{"architecture: segdec", "registry was empty: imported the base model as v1"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	v1, err := detect.ReadMetadata(filepath.Join(reg, registry.ModelsDir, "v1"))
	if err != nil || v1.Architecture != segdec.Architecture {
		t.Fatalf("v1: %+v, %v", v1.Architecture, err)
	}
	m, err := detect.ReadMetadata(filepath.Join(reg, registry.ModelsDir, "v2"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Architecture != segdec.Architecture || m.Outputs.Segmentation != segdec.SegmentationName {
		t.Errorf("v2: architecture %q, segmentation output %q", m.Architecture, m.Outputs.Segmentation)
	}
	r, _ := m.Training["recipe"].(map[string]any)
	seg, _ := r["segmentation"].(string)
	if m.Training["trainable"] != "all" || !strings.Contains(seg, "gradient stopped at dec.in.features") || r["augment"] == "" || r["lr"] != arch.SegDecLR {
		t.Errorf("model.json training %v", m.Training)
	}

	// The registry now serves a segdec network: without --arch the next run trains one
	// too, and takes --epochs for it (not for a logreg head, which would refuse them).
	// A --base-model is not trained from (said so).
	code, out, errs = runTrainCLI(t, "train", "--registry", reg, "--data", data, "--mode", "full-shot", "--base-model", filepath.Join(reg, arch.FreshDir),
		"--epochs", "1", "--batch", "8", "--provider", "cpu", "--threads", "1", "--no-promote", "--min-defects", "2")
	if code != exitNotPromoted || !strings.Contains(out, "architecture: segdec") || !strings.Contains(out, "segdec trains from random weights: --base-model") {
		t.Errorf("second run without --arch: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
}

// A segdec network trains every layer: --trainable head is refused before any work.
func TestTrainCommandSegDecRefusesHead(t *testing.T) {
	code, _, errs := runTrainCLI(t, "train", "--arch", "segdec", "--trainable", "head", "--registry", t.TempDir(), "--data", t.TempDir())
	if code != exitFailure || !strings.Contains(errs, "--trainable head does not apply") {
		t.Errorf("exit %d: %s", code, errs)
	}
}
