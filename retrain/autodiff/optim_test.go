package autodiff

import (
	"math"
	"testing"

	"github.com/diagd/diagd/internal/onnx/build"
	pb "github.com/diagd/diagd/internal/onnx/onnxpb"
)

// paramModel is a forward model with two float initializers for Apply programs.
func paramModel(t *testing.T) *pb.ModelProto {
	g := build.New("params")
	x := g.Input("x", build.Float, "batch", 3)
	g.Identity(g.Add(g.Mul(x, g.Init("p", []int64{3}, []float32{1, -2, 0.5})), g.Init("q", []int64{1}, []float32{0.1})), "y")
	g.Output("y", build.Float, "batch", 3)
	m, err := g.Model()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// refStep is PyTorch's update for one element (torch.optim.Adam/AdamW/SGD, defaults for
// the rest), written from their documented algorithms.
type refState struct{ m, v, buf float64 }

func refStep(o Optimizer, p, g, lr float64, step int, s *refState) float64 {
	switch o.Kind {
	case SGD:
		g += o.WeightDecay * p
		if o.Momentum != 0 {
			if step == 1 {
				s.buf = g
			} else {
				s.buf = o.Momentum*s.buf + g
			}
			g = s.buf
		}
		return p - lr*g
	case AdamW:
		p *= 1 - lr*o.WeightDecay
	default:
		g += o.WeightDecay * p
	}
	s.m = o.Beta1*s.m + (1-o.Beta1)*g
	s.v = o.Beta2*s.v + (1-o.Beta2)*g*g
	bc1 := 1 - math.Pow(o.Beta1, float64(step))
	bc2 := 1 - math.Pow(o.Beta2, float64(step))
	return p - lr/bc1*s.m/(math.Sqrt(s.v)/math.Sqrt(bc2)+o.Eps)
}

func TestOptimizersMatchReference(t *testing.T) {
	grads := [][]float64{{0.3, -1e-3, 2}, {-0.1, 0.5, 0}, {1, 1, -4}}
	lrs := []float64{1e-1, 5e-2, 1e-2}
	opts := map[string]Optimizer{
		"adam (paper)": PaperAdam(),
		"adam with l2": {Kind: Adam, Beta1: 0.8, Beta2: 0.99, Eps: 1e-6, WeightDecay: 0.1},
		"adamw":        {Kind: AdamW, WeightDecay: 0.05},
		"sgd momentum": {Kind: SGD, Momentum: 0.9, WeightDecay: 0.01},
		"sgd plain":    {Kind: SGD},
	}
	for name, o := range opts {
		t.Run(name, func(t *testing.T) {
			prog, err := BuildApply(paramModel(t), Config{Trainable: []string{"p"}, Batch: 1, Optimizer: o})
			if err != nil {
				t.Fatal(err)
			}
			s := openProgram(t, prog)
			o = o.withDefaults()
			feeds := map[string][]float64{"p": {1, -2, 0.5}}
			ref := append([]float64{}, feeds["p"]...)
			st := make([]refState, 3)
			for k, g := range grads {
				feeds["p"+SuffixGrad], feeds[InputLR], feeds[InputStep] = g, []float64{lrs[k]}, []float64{float64(k + 1)}
				out := s.run(feeds)
				for i := range ref {
					ref[i] = refStep(o, ref[i], g[i], lrs[k], k+1, &st[i])
					near(t, "p", out["p"+SuffixNext][i], ref[i], 2e-6)
				}
				feeds["p"] = out["p"+SuffixNext]
				for _, suf := range o.stateSuffixes() {
					feeds["p"+suf] = out["p"+suf+SuffixNext]
				}
			}
		})
	}
}

// Adam's first step moves every parameter by lr·g/(|g|+eps): the bias corrections
// cancel the moments' (1−β) factors exactly.
func TestAdamFirstStep(t *testing.T) {
	prog, err := BuildApply(paramModel(t), Config{Trainable: []string{"p"}, Batch: 1, Optimizer: PaperAdam()})
	if err != nil {
		t.Fatal(err)
	}
	g := []float64{0.3, -1e-3, 2}
	out := openProgram(t, prog).run(map[string][]float64{"p": {1, -2, 0.5}, "p" + SuffixGrad: g, InputLR: {1e-4}, InputStep: {1}})
	for i, p := range []float64{1, -2, 0.5} {
		near(t, "p", out["p"+SuffixNext][i], p-1e-4*g[i]/(math.Abs(g[i])+1e-8), 1e-7)
		near(t, "m", out["p"+SuffixAdamM+SuffixNext][i], 0.1*g[i], 1e-7)
		near(t, "v", out["p"+SuffixAdamV+SuffixNext][i], 0.001*g[i]*g[i], 1e-7)
	}
}
