package build_test

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/diagd/diagd/internal/onnx/build"
	"github.com/diagd/diagd/internal/testenv"
)

// tiny builds: x[1,1,3,3] -> Conv(2x2 kernel, bias) -> BatchNorm -> Relu -> MaxPool(2x2, stride 1)
// -> Add(itself) -> GlobalAveragePool -> Flatten -> Gemm(1->2) -> Sigmoid.
func tiny() *build.Graph {
	g := build.New("tiny")
	x := g.Input("x", build.Float, "batch", 1, 3, 3)
	w := g.Init("w", []int64{1, 1, 2, 2}, []float32{1, -1, 2, 0.5})
	b := g.Init("b", []int64{1}, []float32{-1})
	y := g.Conv2D(x, w, b, 2, 1, 0) // [1,1,2,2]
	y = g.BatchNorm(y, g.Const([]int64{1}, []float32{2}), g.Const([]int64{1}, []float32{0.5}),
		g.Const([]int64{1}, []float32{1}), g.Const([]int64{1}, []float32{4}), 0)
	y = g.Relu(y)
	y = g.MaxPool2D(y, 2, 1, 0) // [1,1,1,1]
	y = g.Add(y, y)
	y = g.Flatten(g.GlobalAveragePool(y), 1) // [1,1]
	y = g.Gemm(y, g.Init("fc.w", []int64{2, 1}, []float32{1, -2}), g.Init("fc.b", []int64{2}, []float32{0.25, 0}))
	g.Identity(g.Sigmoid(y), "p")
	g.Output("p", build.Float, "batch", 2)
	return g
}

// tinyExpect computes tiny() by hand for input x (3x3, row-major).
func tinyExpect(x [9]float32) [2]float64 {
	w := [4]float64{1, -1, 2, 0.5}
	best := math.Inf(-1)
	for r := range 2 {
		for c := range 2 {
			s := -1.0
			s += w[0]*float64(x[r*3+c]) + w[1]*float64(x[r*3+c+1]) + w[2]*float64(x[(r+1)*3+c]) + w[3]*float64(x[(r+1)*3+c+1])
			s = (s-1)/math.Sqrt(4)*2 + 0.5 // BN: (x-mean)/sqrt(var+eps)*scale+bias
			best = math.Max(best, math.Max(s, 0))
		}
	}
	v := 2 * best
	sig := func(z float64) float64 { return 1 / (1 + math.Exp(-z)) }
	return [2]float64{sig(v + 0.25), sig(-2 * v)}
}

func run(t *testing.T, path string, x [9]float32) []float32 {
	t.Helper()
	in, err := ort.NewTensor(ort.NewShape(1, 1, 3, 3), x[:])
	if err != nil {
		t.Fatal(err)
	}
	defer in.Destroy()
	out, err := ort.NewEmptyTensor[float32](ort.NewShape(1, 2))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Destroy()
	s, err := ort.NewAdvancedSession(path, []string{"x"}, []string{"p"}, []ort.Value{in}, []ort.Value{out}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()
	if err := s.Run(); err != nil {
		t.Fatal(err)
	}
	return append([]float32(nil), out.GetData()...)
}

func TestGraphRunsAsComputedByHand(t *testing.T) {
	testenv.ORT(t)
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain.onnx")
	if err := tiny().Save(plain); err != nil {
		t.Fatal(err)
	}
	// External data: every initializer of 4+ bytes goes to the side file; ORT must find it
	// relative to the model path.
	extDir := filepath.Join(dir, "ext")
	os.Mkdir(extDir, 0o755)
	ext := filepath.Join(extDir, "model.onnx")
	if err := tiny().SaveExternal(ext, "model.onnx_data", 4); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(extDir, "model.onnx_data")); err != nil || st.Size() == 0 {
		t.Fatalf("external data file: %v", err)
	}
	m, err := build.Load(ext)
	if err != nil {
		t.Fatal(err)
	}
	for _, init := range m.Graph.Initializer {
		if len(init.RawData) != 0 {
			t.Fatalf("initializer %s still inline after SaveExternal", init.GetName())
		}
	}
	for _, x := range [][9]float32{{1, 2, 3, 4, 5, 6, 7, 8, 9}, {-1, 0, 3, 0.5, -2, 1, 4, 4, -3}, {}} {
		want := tinyExpect(x)
		for _, path := range []string{plain, ext} {
			got := run(t, path, x)
			for i := range 2 {
				if math.Abs(float64(got[i])-want[i]) > 1e-6 {
					t.Errorf("%s x=%v: output %v, hand-computed %v", filepath.Base(path), x, got, want)
				}
			}
		}
	}
}

func TestBuildErrors(t *testing.T) {
	g := build.New("bad")
	x := g.Input("x", build.Float, 1)
	g.Relu("nope")
	g.Identity(x, "y")
	g.Output("y", build.Float, 1)
	if _, err := g.Bytes(); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("undefined input: %v", err)
	}
	g = build.New("dup")
	g.Input("x", build.Float, 1)
	g.Input("x", build.Float, 1)
	if err := g.Err(); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("duplicate name: %v", err)
	}
	g = build.New("shape")
	g.Init("w", []int64{2, 2}, []float32{1, 2, 3})
	if err := g.Err(); err == nil || !strings.Contains(err.Error(), "3 values") {
		t.Errorf("bad initializer: %v", err)
	}
	g = build.New("noout")
	g.Input("x", build.Float, 1)
	if _, err := g.Bytes(); err == nil {
		t.Error("graph without outputs was accepted")
	}
}
