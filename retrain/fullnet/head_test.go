package fullnet

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/atomicfile"
	"github.com/diagd/diagd/internal/onnx/build"
	pb "github.com/diagd/diagd/internal/onnx/onnxpb"
	"github.com/diagd/diagd/internal/onnx/zoo"
	"github.com/diagd/diagd/internal/testenv"
	"github.com/diagd/diagd/retrain/dataset"
	"github.com/diagd/diagd/retrain/features"
	"github.com/diagd/diagd/retrain/head"
)

// extract returns a model folder's features of items, through the serving preprocessing.
func extract(t *testing.T, dir string, items []dataset.Item) [][]float32 {
	t.Helper()
	ex, err := features.Open(testenv.Logger(t), dir, features.Options{Session: oneThread})
	if err != nil {
		t.Fatal(err)
	}
	defer ex.Close()
	res, err := ex.Extract(context.Background(), items, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res.Features
}

// standardizedBase writes a copy of the base model whose features output is already
// standardised over X (x − μ)·inv, with inv = 0 for a feature without spread, as
// retrain/head standardises. The head trainer then finds μ ≈ 0 and σ ≈ 1 and works in
// the same coordinates as a graph that trains the Gemm on that output.
func standardizedBase(t *testing.T, src, dst string, X [][]float32) {
	t.Helper()
	f := len(X[0])
	mu, inv := make([]float32, f), make([]float32, f)
	for j := range f {
		var s, ss float64
		for _, x := range X {
			s += float64(x[j])
		}
		m := s / float64(len(X))
		for _, x := range X {
			ss += (float64(x[j]) - m) * (float64(x[j]) - m)
		}
		sd := math.Sqrt(ss / float64(len(X)))
		mu[j] = float32(m)
		if sd > 1e-6*max(1, math.Abs(m)) {
			inv[j] = float32(1 / sd)
		}
	}
	m, err := build.Load(filepath.Join(src, detect.ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	g := m.Graph
	for _, n := range g.Node {
		if n.GetOpType() != "Identity" || n.Output[0] != zoo.DetectorFeatures {
			continue
		}
		mt, _ := build.Tensor("std.mean", []int64{1, int64(f)}, mu)
		it, _ := build.Tensor("std.inv", []int64{1, int64(f)}, inv)
		g.Initializer = append(g.Initializer, mt, it)
		sub := &pb.NodeProto{OpType: proto.String("Sub"), Input: []string{n.Input[0], "std.mean"}, Output: []string{"std.centred"}}
		mul := &pb.NodeProto{OpType: proto.String("Mul"), Input: []string{"std.centred", "std.inv"}, Output: []string{"std.out"}}
		n.Input[0] = "std.out"
		var nodes []*pb.NodeProto
		for _, k := range g.Node {
			if k == n {
				nodes = append(nodes, sub, mul)
			}
			nodes = append(nodes, k)
		}
		g.Node = nodes
		break
	}
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.WriteFile(filepath.Join(dst, detect.ModelFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	meta, err := detect.ReadMetadata(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := detect.WriteMetadata(dst, meta); err != nil {
		t.Fatal(err)
	}
}

// --trainable head through the training graphs takes the steps of the Go head trainer's
// Adam solver (the paper's recipe) on the same data, initialisation and seed.
//
// Both see the same coordinates: the base model's features are standardised inside the
// network (standardizedBase), so the head trainer's own standardisation is the identity
// to float32 rounding, and both start from the base model's fc weights. Both shuffle with
// the same seeded stream, cut batches of 32 (the last one smaller), take the mean
// BCE-with-logits with pos_weight = negatives/positives and apply PyTorch's Adam.
//
// What differs is arithmetic: the head trainer works in float64 on features from the
// inference session, the graph in float32 on features it computes itself (ORT fuses the
// inference graph's BatchNormalization differently), about 1e-6 relative. Adam's update
// is lr·m/√v, nearly the gradient's sign pattern, so such differences change each step by
// about 1e-6·lr and do not grow on this convex problem: after 140 steps of lr 1e-3 the
// weights agree to 1e-6 here while they moved by 0.1 (1e-5 allowed), and the logits on
// held-out images to 1e-5 (1e-4 allowed).
func TestHeadMatchesHeadTrainer(t *testing.T) {
	testenv.ORT(t)
	dir := t.TempDir()
	const size = 32
	raw, _ := baseModel(t, filepath.Join(dir, "raw"), size, 5)
	var items []dataset.Item // 150 good parts, 50 defects: pos_weight 3
	for i, it := range scratchSet(t, filepath.Join(dir, "train"), 300, size, 7, false) {
		if !it.Label || i < 100 {
			items = append(items, it)
		}
	}
	heldOut := scratchSet(t, filepath.Join(dir, "test"), 32, size, 8, false)
	standardizedBase(t, raw, filepath.Join(dir, "std"), extract(t, raw, items))
	base := filepath.Join(dir, "std")
	meta, err := detect.ReadMetadata(base)
	if err != nil {
		t.Fatal(err)
	}
	X := extract(t, base, items)
	y := make([]bool, len(items))
	for i, it := range items {
		y[i] = it.Label
	}
	init, _, err := head.ReadHead(filepath.Join(base, detect.ModelFile), meta.Outputs.Logit, meta.Outputs.Features)
	if err != nil {
		t.Fatal(err)
	}
	const epochs, lr, seed = 20, 1e-3, 42
	goHead, err := head.Fit(context.Background(), X, y, init,
		head.Config{Solver: head.Adam, Seed: seed, Epochs: epochs, LR: lr, Batch: 32}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cand := train(t, Config{Trainable: Head, Epochs: epochs, LR: lr, Batch: 32, MicroBatch: 32, Seed: seed}, base, meta, items, "", false)
	gotLogits := served(t, cand, meta, filepath.Join(dir, "graph"), heldOut)
	graphHead, _, err := head.ReadHead(filepath.Join(dir, "graph", detect.ModelFile), meta.Outputs.Logit, meta.Outputs.Features)
	if err != nil {
		t.Fatal(err)
	}
	moved, diff := 0.0, math.Abs(float64(graphHead.B-goHead.B))
	for j, w := range goHead.W {
		if X[0][j] == 0 && allZero(X, j) {
			continue // no spread: the head trainer zeroes the weight, the graph leaves it; both multiply 0
		}
		diff = max(diff, math.Abs(float64(graphHead.W[j]-w)))
		moved = max(moved, math.Abs(float64(w-init.W[j])))
	}
	t.Logf("weights: largest difference %.2g, largest move from the start %.3g", diff, moved)
	if diff > 1e-5 || moved < 0.05 {
		t.Errorf("graph and Go head differ by %.2g (allowed 1e-5); the Go head moved %.3g", diff, moved)
	}
	heldX := extract(t, base, heldOut)
	worst := 0.0
	for i, x := range heldX {
		worst = max(worst, math.Abs(goHead.Logit(x)-gotLogits[i]))
	}
	t.Logf("held-out logits: largest difference %.2g", worst)
	if worst > 1e-4 {
		t.Errorf("held-out logits differ by %.2g (allowed 1e-4)", worst)
	}
	t.Logf("loss per epoch: Go %v, graph %v", goHead.Loss[len(goHead.Loss)-1], cand.Training["final_loss"])
}

func allZero(X [][]float32, j int) bool {
	for _, x := range X {
		if x[j] != 0 {
			return false
		}
	}
	return true
}
