package autodiff

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	pb "github.com/diagd/diagd/internal/onnx/onnxpb"
)

// Folding a frozen BatchNormalization into the convolution before it: with running
// statistics fixed, BN(conv(x, W) + c) = conv(x, W·a) + (β + (c − μ)·a), a = γ/√(σ²+ε).
// The training graph then computes the per-channel factors on parameters (cheap) instead
// of normalising and back-propagating through whole activation maps, which are the
// memory-bound part of a CPU step. The gradients follow from the rules of the few
// parameter-sized ops, so they stay exact.

// foldable finds Conv → BatchNormalization pairs on the gradient path whose
// BatchNormalization runs frozen in this graph and reads the Conv's output alone.
func (b *builder) foldable(t *tape) map[*pb.NodeProto]*pb.NodeProto {
	uses := map[string]int{}
	producer := map[string]*pb.NodeProto{}
	for _, n := range b.fwd.Node {
		for _, in := range n.Input {
			uses[in]++
		}
		for _, o := range n.Output {
			producer[o] = n
		}
	}
	for _, o := range b.fwd.Output {
		uses[o.GetName()] += 2 // a graph output is never folded away
	}
	pairs := map[*pb.NodeProto]*pb.NodeProto{}
	for _, n := range b.fwd.Node {
		if n.GetOpType() != "BatchNormalization" || (b.bnNodes[n] && b.cfg.BatchNorm == BNTrain) || !simpleBN(n) {
			continue
		}
		c := producer[n.Input[0]]
		if c == nil || c.GetOpType() != "Conv" || uses[n.Input[0]] != 1 || !t.needs[n.Input[0]] || len(c.Input) < 2 {
			continue
		}
		if w, ok := b.s.shape[c.Input[1]]; !ok || len(w) != 4 || b.s.shape[n.Input[1]] == nil {
			continue
		}
		pairs[c], pairs[n] = n, c
	}
	return pairs
}

// simpleBN is an inference-mode BatchNormalization with only the attributes folding
// understands (anything else keeps the node, whose rule will judge it).
func simpleBN(n *pb.NodeProto) bool {
	if len(n.Input) != 5 || len(n.Output) != 1 {
		return false
	}
	for _, a := range n.Attribute {
		switch a.GetName() {
		case "epsilon", "momentum":
		case "training_mode":
			if a.GetI() != 0 {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// emitFolded emits the folded convolution in place of the pair.
func (b *builder) emitFolded(t *tape, conv, bn *pb.NodeProto) {
	eps := newAttrs(bn).float("epsilon", 1e-5)
	m := b.s.shape[conv.Input[1]][0]
	e := b.e
	scale, bias, mean, variance := bn.Input[1], bn.Input[2], bn.Input[3], bn.Input[4]
	invstd := b.fwdOp(t, "Div", []string{e.scalar(1), b.fwdOp(t, "Sqrt", []string{b.fwdOp(t, "Add", []string{variance, e.scalar(float64(eps))})})})
	a := b.fwdOp(t, "Mul", []string{scale, invstd})
	w := b.fwdOp(t, "Mul", []string{conv.Input[1], b.fwdOp(t, "Reshape", []string{a, e.i64(m, 1, 1, 1)})})
	shift := b.fwdOp(t, "Sub", []string{bias, b.fwdOp(t, "Mul", []string{mean, a})})
	if len(conv.Input) > 2 && conv.Input[2] != "" {
		shift = b.fwdOp(t, "Add", []string{shift, b.fwdOp(t, "Mul", []string{conv.Input[2], a})})
	}
	n := &pb.NodeProto{OpType: proto.String("Conv"), Name: proto.String(nodeName(conv) + "+" + nodeName(bn)),
		Input: []string{conv.Input[0], w, shift}, Output: []string{bn.Output[0]}, Attribute: conv.Attribute}
	b.out.Node = append(b.out.Node, n)
	b.fwdNode(t, n)
}

// fwdOp emits a node into the forward part of the graph and returns its output.
func (b *builder) fwdOp(t *tape, op string, in []string) string {
	out := b.e.op(op, in)
	b.fwdNode(t, b.out.Node[len(b.out.Node)-1])
	return out
}

// fwdNode records an emitted forward node: shapes inferred, on the tape, carrying
// gradient when an input does.
func (b *builder) fwdNode(t *tape, n *pb.NodeProto) {
	if err := b.s.inferNode(n); err != nil {
		b.e.fail(fmt.Errorf("autodiff: folding BatchNormalization: %w", err))
	}
	t.nodes = append(t.nodes, n)
	for _, in := range n.Input {
		if t.needs[in] {
			for _, o := range n.Output {
				t.needs[o] = true
			}
		}
	}
}
