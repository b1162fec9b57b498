package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/onnx/zoo"
	"github.com/diagd/diagd/internal/testenv"
)

func writeTestModel(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := zoo.WriteResNet(zoo.SmallResNet(64, 32, 3), filepath.Join(dir, detect.ModelFile)); err != nil {
		t.Fatal(err)
	}
	meta := detect.DefaultMetadata("test-1")
	meta.Input.Height, meta.Input.Width = 64, 32
	if err := detect.WriteMetadata(dir, meta); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestDetectCommand(t *testing.T) {
	testenv.ORT(t)
	model := writeTestModel(t)
	imgs := t.TempDir()
	var paths []string
	for i, ext := range []string{"png", "jpg", "bmp"} {
		m := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(float64(40*i), 100, 200, 0), 120, 90, gocv.MatTypeCV8UC3)
		p := filepath.Join(imgs, "ok"+string(rune('a'+i))+"."+ext)
		if !gocv.IMWrite(p, m) {
			t.Fatalf("IMWrite %s", p)
		}
		m.Close()
		paths = append(paths, p)
	}
	empty := filepath.Join(imgs, "empty.png")
	os.WriteFile(empty, nil, 0o644)
	junk := filepath.Join(imgs, "junk.png")
	os.WriteFile(junk, []byte("\x89PNG\r\n\x1a\n truncated"), 0o644)
	missing := filepath.Join(imgs, "missing.png")

	// All good: exit 0, one line per image, in order.
	code, out, errs := runCLI(t, "detect", "--model", model, "--json", paths[0], paths[1], paths[2])
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines: %s", len(lines), out)
	}
	for i, l := range lines {
		var v detectLine
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if v.Image != paths[i] || (v.Verdict != "pass" && v.Verdict != "fail") || v.ModelVersion != "test-1" || v.Threshold != 0.5 {
			t.Errorf("line %d: %+v", i, v)
		}
	}

	// Bad images among good ones: each bad one named with its reason, the good ones
	// still judged, exit code 1.
	code, out, errs = runCLI(t, "detect", "--model", model, "--json", paths[0], empty, junk, missing, paths[1])
	if code != 1 {
		t.Fatalf("exit %d with bad images, want 1", code)
	}
	lines = strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 {
		t.Fatalf("%d lines: %s", len(lines), out)
	}
	wantErr := map[int]string{1: "empty", 2: "not a decodable image", 3: "no such file"}
	for i, l := range lines {
		var v detectLine
		json.Unmarshal([]byte(l), &v)
		if w, bad := wantErr[i]; bad {
			if !strings.Contains(v.Error, w) || v.Verdict != "" {
				t.Errorf("line %d: %+v, want error mentioning %q", i, v, w)
			}
		} else if v.Error != "" || v.Verdict == "" {
			t.Errorf("line %d: good image not judged: %+v", i, v)
		}
	}
	if !strings.Contains(errs, "3 of 5 images") {
		t.Errorf("stderr %q", errs)
	}

	// Text output and bad invocations.
	if code, out, _ := runCLI(t, "detect", "--model", model, paths[2]); code != 0 || !strings.Contains(out, "score=") {
		t.Errorf("text output: exit %d %q", code, out)
	}
	if code, _, errs := runCLI(t, "detect", "--model", t.TempDir(), paths[0]); code != 1 || !strings.Contains(errs, "model.json") {
		t.Errorf("missing model: exit %d %q", code, errs)
	}
	if code, _, errs := runCLI(t, "detect", "--model", model, "--provider", "gpu", paths[0]); code != 2 || !strings.Contains(errs, `"gpu"`) {
		t.Errorf("bad provider: exit %d %q", code, errs)
	}
	if code, _, _ := runCLI(t, "detect", "--model", model); code != 2 {
		t.Errorf("no images: exit %d", code)
	}
}

func TestHelpAndUnknownCommand(t *testing.T) {
	code, out, _ := runCLI(t, "help")
	if code != 0 || !strings.Contains(out, "detect") || !strings.Contains(out, "version") {
		t.Errorf("help: %d %q", code, out)
	}
	if code, _, errs := runCLI(t, "frobnicate"); code != 2 || !strings.Contains(errs, "frobnicate") {
		t.Errorf("unknown: %d %q", code, errs)
	}
}

