package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	ort "github.com/yalue/onnxruntime_go"
	"google.golang.org/protobuf/proto"

	pb "github.com/diagd/diagd/internal/onnx/onnxpb"
	"github.com/diagd/diagd/internal/onnx/zoo"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/retrain/autodiff"
)

func init() { register("trainstep", benchTrainStep) }

// benchTrainStep measures a full training step of the generated ResNet-50 (704×256, CPU)
// built by retrain/autodiff against a bare ORT forward pass of the served model on the
// same batch, in the same process: all layers trainable (BatchNorm in train mode, as in
// the paper's first epoch, and frozen, as after), the last stage plus head, peak RSS of
// each, and the wall time of a paper-protocol run estimated from them. -forms also times
// every convolution shape's gradient forms in isolation against its forward Conv.
func benchTrainStep(args []string) error {
	fs := flag.NewFlagSet("trainstep", flag.ContinueOnError)
	batch := fs.Int("batch", 8, "batch size")
	h := fs.Int("h", 704, "input height")
	w := fs.Int("w", 256, "input width")
	rounds := fs.Int("rounds", 2, "timed runs of each; the best counts (the CPUs are shared)")
	threads := fs.Int("threads", 0, "ORT intra-op threads (0: ORT's choice)")
	images := fs.Int("images", 2185, "training images of the paper-protocol estimate")
	epochs := fs.Int("epochs", 30, "epochs of the paper-protocol estimate")
	forms := fs.Bool("forms", false, "also time each convolution's gradient forms in isolation")
	formsOnly := fs.Bool("forms-only", false, "only time the gradient forms")
	skipLast := fs.Bool("skip-last", false, "do not time the last-stage setting")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := quietLog()
	if err := initORT(log); err != nil {
		return err
	}
	cfg := zoo.ResNet50(1)
	cfg.InputH, cfg.InputW = *h, *w
	g, err := cfg.Build()
	if err != nil {
		return err
	}
	m, err := g.Model()
	if err != nil {
		return err
	}
	opts := ortenv.Options{Provider: ortenv.CPU, Threads: *threads}
	if *formsOnly {
		prog, err := autodiff.BuildStep(m, autodiff.Config{Trainable: trainables(m, ""), Batch: *batch,
			Loss: autodiff.Loss{Logit: zoo.DetectorLogit}, Optimizer: autodiff.PaperAdam()})
		if err != nil {
			return err
		}
		return timeForms(prog.Convs, opts, *rounds)
	}
	b := benchBatch(*batch, *h, *w)
	fmt.Printf("ResNet-50 %dx%d, batch %d, CPU, threads %d, best of %d\n", *h, *w, *batch, *threads, *rounds)
	resetPeak()
	fwd, err := timeForward(m, b, opts, *rounds)
	if err != nil {
		return err
	}
	fmt.Printf("forward (served model, bare ORT): %8.2f s   peak RSS %s\n", fwd, rss("VmHWM:"))
	all, err := timeSetting(m, "all", trainables(m, ""), b, opts, *rounds, true)
	if err != nil {
		return err
	}
	all.print(fwd)
	est := all.estimate(*images, *batch, *epochs)
	if !*skipLast {
		last, err := timeSetting(m, "last", trainables(m, "layer4."), b, opts, *rounds, false)
		if err != nil {
			return err
		}
		last.print(fwd)
		fmt.Printf("paper-protocol estimate (%d images, %d epochs, epoch 1 BN train, then frozen; no evaluation passes): all %s, last %s\n",
			*images, *epochs, hours(est), hours(last.estimate(*images, *batch, *epochs)))
	} else {
		fmt.Printf("paper-protocol estimate (%d images, %d epochs): all %s\n", *images, *epochs, hours(est))
	}
	if *forms {
		return timeForms(all.convs, opts, *rounds)
	}
	return nil
}

func hours(d time.Duration) string { return fmt.Sprintf("%.1f h", d.Hours()) }

// trainables lists every weight (running statistics excluded); with a prefix, only the
// layers under it and the head.
func trainables(m *pb.ModelProto, prefix string) []string {
	var out []string
	for _, t := range m.Graph.Initializer {
		n := t.GetName()
		if strings.Contains(n, "running_") {
			continue
		}
		if prefix == "" || strings.HasPrefix(n, prefix) || strings.HasPrefix(n, "fc.") {
			out = append(out, n)
		}
	}
	return out
}

