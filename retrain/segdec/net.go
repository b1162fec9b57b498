package segdec

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/diagd/diagd/internal/onnx/build"
	pb "github.com/diagd/diagd/internal/onnx/onnxpb"
)

// Interface names. Input, logit and features are those of every diagd detector (the
// README's export command writes them); segmentation is the extra output detect serves
// when model.json names it.
const (
	InputName        = "input"
	LogitName        = "logit"
	FeaturesName     = "features"
	SegmentationName = "segmentation"
	// Factor is the segmentation output's downsampling: three 2× poolings.
	Factor = 8
)

// DecisionInputs name the two values the decision sub-network reads (the wide block's
// features and the segmentation logit), where a trainer stops the decision loss's
// gradient from reaching the segmentation sub-network (the papers' switch).
var DecisionInputs = [2]string{"dec.in.features", "dec.in.segmentation"}

// Prefixes of the two sub-networks' parameter names, so that a trainer can train or
// freeze either part by name.
const (
	SegPrefix = "seg." // the segmentation sub-network, its 1×1 segmentation head included
	DecPrefix = "dec." // the decision sub-network and its fully connected layer
)

// Stage is a run of Conv+BatchNorm+ReLU layers at one resolution.
type Stage struct {
	Channels int // output channels of every convolution of the stage
	Convs    int // how many convolutions
	Kernel   int // square kernel size, odd; "same" padding
}

// Options describe a segdec network.
type Options struct {
	// Height and Width are the input size (H×W), multiples of 8 with H/8 and W/8 ≥ 8 (the
	// decision sub-network pools three more times).
	Height, Width int
	// Grey averages the three input channels before the first convolution: the same
	// result as a grey camera's frame through detect's preprocessor (which repeats the
	// grey channel) at a third of the first layer's cost. RGB otherwise.
	Grey bool
	// Stages are the segmentation sub-network's three stages, each followed by a 2×
	// max-pooling.
	Stages [3]Stage
	// Strided makes each downsampling a stride-2 first convolution of stages 1 to 3 (so
	// stage 1 already runs at 1/2, and the decision sub-network's convolutions too)
	// instead of a 2× max-pooling after each stage and before each decision convolution
	// (the published network).
	Strided bool
	// Wide is the last, wide block at 1/8 resolution; its features feed the 1×1
	// convolution that gives the segmentation logit, and the decision sub-network.
	Wide Stage
	// Decision are the channels of the decision sub-network's three convolutions, each
	// after a 2× max-pooling, with DecisionKernel-sized kernels.
	Decision       [3]int
	DecisionKernel int
	// Seed draws the random initial weights.
	Seed uint64
}

// CPUOptions is the default for a CPU box: KolektorSDD2's published input size (640×232,
// H×W), narrow stages with 3×3 kernels past the first layer, and stride-2 convolutions
// for the downsamplings. A forward pass costs about an eighth of the paper's
// ResNet-50 at 704×256, and a training step about a third of the same network with the
// published max-pooling (whose full-resolution first stage, pooling indices and
// gradient scatter dominate a step on a CPU): go run ./bench segdec.
func CPUOptions() Options {
	return Options{
		Height: 640, Width: 232,
		Stages:   [3]Stage{{Channels: 24, Convs: 1, Kernel: 5}, {Channels: 48, Convs: 2, Kernel: 3}, {Channels: 96, Convs: 2, Kernel: 3}},
		Strided:  true,
		Wide:     Stage{Channels: 192, Convs: 1, Kernel: 5},
		Decision: [3]int{8, 16, 32}, DecisionKernel: 5,
		Seed: 1,
	}
}

