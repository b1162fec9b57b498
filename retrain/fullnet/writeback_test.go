package fullnet

import (
	"context"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/testenv"
	"github.com/diagd/diagd/retrain/autodiff"
	"github.com/diagd/diagd/retrain/dataset"
	"github.com/diagd/diagd/retrain/head"
)

// The written model, served by detect from its files, gives the logits of the training
// graph's own forward pass in eval mode (BatchNorm on the running statistics training
// left, folded into the convolutions inside the graph) and of the trainer's in-memory
// forward pass, on held-out images. Training ran the paper's regime, so the running
// statistics of every BatchNormalization changed in epoch 1 and must have been written.
func TestWriteBackMatchesTrainingForward(t *testing.T) {
	testenv.ORT(t)
	dir := t.TempDir()
	base, meta := baseModel(t, filepath.Join(dir, "base"), 16, 6)
	items := scratchSet(t, filepath.Join(dir, "img"), 64, 16, 5, false)
	held := scratchSet(t, filepath.Join(dir, "held"), 16, 16, 6, false)
	cand := train(t, Config{Epochs: 2, LR: 3e-3, Batch: 16, MicroBatch: 8, Seed: 2}, base, meta, items, "", false)
	servedDir := filepath.Join(dir, "served")
	got := served(t, cand, meta, servedDir, held)
	mem, err := cand.Logits(context.Background(), paths(held))
	if err != nil {
		t.Fatal(err)
	}
	graph := trainingGraphLogits(t, filepath.Join(servedDir, detect.ModelFile), meta, held)
	worstMem, worstGraph := 0.0, 0.0
	for i := range got {
		worstMem = max(worstMem, math.Abs(got[i]-mem[i])/max(1, math.Abs(mem[i])))
		worstGraph = max(worstGraph, math.Abs(got[i]-graph[i])/max(1, math.Abs(graph[i])))
	}
	t.Logf("served vs in-memory forward %.2g, vs training graph (eval) %.2g", worstMem, worstGraph)
	if worstMem > 1e-6 || worstGraph > 1e-5 {
		t.Errorf("served logits differ from the in-memory forward by %.2g (1e-6 allowed) and from the training graph by %.2g (1e-5 allowed)", worstMem, worstGraph)
	}
	before, after := initializers(t, filepath.Join(base, detect.ModelFile)), initializers(t, filepath.Join(servedDir, detect.ModelFile))
	for name, v := range before {
		if strings.Contains(name, "running_") && slices.Equal(v, after[name]) {
			t.Errorf("%s was not written back (unchanged after a train-mode epoch)", name)
		}
	}
}

// trainingGraphLogits runs images through a training step graph of the model in frozen
// (eval) BatchNorm mode with learning rate 0 and returns the logits it computed.
func trainingGraphLogits(t *testing.T, model string, meta detect.Metadata, items []dataset.Item) []float64 {
	t.Helper()
	fwd, err := head.LoadModel(model)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := Resolve(fwd, []string{meta.Outputs.Logit}, All)
	if err != nil {
		t.Fatal(err)
	}
	st, err := autodiff.NewStepper(testenv.Logger(t), fwd, autodiff.StepperConfig{Config: autodiff.Config{
		Trainable: tr.Names, Batch: len(items), Loss: autodiff.Loss{Logit: meta.Outputs.Logit},
		Optimizer: autodiff.PaperAdam(), BatchNorm: autodiff.BNFrozen}, Session: oneThread})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	x := preprocessed(t, meta.Input, items)
	res, err := st.Step(context.Background(), autodiff.Batch{N: len(items), Inputs: [][]float32{x}, Labels: make([]float32, len(items))})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float64, len(items))
	for i, v := range res.Outputs[meta.Outputs.Logit] {
		out[i] = float64(v)
	}
	return out
}
