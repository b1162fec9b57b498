// Package daemon wires the inspection path that runs all shift: camera sources →
// detector → durable outbox → MQTT, with model hot-swap, per-camera state, commands,
// health endpoints, metrics and the systemd watchdog.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

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

	modelMu    sync.Mutex
	modelSig   string // identity of the model folder last loaded (see modelSignature)
	outboxFull atomic.Bool
	beat       atomic.Int64 // unix nanos of the judge loop's last turn (watchdog)
	lastJudge  atomic.Int64 // unix nanos of the last successful model call
	negatives  *negativePool
	jobs       *jobs // generation and retraining, one at a time (jobs.go)

	stopping atomic.Bool
	tally    tally
	httpAddr atomic.Value // string: the real listen address (see HTTPAddr)
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
	srcCfgs, err := capture.ParseSources(d.cfg.Sources)
	if err != nil {
		return nil, fmt.Errorf("%s_SOURCES: %w", config.Prefix, err)
	}
	for _, sc := range srcCfgs {
		if sc.Kind == capture.KindFolder && sc.StateDir == "" {
			sc.StateDir = filepath.Join(cfg.DataDir, "state", "sources", sc.Name)
		}
		s, err := capture.New(log, sc, d.captureHooks())
		if err != nil {
			return nil, fmt.Errorf("%s_SOURCES: %w", config.Prefix, err)
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
	d.frames = make(chan capture.Frame, 2*cfg.BatchMax)
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
	d.client, err = mqtt.New(log, mqtt.Config{
		Broker: cfg.MQTTBroker, Station: cfg.Station, TopicPrefix: cfg.MQTTPrefix,
		Username: cfg.MQTTUsername, Password: cfg.MQTTPassword,
		CAFile: cfg.MQTTCAFile, CertFile: cfg.MQTTCertFile, KeyFile: cfg.MQTTKeyFile,
	}, d.ob, d.reg)
	if err != nil {
		d.ob.Close()
		return nil, err
	}
	if cfg.NegativesKeep > 0 {
		d.negatives = newNegativePool(filepath.Join(cfg.DataDir, "negatives"), cfg.NegativesKeep)
	}
	d.jobs = newJobs(d)
	d.registerCommands()
	return d, nil
}

// Registry is the Prometheus registry /metrics serves.
func (d *Daemon) Registry() *prometheus.Registry { return d.reg }

// Run runs until ctx is cancelled, then shuts down in order: stop taking frames,
// finish the frames in flight, flush the outbox within the shutdown timeout, publish
// "stopped", disconnect.
func (d *Daemon) Run(ctx context.Context) error {
	d.log.Info("diagd starting", "station", d.cfg.Station, "config", d.cfg.Summary())
	// Listen first: a busy port fails the start before anything is announced online.
	httpErr := make(chan error, 1)
	stopHTTP := func(context.Context) error { return nil }
	if d.cfg.HTTPAddr != "" {
		var err error
		stopHTTP, err = d.serveHTTP(httpErr)
		if err != nil {
			d.ob.Close()
			d.det.Close()
			return err
		}
	}
	d.client.SetState("config", d.cfg.Summary())
	d.loadModel(true)
	d.client.Start()

	srcCtx, stopSources := context.WithCancel(context.Background())
	defer stopSources()
	var srcWG sync.WaitGroup
	for _, s := range d.sources {
		srcWG.Add(1)
		go func() {
			defer srcWG.Done()
			if err := s.Run(srcCtx, d.frames); err != nil {
				d.log.Error("source stopped", "camera", s.Name(), "err", err)
				d.publishCamera(s.Status())
			}
		}()
	}
	judgeDone := make(chan struct{})
	go func() {
		defer close(judgeDone)
		d.judgeLoop()
	}()

	bg, stopBG := context.WithCancel(context.Background())
	var bgWG sync.WaitGroup
	bgWG.Add(3)
	go func() { defer bgWG.Done(); d.watchModel(bg) }()
	go func() { defer bgWG.Done(); d.publishStatusLoop(bg) }()
	go func() { defer bgWG.Done(); d.watchdog(bg) }()
	bgWG.Add(1)
	go func() { defer bgWG.Done(); d.jobs.runJobs(bg) }() // catalogue, schedule, job commands
	notify("READY=1\nSTATUS=judging frames")

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-httpErr:
	}
	d.stopping.Store(true)
	notify("STOPPING=1\nSTATUS=stopping: finishing frames in flight, flushing the outbox")
	d.log.Info("diagd stopping: no new frames; finishing frames in flight")
	stopSources()
	srcWG.Wait()
	close(d.frames) // sources are done: the judge loop drains what they delivered
	<-judgeDone
	stopBG()
	bgWG.Wait()
	flushCtx, cancel := context.WithTimeout(context.Background(), d.cfg.ShutdownTimeout)
	defer cancel()
	if err := d.client.Close(flushCtx); err != nil {
		d.log.Warn("outbox not fully flushed; the rest is delivered on the next start", "err", err)
	}
	stopHTTP(flushCtx)
	if err := d.ob.Close(); err != nil {
		d.log.Error("outbox close", "err", err)
	}
	d.det.Close()
	d.log.Info("diagd stopped")
	return runErr
}

