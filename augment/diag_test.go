package augment

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diagd/diagd/augment/catalogue"
	"github.com/diagd/diagd/internal/onnx/zoo"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/internal/testenv"
)

// TestRunDIAG drives the DIAG generator on the tiny stand-in SDXL export (real ONNX
// Runtime sessions with the real export's I/O) at a 64² working size.
func TestRunDIAG(t *testing.T) {
	testenv.ORT(t)
	model := t.TempDir()
	if err := zoo.WriteSDXLInpaint(model, zoo.SDXLConfig{Export: zoo.OptimumNew, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	negDir, catPath := fixture(t)
	src, _ := os.ReadFile(catPath)
	os.WriteFile(catPath, []byte(strings.Replace(string(src), "generation:\n", "generation:\n  working_size: 64\n  steps: 10\n", 1)), 0o644)
	cat, err := catalogue.Load(catPath)
	if err != nil {
		t.Fatal(err)
	}
	negs, _ := ListNegatives(negDir, "*.jpg")
	batch := func(out string) (Summary, []Progress) {
		g, err := OpenDIAG(testenv.Logger(t), model, ortenv.Options{Provider: ortenv.CPU, Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		var seen []Progress
		s, err := Run(t.Context(), Config{Negatives: negs, Out: out, N: 3, Generator: g,
			Catalogue: func() *catalogue.Catalogue { return cat }, Progress: func(p Progress) { seen = append(seen, p) }})
		if err != nil {
			t.Fatal(err)
		}
		return s, seen
	}
	out := t.TempDir()
	s, seen := batch(out)
	if s.Written != 3 || s.Generator != "diag" || s.ModelDigest == "" {
		t.Fatalf("summary %+v", s)
	}
	// strength 0.99 of 10 steps runs 9 (diag-spec §0); the bar sees each one.
	maxSteps := 0
	for _, p := range seen {
		maxSteps = max(maxSteps, p.Steps)
	}
	if maxSteps != 9 {
		t.Fatalf("progress reported %d inner steps, want 9", maxSteps)
	}
	for i := range 3 {
		var sc Sidecar
		b, _ := os.ReadFile(filepath.Join(out, fmt.Sprintf("%05d.json", i)))
		if err := json.Unmarshal(b, &sc); err != nil {
			t.Fatal(err)
		}
		if sc.Generator != "diag" || sc.ModelDigest != s.ModelDigest || sc.Settings.WorkingSize != 64 || sc.Settings.Steps != 10 || sc.Settings.Guidance != 20 {
			t.Fatalf("sidecar %+v", sc)
		}
		img, err := ReadRGB(filepath.Join(out, sc.Image))
		if err != nil {
			t.Fatal(err)
		}
		neg, _ := ReadRGB(sc.SourceNegative)
		mask, _, err := ReadMask(filepath.Join(out, sc.Mask), img.Rect.Size())
		if err != nil {
			t.Fatal(err)
		}
		changed := 0
		for y := range img.Rect.Dy() {
			for x := range img.Rect.Dx() {
				if mask.GrayAt(x, y).Y > 0 && img.RGBAAt(x, y) != neg.RGBAAt(x, y) {
					changed++
				}
			}
		}
		if img.Rect.Size() != neg.Rect.Size() || changed == 0 {
			t.Fatalf("image %d: %v, %d defect pixels changed", i, img.Rect.Size(), changed)
		}
	}
	// Same seed, same model: the same images (the new-optimum VAE takes its noise
	// from Go, so the whole pipeline is seeded).
	out2 := t.TempDir()
	batch(out2)
	for i := range 3 {
		a, _ := os.ReadFile(filepath.Join(out, fmt.Sprintf("%05d.png", i)))
		b, _ := os.ReadFile(filepath.Join(out2, fmt.Sprintf("%05d.png", i)))
		if !bytes.Equal(a, b) {
			t.Fatalf("image %d differs between runs", i)
		}
	}
}
