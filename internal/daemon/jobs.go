package daemon

// The daemon's periodic DIAG job: keep the defect catalogue loaded (reloaded on edit),
// and run one job at a time, on a schedule or on MQTT command: "augment" (paint
// synthetic defects into pooled negatives), "retrain" (train a candidate on negatives +
// real + synthetic defects, evaluate it against the serving model on labelled
// validation data, promote it in the registry when it is at least as good) and "cycle"
// (both). A promotion moves the registry's current link; when MODEL_DIR is that link
// (the default), the model watcher hot-swaps the new model in.
//
// Jobs run in the daemon's process beside frame judging, on a thread at nice 10
// (jobs_prio_linux.go) with JOB_THREADS ONNX Runtime threads (default 1, which runs on
// that thread), so the judge gets the CPU first. On a 2-core box judging still slows
// down while a job runs: image decoding helpers run at normal priority, and the caches
// and memory bandwidth are shared.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/diagd/diagd/augment"
	"github.com/diagd/diagd/augment/catalogue"
	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/retrain"
	"github.com/diagd/diagd/retrain/dataset"
	"github.com/diagd/diagd/retrain/head"
	"github.com/diagd/diagd/retrain/registry"
)

// Job names (MQTT commands, metric labels).
const (
	jobAugment = "augment"
	jobRetrain = "retrain"
	jobCycle   = "cycle"
)

// minNegatives is the smallest negatives pool a job runs on: fewer good images give
// synthetic defects on too few backgrounds and a validation split with almost nothing.
const minNegatives = 10

// validationFraction is the share of real images held out for validation when
// DATA_DIR/validation does not exist (as `diagd train`'s default).
const validationFraction = 0.2

// progressEvery throttles progress events: at most one per second within a phase,
// plus one when a phase begins and one when it completes.
const progressEvery = time.Second

// Sub-folders of DATA_DIR the jobs use.
const (
	validationDir = "validation"          // optional labelled validation set (any dataset.Load layout)
	pendingDir    = "synthetic/pending"   // batches awaiting review (AUTO_ACCEPT=false)
	incomingDir   = "synthetic/.incoming" // batches being generated; renamed when done
)

var errBusy = errors.New("busy")

// jobOptions are a request's parameters.
type jobOptions struct {
	N         int    `json:"n"`
	Generator string `json:"generator"`
}

type jobMetrics struct {
	running  *prometheus.GaugeVec
	progress *prometheus.GaugeVec
	total    *prometheus.CounterVec
}

// jobs runs the daemon's generation and retraining jobs, one at a time.
type jobs struct {
	d   *Daemon
	m   jobMetrics
	cat atomic.Pointer[catalogue.Catalogue] // last good catalogue; nil when none yet
	// catProblem says why no catalogue is in force (when cat is nil).
	catProblem atomic.Value // string

	mu      sync.Mutex
	ctx     context.Context // the runner's; nil until runJobs starts
	running string          // the job running, "" when idle
	since   time.Time
	wg      sync.WaitGroup
}

func newJobs(d *Daemon) *jobs {
	j := &jobs{d: d}
	f := func(c prometheus.Collector) prometheus.Collector { d.reg.MustRegister(c); return c }
	j.m = jobMetrics{
		running: f(prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "diagd_job_running",
			Help: "1 while a job (augment, retrain, cycle) runs."}, []string{"job"})).(*prometheus.GaugeVec),
		progress: f(prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "diagd_job_progress_ratio",
			Help: "Completion of the running job's current phase, 0..1."}, []string{"job"})).(*prometheus.GaugeVec),
		total: f(prometheus.NewCounterVec(prometheus.CounterOpts{Name: "diagd_jobs_total",
			Help: "Jobs finished, by job and outcome (ok, promoted, rejected, skipped, failed, cancelled)."}, []string{"job", "outcome"})).(*prometheus.CounterVec),
	}
	for _, n := range []string{jobAugment, jobRetrain, jobCycle} {
		j.m.running.WithLabelValues(n).Set(0)
		j.m.progress.WithLabelValues(n).Set(0)
	}
	if d.cfg.Catalogue == "" {
		j.catProblem.Store("no defect catalogue configured (set DIAGD_CATALOGUE)")
	} else {
		j.catProblem.Store("the defect catalogue " + d.cfg.Catalogue + " is not loaded yet")
	}
	return j
}

