package daemon

import (
	"path/filepath"
	"sync"
	"time"

	"github.com/diagd/diagd/capture"
)

// rejectedEvery is the shortest interval between two events/rejected of one camera: a
// camera dropping garbage at 50 files/s must not flood the broker.
const rejectedEvery = time.Second

func (d *Daemon) captureHooks() capture.Hooks {
	return capture.Hooks{
		OnState:     d.publishCamera,
		OnReconnect: func(src string) { d.m.reconnects.WithLabelValues(src).Inc() },
		OnBadFile:   d.onBadFile,
		OnDrop:      func(src string) { d.m.dropped.WithLabelValues(src).Inc() },
	}
}

// onBadFile counts, logs and reports (rate-limited) a file a folder source rejected.
func (d *Daemon) onBadFile(src, file string, err error) {
	d.m.badFiles.WithLabelValues(src).Inc()
	d.log.Warn("bad image file skipped", "camera", src, "file", file, "err", err)
	if d.client == nil {
		return // hooks may fire before the client exists
	}
	if n, ok := d.rejected.allow(src, time.Now()); ok {
		d.client.Event("rejected", rejectedEvent{Camera: src, File: filepath.Base(file), Reason: err.Error(),
			Time: time.Now().UTC(), Suppressed: n})
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

// rejectLimiter lets one event per key through every interval and counts the others.
type rejectLimiter struct {
	every time.Duration
	mu    sync.Mutex
	last  map[string]time.Time
	held  map[string]int
}

func newRejectLimiter(every time.Duration) *rejectLimiter {
	return &rejectLimiter{every: every, last: map[string]time.Time{}, held: map[string]int{}}
}

// allow reports whether an event for key may go out now and, if so, how many were held
// back since the last one.
func (l *rejectLimiter) allow(key string, now time.Time) (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.last[key]) < l.every {
		l.held[key]++
		return 0, false
	}
	n := l.held[key]
	l.last[key], l.held[key] = now, 0
	return n, true
}
