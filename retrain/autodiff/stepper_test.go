package autodiff

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/diagd/diagd/internal/onnx/zoo"
	"github.com/diagd/diagd/internal/testenv"
)

const stepSize = 16 // image side for the Stepper tests

func newTestStepper(t *testing.T, micro, batch int, bn BNMode) (*Stepper, []string) {
	t.Helper()
	testenv.ORT(t)
	m, all := smallResNet(t, stepSize)
	st, err := NewStepper(testenv.Logger(t), m, StepperConfig{Batch: batch, Config: Config{
		Trainable: all, Batch: micro, Loss: Loss{Logit: zoo.DetectorLogit, PosWeight: 2},
		Optimizer: PaperAdam(), BatchNorm: bn,
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, all
}

func randomBatch(n int, seed uint64) Batch {
	rng := rand.New(rand.NewPCG(seed, 1))
	b := Batch{N: n, Inputs: [][]float32{make([]float32, n*3*stepSize*stepSize)}, LR: 1e-3}
	for i := range b.Inputs[0] {
		b.Inputs[0][i] = float32(rng.NormFloat64())
	}
	for i := range n {
		b.Labels = append(b.Labels, float32(i%2))
	}
	return b
}

func maxDiff(a, b map[string][]float32) (string, float64) {
	worst, at := 0.0, ""
	for k, va := range a {
		for i := range va {
			if d := math.Abs(float64(va[i] - b[k][i])); d > worst || math.IsNaN(d) {
				worst, at = d, k
			}
		}
	}
	return at, worst
}

// Micro-batches that accumulate gradients (chunks of 3, 3 and 2) take the same steps as
// one fused batch of 8 (BatchNorm frozen, so statistics do not depend on the split).
func TestMicroBatchesMatchFullBatch(t *testing.T) {
	fused, _ := newTestStepper(t, 8, 8, BNFrozen)
	split, _ := newTestStepper(t, 3, 8, BNFrozen)
	for k := range 3 {
		b := randomBatch(8, uint64(k))
		rf, err := fused.Step(context.Background(), b)
		if err != nil {
			t.Fatal(err)
		}
		rs, err := split.Step(context.Background(), b)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(rf.Loss-rs.Loss) > 1e-5*math.Abs(rf.Loss) {
			t.Errorf("step %d: loss fused %.7f, micro-batched %.7f", k, rf.Loss, rs.Loss)
		}
		for i, v := range rf.Outputs[zoo.DetectorLogit] {
			if d := math.Abs(float64(v - rs.Outputs[zoo.DetectorLogit][i])); d > 1e-4 {
				t.Errorf("step %d: logit %d differs by %g", k, i, d)
			}
		}
	}
	if name, d := maxDiff(fused.Values(), split.Values()); d > 1e-5 {
		t.Errorf("after 3 steps %s differs by %g between fused and micro-batched", name, d)
	}
	if fused.Steps() != 3 || split.Steps() != 3 {
		t.Errorf("steps %d and %d, want 3", fused.Steps(), split.Steps())
	}
	if _, err := fused.Step(context.Background(), randomBatch(5, 9)); err != nil { // a short last batch
		t.Fatal(err)
	}
}

// The inference model written back gives the logits the training graph computed in
// frozen (eval) BatchNorm mode with the same weights, after training in train mode.
func TestWriteBackMatchesTrainingForward(t *testing.T) {
	st, _ := newTestStepper(t, 8, 8, BNTrain)
	for k := range 3 {
		if _, err := st.Step(context.Background(), randomBatch(8, uint64(k))); err != nil {
			t.Fatal(err)
		}
	}
	m, err := st.InferenceModel()
	if err != nil {
		t.Fatal(err)
	}
	st.SetBatchNorm(BNFrozen)
	b := randomBatch(8, 77)
	res, err := st.Step(context.Background(), b) // logits come from the weights before this update
	if err != nil {
		t.Fatal(err)
	}
	want := res.Outputs[zoo.DetectorLogit]
	got := inferLogits(t, m, b.Inputs[0], 8, stepSize)
	for i := range want {
		if d := math.Abs(float64(got[i] - want[i])); d > 1e-4*max(1, math.Abs(float64(want[i]))) {
			t.Errorf("sample %d: served %.6f, training forward %.6f", i, got[i], want[i])
		}
	}
	t.Logf("logits %v", want)
}

// Cancelling inside a run (ORT's terminate flag) or before it leaves the state as it was,
// BatchNorm statistics that earlier micro-batches changed included; later steps work.
func TestCancelLeavesStateUnchanged(t *testing.T) {
	st, _ := newTestStepper(t, 4, 8, BNTrain)
	if _, err := st.Step(context.Background(), randomBatch(8, 1)); err != nil {
		t.Fatal(err)
	}
	before := st.Snapshot()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := st.Step(ctx, randomBatch(8, 2)); !errors.Is(err, context.Canceled) {
		t.Fatalf("pre-cancelled step: %v", err)
	}
	for _, at := range []int{1, 2, 3} { // first micro-batch, second, the update
		ctx, cancel := context.WithCancel(context.Background())
		runs := 0
		st.terminated = make(chan struct{})
		st.beforeRun = func() {
			if runs++; runs == at {
				cancel()
				<-st.terminated // the watcher has set ORT's terminate flag before Run starts
			}
		}
		_, err := st.Step(ctx, randomBatch(8, 2))
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "terminate") {
			t.Fatalf("cancel at run %d: %v (want context.Canceled from ORT's terminate flag)", at, err)
		}
		st.beforeRun = nil
		after := st.Snapshot()
		if name, d := maxDiff(before.Tensors, after.Tensors); d != 0 || after.Steps != before.Steps {
			t.Fatalf("cancel at run %d changed %s by %g (steps %d → %d)", at, name, d, before.Steps, after.Steps)
		}
	}
	res, err := st.Step(context.Background(), randomBatch(8, 2))
	if err != nil || res.Step != 2 {
		t.Fatalf("step after cancellations: %v (step %d)", err, res.Step)
	}
}

// A snapshot restored into a fresh Stepper continues exactly like the original.
func TestSnapshotRestore(t *testing.T) {
	a, _ := newTestStepper(t, 8, 8, BNTrain)
	if _, err := a.Step(context.Background(), randomBatch(8, 1)); err != nil {
		t.Fatal(err)
	}
	b, _ := newTestStepper(t, 8, 8, BNTrain)
	if err := b.Restore(a.Snapshot()); err != nil {
		t.Fatal(err)
	}
	for _, st := range []*Stepper{a, b} {
		if _, err := st.Step(context.Background(), randomBatch(8, 2)); err != nil {
			t.Fatal(err)
		}
	}
	if name, d := maxDiff(a.Snapshot().Tensors, b.Snapshot().Tensors); d != 0 {
		t.Errorf("%s differs by %g after restore and one step", name, d)
	}
}
