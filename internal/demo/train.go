package demo

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/retrain"
	"github.com/diagd/diagd/retrain/arch"
	"github.com/diagd/diagd/retrain/dataset"
	"github.com/diagd/diagd/retrain/fullnet"
	"github.com/diagd/diagd/retrain/gate"
	"github.com/diagd/diagd/retrain/registry"
	"github.com/diagd/diagd/retrain/segdec"
)

// SegDecOptions is the demo's detector: the CPU default segdec network at a quarter of
// the simulated line's pixels (its 640×512 frames become 320×256, a scratch stays a
// pixel wide), small enough to train from random weights in a minute or two on two cores.
func SegDecOptions() segdec.Options {
	o := segdec.CPUOptions()
	o.Height, o.Width = 256, 320
	return o
}

// DemoEpochs is how long the demo's detector trains.
const DemoEpochs = 12

// TrainedModel makes the demo's model meaningful without any download: a segdec network
// (segmentation + decision) trained from random weights by the real retraining pipeline
// on labelled frames of the simulated line (good, and scratched with the scratch's mask),
// in a registry under dir. It returns the registry's current link (a model folder the
// daemon can watch) and the outcome.
func TrainedModel(ctx context.Context, log *slog.Logger, dir string, w, h int) (string, *retrain.Outcome, error) {
	opts := SegDecOptions()
	base := filepath.Join(dir, "base")
	m, err := opts.Model()
	if err != nil {
		return "", nil, err
	}
	meta := segdec.Metadata("demo-segdec-untrained", opts)
	meta.Training = map[string]any{"method": "none", "note": "random initial weights, the demo's starting point"}
	if err := segdec.WriteModel(base, m, meta); err != nil {
		return "", nil, err
	}
	train, val, err := labelledFrames(filepath.Join(dir, "labelled"), w, h)
	if err != nil {
		return "", nil, err
	}
	reg, err := registry.Open(log, filepath.Join(dir, "registry"), registry.Options{})
	if err != nil {
		return "", nil, err
	}
	release, err := reg.Lock()
	if err != nil {
		return "", nil, err
	}
	defer release()
	if _, err := retrain.EnsureBase(reg, base); err != nil {
		return "", nil, err
	}
	session := ortenv.Options{Provider: ortenv.CPU}
	// The untrained base's threshold is meaningless, so the trained candidate is promoted
	// whatever the comparison says (tolerance 1), as long as it passes the gate's own
	// checks; the decision is logged with its numbers.
	out, err := retrain.Run(ctx, retrain.Config{
		Log: log, Registry: reg, Train: &dataset.Set{Items: train}, Val: &dataset.Set{Items: val}, ValName: "held-out frames of the simulated line",
		Gate:    gate.Settings{Tolerance: 1},
		Trainer: fullnet.Trainer{Config: arch.Recipe(fullnet.Config{Epochs: DemoEpochs, Seed: 1}, opts), Log: log, Session: session},
		Session: session,
	})
	if err != nil {
		return "", nil, err
	}
	return filepath.Join(reg.Dir, "current"), out, nil
}

// labelledFrames writes 96 training and 32 validation frames of the simulated line, half
// scratched with their masks, as JPEG like the line's Motion-JPEG video (a detector
// trained on lossless frames leans on detail the codec removes).
func labelledFrames(dir string, w, h int) (train, val []dataset.Item, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	r := rand.New(rand.NewPCG(2, 3))
	for i := range 128 {
		scratched := i%2 == 1
		f, m := FrameAndMask(w, h, r, scratched)
		it := dataset.Item{Path: filepath.Join(dir, fmt.Sprintf("%03d.jpg", i)), Label: scratched, Source: dataset.Real + ":demo"}
		ok := gocv.IMWrite(it.Path, f)
		if ok && scratched {
			it.Mask = filepath.Join(dir, fmt.Sprintf("%03d_mask.png", i))
			ok = gocv.IMWrite(it.Mask, m)
		}
		f.Close()
		m.Close()
		if !ok {
			return nil, nil, fmt.Errorf("cannot write frame %d in %s", i, dir)
		}
		if i < 96 {
			train = append(train, it)
		} else {
			val = append(val, it)
		}
	}
	return train, val, nil
}
