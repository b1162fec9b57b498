package daemon

// The retrain job: train a candidate on DATA_DIR, evaluate it against the serving model,
// promote it when it is at least as good.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/retrain"
	"github.com/diagd/diagd/retrain/dataset"
	"github.com/diagd/diagd/retrain/head"
	"github.com/diagd/diagd/retrain/registry"
)

// retrain trains a candidate on DATA_DIR (negatives, real defects, accepted synthetic
// defects), evaluates it against the serving model and promotes it when it is at
// least as good (within PROMOTE_TOLERANCE). Outcome: promoted, rejected, failed,
// cancelled.
func (j *jobs) retrain(ctx context.Context) (outcome, reason string) {
	j.d.m.jobRunning.WithLabelValues(jobRetrain).Set(1)
	defer j.d.m.jobRunning.WithLabelValues(jobRetrain).Set(0)
	cfg, log := j.d.cfg, j.d.log
	start := time.Now()
	j.d.client.Event(jobRetrain, jobStart{Job: jobRetrain, Phase: "start", Registry: cfg.Registry})
	ev := retrainFinish{Job: jobRetrain, Phase: "finish", Registry: cfg.Registry}
	done := func(out string, err error) (string, string) {
		ev.Outcome, ev.ElapsedS = out, time.Since(start).Seconds()
		if err != nil {
			ev.Error = err.Error()
			log.Warn("retrain job "+out, "err", err)
		} else {
			log.Info("retrain job done", "outcome", out, "version", ev.Version, "reason", ev.Reason)
		}
		j.finished(jobRetrain, out, ev)
		if err != nil {
			return out, err.Error()
		}
		return out, ev.Reason
	}
	reg, err := registry.Open(log, cfg.Registry, registry.Options{})
	if err != nil {
		return done("failed", err)
	}
	release, err := reg.Lock()
	if err != nil {
		return done("failed", err)
	}
	defer release()
	servedByLink := sameDir(cfg.ModelDir, filepath.Join(reg.Dir, registry.CurrentLink))
	if _, err := reg.Current(); errors.Is(err, registry.ErrNoCurrent) {
		// An empty registry starts from the serving model, unless MODEL_DIR is the
		// registry's own (empty) current link.
		if servedByLink {
			return done("failed", fmt.Errorf("the registry %s has no model and DIAGD_MODEL_DIR is its current link: install a model with 'diagd models --registry %s import DIR' then promote it", reg.Dir, reg.Dir))
		}
		if _, err := detect.ReadMetadata(cfg.ModelDir); err != nil {
			return done("failed", fmt.Errorf("the registry %s is empty and DIAGD_MODEL_DIR %s holds no model to start from: %w", reg.Dir, cfg.ModelDir, err))
		}
		v, err := retrain.EnsureBase(reg, cfg.ModelDir)
		if err != nil {
			return done("failed", fmt.Errorf("importing the serving model %s into the registry: %w", cfg.ModelDir, err))
		}
		ev.ImportedBase = v
		log.Info("registry was empty: imported the serving model", "model_dir", cfg.ModelDir, "version", v)
	} else if err != nil {
		return done("failed", err)
	}

	real, syn, err := dataset.DataDir(cfg.DataDir, dataset.Options{})
	if err != nil {
		return done("failed", err)
	}
	mode := dataset.Mode(cfg.RetrainMode)
	if cfg.RetrainMode == "auto" {
		mode = dataset.ZeroShot
		if _, pos := real.Counts(); pos > 0 {
			mode = dataset.FullShot // real defects exist: train on them too
		}
	}
	ev.Mode = string(mode)
	train, err := dataset.Compose(real, syn, mode, 0)
	if err != nil {
		return done("failed", err)
	}
	var val *dataset.Set
	var valName string
	if vdir := filepath.Join(cfg.DataDir, validationDir); isDir(vdir) {
		if val, err = dataset.Load(vdir, dataset.Options{}); err != nil {
			return done("failed", fmt.Errorf("validation set: %w", err))
		}
		valName = vdir
	} else {
		train, val, valName = retrain.HoldoutValidation(train, real, mode, validationFraction, 0, cfg.DataDir)
	}
	ev.Validation = valName
	rep := &reporter{j: j, job: jobRetrain}
	out, err := retrain.Run(ctx, retrain.Config{
		Log: log, Registry: reg, Train: train, Val: val, ValName: valName,
		Trainer:   retrain.HeadTrainer{Config: head.Config{Imbalance: head.PosWeight}},
		Tolerance: cfg.PromoteTolerance, CacheDir: filepath.Join(reg.Dir, "cache"),
		Session: j.jobSession(),
		Progress: func(p retrain.Progress) {
			frac := 0.0
			switch {
			case p.Total > 0:
				frac = float64(p.Done) / float64(p.Total)
			case p.Stage == "done":
				frac = 1
			}
			jp := jobProgress{Phase: p.Stage, Done: p.Done, Total: p.Total, Fraction: frac, Message: p.Message}
			if p.Stage == "train" {
				jp.Loss = &p.Loss
			}
			rep.progress(jp)
		},
	})
	if err != nil {
		if ctx.Err() != nil {
			return done("cancelled", err)
		}
		return done("failed", err)
	}
	ev.Version, ev.Promoted, ev.Reason = out.Version, out.Promoted, out.Decision.Reason
	ev.CandidateAP = &out.Candidate.AP
	if out.Serving != nil {
		ev.ServingAP, ev.ServingVersion = &out.Serving.AP, out.Decision.Serving
	}
	ev.Threshold = &out.Decision.Threshold
	ev.PRCurve = filepath.Join(out.Dir, retrain.PRCurveFile)
	ev.TrainImages, ev.ValidationImages = len(train.Items), out.Candidate.N
	if !out.Promoted {
		return done("rejected", nil)
	}
	if servedByLink {
		ev.Served = "the model watcher swaps it in within DIAGD_MODEL_POLL"
	} else {
		ev.Served = "not served: DIAGD_MODEL_DIR is not the registry's current link " + filepath.Join(reg.Dir, registry.CurrentLink)
		log.Warn("a promoted model is not served: point DIAGD_MODEL_DIR at the registry's current link",
			"model_dir", cfg.ModelDir, "current", filepath.Join(reg.Dir, registry.CurrentLink))
	}
	return done("promoted", nil)
}

// sameDir reports whether two paths name the same place, before following a last
// symlink (MODEL_DIR is the registry's current link, not where it points now).
func sameDir(a, b string) bool {
	ca, err1 := filepath.Abs(a)
	cb, err2 := filepath.Abs(b)
	if err1 != nil || err2 != nil {
		return false
	}
	if ca == cb {
		return true
	}
	// Resolve the parents (DATA_DIR may itself be behind a symlink).
	pa, err1 := filepath.EvalSymlinks(filepath.Dir(ca))
	pb, err2 := filepath.EvalSymlinks(filepath.Dir(cb))
	return err1 == nil && err2 == nil && pa == pb && filepath.Base(ca) == filepath.Base(cb)
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}
