package autodiff

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	ort "github.com/yalue/onnxruntime_go"

	pb "github.com/diagd/diagd/internal/onnx/onnxpb"
	"github.com/diagd/diagd/internal/ortenv"
)

// StepperConfig configures a Stepper.
type StepperConfig struct {
	// Config is the graph configuration; Config.Batch is the micro-batch size, the most
	// samples one graph run sees.
	Config
	// Batch is the largest batch a step takes. Batches larger than Config.Batch are run as
	// micro-batches whose gradients accumulate before one optimizer update. 0 means
	// Config.Batch.
	Batch int
	// Session picks the execution provider and threads (ortenv.Auto means CUDA, then CPU).
	Session ortenv.Options
	// SessionConfig adds ORT session configuration entries, e.g.
	// "session.intra_op.allow_spinning": "0" on a CPU shared with other work.
	SessionConfig map[string]string
}

// Batch is one step's data.
type Batch struct {
	N int
	// Inputs holds one slice per data input of the forward graph, in the graph's order,
	// N samples each (e.g. [N,3,H,W] images, preprocessed as served).
	Inputs [][]float32
	// Labels are the N image labels (image loss only).
	Labels []float32
	// PixelTargets and PixelWeights have the pixel logit's shape for N samples (pixel loss only).
	PixelTargets, PixelWeights []float32
	// LR is this step's learning rate.
	LR float32
	// PixelLossWeight and ImageLossWeight are a and b of a·pixel + b·image (both losses only).
	PixelLossWeight, ImageLossWeight float32
}

// Result is what a step computed.
type Result struct {
	Loss                 float64 // the batch's loss (before the update)
	ImageLoss, PixelLoss float64 // the parts, when both losses are configured
	// Outputs are the forward outputs (logits) for the N samples, computed with the
	// parameters before the update.
	Outputs map[string][]float32
	Step    int64 // updates taken so far, this one included
}

// Stepper runs training steps in ONNX Runtime. Parameters, optimizer state and
// BatchNormalization statistics live in pre-allocated ORT tensors, double-buffered: each
// run reads one buffer and writes the other, and only a successful step swaps them, so a
// cancelled or failed step leaves the state as it was. Not safe for concurrent use.
type Stepper struct {
	log   *slog.Logger
	fwd   *pb.ModelProto
	cfg   StepperConfig
	mode  BNMode
	state map[string]*pair
	names stateNames
	progs map[progKey]*runner
	ro    *ort.RunOptions
	steps int64

	// beforeRun and terminated let tests cancel deterministically inside a run.
	beforeRun  func()
	terminated chan struct{}
}

type progKey struct {
	kind Kind
	n    int
	mode BNMode
}

// stateNames groups the Stepper's buffers by what they are.
type stateNames struct {
	params, optState, bnStats, grads []string
}

