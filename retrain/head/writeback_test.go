package head

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/onnx/build"
	"github.com/diagd/diagd/internal/onnx/zoo"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/internal/testenv"
	"github.com/diagd/diagd/retrain/dataset"
	"github.com/diagd/diagd/retrain/features"
	"github.com/diagd/diagd/retrain/rtest"
)

// The written model's logit output equals features·w + b computed in Go, for models
// stored inline and with external weights (the head's own weights included).
func TestWriteBackLogitsMatch(t *testing.T) {
	testenv.ORT(t)
	log := testenv.Logger(t)
	imgs := t.TempDir()
	rtest.Folder(t, imgs, 4, false, false, 1)
	rtest.Folder(t, filepath.Join(imgs, "d"), 4, true, false, 2)
	var items []dataset.Item
	for _, p := range []string{"00000", "00001", "00002", "00003", "d/00000", "d/00001", "d/00002", "d/00003"} {
		items = append(items, dataset.Item{Path: filepath.Join(imgs, p+".png")})
	}
	inlineDigest := ""
	for _, external := range []bool{false, true} {
		base := rtest.Model(t, filepath.Join(t.TempDir(), "base"), "b", 4)
		if external {
			g, err := zoo.SmallResNet(rtest.H, rtest.W, 4).Build()
			if err != nil {
				t.Fatal(err)
			}
			// threshold 16 bytes: every weight, fc.weight and fc.bias included, goes to the side file.
			if err := g.SaveExternal(filepath.Join(base, detect.ModelFile), "model.onnx_data", 4); err != nil {
				t.Fatal(err)
			}
		}
		rng := rand.New(rand.NewPCG(9, 9))
		h := &Head{W: make([]float32, 16), B: -0.3}
		for i := range h.W {
			h.W[i] = float32(rng.NormFloat64())
		}
		out := filepath.Join(t.TempDir(), "new")
		os.MkdirAll(out, 0o755)
		if err := WriteBack(filepath.Join(base, detect.ModelFile), filepath.Join(out, detect.ModelFile), "logit", "features", h); err != nil {
			t.Fatal(err)
		}
		// ReadHead gives back what was written, and the same backbone digest for both.
		got, bbNew, err := ReadHead(filepath.Join(out, detect.ModelFile), "logit", "features")
		if err != nil {
			t.Fatal(err)
		}
		_, bbOld, err := ReadHead(filepath.Join(base, detect.ModelFile), "logit", "features")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.W, h.W) || got.B != h.B {
			t.Errorf("ReadHead %v %v; wrote %v %v", got.W, got.B, h.W, h.B)
		}
		if bbNew != bbOld {
			t.Errorf("external=%v: a new head (and the storage form) changed the backbone digest", external)
		}
		if bbNew != inlineDigest && inlineDigest != "" {
			t.Error("the same backbone stored inline and in side files has two digests")
		}
		inlineDigest = bbNew
		// The written model keeps the head inline and the backbone in one side file
		// named by its content.
		blobs, _ := filepath.Glob(filepath.Join(out, "backbone-*.bin"))
		if len(blobs) != 1 {
			t.Fatalf("side files %v; want one backbone-<sha256>.bin", blobs)
		}
		if b, err := os.ReadFile(blobs[0]); err != nil || filepath.Base(blobs[0]) != BlobName(sha256.Sum256(b)) {
			t.Errorf("side file %s is not named by its sha256 (%v)", blobs[0], err)
		}
		other := rtest.Model(t, filepath.Join(t.TempDir(), "other"), "o", 5)
		if _, bbOther, _ := ReadHead(filepath.Join(other, detect.ModelFile), "logit", "features"); bbOther == bbNew {
			t.Error("a different backbone has the same digest")
		}
		m, _ := detect.ReadMetadata(base)
		detect.WriteMetadata(out, m)
		ex, err := features.Open(log, out, features.Options{Session: ortenv.Options{Provider: ortenv.CPU}, Batch: 3})
		if err != nil {
			t.Fatal(err)
		}
		res, err := ex.Extract(t.Context(), items, nil)
		ex.Close()
		if err != nil {
			t.Fatal(err)
		}
		for i := range items {
			want := h.Logit(res.Features[i])
			if d := math.Abs(float64(res.Logits[i]) - want); d > 1e-4 {
				t.Errorf("external=%v image %d: ONNX logit %v, Go %v", external, i, res.Logits[i], want)
			}
		}
	}
}

