package features

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/onnx/build"
	"github.com/diagd/diagd/internal/onnx/zoo"
	"github.com/diagd/diagd/internal/testenv"
	"github.com/diagd/diagd/retrain/rtest"
)

// slowModel writes a detector folder with the features interface whose every run takes
// n matrix products (zoo.Stall): features are the channel means, the logit their sum.
func slowModel(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	g := build.New("slow")
	x := g.Input("input", build.Float, "batch", 3, rtest.H, rtest.W)
	f := g.Add(g.Flatten(g.GlobalAveragePool(x), 1), zoo.Stall(g, x, n))
	g.Identity(f, "features")
	g.Identity(g.Gemm(f, g.Init("fc.weight", []int64{1, 3}, []float32{1, 1, 1}), g.Init("fc.bias", []int64{1}, []float32{0})), "logit")
	g.Output("logit", build.Float, "batch", 1)
	g.Output("features", build.Float, "batch", 3)
	if err := g.Save(filepath.Join(dir, detect.ModelFile)); err != nil {
		t.Fatal(err)
	}
	m := detect.DefaultMetadata("slow")
	m.Input.Height, m.Input.Width = rtest.H, rtest.W
	if err := detect.WriteMetadata(dir, m); err != nil {
		t.Fatal(err)
	}
	return dir
}

// A cancelled extraction does not wait for the backbone run in flight: the run is
// terminated and Extract returns at once with the context's error.
func TestCancelCutsTheRunShort(t *testing.T) {
	testenv.ORT(t)
	ex, err := Open(testenv.Logger(t), slowModel(t, 150), Options{Session: cpu, Batch: 1, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer ex.Close()
	its := items(t, 1)

	t0 := time.Now()
	if _, err := ex.Extract(t.Context(), its, nil); err != nil {
		t.Fatal(err)
	}
	full := time.Since(t0)
	if full < 100*time.Millisecond {
		t.Fatalf("the slow model ran in %v: too fast to cancel inside", full)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var cancelled time.Time
	time.AfterFunc(full/10, func() { cancelled = time.Now(); cancel() })
	res, err := ex.Extract(ctx, its, nil)
	cut := time.Since(cancelled)
	if !errors.Is(err, context.Canceled) || res != nil {
		t.Fatalf("cancelled extraction: %v, %v; want context.Canceled and no result", res, err)
	}
	t.Logf("a full extraction takes %v; cancelled after %v, returned %v later", full, full/10, cut)
	if cut > full/3 {
		t.Fatalf("Extract returned %v after the cancel; a whole run takes %v", cut, full)
	}
}