// NewStepper checks that the training graphs can be built, allocates the state with the
// forward model's initial weights (optimizer state zero) and opens the first graph.
func NewStepper(log *slog.Logger, fwd *pb.ModelProto, cfg StepperConfig) (*Stepper, error) {
	if cfg.Batch == 0 {
		cfg.Batch = cfg.Config.Batch
	}
	if cfg.Config.Batch < 1 || cfg.Batch < cfg.Config.Batch {
		return nil, fmt.Errorf("autodiff: micro-batch %d and batch %d (want 1 ≤ micro ≤ batch)", cfg.Config.Batch, cfg.Batch)
	}
	s := &Stepper{log: log, fwd: fwd, cfg: cfg, mode: cfg.BatchNorm, state: map[string]*pair{}, progs: map[progKey]*runner{}}
	first := progKey{kind: Fused, n: cfg.Config.Batch, mode: s.mode}
	if cfg.Batch > cfg.Config.Batch {
		first.kind = Gradient
	}
	r, err := s.runner(first)
	if err != nil {
		return nil, err
	}
	if err := s.allocate(r.prog); err != nil {
		s.Close()
		return nil, err
	}
	if s.ro, err = ort.NewRunOptions(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// allocate creates the double buffers named by a program's interface.
func (s *Stepper) allocate(p *Program) error {
	var params, bn []string
	for _, t := range p.Inputs {
		switch t.Role {
		case RoleTrainable:
			params = append(params, t.Name)
		case RoleBNStat:
			bn = append(bn, t.Name)
		}
	}
	init, err := InitialValues(s.fwd, append(append([]string{}, params...), bn...))
	if err != nil {
		return err
	}
	shapes := map[string][]int64{}
	for _, t := range p.Inputs {
		shapes[t.Name] = t.Shape
	}
	add := func(name string, shape []int64, v []float32) error {
		pr, err := newPair(shape, v)
		if err != nil {
			return fmt.Errorf("autodiff: allocating %s: %w", name, err)
		}
		s.state[name] = pr
		return nil
	}
	s.names = stateNames{params: params, bnStats: bn}
	for _, n := range append(append([]string{}, params...), bn...) {
		if err := add(n, shapes[n], init[n]); err != nil {
			return err
		}
	}
	for _, n := range params {
		for _, suf := range s.cfg.Optimizer.withDefaults().stateSuffixes() {
			s.names.optState = append(s.names.optState, n+suf)
			if err := add(n+suf, shapes[n], nil); err != nil {
				return err
			}
		}
		if s.cfg.Batch > s.cfg.Config.Batch {
			s.names.grads = append(s.names.grads, n+SuffixGrad)
			if err := add(n+SuffixGrad, shapes[n], nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// runner returns the opened program for a key, building it on first use.
func (s *Stepper) runner(k progKey) (*runner, error) {
	if r := s.progs[k]; r != nil {
		return r, nil
	}
	cfg := s.cfg.Config
	cfg.Batch, cfg.BatchNorm = max(k.n, 1), k.mode // Apply has no batch
	var prog *Program
	var err error
	switch k.kind {
	case Fused:
		prog, err = BuildStep(s.fwd, cfg)
	case Gradient:
		prog, err = BuildGradient(s.fwd, cfg)
	default:
		prog, err = BuildApply(s.fwd, cfg)
	}
	if err != nil {
		return nil, err
	}
	r, err := openRunner(s.log, prog, s.cfg.Session, s.cfg.SessionConfig)
	if err != nil {
		return nil, err
	}
	s.progs[k] = r
	return r, nil
}

// Provider is the execution provider the training graphs run on.
func (s *Stepper) Provider() ortenv.Provider {
	for _, r := range s.progs {
		return r.provider
	}
	return ""
}

// BatchNorm returns the current BatchNormalization mode.
func (s *Stepper) BatchNorm() BNMode { return s.mode }

// SetBatchNorm switches the mode for later steps (the paper: train for the first
// epoch, frozen after). The statistics carry over; the other mode's graphs are closed,
// so their memory goes back (they are rebuilt if the mode comes back).
func (s *Stepper) SetBatchNorm(m BNMode) {
	if m == s.mode {
		return
	}
	s.mode = m
	for k, r := range s.progs {
		if k.kind != Apply && k.mode != m {
			r.close()
			delete(s.progs, k)
		}
	}
}

// Steps is the number of updates taken.
func (s *Stepper) Steps() int64 { return s.steps }

// Close releases every ORT object.
func (s *Stepper) Close() error {
	for _, r := range s.progs {
		r.close()
	}
	for _, p := range s.state {
		p.destroy()
	}
	if s.ro != nil {
		s.ro.Destroy()
	}
	s.progs, s.state, s.ro = nil, nil, nil
	return nil
}

// Step runs one training step on b: forward, backward and one optimizer update
// (micro-batches accumulate first). On error or cancellation the state is unchanged.
func (s *Stepper) Step(ctx context.Context, b Batch) (Result, error) {
	if err := s.checkBatch(b); err != nil {
		return Result{}, err
	}
	if b.N <= s.cfg.Config.Batch {
		r, err := s.runner(progKey{kind: Fused, n: b.N, mode: s.mode})
		if err != nil {
			return Result{}, err
		}
		res := Result{Outputs: map[string][]float32{}}
		if err := s.runChunk(ctx, r, b, 0, b.N, &res); err != nil {
			return Result{}, err
		}
		s.steps++
		res.Step = s.steps
		return res, nil
	}
	return s.accumulate(ctx, b)
}

// accumulate runs micro-batches into the gradient accumulators, then the update. BN
// statistics change per micro-batch, so they are restored if the step does not finish.
func (s *Stepper) accumulate(ctx context.Context, b Batch) (Result, error) {
	for _, g := range s.names.grads {
		s.state[g].cur.ZeroContents()
	}
	saved := s.copyOf(s.names.bnStats)
	res := Result{Outputs: map[string][]float32{}}
	err := func() error {
		for lo := 0; lo < b.N; lo += s.cfg.Config.Batch {
			hi := min(lo+s.cfg.Config.Batch, b.N)
			r, err := s.runner(progKey{kind: Gradient, n: hi - lo, mode: s.mode})
			if err != nil {
				return err
			}
			if err := s.runChunk(ctx, r, b, lo, hi, &res); err != nil {
				return err
			}
		}
		r, err := s.runner(progKey{kind: Apply})
		if err != nil {
			return err
		}
		return s.runChunk(ctx, r, b, 0, 0, &res)
	}()
	if err != nil {
		for n, v := range saved {
			copy(s.state[n].cur.GetData(), v)
		}
		return Result{}, err
	}
	s.steps++
	res.Step = s.steps
	return res, nil
}

func (s *Stepper) copyOf(names []string) map[string][]float32 {
	out := map[string][]float32{}
	for _, n := range names {
		out[n] = append([]float32{}, s.state[n].cur.GetData()...)
	}
	return out
}

func (s *Stepper) checkBatch(b Batch) error {
	if s.state == nil {
		return errors.New("autodiff: stepper is closed")
	}
	if b.N < 1 || b.N > s.cfg.Batch {
		return fmt.Errorf("autodiff: batch of %d (this stepper takes 1 to %d)", b.N, s.cfg.Batch)
	}
	return nil
}

// runChunk feeds samples [lo,hi) of b to a program, runs it, collects losses and
// outputs, and swaps the buffers it updated.
func (s *Stepper) runChunk(ctx context.Context, r *runner, b Batch, lo, hi int, res *Result) error {
	if err := s.feed(r, b, lo, hi); err != nil {
		return err
	}
	ins, outs, err := r.values(s.state)
	if err != nil {
		return err
	}
	if err := s.run(ctx, r, ins, outs); err != nil {
		return err
	}
	frac := float64(hi-lo) / float64(b.N)
	for _, t := range r.prog.Outputs {
		switch {
		case t.Role == RoleNext:
			s.state[t.Of].swap()
		case t.Name == OutputLoss:
			res.Loss += float64(r.owned[t.Name].GetData()[0])
		case t.Name == OutputImageLoss:
			res.ImageLoss += frac * float64(r.owned[t.Name].GetData()[0])
		case t.Name == OutputPixelLoss:
			res.PixelLoss += frac * float64(r.owned[t.Name].GetData()[0])
		case t.Role == RoleOutput:
			res.Outputs[t.Name] = append(res.Outputs[t.Name], r.owned[t.Name].GetData()...)
		}
	}
	return nil
}

// feed copies samples [lo,hi) and this step's scalars into the runner's tensors.
func (s *Stepper) feed(r *runner, b Batch, lo, hi int) error {
	n := hi - lo
	data := 0
	for _, t := range r.prog.Inputs {
		var src []float32
		switch t.Role {
		case RoleData:
			if data >= len(b.Inputs) {
				return fmt.Errorf("autodiff: batch has %d inputs; the graph takes more", len(b.Inputs))
			}
			src = b.Inputs[data]
			data++
		case RoleLabels:
			src = b.Labels
		case RolePixelTarget:
			src = b.PixelTargets
		case RolePixelWeight:
			src = b.PixelWeights
		default:
			continue
		}
		dst := r.owned[t.Name].GetData()
		per := len(dst) / n
		if len(src) != per*b.N {
			return fmt.Errorf("autodiff: %s: %d values for %d samples of %d", t.Name, len(src), b.N, per)
		}
		copy(dst, src[lo*per:hi*per])
	}
	r.set(InputLossScale, float32(n)/float32(b.N))
	r.set(InputLR, b.LR)
	r.set(InputPixelLossW, b.PixelLossWeight)
	r.set(InputImageLossW, b.ImageLossWeight)
	if r.step != nil {
		r.step.GetData()[0] = s.steps + 1
	}
	return nil
}

// run executes one graph run that ctx can cancel midway: a watcher sets ORT's terminate
// flag, which ORT checks between nodes.
func (s *Stepper) run(ctx context.Context, r *runner, ins, outs []ort.Value) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-ctx.Done():
			if err := s.ro.Terminate(); err != nil {
				s.log.Warn("cannot stop the training step", "error", err)
			}
			if s.terminated != nil {
				s.terminated <- struct{}{}
			}
		case <-done:
		}
	}()
	if s.beforeRun != nil {
		s.beforeRun()
	}
	err := r.sess.RunWithOptions(ins, outs, s.ro)
	close(done)
	<-stopped
	if ctx.Err() != nil {
		if uerr := s.ro.UnsetTerminate(); uerr != nil {
			return errors.Join(ctx.Err(), uerr)
		}
		if err != nil { // ORT saw the terminate flag (or failed on its own)
			return fmt.Errorf("autodiff: %s step stopped: %w (onnxruntime: %v)", r.prog.Kind, ctx.Err(), err)
		}
		return fmt.Errorf("autodiff: %s step stopped: %w", r.prog.Kind, ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("autodiff: %s step: %w", r.prog.Kind, err)
	}
	return nil
}

// Values returns copies of the parameters and BatchNormalization running statistics.
func (s *Stepper) Values() map[string][]float32 {
	return s.copyOf(append(append([]string{}, s.names.params...), s.names.bnStats...))
}

// InferenceModel returns a copy of the forward model with the trained parameters and
// running statistics written in (BatchNormalization in eval mode).
func (s *Stepper) InferenceModel() (*pb.ModelProto, error) { return WriteBack(s.fwd, s.Values()) }

// Snapshot is the whole training state, for checkpoints.
type Snapshot struct {
	Steps     int64
	BatchNorm BNMode
	Tensors   map[string][]float32 // parameters, optimizer state, BN statistics
}

// Snapshot copies the training state out.
func (s *Stepper) Snapshot() Snapshot {
	n := s.names
	all := append(append(append([]string{}, n.params...), n.optState...), n.bnStats...)
	return Snapshot{Steps: s.steps, BatchNorm: s.mode, Tensors: s.copyOf(all)}
}

// Restore loads a snapshot taken from a Stepper of the same configuration.
func (s *Stepper) Restore(sn Snapshot) error {
	n := s.names
	all := append(append(append([]string{}, n.params...), n.optState...), n.bnStats...)
	for _, name := range all {
		v, ok := sn.Tensors[name]
		if !ok || len(v) != len(s.state[name].cur.GetData()) {
			return fmt.Errorf("autodiff: snapshot lacks %q or has the wrong size", name)
		}
	}
	for _, name := range all {
		copy(s.state[name].cur.GetData(), sn.Tensors[name])
	}
	s.steps, s.mode = sn.Steps, sn.BatchNorm
	return nil
}
