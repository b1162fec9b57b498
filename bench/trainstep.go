package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"syscall"
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
	spin := fs.Bool("spin", false, "let ORT's idle threads spin (its default; inflates CPU time)")
	accum := fs.Int("accumulate", 32, "also time one all-layers step (BN frozen) of this many images in micro-batches of -batch (0: skip)")
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
	entries := map[string]string{}
	if !*spin {
		entries["session.intra_op.allow_spinning"] = "0" // idle threads would burn the CPU time we measure
	}
	if *formsOnly {
		prog, err := autodiff.BuildStep(m, autodiff.Config{Trainable: trainables(m, ""), Batch: *batch,
			Loss: autodiff.Loss{Logit: zoo.DetectorLogit}, Optimizer: autodiff.PaperAdam()})
		if err != nil {
			return err
		}
		return timeForms(prog.Convs, opts, entries, *rounds)
	}
	b := benchBatch(*batch, *h, *w)
	fmt.Printf("ResNet-50 %dx%d, batch %d, CPU (%d cores), threads %d, best of %d, load %s\n", *h, *w, *batch,
		runtime.NumCPU(), *threads, *rounds, loadAvg())
	resetPeak()
	fwd, err := timeForward(m, b, opts, entries, *rounds)
	if err != nil {
		return err
	}
	fmt.Printf("forward (served model, bare ORT):   %s   peak RSS %s\n", fwd, rss("VmHWM:"))
	settings := []setting{}
	for _, c := range []struct{ name, prefix string }{{"all", ""}, {"last", "layer4."}} {
		if c.name == "last" && *skipLast {
			continue
		}
		st, err := timeSetting(m, c.name, trainables(m, c.prefix), b, opts, entries, *rounds, c.name == "all")
		if err != nil {
			return err
		}
		st.print(fwd)
		settings = append(settings, st)
	}
	if *accum > *batch {
		if err := timeAccumulated(m, *accum, b, opts, entries, settings[0]); err != nil {
			return err
		}
	}
	for _, st := range settings {
		wall, idle := st.estimate(*images, *batch, *epochs)
		fmt.Printf("paper protocol (%d images, %d epochs; epoch 1 BN train, then frozen; steps of %d; no evaluation passes), %s: %s at the measured wall times, %s on an idle machine (CPU time / %d cores)\n",
			*images, *epochs, *batch, st.name, hours(wall), hours(idle), runtime.NumCPU())
	}
	fmt.Printf("load at the end %s\n", loadAvg())
	if *forms {
		return timeForms(settings[0].convs, opts, entries, *rounds)
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

func timeForward(m *pb.ModelProto, b autodiff.Batch, o ortenv.Options, entries map[string]string, rounds int) (stepTiming, error) {
	data, err := proto.Marshal(m)
	if err != nil {
		return stepTiming{}, err
	}
	so, err := sessionOptions(o, entries)
	if err != nil {
		return stepTiming{}, err
	}
	defer so.Destroy()
	s, err := ort.NewDynamicAdvancedSessionWithONNXData(data, []string{zoo.DetectorInput}, []string{zoo.DetectorLogit}, so)
	if err != nil {
		return stepTiming{}, err
	}
	defer s.Destroy()
	dims := m.Graph.Input[0].GetType().GetTensorType().GetShape().GetDim()
	x, err := ort.NewTensor(ort.NewShape(int64(b.N), 3, dims[2].GetDimValue(), dims[3].GetDimValue()), b.Inputs[0])
	if err != nil {
		return stepTiming{}, err
	}
	defer x.Destroy()
	y, err := ort.NewEmptyTensor[float32](ort.NewShape(int64(b.N), 1))
	if err != nil {
		return stepTiming{}, err
	}
	defer y.Destroy()
	return bestOf(rounds+1, func() error { return s.Run([]ort.Value{x}, []ort.Value{y}) })
}

// sessionOptions are the CPU options of every session the benchmark opens.
func sessionOptions(o ortenv.Options, entries map[string]string) (*ort.SessionOptions, error) {
	so, err := ortenv.SessionOptions(ortenv.CPU, o)
	if err != nil {
		return nil, err
	}
	for k, v := range entries {
		if err := so.AddSessionConfigEntry(k, v); err != nil {
			so.Destroy()
			return nil, err
		}
	}
	return so, nil
}

// stepTiming is the best wall time and the best process CPU time (user+sys, all threads)
// of a few runs, in seconds. On a CPU shared with other work, wall times swing with the
// load; CPU time mostly does not, so ratios of CPU times are the steadier figure.
type stepTiming struct{ wall, cpu float64 }

func cpuSeconds() float64 {
	var r syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &r); err != nil {
		return 0
	}
	return float64(r.Utime.Nano()+r.Stime.Nano()) / 1e9
}

