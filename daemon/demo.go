package daemon

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/diagd/diagd/internal/demo"
	"github.com/diagd/diagd/retrain"
	"github.com/diagd/diagd/retrain/registry"
)

// The simulated line's frame size.
const demoW, demoH = 640, 512

// prepareDemo fills in what DIAGD_DEMO stands in for: with no sources, a looping video
// of a brushed-metal surface (some frames scratched) at 5 fps; with no model at
// MODEL_DIR, a segdec detector trained from scratch on labelled frames of that line.
func (d *Daemon) prepareDemo() error {
	dir := filepath.Join(d.cfg.DataDir, "demo")
	if strings.TrimSpace(d.cfg.Sources) == "" {
		video := filepath.Join(dir, "line.avi")
		if _, err := os.Stat(video); err != nil {
			d.log.Info("demo: writing a video of a simulated line", "path", video)
			if err := demo.WriteVideo(video, 40, demoW, demoH, 5, 1); err != nil {
				return err
			}
		}
		d.cfg.Sources = "demo=video:" + video + ",loop=true,pace=true,fps=5"
	}
	if _, err := os.Stat(filepath.Join(d.cfg.ModelDir, "model.json")); errors.Is(err, fs.ErrNotExist) {
		model := filepath.Join(dir, "model", "registry", "current")
		if _, err := os.Stat(filepath.Join(model, "model.json")); err != nil {
			d.log.Info("demo: training a segmentation + decision detector from random weights on 96 labelled frames of the simulated line (no download; a minute or two on two cores)",
				"path", filepath.Join(dir, "model"))
			os.RemoveAll(filepath.Join(dir, "model")) // a half-made one from an interrupted start
			m, out, err := demo.TrainedModel(context.Background(), d.log, filepath.Join(dir, "model"), demoW, demoH)
			if err != nil {
				return err
			}
			d.log.Info("demo: model ready", "version", out.Version, "validation_ap", out.Candidate.AP,
				"precision", out.Candidate.Precision, "recall", out.Candidate.Recall)
			model = m
		}
		served, err := d.demoIntoRegistry(model)
		if err != nil {
			return err
		}
		d.cfg.ModelDir = served
	}
	return nil
}

// demoIntoRegistry imports the demo's trained model into DIAGD_REGISTRY as its serving
// version when the registry serves nothing yet, so the console's Models page, the
// retraining cycle (DIAGD_ARCH auto: segdec) and `diagd models` all see the model that
// judges; it returns the registry's current link.
func (d *Daemon) demoIntoRegistry(model string) (string, error) {
	if d.cfg.Registry == "" {
		return model, nil
	}
	reg, err := registry.Open(d.log, d.cfg.Registry, registry.Options{})
	if err != nil {
		return "", err
	}
	release, err := reg.Lock()
	if err != nil {
		return "", err
	}
	defer release()
	v, err := retrain.EnsureBase(reg, model)
	if err != nil {
		return "", err
	}
	if v != "" {
		d.log.Info("demo: the trained model is the registry's serving version", "registry", reg.Dir, "version", v)
	}
	return filepath.Join(reg.Dir, registry.CurrentLink), nil
}
