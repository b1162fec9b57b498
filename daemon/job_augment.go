package daemon

// The augment job: one batch of synthetic defects painted into pooled negatives.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/diagd/diagd/augment"
	"github.com/diagd/diagd/augment/catalogue"
	"github.com/diagd/diagd/retrain/dataset"
)

// augment generates one batch of synthetic defects into pooled negatives. It returns
// the outcome (ok, skipped, failed, cancelled) and the reason when not ok.
func (j *jobs) augment(ctx context.Context, o jobOptions) (outcome, reason string) {
	j.d.m.jobRunning.WithLabelValues(jobAugment).Set(1)
	defer j.d.m.jobRunning.WithLabelValues(jobAugment).Set(0)
	cfg, log := j.d.cfg, j.d.log
	start := j.now()
	ev := augmentFinish{Job: jobAugment, Phase: "finish", Generator: o.Generator, Requested: o.N}
	done := func(out string, err error) (string, string) {
		ev.Outcome, ev.ElapsedS = out, time.Since(start).Seconds()
		if err != nil {
			ev.Error = err.Error()
			log.Warn("augment job "+out, "batch", ev.Batch, "err", err)
		} else {
			log.Info("augment job done", "batch", ev.Batch, "written", ev.Written, "dir", ev.Dir)
		}
		j.finished(jobAugment, out, ev)
		return out, ev.Error
	}
	batch, work, dest, err := j.reserveBatch(start, o.Generator)
	ev.Batch = batch
	if err != nil {
		return done(outcomeFailed, err)
	}
	j.d.client.Event(jobAugment, jobStart{Job: jobAugment, Phase: "start", N: o.N, Generator: o.Generator, Batch: batch})
	g, negs, negDir, out, err := j.prepareGeneration(o)
	if err != nil {
		os.Remove(work)
		return done(out, err)
	}
	defer g.Close()
	rep := &reporter{j: j, job: jobAugment}
	sum, err := augment.Run(ctx, augment.Config{
		Negatives: negs, NegativesDir: negDir, Out: work, N: o.N, Generator: g, Log: log,
		Catalogue: func() *catalogue.Catalogue { c, _ := j.catalogue(); return c },
		Progress: func(p augment.Progress) {
			eta := p.ETA.Seconds()
			rep.progress(jobProgress{Phase: "generate", Done: p.Done, Total: p.Total, Fraction: p.Fraction(),
				EtaS: &eta, Written: &p.Written, Skipped: &p.Skipped, Kind: p.Kind})
		},
	})
	ev.Written, ev.Skipped, ev.Warnings = sum.Written, len(sum.Skipped), sum.Warnings
	if sum.Written > 0 {
		// The batch appears whole in accepted/ (or pending/), ready for training or review.
		if rerr := os.Rename(work, dest); rerr != nil {
			return done(outcomeFailed, fmt.Errorf("moving batch %s to %s: %w", work, dest, rerr))
		}
		ev.Dir, ev.Accepted = dest, &cfg.AutoAccept
		if sum.ContactSheet != "" {
			ev.ContactSheet = filepath.Join(dest, filepath.Base(sum.ContactSheet))
		}
	} else {
		os.RemoveAll(work)
	}
	switch {
	case ctx.Err() != nil:
		return done(outcomeCancelled, ctx.Err())
	case err != nil:
		return done(outcomeFailed, err)
	case sum.Written == 0:
		return done(outcomeFailed, fmt.Errorf("no image was produced (%d skipped)", len(sum.Skipped)))
	}
	return done(outcomeOK, nil)
}

// prepareGeneration checks the catalogue and the pool and opens the generator. On error
// it returns the outcome to report (skipped: nothing to do yet; failed).
func (j *jobs) prepareGeneration(o jobOptions) (g augment.Generator, negs []string, negDir, outcome string, err error) {
	cfg := j.d.cfg
	if _, err := j.catalogue(); err != nil {
		return nil, nil, "", outcomeSkipped, err
	}
	negDir = filepath.Join(cfg.DataDir, dataset.NegativesDir)
	negs, err = augment.ListNegativePool(negDir)
	if err != nil {
		return nil, nil, "", outcomeFailed, err
	}
	if len(negs) < minNegatives {
		return nil, nil, "", outcomeSkipped, fmt.Errorf("only %d good images in %s (at least %d needed)", len(negs), negDir, minNegatives)
	}
	if o.Generator != "diag" {
		return augment.NewMemSeg(), negs, negDir, "", nil
	}
	j.d.client.Event(jobAugment, jobStart{Job: jobAugment, Phase: "load", Model: cfg.SDXLDir})
	g, err = augment.OpenDIAG(j.d.log, cfg.SDXLDir, j.jobSession())
	if err != nil {
		return nil, nil, "", outcomeFailed, err
	}
	return g, negs, negDir, "", nil
}

// reserveBatch picks the batch's name (the start time and the generator, with -2, -3…
// when that name is taken: two jobs may start within one second) and creates its work
// folder, so no other job can take the same name. It returns the work folder and where
// the finished batch goes.
func (j *jobs) reserveBatch(start time.Time, generator string) (batch, work, dest string, err error) {
	cfg := j.d.cfg
	base := start.UTC().Format("20060102T150405Z") + "-" + generator
	incoming := filepath.Join(cfg.DataDir, incomingDir)
	final := filepath.Join(cfg.DataDir, dataset.AcceptedDir)
	if !cfg.AutoAccept {
		final = filepath.Join(cfg.DataDir, pendingDir)
	}
	for _, dir := range []string{incoming, final} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return base, "", "", err
		}
	}
	for n := 1; n <= 1000; n++ {
		batch = base
		if n > 1 {
			batch += "-" + strconv.Itoa(n)
		}
		if taken(filepath.Join(cfg.DataDir, dataset.AcceptedDir, batch)) || taken(filepath.Join(cfg.DataDir, pendingDir, batch)) {
			continue
		}
		work = filepath.Join(incoming, batch)
		if err := os.Mkdir(work, 0o755); errors.Is(err, fs.ErrExist) {
			continue
		} else if err != nil {
			return batch, "", "", err
		}
		return batch, work, filepath.Join(final, batch), nil
	}
	return base, "", "", fmt.Errorf("no free batch name for %s in %s", base, final)
}

func taken(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
