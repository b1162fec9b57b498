// Package daemon wires the inspection path that runs all shift: camera sources →
// detector → durable outbox → MQTT, with model hot-swap, per-camera state, commands,
// health endpoints, metrics, the systemd watchdog, and the generation and retraining
// jobs. It schedules, reports and wires; the work itself is done by capture, detect,
// mqtt, augment and retrain.
//
// Files: daemon.go (wiring and lifecycle), judge.go (the judge loop), after.go (work
// after a verdict is durable), model.go (the model watcher), health.go (watchdog,
// liveness), http.go, status.go, commands.go, payloads.go (every MQTT payload),
// jobs.go (the job runner) with one file per job kind, catalogue.go, negatives.go.
package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"gocv.io/x/gocv"

	"github.com/diagd/diagd/capture"
	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/config"
	"github.com/diagd/diagd/mqtt"
	"github.com/diagd/diagd/mqtt/outbox"
)

// Daemon is one running inspection station.
type Daemon struct {
	cfg     config.Config
	log     *slog.Logger
	reg     *prometheus.Registry
	m       *metrics
	det     *detect.Detector
	ob      *outbox.Outbox
	client  *mqtt.Client
	sources []capture.Source
	byName  map[string]capture.Source
	frames  chan capture.Frame
	// judgeFn runs the detector: d.det.Judge. Tests replace it to make the model hang
	// or panic; everything around it is the real path.
	judgeFn func([]gocv.Mat, []detect.Result) error

	after     *afterBatch // negatives and after-actions, off the judge's goroutine
	negatives keeper      // nil when NEGATIVES_KEEP is 0
	rejected  *rejectLimiter
	jobs      *jobs // generation and retraining, one at a time (jobs.go)

	modelMu      sync.Mutex
	modelSig     string // identity of the model folder last loaded (see modelSignature)
	modelProblem string // the last problem reported about MODEL_DIR, not repeated every poll

	outboxFull atomic.Bool
	beat       atomic.Int64 // unix nanos of the judge loop's last sign of life (watchdog)
	lastJudge  atomic.Int64 // unix nanos of the last successful model call
	health     healthCache

	stopping atomic.Bool
	tally    tally
	httpAddr atomic.Value // string: the real listen address (see HTTPAddr)

	console *consoleBackend // the web console (console.go); nil when off
}

// New prepares everything that can fail on bad configuration before anything runs:
// sources, outbox, MQTT client. The model may be absent: verdicts are then "unknown".
func New(log *slog.Logger, cfg config.Config) (*Daemon, error) {
	d := &Daemon{cfg: cfg, log: log, reg: prometheus.NewRegistry(), byName: map[string]capture.Source{}}
	d.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	d.m = newMetrics(d.reg)
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("%s_DATA_DIR: %w", config.Prefix, err)
	}
	if cfg.Demo {
		if err := d.prepareDemo(); err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
	}
	d.det = detect.New(log, detect.Options{
		Session:  cfg.Session(cfg.Threads),
		MaxBatch: cfg.BatchMax, Workers: 1,
	})
	d.judgeFn = d.det.Judge
	d.rejected = newRejectLimiter(rejectedEvery)
	if err := d.newSources(); err != nil {
		return nil, err
	}
	d.frames = make(chan capture.Frame, 2*d.cfg.BatchMax)
	var err error
	d.ob, err = outbox.Open(filepath.Join(cfg.DataDir, "outbox"), outbox.Options{
		MaxRecords: cfg.OutboxMaxRecords, MaxBytes: cfg.OutboxMaxBytes, Log: log,
		OnNearFull: func(s outbox.Stats, near bool) {
			log.Warn("outbox near its limit", "near", near, "records", s.Records, "bytes", s.Bytes,
				"max_records", s.MaxRecords, "max_bytes", s.MaxBytes)
			d.m.outboxNearFull.Set(b2f(near))
		},
	})
	if err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	d.client, err = mqtt.New(log, mqttConfig(cfg), d.ob, d.reg)
	if err != nil {
		d.ob.Close()
		return nil, err
	}
	if cfg.NegativesKeep > 0 {
		d.negatives = newNegativePool(filepath.Join(cfg.DataDir, "negatives"), cfg.NegativesKeep)
	}
	d.after = newAfterBatch(d, AfterQueueBatches)
	d.jobs = newJobs(d)
	if d.console, err = newConsole(d); err != nil {
		d.ob.Close()
		return nil, err
	}
	d.registerCommands()
	return d, nil
}