// registerJobCommands wires the augment, retrain and cycle commands. They answer at
// once (started, or why not); progress and the outcome come as events.
func (d *Daemon) registerJobCommands() {
	for _, name := range []string{jobAugment, jobRetrain, jobCycle} {
		d.client.HandleCommand(name, func(_ context.Context, payload []byte) (any, error) {
			var req struct {
				jobOptions
				ID json.RawMessage `json:"id"`
			}
			if len(payload) > 0 {
				if err := decodeStrict(payload, &req); err != nil {
					return nil, fmt.Errorf("%w: %s wants {\"n\": N, \"generator\": \"memseg\"|\"diag\"} (both optional): %v", errBadCommand, name, err)
				}
			}
			if name == jobRetrain && (req.N != 0 || req.Generator != "") {
				return nil, fmt.Errorf("%w: retrain takes no n or generator", errBadCommand)
			}
			return d.jobs.start(name, req.jobOptions)
		})
	}
}

// runJobs watches the catalogue and runs the schedule until ctx ends, then waits for
// the running job to stop (jobs check ctx between images and batches).
func (j *jobs) runJobs(ctx context.Context) {
	j.mu.Lock()
	j.ctx = ctx
	j.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); j.watchCatalogue(ctx) }()
	if every := j.d.cfg.RetrainEvery; every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
	loop:
		for {
			select {
			case <-ctx.Done():
				break loop
			case <-t.C:
				if _, err := j.start(jobCycle, jobOptions{}); err != nil {
					j.d.log.Warn("scheduled cycle not started", "reason", err)
					if !errors.Is(err, errBusy) {
						j.d.client.Event(jobCycle, map[string]any{"job": jobCycle, "phase": "finish", "outcome": "skipped",
							"reason": err.Error(), "scheduled": true})
						j.m.total.WithLabelValues(jobCycle, "skipped").Inc()
					}
				}
			}
		}
	}
	<-ctx.Done()
	wg.Wait()
	j.wg.Wait()
}

