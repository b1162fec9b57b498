package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/onnx/zoo"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/retrain"
	"github.com/diagd/diagd/retrain/dataset"
	"github.com/diagd/diagd/retrain/features"
	"github.com/diagd/diagd/retrain/fullnet"
	"github.com/diagd/diagd/retrain/metrics"
)

func init() { register("fullnet", benchFullnet) }

// benchFullnet measures learning, not speed: on a real labelled set (e.g. the shared
// magnetic-tile manifest), on the split diagd train makes in full-shot mode (a
// stratified --val-fraction of each class, --seed), the held-out AP of
//
//   - a network trained end to end from random weights with the full-network trainer
//     (retrain/fullnet, --trainable all), read and preprocessed as served;
//   - the head trainer (default recipe, and the paper's Adam) on the same network's
//     frozen random features;
//   - an outside baseline: standardised logistic regression (Newton, gonum) on those
//     features.
//
// The network is a small ResNet generated here (--stages, --width, --size) or a model
// folder (--model, e.g. from diagd demo-model).
func benchFullnet(args []string) error {
	fs := flag.NewFlagSet("fullnet", flag.ContinueOnError)
	data := fs.String("data", "", "labelled set (manifest .csv or any diagd train layout; required)")
	model := fs.String("model", "", "base model folder (default: generate a small ResNet)")
	h := fs.Int("height", 256, "generated network's input height")
	w := fs.Int("width", 256, "generated network's input width")
	stages := fs.Int("stages", 3, "generated network's stages (one BasicBlock each)")
	base := fs.Int("base-width", 16, "generated network's channels in its first stage (doubling per stage)")
	frac := fs.Float64("val-fraction", 0.2, "hold-out share (as diagd train)")
	seed := fs.Uint64("seed", 0, "hold-out split, weights and image order")
	c := fullnet.Config{Trainable: fullnet.All}
	fs.IntVar(&c.Epochs, "epochs", 30, "epochs")
	fs.Float64Var(&c.LR, "lr", 1e-3, "Adam learning rate (the paper's 1e-4 is for a pretrained network)")
	fs.IntVar(&c.Batch, "batch", 32, "batch")
	fs.IntVar(&c.MicroBatch, "micro-batch", 8, "micro-batch")
	bn := fs.String("batch-norm", "paper", "paper, train or frozen")
	threads := fs.Int("threads", 0, "ORT CPU threads (0: ORT's choice)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *data == "" {
		return fmt.Errorf("--data is required")
	}
	c.BatchNorm, c.Seed = fullnet.BNRegime(*bn), *seed
	log := quietLog()
	if err := initORT(log); err != nil {
		return err
	}
	tr, va, name, err := fullShotSplit(*data, *frac, *seed)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "bench-fullnet-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if *model == "" {
		cfg := zoo.ResNetConfig{Name: "bench-resnet", Blocks: ones(*stages), BaseWidth: *base, InputH: *h, InputW: *w, Seed: *seed}
		if *model, err = writeBenchModel(dir, cfg); err != nil {
			return err
		}
	}
	meta, err := detect.ReadMetadata(*model)
	if err != nil {
		return err
	}
	fmt.Printf("%s: full-shot, train %d images, validation %s: %d images (%d defects); network %s %dx%d\n",
		*data, len(tr.Items), name, len(va.Items), count(labels(va.Items)), *model, meta.Input.Height, meta.Input.Width)
	so := ortenv.Options{Provider: ortenv.CPU, Threads: *threads}
	if err := frozenHeads(*model, tr, va, so); err != nil {
		return err
	}
	return trainAll(*model, meta, tr, va, c, so)
}

func labels(items []dataset.Item) []bool {
	y := make([]bool, len(items))
	for i, it := range items {
		y[i] = it.Label
	}
	return y
}

func ones(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = 1
	}
	return out
}

// fullShotSplit is diagd train's full-shot hold-out of a labelled set.
func fullShotSplit(data string, frac float64, seed uint64) (tr, va *dataset.Set, name string, err error) {
	real, err := dataset.Load(data, dataset.Options{})
	if err != nil {
		return nil, nil, "", err
	}
	all, err := dataset.Compose(real, nil, dataset.FullShot, 0)
	if err != nil {
		return nil, nil, "", err
	}
	tr, va, name = retrain.HoldoutValidation(all, real, dataset.FullShot, frac, seed, data)
	return tr, va, name, nil
}

func writeBenchModel(dir string, cfg zoo.ResNetConfig) (string, error) {
	m := filepath.Join(dir, "base")
	if err := os.MkdirAll(m, 0o755); err != nil {
		return "", err
	}
	if err := zoo.WriteResNet(cfg, filepath.Join(m, detect.ModelFile)); err != nil {
		return "", err
	}
	meta := detect.DefaultMetadata("bench-base")
	meta.Architecture = cfg.Name
	meta.Input.Height, meta.Input.Width = cfg.InputH, cfg.InputW
	return m, detect.WriteMetadata(m, meta)
}

// frozenHeads fits the head recipes and the outside baseline on the network's frozen
// features.
func frozenHeads(model string, tr, va *dataset.Set, so ortenv.Options) error {
	ex, err := features.Open(quietLog(), model, features.Options{Session: so})
	if err != nil {
		return err
	}
	defer ex.Close()
	X, y, Xv, yv, err := extractSplit(ex, tr, va)
	if err != nil {
		return err
	}
	fmt.Printf("frozen random features (%d wide):\n", len(X[0]))
	return compareHeads(X, y, Xv, yv, true)
}

// trainAll trains every layer from the random weights and scores the validation images
// with the trained network's own forward pass.
func trainAll(model string, meta detect.Metadata, tr, va *dataset.Set, c fullnet.Config, so ortenv.Options) error {
	t0 := time.Now()
	lastEpoch := 0
	cand, err := fullnet.Trainer{Config: c, Log: quietLog(), Session: so}.Train(context.Background(),
		retrain.TrainSet{Items: tr.Items, BaseDir: model, BaseMeta: meta}, func(p retrain.Progress) {
			if p.Epoch > lastEpoch {
				lastEpoch = p.Epoch
				fmt.Fprintf(os.Stderr, "epoch %d/%d after %s (ETA %s)\n", p.Epoch, p.Epochs, time.Since(t0).Round(time.Second),
					time.Duration(p.ETA*float64(time.Second)).Round(time.Second))
			}
		})
	if err != nil {
		return err
	}
	secs := time.Since(t0).Seconds()
	paths := make([]string, len(va.Items))
	y := make([]bool, len(va.Items))
	for i, it := range va.Items {
		paths[i], y[i] = it.Path, it.Label
	}
	logits, err := cand.Logits(context.Background(), paths)
	if err != nil {
		return err
	}
	rep, err := metrics.Evaluate(logits, y)
	if err != nil {
		return err
	}
	fmt.Printf("every layer trained from random weights (%s, lr %g, batch %d in micro-batches of %d, batch norm %s, %d epochs): %.0f s\n",
		cand.Training["trained"], c.LR, c.Batch, c.MicroBatch, c.BatchNorm, c.Epochs, secs)
	fmt.Printf("  held-out AP %.4f  AUROC %.4f  F1max %.4f\n  loss per epoch %.4v\n", rep.AP, rep.AUROC, rep.F1Max, cand.Training["loss_trace"])
	return nil
}
