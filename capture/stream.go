package capture

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"gocv.io/x/gocv"
)

// stream is a live source: a device, a network stream or a video file.
type stream struct {
	*base

	// gate makes sure no reader goroutine sends after Run has returned: a reader
	// stuck in OpenCV (a dead RTSP peer) is abandoned, not waited for.
	gate   sync.RWMutex
	closed bool
}

var (
	errEndOfVideo = errors.New("end of video")
	errNoFrames   = errors.New("video has no readable frames")
)

// firstFrameGrace bounds the wait for the first frame after opening: network
// streams need a key frame, which may take longer than the no-frame timeout.
const firstFrameGrace = 10 * time.Second

func (s *stream) Run(ctx context.Context, out chan<- Frame) error {
	defer func() {
		s.gate.Lock()
		s.closed = true
		s.gate.Unlock()
		s.stop()
	}()
	ctx, cancel := context.WithCancel(ctx)
	wait := s.startExpiry(ctx, out)
	defer wait()
	defer cancel()
	bo := backoff{min: s.cfg.RetryMin, max: s.cfg.RetryMax}
	retrying := false
	for ctx.Err() == nil {
		if retrying {
			s.reconnected()
			s.setState(StateReconnecting, "", nil)
		}
		frames, err := s.session(ctx, out)
		if ctx.Err() != nil {
			return nil
		}
		s.resetRate()
		if errors.Is(err, errEndOfVideo) {
			if !s.cfg.Loop {
				s.setState(StateStopped, "end of video", nil)
				<-ctx.Done()
				return nil
			}
			if frames > 0 {
				// A loop restarts at once; it is not a failure.
				bo.reset()
				retrying = false
				continue
			}
			err = errNoFrames
		}
		if frames > 0 {
			bo.reset()
		}
		s.setState(StateOffline, reasonOf(err), err)
		retrying = true
		if !sleep(ctx, bo.next()) {
			return nil
		}
	}
	return nil
}

func reasonOf(err error) string {
	var te timeoutError
	switch {
	case errors.As(err, &te):
		return "no frame within timeout"
	case errors.Is(err, errNoFrames):
		return "no frames"
	default:
		return "open or read failed"
	}
}

type timeoutError struct{ d time.Duration }

func (e timeoutError) Error() string { return fmt.Sprintf("no frame for %v", e.d) }

// session opens the source once and reads until it fails, times out or ctx ends.
// It returns the number of frames read.
func (s *stream) session(ctx context.Context, out chan<- Frame) (uint64, error) {
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r := &reader{s: s, out: out, done: make(chan error, 1)}
	r.inCall.Store(time.Now().UnixNano())
	go r.run(rctx)

	fps := s.cfg.FPS
	if fps == 0 {
		fps = defaultDeviceFPS
		if s.cfg.Kind == KindURL {
			fps = defaultURLFPS
		}
	}
	timeout := s.cfg.timeoutFor(fps)
	var tick <-chan time.Time
	if timeout > 0 {
		t := time.NewTicker(max(timeout/4, 20*time.Millisecond))
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return r.frames.Load(), nil
		case err := <-r.done:
			return r.frames.Load(), err
		case <-tick:
			if f := r.fps.Load(); f != nil && s.cfg.FPS == 0 && s.cfg.Timeout == 0 {
				timeout = s.cfg.timeoutFor(*f) // a video file knows its own rate
			}
			since := r.inCall.Load()
			limit := timeout
			if r.frames.Load() == 0 {
				limit = max(timeout, firstFrameGrace)
			}
			if since != 0 && time.Since(time.Unix(0, since)) > limit {
				// Abandon the reader: it closes the capture when OpenCV returns.
				return r.frames.Load(), timeoutError{limit}
			}
		}
	}
}

// reader owns one opened capture; it runs on its own goroutine so that a read
// blocked inside OpenCV cannot stall the watchdog.
type reader struct {
	s      *stream
	out    chan<- Frame
	done   chan error
	inCall atomic.Int64 // unix ns when the current open/read began; 0 outside them
	frames atomic.Uint64
	fps    atomic.Pointer[float64]
}

