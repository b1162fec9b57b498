package autodiff

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/diagd/diagd/internal/onnx/build"
	pb "github.com/diagd/diagd/internal/onnx/onnxpb"
	"github.com/diagd/diagd/internal/testenv"
)

// session runs a Program on ORT's CPU provider with float64 slices in and out,
// converting to the graph's float type.
type session struct {
	t    testing.TB
	prog *Program
	s    *ort.DynamicAdvancedSession
	f32  bool
}

func openProgram(t testing.TB, prog *Program) *session {
	t.Helper()
	testenv.ORT(t)
	b, err := prog.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	s, err := ort.NewDynamicAdvancedSessionWithONNXData(b, prog.InputNames(), prog.OutputNames(), nil)
	if err != nil {
		t.Fatalf("opening the %s graph: %v", prog.Kind, err)
	}
	t.Cleanup(func() { s.Destroy() })
	f32 := true
	for _, in := range prog.Model.Graph.Input {
		if pb.TensorProto_DataType(in.GetType().GetTensorType().GetElemType()) == pb.TensorProto_DOUBLE {
			f32 = false
		}
	}
	return &session{t: t, prog: prog, s: s, f32: f32}
}

// run feeds every input by name (missing float inputs are zeros) and returns all outputs.
func (s *session) run(feeds map[string][]float64) map[string][]float64 {
	s.t.Helper()
	out, err := s.try(feeds)
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

func (s *session) try(feeds map[string][]float64) (map[string][]float64, error) {
	var ins []ort.Value
	defer func() {
		for _, v := range ins {
			v.Destroy()
		}
	}()
	for _, in := range s.prog.Inputs {
		v, err := s.tensor(in, feeds[in.Name])
		if err != nil {
			return nil, err
		}
		ins = append(ins, v)
	}
	outs := make([]ort.Value, len(s.prog.Outputs))
	if err := s.s.Run(ins, outs); err != nil {
		return nil, err
	}
	res := map[string][]float64{}
	for i, o := range s.prog.Outputs {
		if got := []int64(outs[i].GetShape()); numel(got) != numel(o.Shape) || len(got) != len(o.Shape) {
			return nil, fmt.Errorf("output %s: ORT shape %v, declared %v", o.Name, got, o.Shape)
		}
		res[o.Name] = values(outs[i])
		outs[i].Destroy()
	}
	return res, nil
}

func (s *session) tensor(in Tensor, v []float64) (ort.Value, error) {
	n := numel(in.Shape)
	if v == nil {
		v = make([]float64, n)
	}
	if int64(len(v)) != n {
		return nil, fmt.Errorf("input %s: %d values for shape %v", in.Name, len(v), in.Shape)
	}
	shape := ort.NewShape(in.Shape...)
	switch {
	case in.Int64:
		d := make([]int64, n)
		for i, x := range v {
			d[i] = int64(x)
		}
		return ort.NewTensor(shape, d)
	case s.f32:
		d := make([]float32, n)
		for i, x := range v {
			d[i] = float32(x)
		}
		return ort.NewTensor(shape, d)
	}
	return ort.NewTensor(shape, append([]float64{}, v...))
}

func values(v ort.Value) []float64 {
	switch t := v.(type) {
	case *ort.Tensor[float32]:
		out := make([]float64, len(t.GetData()))
		for i, x := range t.GetData() {
			out[i] = float64(x)
		}
		return out
	case *ort.Tensor[float64]:
		return append([]float64{}, t.GetData()...)
	}
	panic(fmt.Sprintf("unexpected output type %T", v))
}

// fdGraph builds a small forward graph whose every operand is an initializer, so the
// gradient with respect to each (inputs included) can be checked.
type fdGraph struct {
	g      *build.Graph
	dt     build.DType
	rng    *rand.Rand
	params []string
	vals   map[string][]float64
}

func newFD(dt build.DType, seed uint64) *fdGraph {
	return &fdGraph{g: build.New("fd"), dt: dt, rng: rand.New(rand.NewPCG(seed, 99)), vals: map[string][]float64{}}
}

// param adds a trainable initializer with values offset + scale·N(0,1).
func (f *fdGraph) param(name string, scale, offset float64, dims ...int64) string {
	v := make([]float64, numel(dims))
	for i := range v {
		v[i] = offset + scale*f.rng.NormFloat64()
	}
	f.vals[name] = v
	f.params = append(f.params, name)
	return f.init(name, dims, v)
}

// constant adds a non-trainable initializer.
func (f *fdGraph) constant(name string, dims []int64, v []float64) string {
	return f.init(name, dims, v)
}

func (f *fdGraph) init(name string, dims []int64, v []float64) string {
	if f.dt == build.Float {
		d := make([]float32, len(v))
		for i, x := range v {
			d[i] = float32(x)
			v[i] = float64(d[i]) // the graph holds float32 values
		}
		return f.g.Init(name, dims, d)
	}
	return f.g.Init(name, dims, append([]float64{}, v...))
}

// fdOpts tunes a finite-difference check.
type fdOpts struct {
	bn     BNMode
	policy ConvPolicy
	h      float64 // step
	tol    float64 // allowed |fd − analytic| relative to the largest analytic entry of the parameter
	coords int     // coordinates checked per parameter
}

func (o fdOpts) withDefaults(dt build.DType) fdOpts {
	if o.h == 0 {
		o.h = map[bool]float64{true: 1e-2, false: 1e-5}[dt == build.Float]
	}
	if o.tol == 0 {
		o.tol = map[bool]float64{true: 1e-2, false: 1e-6}[dt == build.Float]
	}
	if o.coords == 0 {
		o.coords = 16
	}
	return o
}

// check builds the VJP graph for output out and compares each parameter's gradient of
// sum(dy·out) with central differences at random coordinates. It returns the worst
// relative error seen.
func (f *fdGraph) check(t *testing.T, out string, o fdOpts) float64 {
	t.Helper()
	o = o.withDefaults(f.dt)
	f.g.Output(out, f.dt)
	m, err := f.g.Model()
	if err != nil {
		t.Fatal(err)
	}
	prog, err := buildVJP(m, Config{Trainable: f.params, Batch: 1, BatchNorm: o.bn, ConvPolicy: o.policy}, out)
	if err != nil {
		t.Fatal(err)
	}
	s := openProgram(t, prog)
	feeds := map[string][]float64{}
	for k, v := range f.vals {
		feeds[k] = append([]float64{}, v...)
	}
	dyT, _ := prog.Input("dy")
	dy := make([]float64, numel(dyT.Shape))
	for i := range dy {
		dy[i] = f.rng.NormFloat64()
	}
	feeds["dy"] = dy
	base := s.run(feeds)
	objective := func() float64 {
		y := s.run(feeds)[out]
		var sum float64
		for i := range y {
			sum += dy[i] * y[i]
		}
		return sum
	}
	// Errors are relative to the parameter's largest gradient, but never to less than
	// 1% of the largest gradient of all (a parameter whose gradient is zero in exact
	// arithmetic, like a conv bias before train-mode BatchNorm, sees only rounding).
	global := 1e-12
	for _, p := range f.params {
		for _, g := range base[p+SuffixGrad] {
			global = max(global, math.Abs(g))
		}
	}
	worst := 0.0
	for _, p := range f.params {
		an := base[p+SuffixGrad]
		scale := global * 1e-2
		for _, g := range an {
			scale = max(scale, math.Abs(g))
		}
		for _, i := range f.coords(len(an), o.coords) {
			x := feeds[p][i]
			feeds[p][i] = x + o.h
			fp := objective()
			feeds[p][i] = x - o.h
			fm := objective()
			feeds[p][i] = x
			fd := (fp - fm) / (2 * o.h)
			rel := math.Abs(fd-an[i]) / scale
			worst = max(worst, rel)
			if rel > o.tol {
				t.Errorf("%s[%d]: analytic %.8g, finite difference %.8g (error %.2g of max |grad| %.3g, tolerance %.0g)",
					p, i, an[i], fd, rel, scale, o.tol)
			}
		}
	}
	t.Logf("worst relative error %.2g (h %.0g, tolerance %.0g)", worst, o.h, o.tol)
	return worst
}

func (f *fdGraph) coords(n, k int) []int {
	if n <= k {
		out := make([]int, n)
		for i := range out {
			out[i] = i
		}
		return out
	}
	return f.rng.Perm(n)[:k]
}
