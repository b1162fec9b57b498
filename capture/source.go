package capture

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"gocv.io/x/gocv"
)

// Frame is one image for the detector.
type Frame struct {
	Source   string    // source name
	Seq      uint64    // per-source counter of emitted frames, from 1
	Mat      gocv.Mat  // BGR 8-bit; the receiver must Close it
	Captured time.Time // when the frame was read / the file was found complete
	PartID   string    // from a trigger, or parsed from a file name
	File     string    // folder sources: the file's path
	Key      string    // folder sources: stable identity (source, name, size, mtime); "" otherwise
	// Done must be called exactly once, after the verdict is durable (judged=true) or
	// when the frame is dropped (judged=false). Folder sources then move, delete or
	// journal the file; a dropped file is left in place and retried after a restart.
	// nil for live sources.
	Done func(judged bool)
}

// Source is one camera.
type Source interface {
	Name() string
	// Run reads frames into out until ctx is done, reconnecting itself; it returns
	// nil on cancellation and an error only when the source cannot work at all.
	Run(ctx context.Context, out chan<- Frame) error
	// Trigger makes the next frame (live) or next file (folder) carry partID.
	Trigger(partID string) error
	Status() Status
}

// State of a source.
type State string

const (
	StateStarting     State = "starting"
	StateOnline       State = "online"
	StateOffline      State = "offline"
	StateReconnecting State = "reconnecting"
	StateStopped      State = "stopped"
)

// Status is a snapshot of a source, ready to publish as retained JSON.
type Status struct {
	Name            string    `json:"name"`
	Kind            Kind      `json:"kind"`
	Mode            Mode      `json:"mode"`
	State           State     `json:"state"`
	Since           time.Time `json:"since"`            // when State was entered
	Reason          string    `json:"reason,omitempty"` // why (end of video, folder missing, ...)
	FPS             float64   `json:"fps"`              // frames read per second, smoothed
	Frames          uint64    `json:"frames"`           // frames read / files found complete
	Emitted         uint64    `json:"emitted"`          // frames sent to the daemon
	Dropped         uint64    `json:"dropped"`          // frames read but not sent (consumer busy)
	Reconnects      uint64    `json:"reconnects"`       // reopen attempts after a failure
	BadFiles        uint64    `json:"badFiles"`         // folder files rejected
	PendingTriggers int       `json:"pendingTriggers"`
	LastError       string    `json:"lastError,omitempty"`
	LastFrame       time.Time `json:"lastFrame,omitzero"`
}

// Hooks are optional callbacks. They run on the source's goroutines (or the caller of
// Frame.Done), possibly concurrently, and must return quickly.
type Hooks struct {
	OnState     func(Status)                         // every state change
	OnReconnect func(source string)                  // every reopen attempt after a failure
	OnBadFile   func(source, file string, err error) // a file was rejected
	OnDrop      func(source string)                  // a frame was read but not sent
}

// ErrNotTriggerMode is returned by Trigger on a source in continuous mode.
var ErrNotTriggerMode = errors.New("source is not in trigger mode (mode=trigger)")

// ErrTriggerQueueFull is returned by Trigger when too many triggers are pending.
var ErrTriggerQueueFull = errors.New("trigger queue full")

// New builds a source from its configuration.
func New(log *slog.Logger, c Config, hooks Hooks) (Source, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c = c.withDefaults()
	b := &base{cfg: c, hooks: hooks, log: log.With("camera", c.Name)}
	b.st = Status{Name: c.Name, Kind: c.Kind, Mode: c.Mode, State: StateStarting, Since: time.Now()}
	switch c.Kind {
	case KindDevice, KindURL, KindVideo:
		return &stream{base: b}, nil
	case KindFolder:
		return newFolder(b)
	default:
		return nil, fmt.Errorf("source %q: unknown kind %q", c.Name, c.Kind)
	}
}

// trigger is a pending trigger.
type trigger struct {
	part string
	at   time.Time
}

// base holds what every source shares: configuration, status and trigger queue.
type base struct {
	cfg   Config
	hooks Hooks
	log   *slog.Logger

	mu       sync.Mutex
	st       Status
	triggers []trigger
	seq      uint64
	lastRead time.Time
	kick     chan struct{} // folder: wakes the loop on a trigger
	final    bool          // Run has returned: no later state change is reported
}

func (b *base) Name() string { return b.cfg.Name }

func (b *base) Status() Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.st
	s.PendingTriggers = len(b.triggers)
	return s
}