// bestOf runs f n times and returns the best wall and CPU times after the first
// (warm-up; ORT also faults in fresh memory on the second run of a large graph, so give
// n ≥ 3).
func bestOf(n int, f func() error) (stepTiming, error) {
	var walls, cpus []float64
	for i := range n {
		start, c0 := time.Now(), cpuSeconds()
		if err := f(); err != nil {
			return stepTiming{}, err
		}
		if i > 0 || n == 1 {
			walls = append(walls, time.Since(start).Seconds())
			cpus = append(cpus, cpuSeconds()-c0)
		}
	}
	return stepTiming{wall: slices.Min(walls), cpu: slices.Min(cpus)}, nil
}

func (m stepTiming) String() string { return fmt.Sprintf("%7.2f s wall %7.2f s CPU", m.wall, m.cpu) }

// ratio is m/base for both times.
func (m stepTiming) ratio(base stepTiming) string {
	return fmt.Sprintf("%5.2fx wall %5.2fx CPU", m.wall/base.wall, m.cpu/base.cpu)
}

// setting is one trainable set's measurements.
type setting struct {
	name                string
	params              int
	setup               float64
	train, froze        stepTiming
	peakTrain, peakFroz string
	convs               map[string]autodiff.ConvChoice
}

func timeSetting(m *pb.ModelProto, name string, params []string, b autodiff.Batch, o ortenv.Options,
	entries map[string]string, rounds int, keepConvs bool) (setting, error) {
	s := setting{name: name, params: len(params)}
	resetPeak()
	start := time.Now()
	st, err := autodiff.NewStepper(quietLog(), m, autodiff.StepperConfig{Session: o, SessionConfig: entries, Config: autodiff.Config{
		Trainable: params, Batch: b.N, Loss: autodiff.Loss{Logit: zoo.DetectorLogit},
		Optimizer: autodiff.PaperAdam(), BatchNorm: autodiff.BNTrain}})
	if err != nil {
		return s, err
	}
	defer st.Close()
	s.setup = time.Since(start).Seconds()
	step := func() error { _, err := st.Step(context.Background(), b); return err }
	if s.train, err = bestOf(rounds+2, step); err != nil {
		return s, err
	}
	s.peakTrain = rss("VmHWM:")
	st.SetBatchNorm(autodiff.BNFrozen)
	if s.froze, err = bestOf(rounds+2, step); err != nil {
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

func (s setting) print(fwd stepTiming) {
	fmt.Printf("step %-4s (%3d tensors), BN train:  %s = %s forward (target <= 3.5)  setup %.1f s  peak RSS %s\n",
		s.name, s.params, s.train, s.train.ratio(fwd), s.setup, s.peakTrain)
	fmt.Printf("step %-4s, BN frozen (epochs 2-30): %s = %s forward (target <= 3.5)  peak RSS (both) %s\n",
		s.name, s.froze, s.froze.ratio(fwd), s.peakFroz)
}

// timeAccumulated runs a batch of n images as micro-batches of b.N (gradients accumulate,
// one update) and reports its time per image against the fused step and its peak RSS.
func timeAccumulated(m *pb.ModelProto, n int, b autodiff.Batch, o ortenv.Options, entries map[string]string, fused setting) error {
	resetPeak()
	st, err := autodiff.NewStepper(quietLog(), m, autodiff.StepperConfig{Session: o, SessionConfig: entries, Batch: n,
		Config: autodiff.Config{Trainable: trainables(m, ""), Batch: b.N, Loss: autodiff.Loss{Logit: zoo.DetectorLogit},
			Optimizer: autodiff.PaperAdam(), BatchNorm: autodiff.BNFrozen}})
	if err != nil {
		return err
	}
	defer st.Close()
	big := benchBatch(n, 0, 0)
	big.Inputs[0] = slices.Repeat(b.Inputs[0], (n+b.N-1)/b.N)[:n*len(b.Inputs[0])/b.N]
	t, err := bestOf(2, func() error { _, err := st.Step(context.Background(), big); return err })
	if err != nil {
		return err
	}
	per := func(x stepTiming, k int) stepTiming {
		return stepTiming{wall: x.wall / float64(k), cpu: x.cpu / float64(k)}
	}
	fmt.Printf("step all, BN frozen, %d images as micro-batches of %d: %s = %s the fused batch-%d step per image  peak RSS %s\n",
		n, b.N, t, per(t, n).ratio(per(fused.froze, b.N)), b.N, rss("VmHWM:"))
	return nil
}

// estimate is the paper protocol's training time: epoch 1 in BN-train mode, the rest
// frozen, images/batch steps per epoch. From wall times as measured, and from CPU time
// spread over the machine's cores (what an otherwise idle machine would take).
func (s setting) estimate(images, batch, epochs int) (wall, idle time.Duration) {
	steps := float64(images) / float64(batch)
	at := func(train, froze float64) time.Duration {
		return time.Duration((steps*train + steps*float64(epochs-1)*froze) * float64(time.Second))
	}
	cores := float64(runtime.NumCPU())
	return at(s.train.wall, s.froze.wall), at(s.train.cpu/cores, s.froze.cpu/cores)
}

// timeForms times every distinct convolution shape's gradient forms in isolation.
func timeForms(convs map[string]autodiff.ConvChoice, o ortenv.Options, entries map[string]string, rounds int) error {
	seen := map[autodiff.ConvShape]autodiff.ConvForms{}
	for _, c := range convs {
		seen[c.Shape] = c.Forms
	}
	shapes := make([]autodiff.ConvShape, 0, len(seen))
	for s := range seen {
		shapes = append(shapes, s)
	}
	sort.Slice(shapes, func(i, j int) bool { return shapes[i].H*shapes[i].C > shapes[j].H*shapes[j].C })
	fmt.Printf("\nconvolution gradients in isolation: CPU seconds (best of %d, interleaved) and ratio to the forward Conv (* = DefaultConvPolicy's choice)\n", rounds)
	fmt.Printf("%-40s %8s | %-18s %-18s | %-18s %-18s %-18s %-18s\n", "shape", "forward", "dX convtranspose", "dX matmul",
		"dW conv", "dW gemm", "dW im2col", "dW batched")
	for _, s := range shapes {
		if err := timeShape(s, seen[s], o, entries, rounds); err != nil {
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
func timeShape(s autodiff.ConvShape, chosen autodiff.ConvForms, o ortenv.Options, entries map[string]string, rounds int) error {
	runs := []*graphRun{}
	fwd, err := openGraph(forwardConv(s), []string{"y"}, o, entries)
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
		r, err := openGraph(m, []string{map[bool]string{true: "dx", false: "dw"}[c.dx]}, o, entries)
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
		cells[c.col] = fmt.Sprintf("%6.3f %5.2fx%s", r.best().cpu, r.best().cpu/fwd.best().cpu, mark)
	}
	fmt.Printf("%-40s %8.3f | %-18s %-18s | %-18s %-18s %-18s %-18s\n", append([]any{s.String(), fwd.best().cpu}, cells...)...)
	return nil
}