// TestBinaryFindsORT builds the real binary and checks where it looks for ONNX Runtime:
// next to itself, then DIAGD_ORT_LIB overriding that, and a clear error when absent.
func TestBinaryFindsORT(t *testing.T) {
	root := testenv.ModuleRoot(t)
	lib, err := filepath.EvalSymlinks(filepath.Join(root, "bin", "libonnxruntime.so"))
	if err != nil {
		t.Fatalf("run scripts/setup.sh first: %v", err)
	}
	dir := t.TempDir()
	exe := filepath.Join(dir, "diagd")
	build := exec.Command("go", "build", "-o", exe, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	version := func(env ...string) (string, error) {
		c := exec.Command(exe, "version")
		c.Env = append(os.Environ(), env...)
		out, err := c.CombinedOutput()
		return string(out), err
	}
	// No library anywhere we look (the loader's own path has none on a setup.sh machine).
	out, err := version("DIAGD_ORT_LIB=")
	if err == nil || !strings.Contains(out, "DIAGD_ORT_LIB") || !strings.Contains(out, "setup.sh") {
		t.Errorf("without a library: err %v, output %q", err, out)
	}
	// Next to the binary.
	if err := os.Symlink(lib, filepath.Join(dir, "libonnxruntime.so")); err != nil {
		t.Fatal(err)
	}
	out, err = version("DIAGD_ORT_LIB=")
	if err != nil || !strings.Contains(out, "onnx runtime 1.24.1: "+filepath.Join(dir, "libonnxruntime.so")) {
		t.Errorf("next to the binary: err %v, output %q", err, out)
	}
	// An explicit DIAGD_ORT_LIB wins over the copy next to the binary (how a user points
	// diagd at a GPU build).
	other := filepath.Join(t.TempDir(), "libonnxruntime-gpu.so")
	os.Symlink(lib, other)
	out, err = version("DIAGD_ORT_LIB=" + other)
	if err != nil || !strings.Contains(out, other) {
		t.Errorf("DIAGD_ORT_LIB: err %v, output %q", err, out)
	}
}

// A frame on which the model yields NaN is reported as not judged, in text and JSON,
// and the exit status says so; a model that yields NaN on its probe images is refused.
func TestDetectReportsNonFiniteScores(t *testing.T) {
	testenv.ORT(t)
	writeSqrt := func(offset float32) string {
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
	imgs := t.TempDir()
	dark, bright := filepath.Join(imgs, "dark.png"), filepath.Join(imgs, "bright.png")
	for p, v := range map[string]float64{dark: 20, bright: 200} {
		m := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(v, v, v, 0), 40, 40, gocv.MatTypeCV8UC3)
		gocv.IMWrite(p, m)
		m.Close()
	}
	model := writeSqrt(0.25) // NaN below pixel value 64
	code, out, errs := runCLI(t, "detect", "--model", model, "--json", dark, bright)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 1 || len(lines) != 2 || !strings.Contains(errs, "1 of 2 images") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
	var d, b detectLine
	if json.Unmarshal([]byte(lines[0]), &d) != nil || json.Unmarshal([]byte(lines[1]), &b) != nil {
		t.Fatalf("lines %q", lines)
	}
	if d.Verdict != "" || !strings.Contains(d.Error, "not a finite number") || d.ModelVersion != "sqrt-1" {
		t.Errorf("dark image: %+v, want an error line naming the non-finite score", d)
	}
	if b.Error != "" || b.Verdict != "fail" {
		t.Errorf("bright image: %+v", b)
	}
	code, out, _ = runCLI(t, "detect", "--model", model, dark)
	if code != 1 || !strings.Contains(out, dark+"\terror\t") || strings.Contains(out, "NaN\tthreshold") {
		t.Errorf("text output: exit %d %q", code, out)
	}
	code, _, errs = runCLI(t, "detect", "--model", writeSqrt(2), bright)
	if code != 1 || !strings.Contains(errs, "refused") || !strings.Contains(errs, "probe image") {
		t.Errorf("all-NaN model: exit %d %q", code, errs)
	}
}