// watchCatalogue keeps the last good catalogue in force. An invalid (or missing)
// catalogue at start does not stop the daemon: it is reported and retried every few
// seconds until it loads, then watched for edits.
func (j *jobs) watchCatalogue(ctx context.Context) {
	path := j.d.cfg.Catalogue
	if path == "" {
		return
	}
	lastBad := ""
	for {
		w, err := catalogue.Watch(ctx, path, catalogue.WatchOptions{Log: j.d.log, OnEvent: j.onCatalogueEvent})
		if err == nil {
			j.onCatalogueEvent(catalogue.Event{Time: time.Now(), File: path, Catalogue: w.Current()})
			<-ctx.Done()
			w.Close()
			return
		}
		if msg := err.Error(); msg != lastBad {
			lastBad = msg
			j.d.log.Error("defect catalogue not loaded; frames are still judged, jobs that need it wait", "file", path, "err", err)
			j.onCatalogueEvent(catalogue.Event{Time: time.Now(), File: path, Err: err})
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

// onCatalogueEvent publishes an applied edit (retained state + event) or a rejected one
// (event with file:line:col problems; the last good catalogue stays).
func (j *jobs) onCatalogueEvent(e catalogue.Event) {
	if e.Applied() {
		c := e.Catalogue
		j.cat.Store(c)
		prompts := 0
		kinds := make([]string, 0, len(c.Kinds))
		for _, k := range c.Kinds {
			kinds = append(kinds, k.Name)
			prompts += len(k.Prompts)
		}
		j.d.client.SetState("catalogue", map[string]any{"file": c.Path, "kinds": kinds, "prompts": prompts,
			"digest": c.Digest, "loaded_at": e.Time.UTC()})
		j.d.client.Event("config", map[string]any{"file": c.Path, "ok": true, "kinds": kinds, "digest": c.Digest})
		return
	}
	if e.Err == nil {
		return
	}
	var problems []string
	for _, p := range e.Problems() {
		problems = append(problems, p.Error())
	}
	if len(problems) == 0 {
		problems = []string{e.Err.Error()}
	}
	if j.cat.Load() == nil {
		j.catProblem.Store(fmt.Sprintf("the defect catalogue %s is invalid and none was loaded before: %s", e.File, e.Err))
	} else {
		j.d.log.Error("defect catalogue edit rejected; the last good catalogue stays in force", "file", e.File, "err", e.Err)
	}
	j.d.client.Event("config", map[string]any{"file": e.File, "ok": false, "problems": problems,
		"kept_last_good": j.cat.Load() != nil})
}

// catalogue returns the catalogue in force, or why there is none.
func (j *jobs) catalogue() (*catalogue.Catalogue, error) {
	if c := j.cat.Load(); c != nil {
		return c, nil
	}
	return nil, errors.New(j.catProblem.Load().(string))
}

// start begins a job unless one is running or it cannot run; it returns at once.
func (j *jobs) start(name string, o jobOptions) (any, error) {
	if err := j.precheck(name, &o); err != nil {
		return nil, err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.ctx == nil || j.ctx.Err() != nil {
		return nil, errors.New("the daemon is not running jobs (starting or stopping)")
	}
	if j.running != "" {
		return nil, fmt.Errorf("%w: %s running since %s", errBusy, j.running, j.since.UTC().Format(time.RFC3339))
	}
	j.running, j.since = name, time.Now()
	j.d.client.SetState("job", map[string]any{"running": name, "since": j.since.UTC(), "options": o})
	ctx := j.ctx
	j.wg.Add(1)
	go func() {
		defer j.wg.Done()
		if err := lowerJobPriority(); err != nil {
			j.d.log.Warn("job runs at normal priority", "job", name, "err", err)
		}
		j.run(ctx, name, o)
		j.mu.Lock()
		j.running = ""
		j.d.client.SetState("job", map[string]any{"running": nil, "last": name, "finished": time.Now().UTC()})
		j.mu.Unlock()
	}()
	return map[string]any{"job": name, "started": j.since.UTC(), "options": o}, nil
}

// precheck refuses, with the reason, a job that cannot do anything useful now, and
// fills in the defaults.
func (j *jobs) precheck(name string, o *jobOptions) error {
	cfg := j.d.cfg
	if name != jobRetrain {
		if o.N == 0 {
			o.N = cfg.AugmentN
		}
		if o.N < 1 || o.N > 100000 {
			return fmt.Errorf("%w: n %d is outside 1..100000", errBadCommand, o.N)
		}
		switch o.Generator {
		case "":
			o.Generator = cfg.Generator
		case "memseg":
		case "diag":
			if cfg.SDXLDir == "" {
				return fmt.Errorf("%w: generator diag needs DIAGD_SDXL_DIR (an SDXL-inpainting ONNX export)", errBadCommand)
			}
		default:
			return fmt.Errorf("%w: generator %q: want memseg or diag", errBadCommand, o.Generator)
		}
		if _, err := j.catalogue(); err != nil {
			return fmt.Errorf("cannot generate: %w", err)
		}
	}
	negs, err := augment.ListNegativePool(filepath.Join(cfg.DataDir, dataset.NegativesDir))
	if err != nil {
		return err
	}
	if len(negs) < minNegatives {
		return fmt.Errorf("only %d good images in %s (at least %d needed; set DIAGD_NEGATIVES_KEEP to collect passing frames)",
			len(negs), filepath.Join(cfg.DataDir, dataset.NegativesDir), minNegatives)
	}
	return nil
}

// run runs one job and records its outcome.
func (j *jobs) run(ctx context.Context, name string, o jobOptions) {
	switch name {
	case jobAugment:
		j.augment(ctx, o)
	case jobRetrain:
		j.retrain(ctx)
	case jobCycle:
		j.m.running.WithLabelValues(jobCycle).Set(1)
		defer j.m.running.WithLabelValues(jobCycle).Set(0)
		start := time.Now()
		j.d.client.Event(jobCycle, map[string]any{"job": jobCycle, "phase": "start", "n": o.N, "generator": o.Generator})
		outcome, reason := j.augment(ctx, o)
		if outcome == "ok" {
			outcome, reason = j.retrain(ctx)
		} else {
			reason = "generation " + outcome + ": " + reason
		}
		j.m.total.WithLabelValues(jobCycle, outcome).Inc()
		j.d.client.Event(jobCycle, map[string]any{"job": jobCycle, "phase": "finish", "outcome": outcome,
			"reason": reason, "elapsed_s": time.Since(start).Seconds()})
	}
}

// reporter throttles a job's progress events and keeps its progress gauge current.
type reporter struct {
	j     *jobs
	job   string
	start time.Time
	last  time.Time
	phase string
}

func (r *reporter) progress(phase string, done, total int, fraction float64, extra map[string]any) {
	r.j.m.progress.WithLabelValues(r.job).Set(fraction)
	now := time.Now()
	if phase == r.phase && now.Sub(r.last) < progressEvery && !(total > 0 && done == total) {
		return
	}
	if phase != r.phase {
		r.start = now
	}
	r.phase, r.last = phase, now
	ev := map[string]any{"job": r.job, "phase": phase, "done": done, "total": total, "fraction": fraction}
	if fraction > 0 && fraction < 1 {
		el := now.Sub(r.start).Seconds()
		ev["eta_s"] = el * (1 - fraction) / fraction
	}
	for k, v := range extra {
		ev[k] = v
	}
	r.j.d.client.Event(r.job, ev)
}

func (j *jobs) finish(job string, ev map[string]any) {
	ev["job"], ev["phase"] = job, "finish"
	j.m.total.WithLabelValues(job, ev["outcome"].(string)).Inc()
	j.m.progress.WithLabelValues(job).Set(0)
	j.d.client.Event(job, ev)
}

func (j *jobs) jobSession() ortenv.Options {
	return j.d.cfg.Session(j.d.cfg.JobThreads)
}

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

// retrain trains a candidate on DATA_DIR (negatives, real defects, accepted synthetic
// defects), evaluates it against the serving model and promotes it when it is at
// least as good (within PROMOTE_TOLERANCE). Outcome: promoted, rejected, failed,
// cancelled.
func (j *jobs) retrain(ctx context.Context) (outcome, reason string) {
	j.m.running.WithLabelValues(jobRetrain).Set(1)
	defer j.m.running.WithLabelValues(jobRetrain).Set(0)
	cfg, log := j.d.cfg, j.d.log
	start := time.Now()
	j.d.client.Event(jobRetrain, map[string]any{"job": jobRetrain, "phase": "start", "registry": cfg.Registry})
	ev := map[string]any{"registry": cfg.Registry}
	done := func(out string, err error) (string, string) {
		ev["outcome"], ev["elapsed_s"] = out, time.Since(start).Seconds()
		if err != nil {
			ev["error"] = err.Error()
			log.Warn("retrain job "+out, "err", err)
		} else {
			log.Info("retrain job done", "outcome", out, "version", ev["version"], "reason", ev["reason"])
		}
		j.finish(jobRetrain, ev)
		if err != nil {
			return out, err.Error()
		}
		r, _ := ev["reason"].(string)
		return out, r
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
		ev["imported_base"] = v
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
	ev["mode"] = mode
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
	ev["validation"] = valName
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
			extra := map[string]any{}
			if p.Message != "" {
				extra["message"] = p.Message
			}
			if p.Stage == "train" {
				extra["loss"] = p.Loss
			}
			rep.progress(p.Stage, p.Done, p.Total, frac, extra)
		},
	})
	if err != nil {
		if ctx.Err() != nil {
			return done("cancelled", err)
		}
		return done("failed", err)
	}
	ev["version"], ev["promoted"], ev["reason"] = out.Version, out.Promoted, out.Decision.Reason
	ev["candidate_ap"] = out.Candidate.AP
	if out.Serving != nil {
		ev["serving_ap"], ev["serving_version"] = out.Serving.AP, out.Decision.Serving
	}
	ev["threshold"] = out.Decision.Threshold
	ev["pr_curve"] = filepath.Join(out.Dir, retrain.PRCurveFile)
	ev["train_images"], ev["validation_images"] = len(train.Items), out.Candidate.N
	if !out.Promoted {
		return done("rejected", nil)
	}
	if servedByLink {
		ev["served"] = "the model watcher swaps it in within DIAGD_MODEL_POLL"
	} else {
		ev["served"] = "not served: DIAGD_MODEL_DIR is not the registry's current link " + filepath.Join(reg.Dir, registry.CurrentLink)
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
