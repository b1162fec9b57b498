package zoo

import "github.com/diagd/diagd/internal/onnx/build"

// StallSize is the side of the matrices Stall multiplies: one product is 2·512³ ≈ 270
// MFLOP, one to a few milliseconds on one CPU thread.
const StallSize = 512

// Stall appends n StallSize² matrix products to g, made to depend on the float32 value
// dep so that nothing is folded when the model loads, and returns a float32 scalar zero
// that depends on them. Adding it to an output gives a model whose every run takes n
// products, made of many short operators as a diffusion UNet's run is: the stand-in for
// tests that cancel a run in flight. The matrix is the identity, so the values stay
// finite and the zero is exact.
func Stall(g *build.Graph, dep string, n int) string {
	eye := make([]float32, StallSize*StallSize)
	for i := range StallSize {
		eye[i*StallSize+i] = 1
	}
	m := g.Init(g.Fresh("stall.eye"), []int64{StallSize, StallSize}, eye)
	zero := g.Const([]int64{}, []float32{0})
	x := g.Add(m, g.Mul(g.Op("ReduceMean", []string{dep}, build.Int("keepdims", 0)), zero))
	for range n {
		x = g.Op("MatMul", []string{x, m})
	}
	return g.Mul(g.Op("ReduceMean", []string{x}, build.Int("keepdims", 0)), zero)
}