func benchBatch(n, h, w int) autodiff.Batch {
	rng := rand.New(rand.NewPCG(1, 2))
	b := autodiff.Batch{N: n, Inputs: [][]float32{make([]float32, n*3*h*w)}, LR: 1e-4}
	for i := range b.Inputs[0] {
		b.Inputs[0][i] = float32(rng.NormFloat64())
	}
	for i := range n {
		b.Labels = append(b.Labels, float32(i%2))
	}
	return b
}

// resetPeak resets VmHWM (Linux: writing 5 to clear_refs) so each setting's peak is its own.
func resetPeak() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

func timeForward(m *pb.ModelProto, b autodiff.Batch, o ortenv.Options, rounds int) (float64, error) {
	data, err := proto.Marshal(m)
	if err != nil {
		return 0, err
	}
	so, err := ortenv.SessionOptions(ortenv.CPU, o)
	if err != nil {
		return 0, err
	}
	defer so.Destroy()
	s, err := ort.NewDynamicAdvancedSessionWithONNXData(data, []string{zoo.DetectorInput}, []string{zoo.DetectorLogit}, so)
	if err != nil {
		return 0, err
	}
	defer s.Destroy()
	dims := m.Graph.Input[0].GetType().GetTensorType().GetShape().GetDim()
	x, err := ort.NewTensor(ort.NewShape(int64(b.N), 3, dims[2].GetDimValue(), dims[3].GetDimValue()), b.Inputs[0])
	if err != nil {
		return 0, err
	}
	defer x.Destroy()
	y, err := ort.NewEmptyTensor[float32](ort.NewShape(int64(b.N), 1))
	if err != nil {
		return 0, err
	}
	defer y.Destroy()
	return bestOf(rounds+1, func() error { return s.Run([]ort.Value{x}, []ort.Value{y}) })
}

// bestOf runs f n times and returns the fastest run in seconds after the first (warm-up).
func bestOf(n int, f func() error) (float64, error) {
	var ts []float64
	for i := range n {
		start := time.Now()
		if err := f(); err != nil {
			return 0, err
		}
		if i > 0 || n == 1 {
			ts = append(ts, time.Since(start).Seconds())
		}
	}
	return slices.Min(ts), nil
}

// setting is one trainable set's measurements.
type setting struct {
	name                string
	params              int
	setup, train, froze float64
	peakTrain, peakFroz string
	convs               map[string]autodiff.ConvChoice
}

func timeSetting(m *pb.ModelProto, name string, params []string, b autodiff.Batch, o ortenv.Options,
	rounds int, keepConvs bool) (setting, error) {
	s := setting{name: name, params: len(params)}
	resetPeak()
	start := time.Now()
	st, err := autodiff.NewStepper(quietLog(), m, autodiff.StepperConfig{Session: o, Config: autodiff.Config{
		Trainable: params, Batch: b.N, Loss: autodiff.Loss{Logit: zoo.DetectorLogit},
		Optimizer: autodiff.PaperAdam(), BatchNorm: autodiff.BNTrain}})
	if err != nil {
		return s, err
	}
	defer st.Close()
	s.setup = time.Since(start).Seconds()
	step := func() error { _, err := st.Step(context.Background(), b); return err }
	if s.train, err = bestOf(rounds+1, step); err != nil {
		return s, err
	}
	s.peakTrain = rss("VmHWM:")
	st.SetBatchNorm(autodiff.BNFrozen)
	if s.froze, err = bestOf(rounds+1, step); err != nil {
		return s, err
	}
	s.peakFroz = rss("VmHWM:")
	if keepConvs {
		prog, err := autodiff.BuildStep(m, autodiff.Config{Trainable: params, Batch: b.N,
			Loss: autodiff.Loss{Logit: zoo.DetectorLogit}, Optimizer: autodiff.PaperAdam()})
		if err != nil {
			return s, err
		}
		s.convs = prog.Convs
	}
	return s, nil
}

func (s setting) print(fwd float64) {
	fmt.Printf("step %-4s (%3d tensors) BN train: %7.2f s = %5.2fx forward (target <= 3.5)   setup %.1f s   peak RSS %s\n",
		s.name, s.params, s.train, s.train/fwd, s.setup, s.peakTrain)
	fmt.Printf("step %-4s             BN frozen: %6.2f s = %5.2fx forward (target <= 3.5)   peak RSS (both modes) %s\n",
		s.name, s.froze, s.froze/fwd, s.peakFroz)
}

