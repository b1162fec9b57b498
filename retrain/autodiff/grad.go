package autodiff

import pb "github.com/diagd/diagd/internal/onnx/onnxpb"

// tape is the forward part of a training graph as emitted, plus what the backward pass
// needs to know about it: static shapes, which values carry gradient, and values some
// rules save during the forward pass (MaxPool's indices, BatchNormalization's batch
// statistics).
type tape struct {
	e      *emitter
	s      *shapes
	nodes  []*pb.NodeProto
	needs  map[string]bool
	saved  map[*pb.NodeProto]*bnSaved
	forms  ConvPolicy
	chosen map[string]ConvChoice // forms used per Conv node, for reports
}

// bnSaved are the batch statistics of a BatchNormalization run in train mode.
type bnSaved struct{ mean, variance string }

// nonDiffOps produce values that never carry gradient (integers, booleans, shapes).
var nonDiffOps = map[string]bool{"Shape": true, "Size": true, "Equal": true, "Greater": true, "Less": true,
	"GreaterOrEqual": true, "LessOrEqual": true, "Not": true, "And": true, "Or": true, "ArgMax": true, "ArgMin": true,
	"NonZero": true, "Constant": true, "ConstantOfShape": true}

// markNeeds finds the values that depend on a differentiable source (forward order).
// Values in stop depend on none: gradient is never asked through them.
func markNeeds(nodes []*pb.NodeProto, sources []string, stop map[string]bool) map[string]bool {
	needs := map[string]bool{}
	for _, s := range sources {
		needs[s] = true
	}
	for _, n := range nodes {
		if nonDiffOps[n.GetOpType()] {
			continue
		}
		for _, in := range n.Input {
			if needs[in] {
				needs[n.Output[0]] = true
				if n.GetOpType() != "MaxPool" { // MaxPool's second output is integer indices
					for _, o := range n.Output[1:] {
						needs[o] = true
					}
				}
				break
			}
		}
		for _, o := range n.Output {
			if stop[o] {
				delete(needs, o)
			}
		}
	}
	return needs
}

// backward propagates the seeds (value → its gradient) back through the tape and returns
// the gradient of each wanted value ("" where none reaches it).
func (t *tape) backward(seeds map[string]string, wanted []string) (map[string]string, error) {
	grads := map[string][]string{}
	for v, g := range seeds {
		grads[v] = append(grads[v], g)
	}
	total := func(v string) string {
		gs := grads[v]
		if len(gs) == 0 {
			return ""
		}
		g := t.e.sum(gs)
		grads[v] = []string{g}
		return g
	}
	for i := len(t.nodes) - 1; i >= 0; i-- {
		n := t.nodes[i]
		dy := make([]string, len(n.Output))
		reached := false
		for j, o := range n.Output {
			if o != "" && t.needs[o] {
				dy[j] = total(o)
				reached = reached || dy[j] != ""
			}
		}
		if !reached {
			continue
		}
		dx, err := t.apply(n, dy)
		if err != nil {
			return nil, err
		}
		for j, g := range dx {
			if g != "" {
				grads[n.Input[j]] = append(grads[n.Input[j]], g)
			}
		}
	}
	out := map[string]string{}
	for _, w := range wanted {
		out[w] = total(w)
	}
	return out, t.e.err
}

// apply runs one node's backward rule after checking that gradient is only asked for
// inputs the rule can differentiate.
func (t *tape) apply(n *pb.NodeProto, dy []string) ([]string, error) {
	r, ok := rules[n.GetOpType()]
	if !ok || (n.GetDomain() != "" && n.GetDomain() != "ai.onnx") {
		return nil, unsupported(n, "", "no backward rule for this operator (domain %q)", n.GetDomain())
	}
	need := make([]bool, len(n.Input))
	for j, in := range n.Input {
		if in == "" || !t.needs[in] {
			continue
		}
		if !r.differentiable(j) {
			return nil, unsupported(n, "", "input %d (%q) depends on a trainable value but is not differentiable", j, in)
		}
		need[j] = true
	}
	c := &ruleCtx{t: t, n: n, a: newAttrs(n), dy: dy, need: need, dx: make([]string, len(n.Input))}
	t.e.scope = "bwd/" + n.GetOpType() + "/" + nodeName(n) + "/"
	r.fn(c)
	t.e.scope = "bwd/"
	if c.err != nil {
		return nil, c.err
	}
	if err := c.a.check(); err != nil {
		return nil, err
	}
	return c.dx, nil
}

// rule is an operator's backward rule. diff lists the inputs that can carry gradient
// (nil: all of them).
type rule struct {
	diff []int
	fn   func(c *ruleCtx)
}

func (r rule) differentiable(i int) bool {
	if r.diff == nil {
		return true
	}
	for _, d := range r.diff {
		if d == i {
			return true
		}
	}
	return false
}

var rules = map[string]rule{}

// ruleCtx is what a rule works with. Errors are sticky so rules read as straight code.
type ruleCtx struct {
	t    *tape
	n    *pb.NodeProto
	a    *attrs
	dy   []string
	need []bool
	dx   []string
	err  error
}

func (c *ruleCtx) e() *emitter { return c.t.e }

func (c *ruleCtx) fail(attr, format string, a ...any) {
	if c.err == nil {
		c.err = unsupported(c.n, attr, format, a...)
	}
}

func (c *ruleCtx) setErr(err error) {
	if c.err == nil && err != nil {
		c.err = err
	}
}

// in and out return the names of the node's inputs and outputs.
func (c *ruleCtx) in(i int) string {
	if i < len(c.n.Input) {
		return c.n.Input[i]
	}
	return ""
}

func (c *ruleCtx) out(i int) string { return c.n.Output[i] }

// shape returns a value's static shape (a dummy after an error).
func (c *ruleCtx) shape(v string) []int64 {
	sh, err := c.t.s.of(c.n, v)
	if err != nil {
		c.setErr(err)
		return []int64{1}
	}
	return sh
}

// dy0 is the gradient of the first output (rules of one-output operators only run when
// it has one).
func (c *ruleCtx) dy0() string { return c.dy[0] }

// wantRank fails unless the input has the given rank.
func (c *ruleCtx) wantRank(v string, ranks ...int) []int64 {
	sh := c.shape(v)
	for _, r := range ranks {
		if len(sh) == r {
			return sh
		}
	}
	c.fail("", "input %q has rank %d; the rule handles ranks %v", v, len(sh), ranks)
	return sh
}
