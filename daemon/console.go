package daemon

// The daemon's side of the console (console/): console.Backend, served on HTTP_ADDR
// beside /metrics. The file-backed parts (failed frames, review, catalogue, registry)
// are the console package's own; this adapter adds the live parts: station status,
// the verdict stream from the judge loop, the catalogue in force, and the jobs.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/capture"
	"github.com/diagd/diagd/console"
	"github.com/diagd/diagd/console/auth"
	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/mqtt"
)

type consoleBackend struct {
	*console.Hub
	*console.FailRing
	*console.Review
	*console.CatalogueFile
	*console.ModelRegistry
	d       *Daemon
	handler http.Handler
}

// newConsole builds the console when it is on; nil when it is off.
func newConsole(d *Daemon) (*consoleBackend, error) {
	cfg := d.cfg
	if !cfg.Console || cfg.HTTPAddr == "" {
		return nil, nil
	}
	o := console.Options{Log: d.log, Loopback: auth.IsLoopback(cfg.HTTPAddr)}
	var err error
	if cfg.HTTPUsers != "" {
		if o.Users, err = auth.LoadUsers(cfg.HTTPUsers); err != nil {
			return nil, fmt.Errorf("DIAGD_HTTP_USERS: %w", err)
		}
	}
	if cfg.HTTPTokenFile != "" {
		if o.Tokens, err = auth.LoadTokens(cfg.HTTPTokenFile); err != nil {
			return nil, fmt.Errorf("DIAGD_HTTP_TOKEN_FILE: %w", err)
		}
	}
	b := &consoleBackend{d: d, Hub: console.NewHub(d.log, console.HubOptions{}), ModelRegistry: console.NewModelRegistry(d.log, cfg.Registry)}
	if b.FailRing, err = console.OpenFailRing(d.log, cfg.DataDir, cfg.KeepFails); err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	if b.Review, err = console.OpenReview(cfg.DataDir); err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	if cfg.Catalogue != "" {
		if b.CatalogueFile, err = console.OpenCatalogueFile(cfg.Catalogue, cfg.DataDir); err != nil {
			return nil, fmt.Errorf("console: %w", err)
		}
	}
	srv, err := console.New(o, b)
	if err != nil {
		return nil, err
	}
	b.handler = srv
	d.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "diagd_console_fails_dropped_total",
			Help: "Failed frames not kept for the console because its writer was behind."},
			func() float64 { return float64(b.FailRing.Dropped()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "diagd_console_watchers",
			Help: "Live console pages open now."},
			func() float64 { return float64(b.Hub.Watchers()) }))
	return b, nil
}

// offer hands a judged frame to the console; it costs two checks when no page
// watches and the frame passed. A watched fail by a segmenting model carries the
// outline of its defect for the live page.
func (b *consoleBackend) offer(f capture.Frame, v mqtt.Verdict, seg *detect.SegMap) {
	if b == nil {
		return
	}
	watching := b.Hub.Watching()
	if !watching && v.Verdict != "fail" {
		return
	}
	cv := console.Verdict{Camera: v.SensorID, Time: f.Captured, Verdict: v.Verdict, Score: v.Score, Threshold: v.Threshold,
		ModelVersion: v.AnalyticsModule.Version, PartID: v.PartID, FrameID: v.FrameID, LatencyMs: v.LatencyMs, Error: v.Error}
	b.FailRing.Offer(f.Mat, cv)
	if watching {
		var outline [][]console.Point
		if v.Verdict == "fail" && seg != nil {
			outline = b.outline(f.Mat, seg)
		}
		b.Hub.Offer(f.Source, f.Mat, cv, outline)
	}
}

// outline traces a segmentation map, resized to the frame, at the map's threshold.
func (b *consoleBackend) outline(frame gocv.Mat, seg *detect.SegMap) [][]console.Point {
	mask, err := seg.Mask(frame.Cols(), frame.Rows(), seg.Threshold)
	if err != nil {
		b.d.log.Warn("console: no outline for a failed frame", "err", err)
		return nil
	}
	defer mask.Close()
	return console.Outline(mask, mqtt.MaxDefects)
}