// estimate is the paper protocol's training time: epoch 1 in BN-train mode, the rest
// frozen, each epoch images/batch steps of the measured time.
func (s setting) estimate(images, batch, epochs int) time.Duration {
	steps := float64(images) / float64(batch)
	secs := steps*s.train + steps*float64(epochs-1)*s.froze
	return time.Duration(secs * float64(time.Second))
}

// timeForms times every distinct convolution shape's gradient forms in isolation.
func timeForms(convs map[string]autodiff.ConvChoice, o ortenv.Options, rounds int) error {
	seen := map[autodiff.ConvShape]autodiff.ConvForms{}
	for _, c := range convs {
		seen[c.Shape] = c.Forms
	}
	shapes := make([]autodiff.ConvShape, 0, len(seen))
	for s := range seen {
		shapes = append(shapes, s)
	}
	sort.Slice(shapes, func(i, j int) bool { return shapes[i].H*shapes[i].C > shapes[j].H*shapes[j].C })
	fmt.Printf("\nconvolution gradients in isolation, seconds and ratio to the forward Conv (* = chosen by DefaultConvPolicy)\n")
	fmt.Printf("%-40s %8s | %-18s %-18s | %-18s %-18s %-18s %-18s\n", "shape", "forward", "dX convtranspose", "dX matmul",
		"dW conv", "dW gemm", "dW im2col", "dW batched")
	for _, s := range shapes {
		if err := timeShape(s, seen[s], o, rounds); err != nil {
			return err
		}
	}
	return nil
}

// formCase is one graph of the forms table.
type formCase struct {
	col   int
	forms autodiff.ConvForms
	dx    bool
}

var formCols = []formCase{
	{0, autodiff.ConvForms{Input: autodiff.InputConvTranspose}, true}, {1, autodiff.ConvForms{Input: autodiff.InputMatMul}, true},
	{2, autodiff.ConvForms{Weight: autodiff.WeightConv}, false}, {3, autodiff.ConvForms{Weight: autodiff.WeightGemm}, false},
	{4, autodiff.ConvForms{Weight: autodiff.WeightIm2col}, false}, {5, autodiff.ConvForms{Weight: autodiff.WeightBatched}, false},
}

// timeShape times the forward Conv and each form of one shape, interleaved round by
// round so that all see the same load, and prints the best of each.
func timeShape(s autodiff.ConvShape, chosen autodiff.ConvForms, o ortenv.Options, rounds int) error {
	runs := []*graphRun{}
	fwd, err := openGraph(forwardConv(s), []string{"y"}, o)
	if err != nil {
		return err
	}
	runs = append(runs, fwd)
	cols := make([]*graphRun, len(formCols))
	for _, c := range formCols {
		if c.dx && c.forms.Input == autodiff.InputMatMul && !s.Pointwise() {
			continue
		}
		m, err := autodiff.ConvGradModel(s, c.forms, c.dx, !c.dx)
		if err != nil {
			return err
		}
		r, err := openGraph(m, []string{map[bool]string{true: "dx", false: "dw"}[c.dx]}, o)
		if err != nil {
			return err
		}
		cols[c.col] = r
		runs = append(runs, r)
	}
	defer func() {
		for _, r := range runs {
			r.close()
		}
	}()
	for range rounds + 1 {
		for _, r := range runs {
			if err := r.time(); err != nil {
				return err
			}
		}
	}
	cells := make([]any, len(formCols))
	for _, c := range formCols {
		r := cols[c.col]
		if r == nil {
			cells[c.col] = "-"
			continue
		}
		mark := " "
		if (c.dx && c.forms.Input == chosen.Input) || (!c.dx && c.forms.Weight == chosen.Weight) {
			mark = "*"
		}
		cells[c.col] = fmt.Sprintf("%6.3f %5.2fx%s", r.best(), r.best()/fwd.best(), mark)
	}
	fmt.Printf("%-40s %8.3f | %-18s %-18s | %-18s %-18s %-18s %-18s\n", append([]any{s.String(), fwd.best()}, cells...)...)
	return nil
}
