package features

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/imageio"
	"github.com/diagd/diagd/internal/onnx/build"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/internal/testenv"
	"github.com/diagd/diagd/retrain/dataset"
	"github.com/diagd/diagd/retrain/rtest"
)

var cpu = ortenv.Options{Provider: ortenv.CPU, Threads: 1}

func items(t *testing.T, n int) []dataset.Item {
	dir := t.TempDir()
	rtest.Folder(t, dir, n, true, false, 1)
	var it []dataset.Item
	for i := range n {
		it = append(it, dataset.Item{Path: filepath.Join(dir, fmt.Sprintf("%05d.png", i))})
	}
	return it
}

// Features are the model's own output (its logit = head(features) is checked in
// head's write-back test); here: batching does not change them, the cache returns the
// same numbers, a corrupted entry is detected and recomputed, and an unreadable image
// fails alone.
func TestExtractCacheAndErrors(t *testing.T) {
	testenv.ORT(t)
	log := testenv.Logger(t)
	model := rtest.Model(t, filepath.Join(t.TempDir(), "m"), "m", 1)
	its := items(t, 7)
	bad := filepath.Join(t.TempDir(), "bad.png")
	os.WriteFile(bad, []byte("not a png"), 0o644)
	its = append(its, dataset.Item{Path: bad})
	cache := t.TempDir()

	run := func(batch int, cacheDir string) *Result {
		ex, err := Open(log, model, Options{Session: cpu, Batch: batch, CacheDir: cacheDir})
		if err != nil {
			t.Fatal(err)
		}
		defer ex.Close()
		var last int
		r, err := ex.Extract(t.Context(), its, func(done, total int) { last = done })
		if err != nil {
			t.Fatal(err)
		}
		if last != len(its) {
			t.Errorf("progress ended at %d of %d", last, len(its))
		}
		return r
	}
	one := run(1, "")
	if one.Failed != 1 || one.Errs[7] == nil || !errors.Is(one.Errs[7], imageio.ErrBadFrame) || one.Features[7] != nil {
		t.Fatalf("bad image: failed %d err %v", one.Failed, one.Errs[7])
	}
	if len(one.OK()) != 7 || len(one.Features[0]) != 16 {
		t.Fatalf("ok %d, dim %d", len(one.OK()), len(one.Features[0]))
	}
	first := run(3, cache)
	for i := range 7 {
		for j := range first.Features[i] {
			// Batch 1 and batch 3 run different kernels; equal to float32 rounding.
			if d := first.Features[i][j] - one.Features[i][j]; d > 1e-5 || d < -1e-5 {
				t.Fatalf("image %d feature %d: batch 3 %v, batch 1 %v", i, j, first.Features[i][j], one.Features[i][j])
			}
		}
	}
	if first.Cached != 0 {
		t.Errorf("cold cache served %d", first.Cached)
	}
	// Corrupt one entry: flip a byte in the features.
	var entry string
	filepath.Walk(cache, func(p string, info os.FileInfo, err error) error {
		if strings.HasSuffix(p, ".feat") && strings.Contains(filepath.Base(p), first.Digests[2]) {
			entry = p
		}
		return nil
	})
	b, err := os.ReadFile(entry)
	if err != nil {
		t.Fatal(err)
	}
	b[16] ^= 0xff
	os.WriteFile(entry, b, 0o644)
	second := run(3, cache)
	if second.Cached != 6 {
		t.Errorf("warm cache served %d; want 6 (7 good images, one entry corrupted)", second.Cached)
	}
	for i := range 7 {
		if !slices.Equal(second.Features[i], first.Features[i]) {
			t.Errorf("image %d differs after the cache", i)
		}
	}
	if third := run(3, cache); third.Cached != 7 {
		t.Errorf("the recomputed entry was not rewritten: %d cached", third.Cached)
	}
}

func TestNoFeaturesOutput(t *testing.T) {
	testenv.ORT(t)
	dir := t.TempDir()
	g := build.New("logit-only")
	x := g.Input("input", build.Float, "batch", 3, rtest.H, rtest.W)
	f := g.Flatten(g.GlobalAveragePool(x), 1)
	g.Identity(g.Gemm(f, g.Init("fc.weight", []int64{1, 3}, []float32{1, 1, 1}), g.Init("fc.bias", []int64{1}, []float32{0})), "logit")
	g.Output("logit", build.Float, "batch", 1)
	if err := g.Save(filepath.Join(dir, detect.ModelFile)); err != nil {
		t.Fatal(err)
	}
	m := detect.DefaultMetadata("x")
	m.Input.Height, m.Input.Width = rtest.H, rtest.W
	m.Outputs.Features = ""
	detect.WriteMetadata(dir, m)
	if _, err := Open(testenv.Logger(t), dir, Options{Session: cpu}); !errors.Is(err, ErrNoFeatures) {
		t.Errorf("no features in metadata: %v", err)
	}
	m.Outputs.Features = "features"
	detect.WriteMetadata(dir, m)
	if _, err := Open(testenv.Logger(t), dir, Options{Session: cpu}); !errors.Is(err, ErrNoFeatures) || !strings.Contains(err.Error(), `"logit"`) {
		t.Errorf("features named but absent: %v", err)
	}
}
