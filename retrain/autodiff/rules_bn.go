package autodiff

import (
	"google.golang.org/protobuf/proto"

	"github.com/diagd/diagd/internal/onnx/build"
	pb "github.com/diagd/diagd/internal/onnx/onnxpb"
)

func init() {
	rules["BatchNormalization"] = rule{diff: []int{0, 1, 2}, fn: ruleBatchNorm}
}

// bnAxes are the axes a BatchNormalization reduces over (all but channels), the shape
// that broadcasts a per-channel vector against its input, and the count per channel.
func bnAxes(x []int64) (axes, perChannel []int64, m int64) {
	perChannel = []int64{x[1]}
	for i := range x {
		if i != 1 {
			axes = append(axes, int64(i))
		}
		if i > 1 {
			perChannel = append(perChannel, 1)
		}
	}
	return axes, perChannel, numel(x) / x[1]
}

// ruleBatchNorm differentiates y = (x-μ)/σ·γ + β. In frozen mode μ and σ are the running
// statistics (constants); in train mode they are the batch's and depend on x:
// dx = γ/σ·(dy − mean(dy) − x̂·mean(dy·x̂)).
func ruleBatchNorm(c *ruleCtx) {
	eps := c.a.float("epsilon", 1e-5)
	c.a.ignore("momentum")
	if c.a.int("training_mode", 0) != 0 || len(c.n.Output) > 1 {
		c.fail("training_mode", "train mode is chosen by the training configuration, not by the node")
		return
	}
	if c.a.has("spatial") && c.a.int("spatial", 1) != 1 {
		c.fail("spatial", "spatial=0 (per-activation statistics)")
		return
	}
	x := c.shape(c.in(0))
	if len(x) < 2 || c.err != nil {
		c.fail("", "input of rank %d", len(x))
		return
	}
	axes, perCh, m := bnAxes(x)
	e := c.e()
	dY, X, scale, mean, variance := c.dy0(), c.in(0), c.in(1), c.in(3), c.in(4)
	train := c.t.saved[c.n] != nil
	invstd := e.div(e.scalar(1), e.op("Sqrt", []string{e.add(variance, e.scalar(float64(eps)))}))
	dbias := e.reduceSum(dY, axes, false)
	var dscale string
	if c.need[1] || (c.need[0] && train) {
		t := e.reduceSum(e.mul(dY, X), axes, false)
		dscale = e.mul(e.sub(t, e.mul(mean, dbias)), invstd)
	}
	if c.need[2] {
		c.dx[2] = dbias
	}
	if c.need[1] {
		c.dx[1] = dscale
	}
	if !c.need[0] {
		return
	}
	a := e.mul(scale, invstd)
	dx := e.mul(dY, e.reshape(a, perCh))
	if train {
		k := e.scalar(-1 / float64(m))
		bcoef := e.mul(e.mul(a, dscale), k)
		ccoef := e.mul(e.mul(a, dbias), k)
		dx = e.add(dx, e.op("BatchNormalization", []string{X, bcoef, ccoef, mean, variance},
			build.Float32("epsilon", eps)))
	}
	c.dx[0] = dx
}

// emitTrainBN replaces a BatchNormalization node by its train-mode computation: batch
// mean and (biased) variance normalise, and the running statistics move towards the
// batch's with the node's momentum (ONNX convention: running·momentum + batch·(1−momentum);
// PyTorch's momentum 0.1 is 0.9 here) using the unbiased variance, as PyTorch does.
// It returns the rewritten node (for the tape) and the running statistics' next values.
func emitTrainBN(e *emitter, s *shapes, n *pb.NodeProto) (*pb.NodeProto, *bnSaved, [2]string, error) {
	a := newAttrs(n)
	eps := a.float("epsilon", 1e-5)
	mom := float64(a.float("momentum", 0.9))
	x, err := s.of(n, n.Input[0])
	if err != nil {
		return nil, nil, [2]string{}, err
	}
	if len(n.Output) > 1 || a.int("training_mode", 0) != 0 {
		return nil, nil, [2]string{}, unsupported(n, "training_mode", "train mode is chosen by the training configuration, not by the node")
	}
	axes, perCh, m := bnAxes(x)
	if m < 2 {
		return nil, nil, [2]string{}, unsupported(n, "", "train mode needs more than one value per channel (input %v)", x)
	}
	mean := e.reduce("ReduceMean", n.Input[0], axes, false)
	d := e.sub(n.Input[0], e.reshape(mean, perCh))
	ss := e.reduce("ReduceSumSquare", d, axes, false)
	variance := e.mul(ss, e.scalar(1/float64(m)))
	rn := &pb.NodeProto{OpType: proto.String("BatchNormalization"), Name: n.Name, Output: []string{n.Output[0]},
		Input:     []string{n.Input[0], n.Input[1], n.Input[2], mean, variance},
		Attribute: []*pb.AttributeProto{build.Float32("epsilon", eps)}}
	e.g.Node = append(e.g.Node, rn)
	next := [2]string{
		e.add(e.mul(n.Input[3], e.scalar(mom)), e.mul(mean, e.scalar(1-mom))),
		e.add(e.mul(n.Input[4], e.scalar(mom)), e.mul(ss, e.scalar((1-mom)/float64(m-1)))),
	}
	return rn, &bnSaved{mean: mean, variance: variance}, next, nil
}
