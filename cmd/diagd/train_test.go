package main

import (
	"bytes"
	"fmt"
	"image"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diagd/diagd/internal/testenv"
	"github.com/diagd/diagd/retrain/dataset"
	"github.com/diagd/diagd/retrain/registry"
	"github.com/diagd/diagd/retrain/rtest"
)

func runTrainCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := dispatch(t.Context(), &cliEnv{stdout: &out, stderr: &errb, log: testenv.Logger(t)}, args)
	return code, out.String(), errb.String()
}

// diagd train end to end on a data folder: an empty registry takes the base model as
// v1, the retrained v2 beats it on held-out real defects and is promoted; models
// list/rollback/decisions then work on the result.
func TestTrainCommand(t *testing.T) {
	testenv.ORT(t)
	data := t.TempDir()
	rtest.Folder(t, filepath.Join(data, dataset.NegativesDir), 80, false, false, 1)
	rtest.Folder(t, filepath.Join(data, dataset.DefectsDir), 10, true, true, 2)
	rtest.Folder(t, filepath.Join(data, dataset.AcceptedDir), 30, true, true, 3)
	base := rtest.Model(t, filepath.Join(t.TempDir(), "base"), "base", 5)
	reg := filepath.Join(t.TempDir(), "reg")
	// The default recipe: nothing to tune for the stand-in's 16-wide features.
	code, out, errs := runTrainCLI(t, "train", "--registry", reg, "--base-model", base, "--data", data,
		"--provider", "cpu", "--seed", "1")
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	t.Logf("stdout:\n%s", out)
	for _, want := range []string{"imported", "synthetic:generator", "decision: promote v2", "serving   v1"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// stderr is not a terminal here: progress comes as plain lines, one per stage at least.
	for _, stage := range []string{"train: dataset", "train: features", "train: train step", "train: decide", "train: done promote v2"} {
		if !strings.Contains(errs, stage) {
			t.Errorf("progress lacks %q:\n%s", stage, errs)
		}
	}
	code, out, errs = runTrainCLI(t, "models", "--registry", reg, "list")
	if code != 0 || !strings.Contains(out, "*   v2") || !strings.Contains(out, "-   v1") {
		t.Errorf("list: %d\n%s\n%s", code, out, errs)
	}
	code, out, _ = runTrainCLI(t, "models", "--registry", reg, "rollback")
	if code != 0 || !strings.Contains(out, "current: v1 (rolled back from v2)") {
		t.Errorf("rollback: %d %s", code, out)
	}
	code, out, _ = runTrainCLI(t, "models", "--registry", reg, "decisions")
	if code != 0 || strings.Count(out, "\n") != 3 || !strings.Contains(out, "rollback") {
		t.Errorf("decisions: %d\n%s", code, out)
	}
	// A hand-broken registry is reported, with a non-zero exit.
	os.Remove(filepath.Join(reg, registry.ModelsDir, "v2", "model.json"))
	code, _, errs = runTrainCLI(t, "models", "--registry", reg, "list")
	if code != 1 || !strings.Contains(errs, "v2 has no model.json") {
		t.Errorf("broken list: %d %s", code, errs)
	}
}

func TestTrainCommandErrors(t *testing.T) {
	reg := t.TempDir()
	os.Mkdir(filepath.Join(reg, registry.ModelsDir), 0o755)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"train"}, 2, "--registry and --data are required"},
		{[]string{"train", "--registry", reg, "--data", reg, "--mode", "few-shot"}, 1, `unknown mode "few-shot"`},
		{[]string{"train", "--registry", reg, "--data", filepath.Join(reg, "none")}, 1, "no such file"},
		{[]string{"models", "--registry", reg, "promote", "v9"}, 1, "version v9 does not exist"},
		{[]string{"models", "--registry", reg, "rollback"}, 1, "nothing to roll back to"},
		{[]string{"models", "--registry", reg, "fly"}, 2, `unknown action "fly"`},
		{[]string{"models", "--registry", filepath.Join(reg, "typo"), "list"}, 1, "is not a model registry"},
	} {
		code, _, errs := runTrainCLI(t, c.args...)
		if code != c.code || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", c.args, code, errs, c.code, c.want)
		}
	}
	// Data with only negatives and no synthetic images: an empty class, said plainly.
	data := t.TempDir()
	rtest.Folder(t, filepath.Join(data, dataset.NegativesDir), 5, false, false, 1)
	base := rtest.Model(t, filepath.Join(t.TempDir(), "base"), "base", 5)
	code, _, errs := runTrainCLI(t, "train", "--registry", filepath.Join(reg, "r"), "--base-model", base, "--data", data)
	if code != 1 || !strings.Contains(errs, "none of them a defect") {
		t.Errorf("empty class: %d %s", code, errs)
	}
}

