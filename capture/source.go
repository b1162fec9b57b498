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
	Key      string    // folder sources: stable identity (source, name, size, mtime, content); "" otherwise
	// Err is set on a frame that stands for a trigger whose image could not be judged
	// (trigger mode: its file was bad, or no frame came within triggerttl), so that the
	// part still gets a verdict: `unknown`, with this reason. Mat is then empty (still
	// to be closed) and Done is nil.
	Err error
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
	// TriggerAt is Trigger for a trigger sent at sent (the PLC's clock): one older than
	// the source's triggerttl is refused with ErrTriggerExpired, so triggers a broker
	// kept while diagd was down are not paired with today's frames.
	TriggerAt(partID string, sent time.Time) error
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
	ExpiredTriggers uint64    `json:"expiredTriggers"` // triggers that found no frame within triggerttl
	LastError       string    `json:"lastError,omitempty"`
	LastFrame       time.Time `json:"lastFrame,omitzero"`
}

// Hooks are optional callbacks. They run on the source's goroutines (or the caller of
// Frame.Done), possibly concurrently, and must return quickly.
type Hooks struct {
	OnState     func(Status)        // every state change
	OnReconnect func(source string) // every reopen attempt after a failure
	OnBadFile   func(BadFile)       // a file was rejected (once per file; the source logs it)
	OnDrop      func(source string) // a frame was read but not sent
}

// BadFile is a rejected folder file, ready to publish as an event.
type BadFile struct {
	Camera  string    `json:"camera"`
	File    string    `json:"file"`              // where it was found
	Reason  string    `json:"reason"`            // why it was rejected
	MovedTo string    `json:"movedTo,omitempty"` // where it is now ("" if it could not be moved)
	Size    int64     `json:"size"`
	Time    time.Time `json:"@timestamp"`
}

// ErrNotTriggerMode is returned by Trigger on a source in continuous mode.
var ErrNotTriggerMode = errors.New("source is not in trigger mode (mode=trigger)")

// ErrTriggerQueueFull is returned by Trigger when too many triggers are pending.
var ErrTriggerQueueFull = errors.New("trigger queue full")

// ErrTriggerExpired is returned by TriggerAt for a trigger older than triggerttl, and is
// the reason of the unknown verdict of a trigger that found no frame in time.
var ErrTriggerExpired = errors.New("trigger expired")

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
	part     string
	at       time.Time // when it arrived (a live frame must be read after it)
	deadline time.Time // sent + triggerttl
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
	rate     rateWindow
	kick     chan struct{} // folder: wakes the loop on a trigger
	final    bool          // Run has returned: no later state change is reported
}

func (b *base) Name() string { return b.cfg.Name }

func (b *base) Status() Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.st
	s.PendingTriggers = len(b.triggers)
	s.FPS = b.rate.perSecond(time.Now())
	return s
}

func (b *base) Trigger(partID string) error { return b.TriggerAt(partID, time.Time{}) }

func (b *base) TriggerAt(partID string, sent time.Time) error {
	if b.cfg.Mode != ModeTrigger {
		return fmt.Errorf("camera %q: %w", b.cfg.Name, ErrNotTriggerMode)
	}
	now := time.Now()
	if sent.IsZero() || sent.After(now) { // unknown, or the sender's clock is ahead
		sent = now
	}
	if age := now.Sub(sent); age > b.cfg.TriggerTTL {
		return fmt.Errorf("camera %q: %w: sent %v ago, triggerttl is %v (a trigger kept by the broker while diagd was down, or the sender's clock is behind)",
			b.cfg.Name, ErrTriggerExpired, age.Round(time.Millisecond), b.cfg.TriggerTTL)
	}
	b.mu.Lock()
	if len(b.triggers) >= b.cfg.TriggerQueue {
		b.mu.Unlock()
		return fmt.Errorf("camera %q: %w (%d pending)", b.cfg.Name, ErrTriggerQueueFull, b.cfg.TriggerQueue)
	}
	b.triggers = append(b.triggers, trigger{part: partID, at: now, deadline: sent.Add(b.cfg.TriggerTTL)})
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

// frameRead counts a read frame.
func (b *base) frameRead(t time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.st.Frames++
	b.st.LastFrame = t
	b.rate.add(t)
}

// resetRate starts the rate over, so a gap (reconnect, vanished folder) is not averaged
// into it.
func (b *base) resetRate() {
	b.mu.Lock()
	b.rate.reset(time.Now())
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

// badFile counts a rejected file, logs it (once) and reports it.
func (b *base) badFile(bf BadFile) {
	b.mu.Lock()
	b.st.BadFiles++
	b.st.LastError = bf.File + ": " + bf.Reason
	b.mu.Unlock()
	attrs := []any{"file", bf.File, "reason", bf.Reason, "size", bf.Size}
	if bf.MovedTo != "" {
		attrs = append(attrs, "moved_to", bf.MovedTo)
	}
	b.log.Warn("bad image file rejected", attrs...)
	if b.hooks.OnBadFile != nil {
		b.hooks.OnBadFile(bf)
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
