package ortenv_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/diagd/diagd/internal/onnx/build"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/internal/testenv"
)

// chainModel writes a model of n element-wise steps on a vector of size elements: a
// long run made of many short operators, as a diffusion UNet is.
func chainModel(t *testing.T, n, size int) string {
	t.Helper()
	g := build.New("chain")
	x := g.Input("x", build.Float, 1, size)
	c := g.Init("c", []int64{1, int64(size)}, make([]float32, size))
	for range n {
		x = g.Mul(g.Add(x, c), c)
	}
	g.Identity(x, "y")
	g.Output("y", build.Float, 1, size)
	path := filepath.Join(t.TempDir(), "chain.onnx")
	if err := g.Save(path); err != nil {
		t.Fatal(err)
	}
	return path
}

// RunContext ends a long run when its context does, well before the run would end, and
// says why; with a live context it runs to the end like Run.
func TestRunContextTerminates(t *testing.T) {
	testenv.ORT(t)
	const size = 1 << 18
	s, err := ortenv.OpenSession(testenv.Logger(t), chainModel(t, 1500, size), []string{"x"}, []string{"y"}, ortenv.Options{Provider: ortenv.CPU, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()
	in, err := ort.NewTensor(ort.NewShape(1, size), make([]float32, size))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Destroy()
	out, err := ort.NewEmptyTensor[float32](ort.NewShape(1, size))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Destroy()
	i, o := []ort.Value{in}, []ort.Value{out}

	t0 := time.Now()
	if err := s.RunContext(context.Background(), i, o); err != nil {
		t.Fatal(err)
	}
	full := time.Since(t0)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(full/10, cancel)
	t0 = time.Now()
	err = s.RunContext(ctx, i, o)
	cut := time.Since(t0)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled run: %v, want context.Canceled", err)
	}
	t.Logf("full run %v; cancelled after %v, returned after %v", full, full/10, cut)
	if cut > full/3 {
		t.Fatalf("the cancelled run took %v of a full run's %v", cut, full)
	}
	if err := s.RunContext(ctx, i, o); !errors.Is(err, context.Canceled) {
		t.Fatalf("a run with a context already done: %v", err)
	}
}
