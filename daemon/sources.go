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

// onBadFile counts and reports (rate-limited) a file a folder source rejected; the
// source has logged it, once.
func (d *Daemon) onBadFile(bf capture.BadFile) {
	d.m.badFiles.WithLabelValues(bf.Camera).Inc()
	if d.client == nil {
		return // hooks may fire before the client exists
	}
	if n, ok := d.rejected.allow(bf.Camera, time.Now()); ok {
		d.client.Event("rejected", rejectedEvent{Camera: bf.Camera, File: filepath.Base(bf.File), Reason: bf.Reason,
			Time: bf.Time.UTC(), Suppressed: n})
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
