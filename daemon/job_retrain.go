package daemon

// The retrain job: train a candidate on DATA_DIR through retrain.RunDataDir, evaluate it
// against the serving model, promote it when the gate allows.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/diagd/diagd/retrain"
	"github.com/diagd/diagd/retrain/arch"
	"github.com/diagd/diagd/retrain/dataset"
	"github.com/diagd/diagd/retrain/fullnet"
	"github.com/diagd/diagd/retrain/gate"
	"github.com/diagd/diagd/retrain/registry"
)

// retrain trains a candidate on DATA_DIR (negatives, real defects, accepted synthetic
// defects) through retrain.RunDataDir, evaluates it against the serving model and
// promotes it when the gate allows (DIAGD_PROMOTE_*). Outcome: promoted, rejected (the
// gate refused or made no decision; the reason says which), failed, cancelled.
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
	servedByLink := sameDir(cfg.ModelDir, filepath.Join(cfg.Registry, registry.CurrentLink))
	importBase := cfg.ModelDir // an empty registry starts from the serving model...
	if servedByLink {
		importBase = "" // ...unless MODEL_DIR is the registry's own (empty) current link
		if err := registryServes(log, cfg.Registry); err != nil {
			return done("failed", err)
		}
	}
	rep := &reporter{j: j, job: jobRetrain}
	o := retrain.DataDirOptions{
		Log: log, Registry: cfg.Registry, ImportIfEmpty: importBase, Data: cfg.DataDir,
		Mode: dataset.Mode(cfg.RetrainMode), ValFraction: validationFraction,
		Gate: gate.Settings{Tolerance: cfg.PromoteTolerance, Confidence: cfg.PromoteConfidence,
			MinDefects: cfg.PromoteMinDefects, MaxGoodFail: cfg.PromoteMaxGoodFail},
		Session: j.jobSession(),
		Resume:  true, // a run a crash or restart interrupted continues from its checkpoint
		Progress: func(p retrain.Progress) {
			reportRetrain(rep, p)
			if j.retrainProgress != nil {
				j.retrainProgress(p)
			}
		},
	}
	resnet := j.retrainer(rep)
	chosen, err := arch.Prepare(&o, arch.Setup{Arch: arch.Name(cfg.Arch), GPU: resnet.OnGPU, ResNet: resnet,
		Trainer: fullnet.Trainer{Log: log, Session: o.Session}})
	if err != nil {
		return done("failed", err)
	}
	ev.Arch = string(chosen)
	out, plan, err := retrain.RunDataDir(ctx, o)
	ev.ImportedBase, ev.Mode, ev.Validation = plan.Imported, string(plan.Mode), plan.ValName
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
	if out.Dir != "" { // a candidate refused before it was stored has none
		ev.PRCurve = filepath.Join(out.Dir, retrain.PRCurveFile)
	}
	ev.TrainImages, ev.ValidationImages = plan.Train.Total, out.Candidate.N
	ev.Decision, ev.Flags = out.Decision.Action, out.Decision.Flags
	if d := out.Decision.APDiff; d != nil {
		ev.APDiff, ev.APDiffLower, ev.APDiffUpper = &d.Diff, &d.Lower, &d.Upper
	}
	if !out.Promoted {
		return done("rejected", nil)
	}
	if servedByLink {
		ev.Served = "the model watcher swaps it in within DIAGD_MODEL_POLL"
	} else {
		ev.Served = "not served: DIAGD_MODEL_DIR is not the registry's current link " + filepath.Join(cfg.Registry, registry.CurrentLink)
		log.Warn("a promoted model is not served: point DIAGD_MODEL_DIR at the registry's current link",
			"model_dir", cfg.ModelDir, "current", filepath.Join(cfg.Registry, registry.CurrentLink))
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

// registryServes fails with what to do when the registry has no model to start from
// (MODEL_DIR is its own current link, so there is nothing else to import).
func registryServes(log *slog.Logger, dir string) error {
	reg, err := registry.Open(log, dir, registry.Options{})
	if err != nil {
		return err
	}
	if _, err := reg.Current(); errors.Is(err, registry.ErrNoCurrent) {
		return fmt.Errorf("the registry %s has no model and DIAGD_MODEL_DIR is its current link: install a model with 'diagd models --registry %s import DIR' then promote it", dir, dir)
	}
	return nil
}

// retrainer is what the retrain job trains (DIAGD_TRAINABLE, DIAGD_TRAIN_BUDGET): the
// choice, with every setting's estimate, is logged and sent as a progress event.
func (j *jobs) retrainer(rep *reporter) fullnet.Auto {
	cfg := j.d.cfg
	var setting fullnet.Setting
	if cfg.Trainable != "auto" {
		setting = fullnet.Setting(cfg.Trainable) // validated by config
	}
	return fullnet.Auto{Trainable: setting, Budget: cfg.TrainBudget, Log: j.d.log, Session: j.jobSession(),
		Report: func(c fullnet.Choice) {
			for _, e := range c.Estimates {
				j.d.log.Info("retraining estimate", "trainable", string(e.Setting), "estimate", fullnet.Approx(e.Total).String(), "basis", e.Basis)
			}
			rep.progress(jobProgress{Phase: "choose", Done: 1, Total: 1, Fraction: 1, Message: fmt.Sprintf("trainable %s: %s", c.Setting, c.Why)})
		}}
}

// reportRetrain forwards a retraining stage's progress as a job progress event.
func reportRetrain(rep *reporter, p retrain.Progress) {
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
	if p.Epochs > 0 {
		jp.Epoch, jp.Epochs = &p.Epoch, &p.Epochs
	}
	if p.ETA > 0 {
		jp.EtaS = &p.ETA // the trainer's own: a resumed run's fraction starts high
	}
	rep.progress(jp)
}