// run encodes latest frames and writes failed frames until ctx ends (after the judge
// loop has stopped, so every failed frame offered is written), then ends the live
// pages' streams so the HTTP server can shut down.
func (b *consoleBackend) run(ctx context.Context) {
	if b == nil {
		return
	}
	go b.Hub.Run(ctx)
	b.FailRing.Run(ctx)
	b.FailRing.Close()
	b.Review.Close()
	b.CatalogueFile.Close()
}

// Status is the station now.
func (b *consoleBackend) Status() console.Status {
	d := b.d
	ready, why := d.Ready()
	s := console.Status{Station: d.cfg.Station, Ready: ready, NotReady: why, Cameras: []console.Camera{}, Job: b.Job()}
	if md, ok := d.det.Metadata(); ok {
		s.Model = md.ModelVersion
	}
	if why == nil {
		s.NotReady = []string{}
	}
	for _, src := range d.sources {
		st := src.Status()
		s.Cameras = append(s.Cameras, console.Camera{Name: st.Name, State: string(st.State), Since: st.Since, Reason: st.Reason,
			FPS: st.FPS, Frames: st.Frames, Dropped: st.Dropped, LastError: st.LastError})
	}
	return s
}

// CatalogueInForce is what the daemon's watcher last loaded.
func (b *consoleBackend) CatalogueInForce() console.CatalogueState {
	j := b.d.jobs
	if c := j.cat.Load(); c != nil {
		return console.CatalogueState{Digest: c.Digest}
	}
	var p string
	if why := j.catProblem.Load(); why != nil {
		p = *why
	}
	return console.CatalogueState{Problem: p}
}

// StartJob starts augment, retrain or cycle, as the MQTT command does.
func (b *consoleBackend) StartJob(req console.JobRequest) (console.JobState, error) {
	switch req.Kind {
	case jobAugment, jobCycle:
	case jobRetrain:
		if req.N != 0 || req.Generator != "" {
			return console.JobState{}, fmt.Errorf("%w: retrain takes no n or generator", console.ErrBadInput)
		}
	default:
		return console.JobState{}, fmt.Errorf("%w: job %q (want augment, retrain or cycle)", console.ErrBadInput, req.Kind)
	}
	_, err := b.d.jobs.start(req.Kind, jobOptions{N: req.N, Generator: req.Generator})
	switch {
	case err == nil:
		return b.Job(), nil
	case errors.Is(err, errBusy):
		return console.JobState{}, fmt.Errorf("%w: %v", console.ErrBusy, err)
	case errors.Is(err, errBadCommand):
		return console.JobState{}, fmt.Errorf("%w: %v", console.ErrBadInput, err)
	}
	return console.JobState{}, fmt.Errorf("%w: %v", console.ErrRefused, err)
}

// CancelJob cancels the running job; it stops at its next image or batch.
func (b *consoleBackend) CancelJob() error {
	j := b.d.jobs
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.running == "" || j.cancel == nil {
		return fmt.Errorf("%w: no job is running", console.ErrRefused)
	}
	j.cancel()
	return nil
}

// Job is the running job and its progress, or the last one.
func (b *consoleBackend) Job() console.JobState {
	j := b.d.jobs
	j.mu.Lock()
	st := console.JobState{Running: j.running, Since: j.since, Last: j.last, Finished: j.lastEnd}
	j.mu.Unlock()
	if st.Running == "" {
		st.Since = time.Time{}
		return st
	}
	// A cycle reports progress under augment, then retrain; one of them is 0.
	for _, name := range []string{jobAugment, jobRetrain} {
		var m dto.Metric
		if b.d.m.jobProgress.WithLabelValues(name).Write(&m) == nil && m.Gauge != nil {
			st.Fraction += m.Gauge.GetValue()
		}
	}
	return st
}
