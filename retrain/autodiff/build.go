package autodiff

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"

	pb "github.com/diagd/diagd/internal/onnx/onnxpb"
)

// BuildStep builds the fused training step: forward, loss, backward and optimizer
// update in one graph, for one batch of cfg.Batch.
func BuildStep(fwd *pb.ModelProto, cfg Config) (*Program, error) {
	b, err := newBuilder(fwd, cfg, Fused)
	if err != nil {
		return nil, err
	}
	grads, err := b.forwardBackward()
	if err != nil {
		return nil, err
	}
	b.emitOptimizer(grads)
	return b.finish()
}

// BuildGradient builds the micro-batch graph: forward, loss and backward, with each
// parameter's gradient added to an accumulator (input p+SuffixGrad, output
// p+SuffixGrad+SuffixNext). Feed InputLossScale = micro-batch size / batch size so the
// accumulated sum is the batch's mean gradient; then run the Apply program.
func BuildGradient(fwd *pb.ModelProto, cfg Config) (*Program, error) {
	b, err := newBuilder(fwd, cfg, Gradient)
	if err != nil {
		return nil, err
	}
	grads, err := b.forwardBackward()
	if err != nil {
		return nil, err
	}
	for _, p := range b.params {
		acc := b.input(p+SuffixGrad, RoleGrad, b.inits[p].Dims, p)
		b.output(b.e.add(acc, grads[p]), p+SuffixGrad+SuffixNext, RoleNext, b.inits[p].Dims, p+SuffixGrad)
	}
	return b.finish()
}

// BuildApply builds the optimizer update from accumulated gradients (inputs
// p+SuffixGrad).
func BuildApply(fwd *pb.ModelProto, cfg Config) (*Program, error) {
	b, err := newBuilder(fwd, cfg, Apply)
	if err != nil {
		return nil, err
	}
	grads := map[string]string{}
	for _, p := range b.params {
		b.input(p, RoleTrainable, b.inits[p].Dims, "")
	}
	for _, p := range b.params {
		grads[p] = b.input(p+SuffixGrad, RoleGrad, b.inits[p].Dims, p)
	}
	b.emitOptimizer(grads)
	return b.finish()
}

// buildVJP builds a graph whose outputs are the forward value out and the gradients
// (p+SuffixGrad) of sum(dy·out) with respect to the trainables, dy being the input "dy".
// Tests check every backward rule against finite differences with it.
func buildVJP(fwd *pb.ModelProto, cfg Config, out string) (*Program, error) {
	b, err := newBuilder(fwd, cfg, kindVJP)
	if err != nil {
		return nil, err
	}
	if err := b.dataInputs(); err != nil {
		return nil, err
	}
	b.s.infer(b.fwd)
	sh, ok := b.s.shape[out]
	if !ok {
		return nil, fmt.Errorf("autodiff: output %q: shape unknown (%s)", out, b.s.why[out])
	}
	grads, err := b.differentiate(func() (map[string]string, error) {
		return map[string]string{out: b.input("dy", RoleData, sh, "")}, nil
	})
	if err != nil {
		return nil, err
	}
	b.output(out, out, RoleOutput, sh, "")
	for _, p := range b.params {
		b.output(grads[p], p+SuffixGrad, RoleGrad, b.inits[p].Dims, p)
	}
	b.kind = Apply // finish adds no loss outputs
	return b.finish()
}

// builder assembles one training graph from a clone of the forward model.
type builder struct {
	cfg     Config
	kind    Kind
	model   *pb.ModelProto
	fwd     *pb.GraphProto
	dt      pb.TensorProto_DataType
	inits   map[string]*pb.TensorProto
	params  []string // trainables in the order given
	bnNodes map[*pb.NodeProto]bool
	bnStats []string
	s       *shapes
	out     *pb.GraphProto
	e       *emitter
	prog    *Program
}