// GPUOptions is the published network (Tabernik et al. 2020, Božič et al. 2021) at
// KolektorSDD2's size: 5×5 kernels, 32-64-64 channels in stages of 1, 3 and 4
// convolutions, and a wide block of 1024 channels with a 15×15 kernel. About 20 times
// the CPU default's arithmetic; for a GPU.
func GPUOptions() Options {
	return Options{
		Height: 640, Width: 232,
		Stages:   [3]Stage{{Channels: 32, Convs: 1, Kernel: 5}, {Channels: 64, Convs: 3, Kernel: 5}, {Channels: 64, Convs: 4, Kernel: 5}},
		Wide:     Stage{Channels: 1024, Convs: 1, Kernel: 15},
		Decision: [3]int{8, 16, 32}, DecisionKernel: 5,
		Seed: 1,
	}
}

// Limits on settings that come from outside (flags, model.json).
const (
	MaxSide     = 8192
	MaxChannels = 4096
	MaxConvs    = 16
	MaxKernel   = 31
)

// Validate checks the options, naming the bad one.
func (o Options) Validate() error {
	var errs []error
	if o.Height%Factor != 0 || o.Width%Factor != 0 || o.Height < 8*Factor || o.Width < 8*Factor || o.Height > MaxSide || o.Width > MaxSide {
		errs = append(errs, fmt.Errorf("segdec: input %dx%d (HxW): each side must be a multiple of %d from %d to %d", o.Height, o.Width, Factor, 8*Factor, MaxSide))
	}
	stage := func(name string, s Stage) {
		if s.Channels < 1 || s.Channels > MaxChannels || s.Convs < 1 || s.Convs > MaxConvs || s.Kernel < 1 || s.Kernel > MaxKernel || s.Kernel%2 == 0 {
			errs = append(errs, fmt.Errorf("segdec: %s %+v: channels 1..%d, convs 1..%d, odd kernel 1..%d", name, s, MaxChannels, MaxConvs, MaxKernel))
		}
	}
	for i, s := range o.Stages {
		stage(fmt.Sprintf("stage %d", i+1), s)
	}
	stage("wide block", o.Wide)
	for i, c := range o.Decision {
		stage(fmt.Sprintf("decision conv %d", i+1), Stage{Channels: c, Convs: 1, Kernel: o.DecisionKernel})
	}
	return errors.Join(errs...)
}

// SegSize is the segmentation output's height and width.
func (o Options) SegSize() (h, w int) { return o.Height / Factor, o.Width / Factor }

// FeatureDim is the width of the features output: global max and average of the
// decision features, and of the segmentation logit.
func (o Options) FeatureDim() int { return 2*o.Decision[2] + 2 }

// net builds one network into a graph.
type net struct {
	g   *build.Graph
	rng *rand.Rand
}

// conv adds Conv (no bias) + BatchNormalization + ReLU with He-initialised weights and
// fresh statistics (scale 1, bias 0, mean 0, variance 1), as a network trained from
// scratch starts.
func (n *net) conv(x, name string, in, out, k, stride int) string {
	fan := float64(in * k * k)
	w := make([]float32, out*in*k*k)
	for i := range w {
		w[i] = float32(n.rng.NormFloat64() * math.Sqrt(2/fan))
	}
	wn := n.g.Init(name+".weight", []int64{int64(out), int64(in), int64(k), int64(k)}, w)
	y := n.g.Conv2D(x, wn, "", int64(k), int64(stride), int64(k/2))
	ones, zeros := fill(out, 1), fill(out, 0)
	d := []int64{int64(out)}
	y = n.g.BatchNorm(y, n.g.Init(name+".bn.weight", d, ones), n.g.Init(name+".bn.bias", d, zeros),
		n.g.Init(name+".bn.running_mean", d, zeros), n.g.Init(name+".bn.running_var", d, ones), 1e-5)
	return n.g.Relu(y)
}

func fill(n int, v float32) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = v
	}
	return s
}

// stage adds a stage's convolutions (the first with the given stride) and returns its
// output and channel count.
func (n *net) stage(x, name string, in int, s Stage, stride int) (string, int) {
	for i := range s.Convs {
		x = n.conv(x, fmt.Sprintf("%s.conv%d", name, i), in, s.Channels, s.Kernel, stride)
		in, stride = s.Channels, 1
	}
	return x, in
}

