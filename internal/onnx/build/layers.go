package build

// Thin helpers for the operators the project's models use. Each takes value names and
// returns the output's name; weights are added as initializers by the caller.

// Conv2D is Conv with square kernel, stride and symmetric padding. b may be "".
func (g *Graph) Conv2D(x, w, b string, kernel, stride, pad int64) string {
	in := []string{x, w}
	if b != "" {
		in = append(in, b)
	}
	return g.Op("Conv", in,
		Ints("kernel_shape", kernel, kernel), Ints("strides", stride, stride),
		Ints("pads", pad, pad, pad, pad), Ints("dilations", 1, 1), Int("group", 1))
}

// BatchNorm is inference-mode BatchNormalization.
func (g *Graph) BatchNorm(x, scale, bias, mean, variance string, eps float32) string {
	return g.Op("BatchNormalization", []string{x, scale, bias, mean, variance}, Float32("epsilon", eps), Float32("momentum", 0.9))
}

// Relu is max(x, 0).
func (g *Graph) Relu(x string) string { return g.Op("Relu", []string{x}) }

// Sigmoid is 1/(1+exp(-x)).
func (g *Graph) Sigmoid(x string) string { return g.Op("Sigmoid", []string{x}) }

// MaxPool2D is MaxPool with square kernel, stride and symmetric padding.
func (g *Graph) MaxPool2D(x string, kernel, stride, pad int64) string {
	return g.Op("MaxPool", []string{x},
		Ints("kernel_shape", kernel, kernel), Ints("strides", stride, stride), Ints("pads", pad, pad, pad, pad))
}

// Add is elementwise addition with broadcasting.
func (g *Graph) Add(a, b string) string { return g.Op("Add", []string{a, b}) }

// Mul is elementwise multiplication with broadcasting.
func (g *Graph) Mul(a, b string) string { return g.Op("Mul", []string{a, b}) }

// GlobalAveragePool averages each channel over its spatial axes.
func (g *Graph) GlobalAveragePool(x string) string { return g.Op("GlobalAveragePool", []string{x}) }

// Flatten reshapes to [d0*…*d(axis-1), rest].
func (g *Graph) Flatten(x string, axis int64) string {
	return g.Op("Flatten", []string{x}, Int("axis", axis))
}

// Gemm is y = x·Wᵀ + b, PyTorch Linear's layout (W is [out, in]).
func (g *Graph) Gemm(x, w, b string) string {
	return g.Op("Gemm", []string{x, w, b}, Float32("alpha", 1), Float32("beta", 1), Int("transB", 1))
}

// Identity names a value again (used to give an internal value an output name).
func (g *Graph) Identity(x, out string) string {
	g.Node("Identity", []string{x}, []string{out})
	return out
}

// Cast converts element type.
func (g *Graph) Cast(x string, to DType) string {
	return g.Op("Cast", []string{x}, Int("to", int64(to)))
}