func (b *base) Trigger(partID string) error {
	if b.cfg.Mode != ModeTrigger {
		return fmt.Errorf("camera %q: %w", b.cfg.Name, ErrNotTriggerMode)
	}
	b.mu.Lock()
	if len(b.triggers) >= b.cfg.TriggerQueue {
		b.mu.Unlock()
		return fmt.Errorf("camera %q: %w (%d pending)", b.cfg.Name, ErrTriggerQueueFull, b.cfg.TriggerQueue)
	}
	b.triggers = append(b.triggers, trigger{part: partID, at: time.Now()})
	kick := b.kick
	b.mu.Unlock()
	if kick != nil {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// takeTrigger pops the oldest trigger that arrived at or before t.
func (b *base) takeTrigger(t time.Time) (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.triggers) == 0 || b.triggers[0].at.After(t) {
		return "", false
	}
	p := b.triggers[0].part
	b.triggers = b.triggers[1:]
	return p, true
}

func (b *base) pendingTriggers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.triggers)
}

// setState records a state change and reports it.
func (b *base) setState(s State, reason string, err error) {
	b.mu.Lock()
	if b.final {
		// A reader abandoned by the watchdog may wake after Run returned.
		b.mu.Unlock()
		return
	}
	changed := b.st.State != s || b.st.Reason != reason
	if changed {
		b.st.State, b.st.Since, b.st.Reason = s, time.Now(), reason
	}
	if err != nil {
		b.st.LastError = err.Error()
	}
	snap := b.st
	snap.PendingTriggers = len(b.triggers)
	b.mu.Unlock()
	if !changed {
		return
	}
	attrs := []any{"state", s}
	if reason != "" {
		attrs = append(attrs, "reason", reason)
	}
	if err != nil {
		attrs = append(attrs, "err", err)
	}
	if s == StateOnline || s == StateStarting {
		b.log.Info("camera state", attrs...)
	} else {
		b.log.Warn("camera state", attrs...)
	}
	if b.hooks.OnState != nil {
		b.hooks.OnState(snap)
	}
}

// stop reports the final state when Run returns.
func (b *base) stop() {
	b.setState(StateStopped, "", nil)
	b.mu.Lock()
	b.final = true
	b.mu.Unlock()
}

// frameRead counts a read frame and updates the smoothed rate.
func (b *base) frameRead(t time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.st.Frames++
	b.st.LastFrame = t
	if !b.lastRead.IsZero() {
		if dt := t.Sub(b.lastRead).Seconds(); dt > 0 {
			inst := 1 / dt
			if b.st.FPS == 0 {
				b.st.FPS = inst
			} else {
				b.st.FPS += 0.1 * (inst - b.st.FPS) // EWMA over ~10 frames
			}
		}
	}
	b.lastRead = t
}

// resetRate forgets the last read time so a gap (reconnect, idle folder) is not
// averaged into the rate.
func (b *base) resetRate() {
	b.mu.Lock()
	b.lastRead = time.Time{}
	b.st.FPS = 0
	b.mu.Unlock()
}

func (b *base) nextSeq() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	b.st.Emitted++
	return b.seq
}

func (b *base) dropped() {
	b.mu.Lock()
	b.st.Dropped++
	b.mu.Unlock()
	if b.hooks.OnDrop != nil {
		b.hooks.OnDrop(b.cfg.Name)
	}
}

func (b *base) reconnected() {
	b.mu.Lock()
	b.st.Reconnects++
	b.mu.Unlock()
	if b.hooks.OnReconnect != nil {
		b.hooks.OnReconnect(b.cfg.Name)
	}
}

func (b *base) badFile(file string, err error) {
	b.mu.Lock()
	b.st.BadFiles++
	b.st.LastError = err.Error()
	b.mu.Unlock()
	b.log.Warn("bad image file skipped", "file", file, "err", err)
	if b.hooks.OnBadFile != nil {
		b.hooks.OnBadFile(b.cfg.Name, file, err)
	}
}

// backoff is a capped exponential backoff with ±20% jitter.
type backoff struct {
	min, max, cur time.Duration
}

func (bo *backoff) next() time.Duration {
	if bo.cur == 0 {
		bo.cur = bo.min
	} else {
		bo.cur = min(bo.cur*2, bo.max)
	}
	// Jitter spreads the reconnects of many cameras behind one switch that came back.
	return time.Duration(float64(bo.cur) * (0.8 + 0.4*rand.Float64()))
}

func (bo *backoff) reset() { bo.cur = 0 }

// sleep waits d or until ctx is done; false when ctx is done.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