func (d *Daemon) captureHooks() capture.Hooks {
	return capture.Hooks{
		OnState:     d.publishCamera,
		OnReconnect: func(src string) { d.m.reconnects.WithLabelValues(src).Inc() },
		OnBadFile: func(src, file string, err error) {
			d.m.badFiles.WithLabelValues(src).Inc()
			d.log.Warn("bad image file skipped", "camera", src, "file", file, "err", err)
		},
		OnDrop: func(src string) { d.m.dropped.WithLabelValues(src).Inc() },
	}
}

func (d *Daemon) publishCamera(s capture.Status) {
	if d.client == nil {
		return // hooks may fire before the client exists
	}
	d.m.cameraUp.WithLabelValues(s.Name).Set(b2f(s.State == capture.StateOnline))
	d.m.cameraFPS.WithLabelValues(s.Name).Set(s.FPS)
	d.client.SetState("camera/"+s.Name, s)
}

// publishStatusLoop refreshes the retained per-camera state (fps, counters).
// It also logs a one-line summary, so whoever watches the terminal or the journal sees
// the station working without subscribing to MQTT.
func (d *Daemon) publishStatusLoop(ctx context.Context) {
	const every = 10 * time.Second
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for _, s := range d.sources {
				d.publishCamera(s.Status())
			}
			pass, fail, unknown := d.tally.take()
			md, _ := d.det.Metadata()
			d.log.Info("verdicts in the last "+every.String(), "pass", pass, "fail", fail, "unknown", unknown,
				"outbox", d.ob.Stats().Records, "mqtt_connected", d.client.Connected(), "model_version", md.ModelVersion)
		}
	}
}

// tally counts verdicts between two summary lines.
type tally struct{ pass, fail, unknown atomic.Int64 }

func (t *tally) add(verdict string) {
	switch verdict {
	case "pass":
		t.pass.Add(1)
	case "fail":
		t.fail.Add(1)
	default:
		t.unknown.Add(1)
	}
}

func (t *tally) take() (pass, fail, unknown int64) {
	return t.pass.Swap(0), t.fail.Swap(0), t.unknown.Swap(0)
}

// Ready reports whether the station can do its job, and why not.
func (d *Daemon) Ready() (bool, []string) {
	var why []string
	if _, ok := d.det.Metadata(); !ok {
		why = append(why, "no detector model loaded ("+d.cfg.ModelDir+")")
	}
	streaming := false
	for _, s := range d.sources {
		if s.Status().State == capture.StateOnline {
			streaming = true
		}
	}
	if !streaming {
		why = append(why, "no camera online")
	}
	if d.outboxFull.Load() {
		why = append(why, "outbox full")
	} else if !d.client.Connected() && d.ob.Stats().NearFull {
		why = append(why, "MQTT down and the outbox is near its limit")
	}
	if d.stopping.Load() {
		why = append(why, "stopping")
	}
	return len(why) == 0, why
}

// registerCommands wires the MQTT commands the daemon answers.
func (d *Daemon) registerCommands() {
	d.registerJobCommands() // augment, retrain, cycle
	d.client.HandleCommand("trigger", d.cmdTrigger)
	d.client.HandleCommand("reload", func(context.Context, []byte) (any, error) {
		if err := d.loadModel(false); err != nil {
			return nil, err
		}
		md, _ := d.det.Metadata()
		return map[string]any{"model_version": md.ModelVersion}, nil
	})
	d.client.HandleCommand("status", func(context.Context, []byte) (any, error) {
		ready, why := d.Ready()
		cams := []capture.Status{}
		for _, s := range d.sources {
			cams = append(cams, s.Status())
		}
		md, ok := d.det.Metadata()
		model := any(nil)
		if ok {
			model = md.ModelVersion
		}
		return map[string]any{"ready": ready, "notReady": why, "cameras": cams, "model": model, "outbox": d.ob.Stats()}, nil
	})
}

var errBadCommand = errors.New("bad command")

func (d *Daemon) cmdTrigger(_ context.Context, payload []byte) (any, error) {
	var req struct {
		Camera string `json:"camera"`
		PartID string `json:"partId"`
	}
	if err := decodeStrict(payload, &req); err != nil {
		return nil, fmt.Errorf("%w: trigger wants {\"camera\": NAME, \"partId\": ID}: %v", errBadCommand, err)
	}
	s, ok := d.byName[req.Camera]
	if !ok {
		names := make([]string, 0, len(d.byName))
		for n := range d.byName {
			names = append(names, n)
		}
		return nil, fmt.Errorf("%w: unknown camera %q (cameras: %s)", errBadCommand, req.Camera, strings.Join(names, ", "))
	}
	if err := s.Trigger(req.PartID); err != nil {
		return nil, err
	}
	return map[string]any{"camera": req.Camera, "partId": req.PartID, "queued": true}, nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