// writeKSDD2Split writes nOK defect-free and nDefect blob images with NNNNN_GT.png masks.
func writeKSDD2Split(t *testing.T, dir string, nOK, nDefect int, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 7))
	for i := range nOK + nDefect {
		img, mask := rtest.Image(rng, i >= nOK)
		if mask == nil {
			mask = image.NewGray(img.Rect)
		}
		rtest.WritePNG(t, filepath.Join(dir, fmt.Sprintf("%05d.png", i)), img)
		rtest.WritePNG(t, filepath.Join(dir, fmt.Sprintf("%05d_GT.png", i)), mask)
	}
}

// The paper's protocol on a KSDD2-shaped folder: zero-shot trains on train/'s
// defect-free images plus the first N synthetic ones and validates on test/.
func TestTrainCommandKSDD2ZeroShot(t *testing.T) {
	testenv.ORT(t)
	root := t.TempDir()
	writeKSDD2Split(t, filepath.Join(root, "train"), 60, 6, 1)
	writeKSDD2Split(t, filepath.Join(root, "test"), 30, 8, 2)
	syn := t.TempDir()
	rtest.Folder(t, syn, 25, true, true, 3)
	base := rtest.Model(t, filepath.Join(t.TempDir(), "base"), "base", 5)
	reg := filepath.Join(t.TempDir(), "reg")
	code, out, errs := runTrainCLI(t, "train", "--registry", reg, "--base-model", base, "--data", root,
		"--synthetic", syn, "--n", "20", "--provider", "cpu", "--min-defects", "8")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	t.Logf("stdout:\n%s", out)
	// Training: 60 ok + 20 synthetic (the 6 real train defects are left out); validation: test/.
	for _, want := range []string{"real:ksdd2/train                       60        0", "synthetic:generator                     0       20",
		"real:ksdd2/test                        30        8", "(38 images, 8 defects)"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

// Issue 10's frictions: "any" is a label rule train accepts; a learning rate without
// the adam solver is refused rather than ignored; the paper's rule relabelling marked
// defects as ok is a warning with the count.
func TestTrainFlagsAndRelabelWarning(t *testing.T) {
	reg := filepath.Join(t.TempDir(), "reg")
	code, _, errs := runTrainCLI(t, "train", "--registry", reg, "--data", t.TempDir(), "--label-rule", "any", "--lr", "0.01")
	if code != 1 || strings.Contains(errs, "unknown label rule") || !strings.Contains(errs, "apply to the adam solver only") {
		t.Errorf("--lr with logreg: %d %s", code, errs)
	}
	code, _, errs = runTrainCLI(t, "train", "--registry", reg, "--data", t.TempDir(), "--min-defects", "0")
	if code != 1 || !strings.Contains(errs, "minimum validation defects 0") {
		t.Errorf("--min-defects 0: %d %s", code, errs)
	}
	testenv.ORT(t)
	root := t.TempDir()
	writeKSDD2Split(t, filepath.Join(root, "train"), 40, 12, 1)
	writeKSDD2Split(t, filepath.Join(root, "test"), 20, 6, 2)
	// Three train defects get a lone marked pixel: a defect under "any", ok under "paper".
	for i := 40; i < 43; i++ {
		m := image.NewGray(image.Rect(0, 0, rtest.W, rtest.H))
		m.Pix[5*rtest.W+5] = 255
		rtest.WritePNG(t, filepath.Join(root, "train", fmt.Sprintf("%05d_GT.png", i)), m)
	}
	base := rtest.Model(t, filepath.Join(t.TempDir(), "base"), "base", 5)
	code, out, errs := runTrainCLI(t, "train", "--registry", reg, "--base-model", base, "--data", root, "--mode", "full-shot",
		"--label-rule", "paper", "--provider", "cpu", "--min-defects", "5")
	if code != 0 && code != exitNotPromoted {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	if !strings.Contains(errs, "the paper label rule labelled 3 images ok although their masks mark a defect") {
		t.Errorf("no relabel warning with the count:\n%s", errs)
	}
	for _, want := range []string{"chance    AP of random rankings", "threshold", "decision:"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
