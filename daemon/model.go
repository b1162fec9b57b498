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

// modelSignature identifies what MODEL_DIR holds now: where its symlink points (the
// registry switches "current" atomically) and the two files' sizes and times. A change
// means a new model to load.
func modelSignature(dir string) (string, error) {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", err
	}
	sig := real
	for _, f := range []string{detect.ModelFile, detect.MetadataFile} {
		st, err := os.Stat(filepath.Join(real, f))
		if err != nil {
			return "", err
		}
		sig += fmt.Sprintf("|%s:%d:%d", f, st.Size(), st.ModTime().UnixNano())
	}
	return sig, nil
}

// loadModel loads MODEL_DIR and swaps it in. A model that fails to load leaves the
// serving one in place; the failure is logged and published as an event.
func (d *Daemon) loadModel(initial bool) error {
	d.modelMu.Lock() // the poller and the reload command may both call this
	defer d.modelMu.Unlock()
	sig, err := modelSignature(d.cfg.ModelDir)
	if err != nil {
		if initial && errors.Is(err, fs.ErrNotExist) {
			d.log.Warn("no detector model yet: verdicts are \"unknown\" until one is installed", "model_dir", d.cfg.ModelDir)
			d.client.SetState("model", map[string]any{"loaded": false, "dir": d.cfg.ModelDir})
			return nil
		}
		d.modelFailed(err)
		return err
	}
	if err := d.det.LoadAndSwap(d.cfg.ModelDir); err != nil {
		d.modelSig = sig // do not retry the same broken files every poll
		d.modelFailed(err)
		return err
	}
	d.modelSig = sig
	md, _ := d.det.Metadata()
	d.m.setModel(md.ModelVersion)
	d.client.SetState("model", map[string]any{"loaded": true, "version": md.ModelVersion, "architecture": md.Architecture,
		"input": md.Input, "validation": md.Validation, "dir": d.cfg.ModelDir})
	d.client.SetState("threshold", md.Threshold)
	d.client.Event("model", map[string]any{"event": "loaded", "version": md.ModelVersion})
	return nil
}

func (d *Daemon) modelFailed(err error) {
	d.log.Error("model not loaded; the serving model (if any) stays", "model_dir", d.cfg.ModelDir, "err", err)
	d.m.modelLoadFailures.Inc()
	d.client.Event("model", map[string]any{"event": "load_failed", "dir": d.cfg.ModelDir, "error": err.Error()})
}

// watchModel polls MODEL_DIR and hot-swaps a changed model; frames in flight finish on
// the old one.
func (d *Daemon) watchModel(ctx context.Context) {
	t := time.NewTicker(d.cfg.ModelPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sig, err := modelSignature(d.cfg.ModelDir)
		d.modelMu.Lock()
		same := sig == d.modelSig
		d.modelMu.Unlock()
		if err != nil || same {
			continue
		}
		// A file still being copied changes again; wait one poll for it to settle.
		time.Sleep(min(d.cfg.ModelPoll, time.Second))
		if again, err := modelSignature(d.cfg.ModelDir); err != nil || again != sig {
			continue
		}
		d.log.Info("model folder changed; loading", "model_dir", d.cfg.ModelDir)
		d.loadModel(false)
	}
}
