package daemon

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/diagd/diagd/internal/demo"
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
		d.cfg.ModelDir = model
	}
	return nil
}
