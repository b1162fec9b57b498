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
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/diagd/diagd/augment"
	"github.com/diagd/diagd/augment/catalogue"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/retrain/dataset"
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
// DATA_DIR/validation (retrain.ValidationDir) does not exist (as `diagd train`'s default).
const validationFraction = 0.2

// progressEvery throttles progress events: at most one per second within a phase,
// plus one when a phase begins and one when it completes.
const progressEvery = time.Second

// Sub-folders of DATA_DIR the jobs use.
const (
	pendingDir  = "synthetic/pending"   // batches awaiting review (AUTO_ACCEPT=false)
	incomingDir = "synthetic/.incoming" // batches being generated; renamed when done
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
	p, _ := ortenv.ParseProvider(j.d.cfg.Provider)
	return ortenv.Options{Provider: p, DeviceID: j.d.cfg.DeviceID, Threads: j.d.cfg.JobThreads}
}
