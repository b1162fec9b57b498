package daemon

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/diagd/diagd/internal/demo"
)

// prepareDemo fills in what DIAGD_DEMO stands in for: with no sources, a looping video
// of a brushed-metal surface (some frames scratched) at 5 fps; with no model at
// MODEL_DIR, a stand-in model with random weights.
func (d *Daemon) prepareDemo() error {
	dir := filepath.Join(d.cfg.DataDir, "demo")
	if strings.TrimSpace(d.cfg.Sources) == "" {
		video := filepath.Join(dir, "line.avi")
		if _, err := os.Stat(video); err != nil {
			d.log.Info("demo: writing a video of a simulated line", "path", video)
			if err := demo.WriteVideo(video, 40, 640, 512, 5, 1); err != nil {
				return err
			}
		}
		d.cfg.Sources = "demo=video:" + video + ",loop=true,pace=true,fps=5"
	}
	if _, err := os.Stat(filepath.Join(d.cfg.ModelDir, "model.json")); errors.Is(err, fs.ErrNotExist) {
		model := filepath.Join(dir, "model")
		if _, err := os.Stat(filepath.Join(model, "model.json")); err != nil {
			d.log.Info("demo: writing a stand-in model (random weights: verdicts show the plumbing, not quality)", "path", model)
			if _, err := demo.WriteModel(model, false, 1); err != nil {
				return err
			}
		}
		d.cfg.ModelDir = model
	}
	return nil
}