// newSources builds the camera sources; folder sources keep their journals under
// DATA_DIR/state/sources unless they name a folder.
func (d *Daemon) newSources() error {
	srcCfgs, err := capture.ParseSources(d.cfg.Sources)
	if err != nil {
		return fmt.Errorf("%s_SOURCES: %w", config.Prefix, err)
	}
	for _, sc := range srcCfgs {
		if sc.Kind == capture.KindFolder && sc.StateDir == "" {
			sc.StateDir = filepath.Join(d.cfg.DataDir, "state", "sources", sc.Name)
		}
		s, err := capture.New(d.log, sc, d.captureHooks())
		if err != nil {
			return fmt.Errorf("%s_SOURCES: %w", config.Prefix, err)
		}
		d.sources = append(d.sources, s)
		d.byName[s.Name()] = s
		// Every camera's series exist from the start (at 0), so rate() and alerts on
		// them work before the first bad file or reconnect.
		d.m.badFiles.WithLabelValues(s.Name())
		d.m.reconnects.WithLabelValues(s.Name())
		d.m.dropped.WithLabelValues(s.Name())
		d.m.cameraUp.WithLabelValues(s.Name())
	}
	return nil
}

// Run runs until ctx is cancelled, then shuts down (see shutdown).
func (d *Daemon) Run(ctx context.Context) error {
	d.log.Info("diagd starting", "station", d.cfg.Station, "config", d.cfg.Summary())
	// The judge loop starts below; until its first turn, starting counts as life (else
	// /livez would call a daemon that has not yet turned stuck since 1970).
	d.alive()
	// Listen first: a busy port fails the start before anything is announced online.
	httpErr := make(chan error, 1)
	stopHTTP := func(context.Context) error { return nil }
	if d.cfg.HTTPAddr != "" {
		var err error
		if stopHTTP, err = d.serveHTTP(httpErr); err != nil {
			d.after.close()
			d.ob.Close()
			d.det.Close()
			return err
		}
	}
	d.client.SetState("config", d.cfg.Summary())
	d.loadModel(true)
	d.client.Start()

	stopSources := d.startSources()
	judgeDone := make(chan struct{})
	go func() {
		defer close(judgeDone)
		d.judgeLoop()
		d.after.close() // every frame judged has had its after-actions
	}()
	bg, stopBG := context.WithCancel(context.Background())
	var bgWG sync.WaitGroup
	d.goLoop(bg, &bgWG, "model watcher", d.watchModel)
	d.goLoop(bg, &bgWG, "status", d.publishStatusLoop)
	d.goLoop(bg, &bgWG, "watchdog", d.watchdog)
	bgWG.Add(1)
	go func() { defer bgWG.Done(); d.jobs.runJobs(bg) }() // catalogue, schedule, job commands
	bgWG.Add(1)
	go func() { defer bgWG.Done(); d.console.run(bg) }() // failed frames ring, live frames
	notify("READY=1\nSTATUS=judging frames")

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-httpErr:
	}
	d.shutdown(stopSources, judgeDone, stopBG, &bgWG, stopHTTP)
	return runErr
}

// startSources runs every source into d.frames; the returned func stops them and
// returns once none will send again.
func (d *Daemon) startSources() func() {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, s := range d.sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := d.runSource(ctx, s)
			if err != nil {
				d.log.Error("source stopped", "camera", s.Name(), "err", err)
				d.publishCamera(s.Status())
			}
		}()
	}
	return func() { cancel(); wg.Wait() }
}

// runSource runs one source; a panic in it stops that camera, not the process.
func (d *Daemon) runSource(ctx context.Context, s capture.Source) (err error) {
	defer d.recovered("source "+s.Name(), &err)
	return s.Run(ctx, d.frames)
}