func newBuilder(fwd *pb.ModelProto, cfg Config, kind Kind) (*builder, error) {
	if fwd.GetGraph() == nil {
		return nil, errors.New("autodiff: the forward model has no graph")
	}
	if cfg.Batch < 1 {
		return nil, fmt.Errorf("autodiff: batch size %d", cfg.Batch)
	}
	if len(cfg.Trainable) == 0 {
		return nil, errors.New("autodiff: no trainable initializers given")
	}
	cfg.Optimizer = cfg.Optimizer.withDefaults()
	if err := cfg.Optimizer.check(); err != nil {
		return nil, err
	}
	if (kind == Fused || kind == Gradient) && cfg.Loss.Logit == "" && cfg.Loss.PixelLogit == "" {
		return nil, errors.New("autodiff: the loss names no logit output")
	}
	m := proto.Clone(fwd).(*pb.ModelProto)
	opset, err := forwardOpset(m)
	if err != nil {
		return nil, err
	}
	b := &builder{cfg: cfg, kind: kind, model: m, fwd: m.Graph, inits: map[string]*pb.TensorProto{},
		bnNodes: map[*pb.NodeProto]bool{}, s: newShapes()}
	for _, t := range b.fwd.Initializer {
		b.inits[t.GetName()] = t
		b.s.addTensor(t.GetName(), t)
	}
	if err := b.pickParams(); err != nil {
		return nil, err
	}
	b.out = &pb.GraphProto{Name: proto.String(b.fwd.GetName() + "-" + kind.String())}
	b.e = newEmitter(b.fwd, b.dt)
	b.e.g = b.out
	b.e.onConst = b.s.addTensor
	b.e.opset = max(opset, 17)
	b.prog = &Program{Kind: kind, Convs: map[string]ConvChoice{}}
	m.OpsetImport = []*pb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(b.e.opset)}}
	return b, nil
}

// forwardOpset returns the default-domain opset; 13 to 18 are supported (13 moved
// ReduceSum's axes to an input; later changes up to 17 only add attributes).
func forwardOpset(m *pb.ModelProto) (int64, error) {
	for _, o := range m.OpsetImport {
		if o.GetDomain() == "" || o.GetDomain() == "ai.onnx" {
			if v := o.GetVersion(); v < 13 || v > 18 {
				return 0, fmt.Errorf("autodiff: forward model uses opset %d; opsets 13 to 18 are supported", v)
			}
			return o.GetVersion(), nil
		}
	}
	return 0, errors.New("autodiff: the forward model imports no default-domain opset")
}