func TestWriteBackRejectsOtherStructures(t *testing.T) {
	dir := t.TempDir()
	// logit = Sigmoid(Gemm(...)): not a plain linear head.
	g := build.New("odd")
	x := g.Input("features", build.Float, "batch", 4)
	w := g.Init("fc.weight", []int64{1, 4}, make([]float32, 4))
	b := g.Init("fc.bias", []int64{1}, []float32{0})
	g.Identity(g.Sigmoid(g.Gemm(x, w, b)), "logit")
	g.Output("logit", build.Float, "batch", 1)
	p := filepath.Join(dir, "odd.onnx")
	if err := g.Save(p); err != nil {
		t.Fatal(err)
	}
	err := WriteBack(p, filepath.Join(dir, "out.onnx"), "logit", "features", &Head{W: make([]float32, 4)})
	if !errors.Is(err, ErrStructure) {
		t.Errorf("sigmoid head: %v; want ErrStructure", err)
	}
	// A head of the wrong width.
	g = build.New("narrow")
	x = g.Input("features", build.Float, "batch", 4)
	g.Identity(g.Gemm(x, g.Init("fc.weight", []int64{1, 4}, make([]float32, 4)), g.Init("fc.bias", []int64{1}, []float32{0})), "logit")
	g.Output("logit", build.Float, "batch", 1)
	g.Save(p)
	err = WriteBack(p, filepath.Join(dir, "out.onnx"), "logit", "features", &Head{W: make([]float32, 8)})
	if !errors.Is(err, ErrStructure) {
		t.Errorf("width mismatch: %v; want ErrStructure", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "out.onnx")); err == nil {
		t.Error("a failed write-back left a model file")
	}
}

// Store rewrites a model into the storage form without changing what it computes, and a
// head written from a stored model links the same backbone file instead of a copy.
func TestStoreSharesTheBackbone(t *testing.T) {
	testenv.ORT(t)
	log := testenv.Logger(t)
	imgs := t.TempDir()
	rtest.Folder(t, imgs, 3, true, false, 4)
	var items []dataset.Item
	for i := range 3 {
		items = append(items, dataset.Item{Path: filepath.Join(imgs, fmt.Sprintf("%05d.png", i))})
	}
	base := rtest.Model(t, filepath.Join(t.TempDir(), "base"), "b", 6)
	stored, next := filepath.Join(t.TempDir(), "stored"), filepath.Join(t.TempDir(), "next")
	os.MkdirAll(stored, 0o755)
	os.MkdirAll(next, 0o755)
	if err := Store(filepath.Join(base, detect.ModelFile), filepath.Join(stored, detect.ModelFile), "logit", "features"); err != nil {
		t.Fatal(err)
	}
	m, _ := detect.ReadMetadata(base)
	detect.WriteMetadata(stored, m)
	logits := func(dir string) []float32 {
		ex, err := features.Open(log, dir, features.Options{Session: ortenv.Options{Provider: ortenv.CPU}})
		if err != nil {
			t.Fatal(err)
		}
		defer ex.Close()
		res, err := ex.Extract(t.Context(), items, nil)
		if err != nil {
			t.Fatal(err)
		}
		return res.Logits
	}
	if a, b := logits(base), logits(stored); !slices.Equal(a, b) {
		t.Errorf("stored model logits %v; the original gives %v", b, a)
	}
	h, _, err := ReadHead(filepath.Join(stored, detect.ModelFile), "logit", "features")
	if err != nil {
		t.Fatal(err)
	}
	h.B += 1
	if err := WriteBack(filepath.Join(stored, detect.ModelFile), filepath.Join(next, detect.ModelFile), "logit", "features", h); err != nil {
		t.Fatal(err)
	}
	b1, _ := filepath.Glob(filepath.Join(stored, "backbone-*.bin"))
	b2, _ := filepath.Glob(filepath.Join(next, "backbone-*.bin"))
	if len(b1) != 1 || len(b2) != 1 || filepath.Base(b1[0]) != filepath.Base(b2[0]) {
		t.Fatalf("side files %v and %v; want the same one", b1, b2)
	}
	s1, _ := os.Stat(b1[0])
	s2, _ := os.Stat(b2[0])
	if !os.SameFile(s1, s2) {
		t.Error("the new head's model has its own copy of the backbone; want a hard link")
	}
}
