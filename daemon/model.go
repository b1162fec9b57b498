package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/diagd/diagd/detect"
)

// errNoModelYet: MODEL_DIR does not exist (yet). A new line starts this way; it is not
// a problem to report every poll.
var errNoModelYet = errors.New("no detector model installed yet")

// modelSignature identifies what MODEL_DIR holds now: where its symlink points (the
// registry switches "current" atomically) and the two files' sizes and times. A change
// means a new model to load. A folder that exists without both files is an error that
// names the missing file.
func modelSignature(dir string) (string, error) {
	real, err := filepath.EvalSymlinks(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%w (%s does not exist)", errNoModelYet, dir)
	}
	if err != nil {
		return "", err
	}
	sig := real
	for _, f := range []string{detect.ModelFile, detect.MetadataFile} {
		st, err := os.Stat(filepath.Join(real, f))
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("the model folder %s has no %s", dir, f)
		}
		if err != nil {
			return "", err
		}
		sig += fmt.Sprintf("|%s:%d:%d", f, st.Size(), st.ModTime().UnixNano())
	}
	return sig, nil
}

// loadModel loads MODEL_DIR and swaps it in. A model that fails to load leaves the
// serving one in place; the failure is logged, counted and published as an event.
func (d *Daemon) loadModel(initial bool) error {
	d.modelMu.Lock() // the poller, the reload command and SIGHUP may all call this
	defer d.modelMu.Unlock()
	sig, err := modelSignature(d.cfg.ModelDir)
	if errors.Is(err, errNoModelYet) {
		if initial {
			d.log.Warn("no detector model yet: verdicts are \"unknown\" until one is installed", "model_dir", d.cfg.ModelDir)
			d.client.SetState("model", modelState{Loaded: false, Dir: d.cfg.ModelDir})
			return nil
		}
		return err
	}
	if err == nil {
		if err = d.loadAndSwap(); err != nil {
			d.modelSig = sig // do not retry the same broken files every poll
		}
	}
	if err != nil {
		d.modelFailed(err)
		if initial {
			d.client.SetState("model", modelState{Loaded: false, Dir: d.cfg.ModelDir, Error: err.Error()})
		}
		return err
	}
	d.modelSig, d.modelProblem = sig, ""
	md, _ := d.det.Metadata()
	d.m.setModel(md.ModelVersion)
	d.client.SetState("model", modelState{Loaded: true, Version: md.ModelVersion, Architecture: md.Architecture,
		Input: &md.Input, Validation: md.Validation, Dir: d.cfg.ModelDir})
	d.client.SetState("threshold", md.Threshold)
	d.client.Event("model", modelEvent{Event: "loaded", Version: md.ModelVersion, Dir: d.cfg.ModelDir})
	return nil
}

// loadAndSwap is the detector's LoadAndSwap with a panic turned into an error.
func (d *Daemon) loadAndSwap() (err error) {
	defer d.recovered("model load", &err)
	return d.det.LoadAndSwap(d.cfg.ModelDir)
}

func (d *Daemon) modelFailed(err error) {
	d.modelProblem = err.Error()
	d.log.Error("model not loaded; the serving model (if any) stays", "model_dir", d.cfg.ModelDir, "err", err)
	d.m.modelLoadFailures.Inc()
	d.client.Event("model", modelEvent{Event: "load_failed", Dir: d.cfg.ModelDir, Error: err.Error()})
}

// watchModel polls MODEL_DIR and hot-swaps a changed model; frames in flight finish on
// the old one. A folder lacking a file is reported once it has stayed so for a poll (a
// model being copied in place lacks one for a moment).
func (d *Daemon) watchModel(ctx context.Context) {
	pending := ""
	periodically(ctx, d.cfg.ModelPoll, func() { pending = d.pollModel(pending) })
}

// pollModel is one poll of MODEL_DIR. pending is the problem the last poll found ("" for
// none); it returns this poll's.
func (d *Daemon) pollModel(pending string) string {
	sig, err := modelSignature(d.cfg.ModelDir)
	if err != nil {
		if !errors.Is(err, errNoModelYet) && err.Error() == pending {
			d.reportModelProblem(err)
		}
		return err.Error()
	}
	d.modelMu.Lock()
	same := sig == d.modelSig
	d.modelMu.Unlock()
	if same {
		return ""
	}
	// A file still being copied changes again; wait one poll for it to settle.
	time.Sleep(min(d.cfg.ModelPoll, time.Second))
	if again, err := modelSignature(d.cfg.ModelDir); err != nil || again != sig {
		return ""
	}
	d.log.Info("model folder changed; loading", "model_dir", d.cfg.ModelDir)
	d.loadModel(false)
	return ""
}

// reportModelProblem reports a problem with MODEL_DIR once (until it changes or a model
// loads).
func (d *Daemon) reportModelProblem(err error) {
	d.modelMu.Lock()
	defer d.modelMu.Unlock()
	if err.Error() != d.modelProblem {
		d.modelFailed(err)
	}
}