// pickParams checks the trainables and finds the BatchNormalization layers they make
// trainable, whose running statistics become inputs.
func (b *builder) pickParams() error {
	seen := map[string]bool{}
	for _, p := range b.cfg.Trainable {
		t := b.inits[p]
		if t == nil {
			return fmt.Errorf("autodiff: trainable %q is not an initializer of the forward graph", p)
		}
		dt := pb.TensorProto_DataType(t.GetDataType())
		if dt != pb.TensorProto_FLOAT && dt != pb.TensorProto_DOUBLE {
			return fmt.Errorf("autodiff: trainable %q is %s; only float and double train", p, dtypeName(dt))
		}
		if b.dt != 0 && dt != b.dt {
			return fmt.Errorf("autodiff: trainables mix %s and %s", dtypeName(b.dt), dtypeName(dt))
		}
		if seen[p] {
			return fmt.Errorf("autodiff: trainable %q listed twice", p)
		}
		b.dt, seen[p] = dt, true
		b.params = append(b.params, p)
	}
	for _, n := range b.fwd.Node {
		if n.GetOpType() != "BatchNormalization" || len(n.Input) < 5 || !(seen[n.Input[1]] || seen[n.Input[2]]) {
			continue
		}
		b.bnNodes[n] = true
		for _, st := range n.Input[3:5] {
			if b.inits[st] == nil || seen[st] {
				return unsupported(n, "", "running statistic %q must be a non-trainable initializer", st)
			}
			if !contains(b.bnStats, st) {
				b.bnStats = append(b.bnStats, st)
			}
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// input declares a graph input and returns its name.
func (b *builder) input(name string, role Role, shape []int64, of string) string {
	dt := b.dt
	if role == RoleStep {
		dt = pb.TensorProto_INT64
	}
	if role != RoleData && role != RoleTrainable && role != RoleBNStat {
		b.e.claim(name)
	}
	b.out.Input = append(b.out.Input, valueInfo(name, dt, shape))
	b.prog.Inputs = append(b.prog.Inputs, Tensor{Name: name, Role: role, Shape: shape, Int64: role == RoleStep, Of: of})
	return name
}

// output names value v as a graph output (through an Identity when the name differs).
func (b *builder) output(v, name string, role Role, shape []int64, of string) {
	if v != name {
		b.e.claim(name)
		b.e.node("Identity", []string{v}, []string{name})
	}
	b.out.Output = append(b.out.Output, valueInfo(name, b.dt, shape))
	b.prog.Outputs = append(b.prog.Outputs, Tensor{Name: name, Role: role, Shape: shape, Of: of})
}

func valueInfo(name string, dt pb.TensorProto_DataType, shape []int64) *pb.ValueInfoProto {
	sh := &pb.TensorShapeProto{}
	for _, d := range shape {
		sh.Dim = append(sh.Dim, &pb.TensorShapeProto_Dimension{Value: &pb.TensorShapeProto_Dimension_DimValue{DimValue: d}})
	}
	return &pb.ValueInfoProto{Name: proto.String(name), Type: &pb.TypeProto{Value: &pb.TypeProto_TensorType{
		TensorType: &pb.TypeProto_Tensor{ElemType: proto.Int32(int32(dt)), Shape: sh}}}}
}

// dataInputs declares the forward graph's inputs with static shapes.
func (b *builder) dataInputs() error {
	for _, vi := range b.fwd.Input {
		name := vi.GetName()
		if b.inits[name] != nil {
			continue // old IRs list initializers as inputs too
		}
		tt := vi.GetType().GetTensorType()
		if pb.TensorProto_DataType(tt.GetElemType()) != b.dt {
			return fmt.Errorf("autodiff: input %q is %s, the trainables %s", name,
				dtypeName(pb.TensorProto_DataType(tt.GetElemType())), dtypeName(b.dt))
		}
		shape, ok := b.cfg.InputShapes[name]
		if !ok {
			for i, d := range tt.GetShape().GetDim() {
				v := d.GetDimValue()
				if v <= 0 && i == 0 {
					v = int64(b.cfg.Batch)
				}
				if v <= 0 {
					return fmt.Errorf("autodiff: input %q axis %d is symbolic (%q); give Config.InputShapes", name, i, d.GetDimParam())
				}
				shape = append(shape, v)
			}
		}
		b.s.shape[name] = shape
		b.input(name, RoleData, shape, "")
	}
	return nil
}

// forwardBackward emits the forward pass, the loss and the backward pass, and returns
// each trainable's gradient.
func (b *builder) forwardBackward() (map[string]string, error) {
	if err := b.dataInputs(); err != nil {
		return nil, err
	}
	b.s.infer(b.fwd)
	return b.differentiate(b.emitLoss)
}

// differentiate declares the parameters, emits the forward pass, asks seed for the
// gradients of the outputs, and runs the backward pass.
func (b *builder) differentiate(seed func() (map[string]string, error)) (map[string]string, error) {
	for _, p := range b.params {
		b.input(p, RoleTrainable, b.inits[p].Dims, "")
	}
	for _, st := range b.bnStats {
		b.input(st, RoleBNStat, b.inits[st].Dims, "")
	}
	for _, t := range b.fwd.Initializer {
		if !contains(b.params, t.GetName()) && !contains(b.bnStats, t.GetName()) {
			b.out.Initializer = append(b.out.Initializer, t)
		}
	}
	stop, err := b.stopSet()
	if err != nil {
		return nil, err
	}
	t := &tape{e: b.e, s: b.s, needs: markNeeds(b.fwd.Node, b.params, stop), saved: map[*pb.NodeProto]*bnSaved{},
		forms: b.cfg.ConvPolicy, chosen: b.prog.Convs}
	if err := b.emitForward(t); err != nil {
		return nil, err
	}
	seeds, err := seed()
	if err != nil {
		return nil, err
	}
	grads, err := t.backward(seeds, b.params)
	if err != nil {
		return nil, err
	}
	for _, p := range b.params {
		if grads[p] == "" {
			return nil, fmt.Errorf("autodiff: trainable %q does not affect the loss", p)
		}
	}
	return grads, nil
}

// stopSet checks Config.StopGradient: every name must be a forward node's output.
func (b *builder) stopSet() (map[string]bool, error) {
	made := map[string]bool{}
	for _, n := range b.fwd.Node {
		for _, o := range n.Output {
			made[o] = true
		}
	}
	stop := map[string]bool{}
	for _, v := range b.cfg.StopGradient {
		if !made[v] {
			return nil, fmt.Errorf("autodiff: stop-gradient value %q is not an output of any node of the forward graph", v)
		}
		stop[v] = true
	}
	return stop, nil
}

// emitForward copies the forward nodes, switching trainable BatchNormalization layers to
// batch statistics in train mode and giving MaxPool nodes on the gradient path an
// Indices output.
func (b *builder) emitForward(t *tape) error {
	b.e.scope = "fwd/"
	defer func() { b.e.scope = "" }()
	fold := b.foldable(t)
	for _, n := range b.fwd.Node {
		switch {
		case fold[n] != nil && n.GetOpType() == "Conv":
			continue // emitted with its BatchNormalization
		case fold[n] != nil:
			b.emitFolded(t, fold[n], n)
			continue
		case b.bnNodes[n] && b.cfg.BatchNorm == BNTrain:
			rn, saved, next, err := emitTrainBN(b.e, b.s, n)
			if err != nil {
				return err
			}
			t.nodes = append(t.nodes, rn)
			t.saved[rn] = saved
			for i, st := range n.Input[3:5] {
				b.output(next[i], st+SuffixNext, RoleNext, b.inits[st].Dims, st)
			}
			continue
		case n.GetOpType() == "MaxPool" && t.needs[n.Input[0]] && len(n.Output) == 1:
			idx := b.e.fresh("maxpool_indices")
			n.Output = append(n.Output, idx)
			b.s.shape[idx] = b.s.shape[n.Output[0]]
		}
		b.out.Node = append(b.out.Node, n)
		t.nodes = append(t.nodes, n)
	}
	return b.e.err
}

// finish adds the requested forward outputs, prunes what no output needs, and returns
// the program.
func (b *builder) finish() (*Program, error) {
	if b.kind != Apply {
		seen := map[string]bool{}
		for _, o := range append([]string{b.cfg.Loss.Logit, b.cfg.Loss.PixelLogit}, b.cfg.Outputs...) {
			if o == "" || seen[o] {
				continue
			}
			seen[o] = true
			sh, ok := b.s.shape[o]
			if !ok {
				return nil, fmt.Errorf("autodiff: output %q: shape unknown (%s)", o, b.s.why[o])
			}
			b.output(o, o, RoleOutput, sh, "")
		}
	}
	if b.e.err != nil {
		return nil, b.e.err
	}
	fuseOutputIdentities(b.out)
	prune(b.out)
	b.model.Graph = b.out
	b.prog.Model = b.model
	return b.prog, nil
}

// fuseOutputIdentities lets the node computing an output write it directly: where an
// Identity only renames a value this package created, that value is renamed to the
// output's name everywhere and the Identity dropped (ORT then fills the caller's output
// buffer without a copy).
func fuseOutputIdentities(g *pb.GraphProto) {
	produced := map[string]bool{}
	for _, n := range g.Node {
		for _, o := range n.Output {
			produced[o] = true
		}
	}
	outputs := map[string]bool{}
	for _, o := range g.Output {
		outputs[o.GetName()] = true
	}
	rename := map[string]string{}
	nodes := g.Node[:0]
	for _, n := range g.Node {
		if n.GetOpType() == "Identity" && outputs[n.Output[0]] {
			v := n.Input[0]
			if strings.HasPrefix(v, "ad/") && produced[v] && !outputs[v] && rename[v] == "" {
				rename[v] = n.Output[0]
				continue
			}
		}
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		for i, in := range n.Input {
			if r := rename[in]; r != "" {
				n.Input[i] = r
			}
		}
		for i, o := range n.Output {
			if r := rename[o]; r != "" {
				n.Output[i] = r
			}
		}
	}
	g.Node = nodes
}

// prune drops nodes and initializers that no output depends on.
func prune(g *pb.GraphProto) {
	live := map[string]bool{}
	for _, o := range g.Output {
		live[o.GetName()] = true
	}
	keep := make([]bool, len(g.Node))
	for i := len(g.Node) - 1; i >= 0; i-- {
		n := g.Node[i]
		for _, o := range n.Output {
			if live[o] {
				keep[i] = true
			}
		}
		if keep[i] {
			for _, in := range n.Input {
				live[in] = true
			}
		}
	}
	nodes := g.Node[:0]
	for i, n := range g.Node {
		if keep[i] {
			nodes = append(nodes, n)
		}
	}
	g.Node = nodes
	inits := g.Initializer[:0]
	for _, t := range g.Initializer {
		if live[t.GetName()] {
			inits = append(inits, t)
		}
	}
	g.Initializer = inits
}

// sortedKeys is used for deterministic iteration.
func sortedKeys[V any](m map[string]V) []string {
	k := make([]string, 0, len(m))
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}
