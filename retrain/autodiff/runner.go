package autodiff

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/diagd/diagd/internal/ortenv"
)

// runner is one training program opened in ORT, with the tensors it owns: the batch
// inputs, per-step scalars, and the loss and forward outputs. Parameters, optimizer state,
// BatchNormalization statistics and gradient accumulators belong to the Stepper.
type runner struct {
	prog     *Program
	sess     *ort.DynamicAdvancedSession
	provider ortenv.Provider
	owned    map[string]*ort.Tensor[float32]
	step     *ort.Tensor[int64]
}

// trainingChain is the provider order for training graphs: TensorRT would spend minutes
// building engines for a graph that changes with every configuration, so auto means
// CUDA, then CPU.
func trainingChain(p ortenv.Provider) []ortenv.Provider {
	if p == "" || p == ortenv.Auto {
		return []ortenv.Provider{ortenv.CUDA, ortenv.CPU}
	}
	return []ortenv.Provider{p}
}

func openRunner(log *slog.Logger, prog *Program, o ortenv.Options, entries map[string]string) (*runner, error) {
	if _, err := ortenv.Init(log); err != nil {
		return nil, err
	}
	b, err := prog.Bytes()
	if err != nil {
		return nil, err
	}
	var reasons []string
	for _, p := range trainingChain(o.Provider) {
		so, err := ortenv.SessionOptions(p, o)
		if err != nil {
			reasons = append(reasons, fmt.Sprintf("%s: %v", p, err))
			continue
		}
		for _, k := range sortedKeys(entries) {
			if err = so.AddSessionConfigEntry(k, entries[k]); err != nil {
				so.Destroy()
				return nil, fmt.Errorf("autodiff: session config %s=%s: %w", k, entries[k], err)
			}
		}
		sess, err := ort.NewDynamicAdvancedSessionWithONNXData(b, prog.InputNames(), prog.OutputNames(), so)
		so.Destroy()
		if err != nil {
			reasons = append(reasons, fmt.Sprintf("%s: %v", p, err))
			continue
		}
		r := &runner{prog: prog, sess: sess, provider: p, owned: map[string]*ort.Tensor[float32]{}}
		if err := r.allocate(); err != nil {
			r.close()
			return nil, err
		}
		log.Debug("training graph ready", "kind", prog.Kind.String(), "provider", string(p), "nodes", len(prog.Model.Graph.Node))
		return r, nil
	}
	return nil, fmt.Errorf("autodiff: no execution provider could open the %s graph: %s", prog.Kind, strings.Join(reasons, "; "))
}

// owns says whether a tensor of this role is the runner's (else the Stepper's).
func owns(r Role) bool {
	switch r {
	case RoleTrainable, RoleOptState, RoleBNStat, RoleGrad, RoleNext:
		return false
	}
	return true
}

func (r *runner) allocate() error {
	for _, t := range append(append([]Tensor{}, r.prog.Inputs...), r.prog.Outputs...) {
		if !owns(t.Role) {
			continue
		}
		if t.Int64 {
			v, err := ort.NewEmptyTensor[int64](ort.NewShape(t.Shape...))
			if err != nil {
				return err
			}
			r.step = v
			continue
		}
		v, err := ort.NewEmptyTensor[float32](ort.NewShape(t.Shape...))
		if err != nil {
			return fmt.Errorf("autodiff: allocating %s %v: %w", t.Name, t.Shape, err)
		}
		r.owned[t.Name] = v
	}
	return nil
}

// set writes a [1] scalar the runner owns, if the program has it.
func (r *runner) set(name string, v float32) {
	if t := r.owned[name]; t != nil {
		t.GetData()[0] = v
	}
}

// values binds the program's inputs and outputs: owned tensors, the Stepper's current
// buffers as inputs and its spare buffers as outputs.
func (r *runner) values(state map[string]*pair) (ins, outs []ort.Value, err error) {
	pick := func(t Tensor, output bool) (ort.Value, error) {
		switch {
		case t.Int64:
			return r.step, nil
		case owns(t.Role):
			return r.owned[t.Name], nil
		}
		name := t.Name
		if output {
			name = t.Of
		}
		p := state[name]
		if p == nil {
			return nil, fmt.Errorf("autodiff: no buffer for %q (internal error)", name)
		}
		if output {
			return p.next, nil
		}
		return p.cur, nil
	}
	for _, t := range r.prog.Inputs {
		v, err := pick(t, false)
		if err != nil {
			return nil, nil, err
		}
		ins = append(ins, v)
	}
	for _, t := range r.prog.Outputs {
		v, err := pick(t, t.Role == RoleNext)
		if err != nil {
			return nil, nil, err
		}
		outs = append(outs, v)
	}
	return ins, outs, nil
}

func (r *runner) close() {
	if r.sess != nil {
		r.sess.Destroy()
	}
	for _, t := range r.owned {
		t.Destroy()
	}
	if r.step != nil {
		r.step.Destroy()
	}
}

// pair is a double buffer: the program reads cur and writes next; a successful run swaps.
type pair struct{ cur, next *ort.Tensor[float32] }

func newPair(shape []int64, init []float32) (*pair, error) {
	a, err := ort.NewEmptyTensor[float32](ort.NewShape(shape...))
	if err != nil {
		return nil, err
	}
	b, err := ort.NewEmptyTensor[float32](ort.NewShape(shape...))
	if err != nil {
		a.Destroy()
		return nil, err
	}
	if init != nil {
		if len(init) != len(a.GetData()) {
			a.Destroy()
			b.Destroy()
			return nil, errors.New("autodiff: initial value of the wrong size")
		}
		copy(a.GetData(), init)
	}
	return &pair{cur: a, next: b}, nil
}

func (p *pair) swap() { p.cur, p.next = p.next, p.cur }

func (p *pair) destroy() {
	p.cur.Destroy()
	p.next.Destroy()
}