// shutdown stops in order: no new frames; the frames in flight are judged and made
// durable; the jobs are cancelled (an ONNX Runtime run in flight is terminated where
// the job's code passes its context) while the outbox is flushed to the broker at once,
// not after them; "stopped" is published and the client disconnects. The whole takes at
// most SHUTDOWN_TIMEOUT after the frames in flight are done, even with a broker that
// does not answer or a job that does not stop: what is left then stays on disk (the
// outbox, unjudged files) for the next start.
func (d *Daemon) shutdown(stopSources func(), judgeDone <-chan struct{}, stopBG func(), bgWG *sync.WaitGroup,
	stopHTTP func(context.Context) error) {
	d.stopping.Store(true)
	notify("STOPPING=1\nSTATUS=stopping: finishing frames in flight, flushing the outbox")
	d.log.Info("diagd stopping: no new frames; finishing frames in flight")
	stopSources()
	close(d.frames) // sources are done: the judge loop drains what they delivered
	<-judgeDone
	stopBG()
	deadline := time.Now().Add(d.cfg.ShutdownTimeout)
	// Leave Close a moment after the flush to publish "stopped" and disconnect.
	flushCtx, cancel := context.WithDeadline(context.Background(), deadline.Add(-closeReserve(d.cfg.ShutdownTimeout)))
	defer cancel()
	clientClosed := waitChan(func() {
		if err := d.client.Close(flushCtx); err != nil {
			d.log.Warn("outbox not fully flushed; the rest is delivered on the next start", "err", err)
		}
	})
	bgDone := waitChan(bgWG.Wait)
	hardCtx, hardCancel := context.WithDeadline(context.Background(), deadline)
	defer hardCancel()
	closed := waitUntil(hardCtx, clientClosed)
	if !closed {
		d.log.Error("the MQTT client did not close in time (the broker does not answer); leaving without it",
			"shutdown_timeout", d.cfg.ShutdownTimeout)
	}
	bgStopped := waitUntil(hardCtx, bgDone)
	if !bgStopped {
		d.log.Error("a job or background task did not stop in time; leaving it behind", "shutdown_timeout", d.cfg.ShutdownTimeout)
	}
	stopHTTP(hardCtx)
	if closed {
		// Only once the client no longer reads it; otherwise the outbox, fsynced on every
		// append, is simply left as a SIGKILL would leave it.
		if err := d.ob.Close(); err != nil {
			d.log.Error("outbox close", "err", err)
		}
	}
	if bgStopped && !d.health.probing.Load() {
		d.det.Close() // nothing judges any more (a hung probe would make Close wait for it)
	}
	d.log.Info("diagd stopped")
}

// closeReserve is the part of the shutdown timeout kept for publishing "stopped" and
// disconnecting after the outbox flush.
func closeReserve(timeout time.Duration) time.Duration { return min(2*time.Second, timeout/4) }

// waitChan runs f in a goroutine and returns a channel closed when it returns.
func waitChan(f func()) <-chan struct{} {
	c := make(chan struct{})
	go func() { defer close(c); f() }()
	return c
}

// waitUntil waits for c or ctx; it reports whether c closed.
func waitUntil(ctx context.Context, c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	case <-ctx.Done():
		select {
		case <-c:
			return true
		default:
			return false
		}
	}
}

// Reload loads MODEL_DIR now and re-reads the defect catalogue: what SIGHUP and the
// reload command do. why is logged.
func (d *Daemon) Reload(why string) {
	d.log.Info(why+": reloading the model and the defect catalogue", "model_dir", d.cfg.ModelDir, "catalogue", d.cfg.Catalogue)
	if err := d.loadModel(false); err != nil {
		d.log.Warn(why+": model not reloaded", "err", err)
	}
	d.jobs.reloadCatalogue()
}

// goLoop runs loop until ctx ends. A panic in it is logged and counted, and the loop
// starts again a second later: a background task's bug must not stop the station.
func (d *Daemon) goLoop(ctx context.Context, wg *sync.WaitGroup, name string, loop func(context.Context)) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			var err error
			func() {
				defer d.recovered(name, &err)
				loop(ctx)
			}()
			if err == nil {
				return // returned normally: ctx ended (or the loop has nothing to do)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}()
}

// recovered, deferred, turns a panic into *errp (when errp is not nil), logged with its
// stack and counted in diagd_panics_recovered_total{where}. Go exits with status 2 on
// an unrecovered panic; a bad frame or a job's bug must not stop the station.
func (d *Daemon) recovered(where string, errp *error) {
	r := recover()
	if r == nil {
		return
	}
	err := d.panicked(where, r)
	if errp != nil {
		*errp = err
	}
}

// panicked logs and counts a recovered panic and returns it as an error.
func (d *Daemon) panicked(where string, r any) error {
	d.m.panics.WithLabelValues(where).Inc()
	d.log.Error("panic recovered", "where", where, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	return fmt.Errorf("internal error in %s: %v", where, r)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
