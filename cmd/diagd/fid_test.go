package main

import (
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/internal/onnx/zoo"
	"github.com/diagd/diagd/internal/testenv"
	"github.com/diagd/diagd/retrain/fid/inception"
)

// fidFolder writes n noisy grey PNGs (with a bright disc when blob) under dir; prefix
// names the files so that a second folder of the same pictures has other names.
func fidFolder(t *testing.T, dir, prefix string, n int, seed uint64, blob bool) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 11))
	for i := range n {
		h, w := 50+rng.IntN(30), 70+rng.IntN(30)
		px := make([]byte, h*w*3)
		for j := range px {
			px[j] = byte(70 + rng.IntN(80))
		}
		m, err := gocv.NewMatFromBytes(h, w, gocv.MatTypeCV8UC3, px)
		if err != nil {
			t.Fatal(err)
		}
		if blob {
			gocv.Circle(&m, image.Pt(12+rng.IntN(w-24), 12+rng.IntN(h-24)), 10, color.RGBA{250, 250, 250, 0}, -1)
		}
		imwrite(t, filepath.Join(dir, fmt.Sprintf("%s%03d.png", prefix, i)), m)
		m.Close()
	}
}

func runFIDJSON(t *testing.T, args ...string) fidResult {
	t.Helper()
	code, stdout, stderr := runCLI(t, append([]string{"fid", "--json", "--provider", "cpu", "--batch", "8"}, args...)...)
	if code != 0 {
		t.Fatalf("fid %v: exit %d\n%s\n%s", args, code, stdout, stderr)
	}
	var r fidResult
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	return r
}

// End to end on real PNG files with the stand-in Inception: the same pictures under
// other names give 0 (to rounding: 1e-6 of the activations' total variance, which
// bounds what the Fréchet formula can leave after cancelling Tr S1 + Tr S2 − 2 Tr(...)),
// the distance is symmetric, and pictures with defects are farther from plain ones
// than two plain sets drawn alike. A corrupt file is skipped by name.
func TestFIDEndToEnd(t *testing.T) {
	testenv.ORT(t)
	root := t.TempDir()
	model := filepath.Join(root, "inception.onnx")
	if err := zoo.WriteInception(zoo.InceptionConfig{Seed: 3, Input: inception.Input, Size: inception.Size, Output: inception.Output}, model); err != nil {
		t.Fatal(err)
	}
	a, aCopy := filepath.Join(root, "a"), filepath.Join(root, "a-copy")
	plain2, blobs := filepath.Join(root, "plain2"), filepath.Join(root, "blobs")
	fidFolder(t, a, "x", 12, 1, false)
	fidFolder(t, aCopy, "y", 12, 1, false)
	fidFolder(t, plain2, "x", 12, 2, false)
	fidFolder(t, blobs, "x", 12, 3, true)
	if err := os.WriteFile(filepath.Join(aCopy, "zzz.png"), []byte("broken"), 0o644); err != nil {
		t.Fatal(err)
	}

	same := runFIDJSON(t, "--real", a, "--fake", aCopy, "--model", model, "--dims", "64")
	if same.RealN != 12 || same.FakeN != 12 || len(same.Skipped) != 1 || !strings.HasSuffix(same.Skipped[0].Path, "zzz.png") {
		t.Errorf("counts %+v", same)
	}
	// Scale: the variance of the activations, Tr S, is about FID(a, blobs)'s order; use
	// the blob distance as the scale it is compared with.
	ab := runFIDJSON(t, "--real", a, "--fake", blobs, "--model", model, "--dims", "64")
	ba := runFIDJSON(t, "--real", blobs, "--fake", a, "--model", model, "--dims", "64")
	pp := runFIDJSON(t, "--real", a, "--fake", plain2, "--model", model, "--dims", "64")
	t.Logf("FID same %.3g, plain/plain %.6g, plain/blobs %.6g, blobs/plain %.6g", same.FID, pp.FID, ab.FID, ba.FID)
	if math.Abs(same.FID) > 1e-6*ab.FID {
		t.Errorf("FID of identical pictures %v; want 0 within 1e-6·%v", same.FID, ab.FID)
	}
	if math.Abs(ab.FID-ba.FID) > 1e-9*ab.FID {
		t.Errorf("FID(a,blobs) %v != FID(blobs,a) %v", ab.FID, ba.FID)
	}
	if !(ab.FID > 2*pp.FID && pp.FID > 0) {
		t.Errorf("FID plain/blobs %v should exceed twice plain/plain %v", ab.FID, pp.FID)
	}
	if !ab.Singular || ab.Dims != 64 {
		t.Errorf("12 images in 64 dims must be flagged singular: %+v", ab)
	}

	// Text output and the other feature blocks.
	code, stdout, stderr := runCLI(t, "fid", "--real", a, "--fake", blobs, "--model", model, "--dims", "2048", "--provider", "cpu")
	if code != 0 || !strings.HasPrefix(stdout, "FID ") || !strings.Contains(stderr, "singular") {
		t.Errorf("dims 2048: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if code, _, stderr := runCLI(t, "fid", "--real", a, "--fake", blobs, "--model", model, "--dims", "100"); code != 1 || !strings.Contains(stderr, "dims 100") {
		t.Errorf("dims 100: exit %d, %s", code, stderr)
	}
	if code, _, _ := runCLI(t, "fid", "--real", a); code != 2 {
		t.Errorf("missing flags: exit %d", code)
	}
}
