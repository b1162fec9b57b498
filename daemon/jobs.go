package daemon

// The job runner: one job at a time, on a schedule or on MQTT command: "augment" (paint
// synthetic defects into pooled negatives, job_augment.go), "retrain" (train a
// candidate, evaluate it against the serving model, promote it when it is at least as
// good, job_retrain.go) and "cycle" (both). A promotion moves the registry's current
// link; when MODEL_DIR is that link (the default), the model watcher hot-swaps the new
// model in. The defect catalogue the jobs use is kept in force by catalogue.go.
//
// Jobs run in the daemon's process beside frame judging, on a thread at nice 10
// (internal/threadprio) with JOB_THREADS ONNX Runtime threads (default 1, which runs on
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

	"github.com/diagd/diagd/augment"
	"github.com/diagd/diagd/augment/catalogue"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/internal/threadprio"
	"github.com/diagd/diagd/mqtt"
	"github.com/diagd/diagd/retrain"
	"github.com/diagd/diagd/retrain/dataset"
)

// Job names (MQTT commands, metric labels).
const (
	jobAugment = "augment"
	jobRetrain = "retrain"
	jobCycle   = "cycle"
)

// Job outcomes (events, metric labels).
const (
	outcomeOK        = "ok"
	outcomeSkipped   = "skipped"
	outcomeFailed    = "failed"
	outcomeCancelled = "cancelled"
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

// jobKind is one kind of job: its check before it starts (which fills in defaults) and
// its body, which returns the outcome and, when not ok, the reason.
type jobKind struct {
	precheck func(o *jobOptions) error
	run      func(ctx context.Context, o jobOptions) (outcome, reason string)
}

// jobs runs the daemon's generation and retraining jobs, one at a time.
type jobs struct {
	d     *Daemon
	kinds map[string]jobKind
	now   func() time.Time // the clock batch names are made from

	cat atomic.Pointer[catalogue.Catalogue] // last good catalogue; nil when none yet
	// catProblem says why no catalogue is in force (when cat is nil).
	catProblem atomic.Pointer[string]
	watcher    atomic.Pointer[catalogue.Watcher]
	catKick    chan struct{} // retry loading the catalogue now (SIGHUP, reload)

	mu       sync.Mutex
	ctx      context.Context // the runner's; nil until runJobs starts
	running  string          // the job running, "" when idle
	since    time.Time
	cancel   context.CancelFunc // cancels the running job (the console's cancel button)
	last     string             // the job that ran last, and when it finished
	lastEnd  time.Time
	wg       sync.WaitGroup
	lastSkip string // the reason the last scheduled cycle was skipped, logged once

	retrainProgress func(retrain.Progress) // tests: sees (and may pause) a retraining run's progress
}

func newJobs(d *Daemon) *jobs {
	j := &jobs{d: d, now: time.Now, catKick: make(chan struct{}, 1)}
	j.kinds = map[string]jobKind{
		jobAugment: {precheck: j.precheckGenerate, run: j.augment},
		jobRetrain: {precheck: j.precheckRetrain, run: func(ctx context.Context, _ jobOptions) (string, string) { return j.retrain(ctx) }},
		jobCycle:   {precheck: j.precheckGenerate, run: j.cycle},
	}
	for n := range j.kinds {
		d.m.jobRunning.WithLabelValues(n).Set(0)
		d.m.jobProgress.WithLabelValues(n).Set(0)
	}
	if d.cfg.Catalogue == "" {
		j.setCatProblem("no defect catalogue configured (set DIAGD_CATALOGUE)")
	} else {
		j.setCatProblem("the defect catalogue " + d.cfg.Catalogue + " is not loaded yet")
	}
	return j
}

// registerJobCommands wires the augment, retrain and cycle commands. They answer at
// once (started, or why not); progress and the outcome come as events.
func (d *Daemon) registerJobCommands() {
	for _, name := range []string{jobAugment, jobRetrain, jobCycle} {
		scope := mqtt.ScopeModel // retrain and cycle may promote a new model
		if name == jobAugment {
			scope = mqtt.ScopeJob
		}
		d.handle(name, scope, func(_ context.Context, payload []byte) (any, error) {
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
		periodically(ctx, every, j.scheduled)
	}
	<-ctx.Done()
	wg.Wait()
	j.wg.Wait()
}

// scheduled starts the scheduled cycle, or reports why it cannot run (each time as an
// event and a metric; in the log only when the reason changes).
func (j *jobs) scheduled() {
	_, err := j.start(jobCycle, jobOptions{})
	if err == nil || errors.Is(err, errBusy) {
		j.lastSkip = ""
		if err != nil {
			j.d.log.Info("scheduled cycle not started: a job is running", "reason", err)
		}
		return
	}
	if err.Error() != j.lastSkip {
		j.d.log.Warn("scheduled cycle skipped (logged again only when the reason changes)", "reason", err)
		j.lastSkip = err.Error()
	}
	j.d.client.Event(jobCycle, jobFinish{Job: jobCycle, Phase: "finish", Outcome: outcomeSkipped,
		Reason: err.Error(), Scheduled: true})
	j.d.m.jobsTotal.WithLabelValues(jobCycle, outcomeSkipped).Inc()
}

// start begins a job unless one is running or it cannot run; it returns at once.
func (j *jobs) start(name string, o jobOptions) (any, error) {
	kind, ok := j.kinds[name]
	if !ok {
		return nil, fmt.Errorf("%w: no job %q", errBadCommand, name)
	}
	if err := kind.precheck(&o); err != nil {
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
	since := j.since.UTC()
	j.d.client.SetState("job", jobState{Running: &name, Since: &since, Options: &o})
	ctx, cancel := context.WithCancel(j.ctx)
	j.cancel = cancel
	j.wg.Add(1)
	go func() {
		defer j.wg.Done()
		defer cancel()
		if err := threadprio.Lower(); err != nil {
			j.d.log.Warn("job runs at normal priority", "job", name, "err", err)
		}
		j.run(ctx, name, kind, o)
		j.mu.Lock()
		finished := time.Now().UTC()
		j.running, j.last, j.lastEnd = "", name, finished
		j.d.client.SetState("job", jobState{Last: name, Finished: &finished})
		j.mu.Unlock()
	}()
	return jobStarted{Job: name, Started: since, Options: o}, nil
}

// run runs one job. A panic in it fails the job (event, metric), not the process.
func (j *jobs) run(ctx context.Context, name string, kind jobKind, o jobOptions) {
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			err := j.d.panicked("job "+name, r)
			j.d.m.jobRunning.WithLabelValues(name).Set(0)
			j.finished(name, outcomeFailed, jobFinish{Job: name, Phase: "finish", Outcome: outcomeFailed,
				Reason: err.Error(), ElapsedS: time.Since(start).Seconds()})
		}
	}()
	kind.run(ctx, o)
}

// cycle generates a batch, then retrains when generation succeeded.
func (j *jobs) cycle(ctx context.Context, o jobOptions) (string, string) {
	j.d.m.jobRunning.WithLabelValues(jobCycle).Set(1)
	defer j.d.m.jobRunning.WithLabelValues(jobCycle).Set(0)
	start := time.Now()
	j.d.client.Event(jobCycle, jobStart{Job: jobCycle, Phase: "start", N: o.N, Generator: o.Generator})
	outcome, reason := outcomeOK, ""
	if run, ok := retrain.InterruptedRun(j.d.cfg.Registry); ok {
		// New synthetic images would not join a resumed run: finish it first.
		j.d.log.Info("cycle: generation skipped to continue an interrupted retraining run", "run", run)
	} else {
		outcome, reason = j.augment(ctx, o)
	}
	if outcome == outcomeOK {
		outcome, reason = j.retrain(ctx)
	} else {
		reason = "generation " + outcome + ": " + reason
	}
	j.finished(jobCycle, outcome, jobFinish{Job: jobCycle, Phase: "finish", Outcome: outcome, Reason: reason,
		ElapsedS: time.Since(start).Seconds()})
	return outcome, reason
}

// precheckGenerate refuses, with the reason, a generation that cannot do anything
// useful now, and fills in the defaults.
func (j *jobs) precheckGenerate(o *jobOptions) error {
	cfg := j.d.cfg
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
		return fmt.Errorf("%w: generator %q: want memseg or diag", errBadCommand, clip(o.Generator, 32))
	}
	if _, err := j.catalogue(); err != nil {
		return fmt.Errorf("cannot generate: %w", err)
	}
	return j.precheckRetrain(o)
}

// precheckRetrain refuses a job with too few good images.
func (j *jobs) precheckRetrain(*jobOptions) error {
	dir := filepath.Join(j.d.cfg.DataDir, dataset.NegativesDir)
	negs, err := augment.ListNegativePool(dir)
	if err != nil {
		return err
	}
	if len(negs) < minNegatives {
		return fmt.Errorf("only %d good images in %s (at least %d needed; set DIAGD_NEGATIVES_KEEP to collect passing frames)",
			len(negs), dir, minNegatives)
	}
	return nil
}

// reporter throttles a job's progress events and keeps its progress gauge current.
type reporter struct {
	j     *jobs
	job   string
	start time.Time
	last  time.Time
	phase string
}

// progress publishes p (Phase, Done, Total, Fraction and the job's own fields set) unless
// one went out for this phase within progressEvery; the first and the last of a phase
// always go out.
func (r *reporter) progress(p jobProgress) {
	r.j.d.m.jobProgress.WithLabelValues(r.job).Set(p.Fraction)
	now := time.Now()
	if p.Phase == r.phase && now.Sub(r.last) < progressEvery && !(p.Total > 0 && p.Done == p.Total) {
		return
	}
	if p.Phase != r.phase {
		r.start = now
	}
	r.phase, r.last = p.Phase, now
	p.Job = r.job
	if p.EtaS == nil && p.Fraction > 0 && p.Fraction < 1 {
		eta := now.Sub(r.start).Seconds() * (1 - p.Fraction) / p.Fraction
		p.EtaS = &eta
	}
	r.j.d.client.Event(r.job, p)
}

// finished counts a job's outcome, resets its progress gauge and publishes its last
// event.
func (j *jobs) finished(job, outcome string, ev any) {
	j.d.m.jobsTotal.WithLabelValues(job, outcome).Inc()
	j.d.m.jobProgress.WithLabelValues(job).Set(0)
	j.d.client.Event(job, ev)
}

func (j *jobs) jobSession() ortenv.Options {
	return j.d.cfg.Session(j.d.cfg.JobThreads)
}