func (r *reader) run(ctx context.Context) {
	s := r.s
	vc, err := s.open()
	r.inCall.Store(0)
	if err != nil {
		r.done <- err
		return
	}
	defer vc.Close()
	if s.cfg.Kind == KindVideo {
		if f := vc.Get(gocv.VideoCaptureFPS); f > 0 && f < 10000 {
			r.fps.Store(&f)
		}
	}
	continuous := s.cfg.Mode == ModeContinuous
	// A video file read in trigger mode (or with pace=true) plays at its frame rate,
	// like the camera it stands in for, instead of spinning a core.
	var interval time.Duration
	if s.cfg.Kind == KindVideo && (s.cfg.Pace || !continuous) {
		fps := s.cfg.FPS
		if p := r.fps.Load(); fps == 0 && p != nil {
			fps = *p
		}
		if fps == 0 {
			fps = defaultURLFPS
		}
		interval = time.Duration(float64(time.Second) / fps)
	}
	var last time.Time
	// A file can wait for a slow consumer; a live camera cannot: its frames go stale
	// in the driver's buffer, so they are dropped instead.
	blocking := s.cfg.Kind == KindVideo
	m := gocv.NewMat()
	defer func() { m.Close() }()
	for {
		if ctx.Err() != nil {
			r.done <- nil
			return
		}
		if interval > 0 && !last.IsZero() {
			if !sleep(ctx, time.Until(last.Add(interval))) {
				r.done <- nil
				return
			}
		}
		start := time.Now()
		last = start
		r.inCall.Store(start.UnixNano())
		ok := vc.Read(&m)
		r.inCall.Store(0)
		if ctx.Err() != nil {
			r.done <- nil
			return
		}
		if !ok || m.Empty() {
			r.done <- s.readFailed()
			return
		}
		now := time.Now()
		if r.frames.Add(1) == 1 {
			s.setState(StateOnline, "", nil)
		}
		s.frameRead(now)
		f := Frame{Source: s.cfg.Name, Captured: now}
		if continuous {
			if !r.send(ctx, f, &m, blocking) {
				s.dropped()
			}
			continue
		}
		// Trigger mode: only a frame whose read began after the trigger belongs to it;
		// other frames are read to keep the stream fresh and discarded.
		part, ok := s.takeTrigger(start)
		if !ok {
			continue
		}
		f.PartID = part
		if !r.send(ctx, f, &m, true) {
			s.log.Warn("triggered frame not delivered: source stopping", "part", part)
		}
	}
}

// send hands *m to the consumer (replacing *m with a fresh Mat) and reports whether
// it was delivered.
func (r *reader) send(ctx context.Context, f Frame, m *gocv.Mat, blocking bool) bool {
	s := r.s
	s.gate.RLock()
	defer s.gate.RUnlock()
	if s.closed || ctx.Err() != nil {
		return false
	}
	f.Mat = *m
	f.Seq = s.nextSeq()
	if blocking {
		select {
		case r.out <- f:
		case <-ctx.Done():
			s.unSeq()
			return false
		}
	} else {
		select {
		case r.out <- f:
		default:
			s.unSeq()
			return false
		}
	}
	*m = gocv.NewMat()
	return true
}

// unSeq takes back a sequence number that was not delivered, so Seq has no gaps.
func (b *base) unSeq() {
	b.mu.Lock()
	b.seq--
	b.st.Emitted--
	b.mu.Unlock()
}

func (s *stream) open() (*gocv.VideoCapture, error) {
	switch s.cfg.Kind {
	case KindDevice:
		vc, err := gocv.OpenVideoCaptureWithAPI(s.cfg.Device, gocv.VideoCaptureAny)
		if err != nil {
			return nil, fmt.Errorf("camera %q: open device %d: %w", s.cfg.Name, s.cfg.Device, err)
		}
		return vc, nil
	case KindVideo:
		// Stat first: OpenCV's own error for a missing file is a page of backend noise.
		if _, err := os.Stat(s.cfg.Target); err != nil {
			return nil, fmt.Errorf("camera %q: %w", s.cfg.Name, err)
		}
		fallthrough
	default:
		vc, err := gocv.OpenVideoCaptureWithAPI(s.cfg.Target, gocv.VideoCaptureFFmpeg)
		if err != nil {
			return nil, fmt.Errorf("camera %q: open %s: %w", s.cfg.Name, s.cfg.Target, err)
		}
		return vc, nil
	}
}

func (s *stream) readFailed() error {
	if s.cfg.Kind == KindVideo {
		if _, err := os.Stat(s.cfg.Target); err == nil {
			return errEndOfVideo
		}
		return fmt.Errorf("camera %q: read %s: file vanished", s.cfg.Name, s.cfg.Target)
	}
	return fmt.Errorf("camera %q: read failed (stream ended or camera disconnected)", s.cfg.Name)
}