// Build returns the network as a graph: input [batch,3,H,W] float32 → logit [batch,1],
// features [batch,FeatureDim], segmentation [batch,1,H/8,W/8] (a per-pixel logit).
func (o Options) Build() (*build.Graph, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	n := &net{g: build.New("segdec"), rng: rand.New(rand.NewPCG(o.Seed, 0x5e9dec))}
	g := n.g
	x := g.Input(InputName, build.Float, "batch", 3, o.Height, o.Width)
	in := 3
	if o.Grey {
		x, in = g.Op("ReduceMean", []string{x}, build.Ints("axes", 1), build.Int("keepdims", 1)), 1
	}
	for i, s := range o.Stages {
		name := fmt.Sprintf("%sstage%d", SegPrefix, i+1)
		if o.Strided {
			x, in = n.stage(x, name, in, s, 2)
			continue
		}
		x, in = n.stage(x, name, in, s, 1)
		x = g.MaxPool2D(x, 2, 2, 0)
	}
	feat, c := n.stage(x, SegPrefix+"wide", in, o.Wide, 1)
	seg := g.Identity(n.segHead(feat, c), SegmentationName)
	pooled := g.Identity(n.decision(o, feat, seg, c), FeaturesName)
	w := g.Init(DecPrefix+"fc.weight", []int64{1, int64(o.FeatureDim())}, n.small(make([]float32, o.FeatureDim())))
	g.Identity(g.Gemm(pooled, w, g.Init(DecPrefix+"fc.bias", []int64{1}, []float32{0})), LogitName)
	sh, sw := o.SegSize()
	g.Output(LogitName, build.Float, "batch", 1)
	g.Output(FeaturesName, build.Float, "batch", o.FeatureDim())
	g.Output(SegmentationName, build.Float, "batch", 1, sh, sw)
	return g, g.Err()
}

// small fills w with normal draws of standard deviation 1/sqrt(len(w)) (a layer whose
// output starts near unit scale).
func (n *net) small(w []float32) []float32 {
	for i := range w {
		w[i] = float32(n.rng.NormFloat64() / math.Sqrt(float64(len(w))))
	}
	return w
}

// segHead is the 1×1 convolution (with bias) from the wide block to the segmentation logit.
func (n *net) segHead(feat string, c int) string {
	w := n.g.Init(SegPrefix+"head.weight", []int64{1, int64(c), 1, 1}, n.small(make([]float32, c)))
	return n.g.Conv2D(feat, w, n.g.Init(SegPrefix+"head.bias", []int64{1}, []float32{0}), 1, 1, 0)
}

// decision reads the wide block's features and the segmentation logit: three
// max-pool + convolution steps, then global max and average pooling of its features and
// of the segmentation logit, concatenated (the features output).
func (n *net) decision(o Options, feat, seg string, c int) string {
	g := n.g
	seg = g.Identity(seg, DecisionInputs[1]) // every decision path reads the logit through it
	x := g.Op("Concat", []string{g.Identity(feat, DecisionInputs[0]), seg}, build.Int("axis", 1))
	in := c + 1
	for i, ch := range o.Decision {
		stride := 2
		if !o.Strided {
			x, stride = g.MaxPool2D(x, 2, 2, 0), 1
		}
		x = n.conv(x, fmt.Sprintf("%sconv%d", DecPrefix, i), in, ch, o.DecisionKernel, stride)
		in = ch
	}
	flat := func(v string) string { return g.Flatten(v, 1) }
	parts := []string{flat(g.Op("GlobalMaxPool", []string{x})), flat(g.GlobalAveragePool(x)),
		flat(g.Op("GlobalMaxPool", []string{seg})), flat(g.GlobalAveragePool(seg))}
	return g.Op("Concat", parts, build.Int("axis", 1))
}

// Model builds the network as a ModelProto.
func (o Options) Model() (*pb.ModelProto, error) {
	g, err := o.Build()
	if err != nil {
		return nil, err
	}
	return g.Model()
}
