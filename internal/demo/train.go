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
	"github.com/diagd/diagd/retrain/dataset"
	"github.com/diagd/diagd/retrain/gate"
	"github.com/diagd/diagd/retrain/registry"
)

// TrainedModel makes the demo's model meaningful without any download: the stand-in
// backbone (random weights) with a head trained by the real retraining pipeline on
// labelled frames of the simulated line (good and scratched), in a registry under dir.
// It returns the registry's current link (a model folder the daemon can watch) and the
// outcome.
func TrainedModel(ctx context.Context, log *slog.Logger, dir string, w, h int) (string, *retrain.Outcome, error) {
	base := filepath.Join(dir, "base")
	if _, err := WriteModel(base, false, 1); err != nil {
		return "", nil, err
	}
	labelled := filepath.Join(dir, "labelled")
	r := rand.New(rand.NewPCG(2, 3))
	for _, class := range []string{"ok", "defect"} {
		if err := os.MkdirAll(filepath.Join(labelled, class), 0o755); err != nil {
			return "", nil, err
		}
		for i := range 60 {
			f := Frame(w, h, r, class == "defect")
			// JPEG like the simulated line's Motion-JPEG video: a head fitted on lossless
			// frames leans on detail the codec removes and misses scratches in the video.
			p := filepath.Join(labelled, class, fmt.Sprintf("%03d.jpg", i))
			ok := gocv.IMWrite(p, f)
			f.Close()
			if !ok {
				return "", nil, fmt.Errorf("cannot write %s", p)
			}
		}
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
	real, err := dataset.Folder(labelled)
	if err != nil {
		return "", nil, err
	}
	train, err := dataset.Compose(real, nil, dataset.FullShot, 0)
	if err != nil {
		return "", nil, err
	}
	train, val, valName := retrain.HoldoutValidation(train, real, dataset.FullShot, 0.25, 1, labelled)
	// The default head recipe. The base's head is random and its threshold meaningless,
	// so the trained candidate is promoted whatever the comparison says (tolerance 1),
	// as long as it passes the gate's own checks; the decision is logged with its numbers.
	out, err := retrain.Run(ctx, retrain.Config{
		Log: log, Registry: reg, Train: train, Val: val, ValName: valName, Gate: gate.Settings{Tolerance: 1},
		Trainer:  retrain.HeadTrainer{},
		CacheDir: filepath.Join(dir, "cache"), Session: ortenv.Options{Provider: ortenv.CPU},
	})
	if err != nil {
		return "", nil, err
	}
	return filepath.Join(reg.Dir, "current"), out, nil
}
