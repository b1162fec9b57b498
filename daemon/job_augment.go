package daemon

// The augment job: one batch of synthetic defects painted into pooled negatives.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/diagd/diagd/augment"
	"github.com/diagd/diagd/augment/catalogue"
	"github.com/diagd/diagd/retrain/dataset"
)

// augment generates one batch of synthetic defects into pooled negatives. It returns
// the outcome (ok, skipped, failed, cancelled) and the reason when not ok.
func (j *jobs) augment(ctx context.Context, o jobOptions) (outcome, reason string) {
	j.m.running.WithLabelValues(jobAugment).Set(1)
	defer j.m.running.WithLabelValues(jobAugment).Set(0)
	cfg, log := j.d.cfg, j.d.log
	start := time.Now()
	batch := start.UTC().Format("20060102T150405Z") + "-" + o.Generator
	dest := filepath.Join(cfg.DataDir, dataset.AcceptedDir, batch)
	if !cfg.AutoAccept {
		dest = filepath.Join(cfg.DataDir, pendingDir, batch)
	}
	work := filepath.Join(cfg.DataDir, incomingDir, batch)
	j.d.client.Event(jobAugment, map[string]any{"job": jobAugment, "phase": "start", "n": o.N, "generator": o.Generator, "batch": batch})
	ev := map[string]any{"batch": batch, "generator": o.Generator, "requested": o.N}
	done := func(out string, err error) (string, string) {
		ev["outcome"], ev["elapsed_s"] = out, time.Since(start).Seconds()
		if err != nil {
			ev["error"] = err.Error()
			log.Warn("augment job "+out, "batch", batch, "err", err)
		} else {
			log.Info("augment job done", "batch", batch, "written", ev["written"], "dir", ev["dir"])
		}
		j.finish(jobAugment, ev)
		if err != nil {
			return out, err.Error()
		}
		return out, ""
	}
	if _, err := j.catalogue(); err != nil {
		return done("skipped", err)
	}
	negDir := filepath.Join(cfg.DataDir, dataset.NegativesDir)
	negs, err := augment.ListNegativePool(negDir)
	if err != nil {
		return done("failed", err)
	}
	if len(negs) < minNegatives {
		return done("skipped", fmt.Errorf("only %d good images in %s (at least %d needed)", len(negs), negDir, minNegatives))
	}
	var g augment.Generator
	if o.Generator == "diag" {
		j.d.client.Event(jobAugment, map[string]any{"job": jobAugment, "phase": "load", "model": cfg.SDXLDir})
		if g, err = augment.OpenDIAG(log, cfg.SDXLDir, j.jobSession()); err != nil {
			return done("failed", err)
		}
	} else {
		g = augment.NewMemSeg()
	}
	defer g.Close()
	rep := &reporter{j: j, job: jobAugment}
	sum, err := augment.Run(ctx, augment.Config{
		Negatives: negs, NegativesDir: negDir, Out: work, N: o.N, Generator: g, Log: log,
		Catalogue: func() *catalogue.Catalogue { c, _ := j.catalogue(); return c },
		Progress: func(p augment.Progress) {
			rep.progress("generate", p.Done, p.Total, p.Fraction(), map[string]any{
				"written": p.Written, "skipped": p.Skipped, "eta_s": p.ETA.Seconds(), "kind": p.Kind})
		},
	})
	ev["written"], ev["skipped"], ev["warnings"] = sum.Written, len(sum.Skipped), sum.Warnings
	if sum.Written > 0 {
		// The batch appears whole in accepted/ (or pending/), ready for training or review.
		if merr := os.MkdirAll(filepath.Dir(dest), 0o755); merr != nil {
			return done("failed", merr)
		}
		if rerr := os.Rename(work, dest); rerr != nil {
			return done("failed", fmt.Errorf("moving batch %s to %s: %w", work, dest, rerr))
		}
		ev["dir"] = dest
		if sum.ContactSheet != "" {
			ev["contact_sheet"] = filepath.Join(dest, filepath.Base(sum.ContactSheet))
		}
		ev["accepted"] = cfg.AutoAccept
	} else {
		os.RemoveAll(work)
	}
	switch {
	case ctx.Err() != nil:
		return done("cancelled", ctx.Err())
	case err != nil:
		return done("failed", err)
	case sum.Written == 0:
		return done("failed", fmt.Errorf("no image was produced (%d skipped)", len(sum.Skipped)))
	}
	return done("ok", nil)
}
