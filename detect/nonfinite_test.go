package detect_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/onnx/zoo"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/internal/testenv"
)

// writeMeanSqrtModel writes a model folder whose logit is sqrt(mean(pixel/255) − offset):
// NaN for frames darker than offset (see zoo.WriteMeanSqrtDetector).
func writeMeanSqrtModel(t *testing.T, offset float32) string {
	t.Helper()
	dir := t.TempDir()
	if err := zoo.WriteMeanSqrtDetector(32, 32, offset, filepath.Join(dir, detect.ModelFile)); err != nil {
		t.Fatal(err)
	}
	meta := detect.DefaultMetadata("sqrt-1")
	meta.Input.Height, meta.Input.Width = 32, 32
	meta.Input.Mean, meta.Input.Std = [3]float32{}, [3]float32{1, 1, 1}
	if err := detect.WriteMetadata(dir, meta); err != nil {
		t.Fatal(err)
	}
	return dir
}

func solid(v float64) gocv.Mat {
	return gocv.NewMatWithSizeFromScalar(gocv.NewScalar(v, v, v, 0), 40, 40, gocv.MatTypeCV8UC3)
}

// A NaN logit is an unknown verdict with the reason, never a pass (NaN >= threshold is
// false); frames of the same batch with finite logits are judged as usual.
func TestNonFiniteScoreIsUnknown(t *testing.T) {
	testenv.ORT(t)
	d := detect.New(testenv.Logger(t), detect.Options{Session: ortenv.Options{Provider: ortenv.CPU, Threads: 1}})
	defer d.Close()
	if err := d.LoadAndSwap(writeMeanSqrtModel(t, 0.25)); err != nil {
		t.Fatal(err)
	}
	dark, bright := solid(20), solid(200)
	defer dark.Close()
	defer bright.Close()
	res := make([]detect.Result, 2)
	if err := d.Judge([]gocv.Mat{dark, bright}, res); err != nil {
		t.Fatal(err)
	}
	if r := res[0]; r.Verdict != detect.Unknown || !errors.Is(r.Err, detect.ErrNonFinite) || r.Score != 0 {
		t.Fatalf("dark frame (NaN logit): %+v, want unknown with ErrNonFinite and score 0", r)
	}
	// sqrt(200/255 − 0.25) = 0.7315; sigmoid(0.7315) = 0.6751 >= 0.5: fail.
	if r := res[1]; r.Err != nil || r.Verdict != detect.Fail || r.Score < 0.674 || r.Score > 0.676 {
		t.Fatalf("bright frame: %+v, want fail with score 0.675", r)
	}
}

// A model whose probe images (mid-grey, a gradient) give non-finite logits is refused at
// load, and the serving model stays.
func TestModelWithNonFiniteProbeRefused(t *testing.T) {
	testenv.ORT(t)
	_, err := detect.LoadModel(testenv.Logger(t), writeMeanSqrtModel(t, 2), detect.Options{Session: ortenv.Options{Provider: ortenv.CPU, Threads: 1}})
	if !errors.Is(err, detect.ErrNonFinite) || !strings.Contains(err.Error(), `probe image "grey"`) {
		t.Fatalf("LoadModel of an all-NaN model: %v, want ErrNonFinite on the grey probe", err)
	}
}

// A model_version that is not a plain name is refused: it names files and folders.
func TestModelVersionMustBePlain(t *testing.T) {
	for _, v := range []string{"x/../../escape/pwned", "..", "a/b", "", " v1", "v1\n", "-v1", strings.Repeat("v", 129), "v..1"} {
		m := detect.DefaultMetadata(v)
		if err := m.Validate(); err == nil || !strings.Contains(err.Error(), "model_version") {
			t.Errorf("version %q: %v, want refused", v, err)
		}
	}
	for _, v := range []string{"v1", "m1", "2026-11-20.1", "demo-small-seed1", "1.0+cpu", "A"} {
		m := detect.DefaultMetadata(v)
		if err := m.Validate(); err != nil {
			t.Errorf("version %q refused: %v", v, err)
		}
	}
	// ReadMetadata applies it to a hand-edited model.json.
	dir := t.TempDir()
	m := detect.DefaultMetadata("v1")
	if err := detect.WriteMetadata(dir, m); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, detect.MetadataFile))
	os.WriteFile(filepath.Join(dir, detect.MetadataFile), []byte(strings.Replace(string(b), `"v1"`, `"x/../../escape/pwned"`, 1)), 0o644)
	if _, err := detect.ReadMetadata(dir); err == nil || !strings.Contains(err.Error(), "escape") {
		t.Fatalf("ReadMetadata with a path in model_version: %v", err)
	}
}
