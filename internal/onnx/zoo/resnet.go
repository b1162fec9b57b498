// Package zoo generates stand-in ONNX models with the exact interface (names, shapes,
// dtypes, and for ResNet-50 the torchvision weight layout) of the models a user exports,
// filled with seeded random weights. No weights can be downloaded here; these let tests
// and benchmarks run real ONNX Runtime sessions of realistic size.
package zoo

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/diagd/diagd/internal/half"
	"github.com/diagd/diagd/internal/onnx/build"
)

// Interface names of the detector as the README's export command writes it.
const (
	DetectorInput    = "input"
	DetectorLogit    = "logit"
	DetectorFeatures = "features"
)

// ResNetConfig describes a torchvision-style ResNet with a 1-logit head.
type ResNetConfig struct {
	Name       string
	Blocks     []int // blocks per stage; ResNet-50 is {3, 4, 6, 3}
	BaseWidth  int   // channels of the stem and first stage; 64 in torchvision
	Bottleneck bool  // Bottleneck (expansion 4) or BasicBlock (expansion 1)
	InputH     int   // fixed input height (704 for the paper's detector)
	InputW     int   // fixed input width (256)
	Seed       uint64
	HeadBias   float32 // fc bias: shifts the score distribution, e.g. to make most frames pass
	// FP16 makes it a float16 export (model.half() before torch.onnx.export): weights,
	// computation, input and outputs in float16. The random draws are the same as for
	// float32, so the two exports of one seed differ only by float16 rounding.
	FP16 bool
}

// ResNet50 is torchvision's resnet50 with fc replaced by Linear(2048, 1), at the paper's
// input size 704×256 (H×W).
func ResNet50(seed uint64) ResNetConfig {
	return ResNetConfig{Name: "resnet50", Blocks: []int{3, 4, 6, 3}, BaseWidth: 64, Bottleneck: true,
		InputH: 704, InputW: 256, Seed: seed}
}

// SmallResNet is a two-stage ResNet with few channels: the same interface as the real
// detector at any input size, cheap enough to run thousands of frames in a test.
func SmallResNet(h, w int, seed uint64) ResNetConfig {
	return ResNetConfig{Name: "small-resnet", Blocks: []int{1, 1}, BaseWidth: 8, Bottleneck: false,
		InputH: h, InputW: w, Seed: seed}
}

// FeatureDim is the width of the pooled-feature output.
func (c ResNetConfig) FeatureDim() int {
	exp := 1
	if c.Bottleneck {
		exp = 4
	}
	return c.BaseWidth << (len(c.Blocks) - 1) * exp
}

type resnet struct {
	g    *build.Graph
	rng  *rand.Rand
	fp16 bool
}

// init adds a weight, rounded to float16 for a float16 export.
func (r *resnet) init(name string, dims []int64, v []float32) string {
	if !r.fp16 {
		return r.g.Init(name, dims, v)
	}
	h := make([]uint16, len(v))
	for i, f := range v {
		h[i] = half.FromFloat32(f)
	}
	return r.g.Init(name, dims, h)
}

func (r *resnet) dtype() build.DType {
	if r.fp16 {
		return build.Float16
	}
	return build.Float
}

func (r *resnet) normal(n int, std float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.rng.NormFloat64() * std)
	}
	return v
}

func (r *resnet) conv(x, name string, in, out, k, stride, pad int) string {
	fanIn := float64(in * k * k)
	w := r.init(name+".weight", []int64{int64(out), int64(in), int64(k), int64(k)},
		r.normal(out*in*k*k, math.Sqrt(2/fanIn)))
	return r.g.Conv2D(x, w, "", int64(k), int64(stride), int64(pad))
}

// bn adds BatchNormalization with torchvision's parameter names. gamma scales the
// output; residual branches end with a small gamma so 16 stacked random blocks keep
// activations near unit scale (the zero-init-residual idea, softened).
func (r *resnet) bn(x, name string, c int, gamma float32) string {
	scale := make([]float32, c)
	bias := make([]float32, c)
	mean := make([]float32, c)
	variance := make([]float32, c)
	for i := range c {
		scale[i] = gamma * float32(0.8+0.4*r.rng.Float64())
		bias[i] = float32(r.rng.NormFloat64() * 0.05)
		mean[i] = float32(r.rng.NormFloat64() * 0.05)
		variance[i] = float32(0.8 + 0.4*r.rng.Float64())
	}
	d := []int64{int64(c)}
	return r.g.BatchNorm(x,
		r.init(name+".weight", d, scale), r.init(name+".bias", d, bias),
		r.init(name+".running_mean", d, mean), r.init(name+".running_var", d, variance), 1e-5)
}

// Build returns the graph: input [batch,3,H,W] float32 → logit [batch,1], features [batch,F].
func (c ResNetConfig) Build() (*build.Graph, error) {
	if len(c.Blocks) == 0 || c.BaseWidth <= 0 || c.InputH <= 0 || c.InputW <= 0 {
		return nil, fmt.Errorf("zoo: bad ResNet config %+v", c)
	}
	r := &resnet{g: build.New(c.Name), rng: rand.New(rand.NewPCG(c.Seed, 0x5eed)), fp16: c.FP16}
	g := r.g
	x := g.Input(DetectorInput, r.dtype(), "batch", 3, c.InputH, c.InputW)
	x = r.conv(x, "conv1", 3, c.BaseWidth, 7, 2, 3)
	x = g.Relu(r.bn(x, "bn1", c.BaseWidth, 1))
	x = g.MaxPool2D(x, 3, 2, 1)
	in := c.BaseWidth
	exp := 1
	if c.Bottleneck {
		exp = 4
	}
	for s, n := range c.Blocks {
		width := c.BaseWidth << s
		for b := range n {
			stride := 1
			if b == 0 && s > 0 {
				stride = 2
			}
			p := fmt.Sprintf("layer%d.%d", s+1, b)
			out := width * exp
			var y string
			if c.Bottleneck {
				y = g.Relu(r.bn(r.conv(x, p+".conv1", in, width, 1, 1, 0), p+".bn1", width, 1))
				y = g.Relu(r.bn(r.conv(y, p+".conv2", width, width, 3, stride, 1), p+".bn2", width, 1))
				y = r.bn(r.conv(y, p+".conv3", width, out, 1, 1, 0), p+".bn3", out, 0.2)
			} else {
				y = g.Relu(r.bn(r.conv(x, p+".conv1", in, width, 3, stride, 1), p+".bn1", width, 1))
				y = r.bn(r.conv(y, p+".conv2", width, width, 3, 1, 1), p+".bn2", width, 0.2)
			}
			short := x
			if stride != 1 || in != out {
				short = r.bn(r.conv(x, p+".downsample.0", in, out, 1, stride, 0), p+".downsample.1", out, 1)
			}
			x = g.Relu(g.Add(y, short))
			in = out
		}
	}
	feat := g.Identity(g.Flatten(g.GlobalAveragePool(x), 1), DetectorFeatures)
	fw := r.init("fc.weight", []int64{1, int64(in)}, r.normal(in, 1/math.Sqrt(float64(in))))
	fb := r.init("fc.bias", []int64{1}, []float32{c.HeadBias})
	g.Identity(g.Gemm(feat, fw, fb), DetectorLogit)
	g.Output(DetectorLogit, r.dtype(), "batch", 1)
	g.Output(DetectorFeatures, r.dtype(), "batch", in)
	return g, g.Err()
}

// WriteResNet builds the config and saves it to path.
func WriteResNet(c ResNetConfig, path string) error {
	g, err := c.Build()
	if err != nil {
		return err
	}
	return g.Save(path)
}
