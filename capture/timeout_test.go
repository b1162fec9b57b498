package capture

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/internal/testenv"
)

// mjpegServer serves an MJPEG stream over HTTP (multipart/x-mixed-replace, what IP
// cameras serve) at 25 fps; stall() makes every connection go silent without closing,
// as a camera that hangs does.
type mjpegServer struct {
	*httptest.Server
	mu      sync.Mutex
	stalled bool
	resume  chan struct{}
}

func newMJPEGServer(t *testing.T) *mjpegServer {
	jpg := encodeImage(t, gocv.JPEGFileExt, 120)
	s := &mjpegServer{resume: make(chan struct{})}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "multipart/x-mixed-replace; boundary=frame")
		fl := w.(http.Flusher)
		for {
			s.mu.Lock()
			stalled, resume := s.stalled, s.resume
			s.mu.Unlock()
			if stalled {
				select {
				case <-resume:
				case <-r.Context().Done():
					return
				}
			}
			if _, err := fmt.Fprintf(w, "--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n", len(jpg)); err != nil {
				return
			}
			w.Write(jpg)
			w.Write([]byte("\r\n"))
			fl.Flush()
			select {
			case <-time.After(40 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
	}))
	t.Cleanup(func() { s.unstall(); s.CloseClientConnections(); s.Close() })
	return s
}

func (s *mjpegServer) stall() {
	s.mu.Lock()
	s.stalled = true
	s.mu.Unlock()
}

func (s *mjpegServer) unstall() {
	s.mu.Lock()
	if s.stalled {
		s.stalled = false
		close(s.resume)
		s.resume = make(chan struct{})
	}
	s.mu.Unlock()
}

// A stream that stays open but stops delivering frames is declared offline after
// its no-frame timeout and reopened; it is online again once frames flow.
func TestStreamNoFrameTimeout(t *testing.T) {
	srv := newMJPEGServer(t)
	src, out, _ := startSource(t, Config{Name: "ipcam", Kind: KindURL, Target: srv.URL + "/video.mjpg",
		FPS: 25, Timeout: 500 * time.Millisecond, RetryMin: 30 * time.Millisecond, RetryMax: 100 * time.Millisecond})
	drain := func(d time.Duration) int {
		n := 0
		end := time.After(d)
		for {
			select {
			case f := <-out:
				f.Mat.Close()
				n++
			case <-end:
				return n
			}
		}
	}
	waitFor(t, "online", 15*time.Second, func() bool { drain(0); return src.Status().State == StateOnline })
	if n := drain(500 * time.Millisecond); n < 5 {
		t.Fatalf("%d frames in 0.5 s from a 25 fps stream", n)
	}
	t0 := time.Now()
	srv.stall()
	waitFor(t, "offline after the no-frame timeout", 5*time.Second, func() bool {
		drain(0)
		s := src.Status()
		return s.Reconnects > 0 || s.State == StateOffline
	})
	if d := time.Since(t0); d < 400*time.Millisecond {
		t.Errorf("declared offline after %v, before the 500 ms timeout", d)
	}
	srv.unstall()
	waitFor(t, "online again", 15*time.Second, func() bool { drain(0); return src.Status().State == StateOnline })
	if n := drain(500 * time.Millisecond); n < 5 {
		t.Fatalf("%d frames in 0.5 s after reconnecting", n)
	}
	if s := src.Status(); s.Reconnects == 0 || s.LastError == "" {
		t.Errorf("status %+v", s)
	}
}

// A live camera does not wait for a busy consumer: frames it cannot hand over are
// dropped and counted, so the next frame taken is a fresh one, not a stale backlog.
func TestLiveStreamDropsWhenConsumerBusy(t *testing.T) {
	srv := newMJPEGServer(t)
	var hooked atomic.Int64
	src, err := New(testenv.Logger(t), Config{Name: "ipcam", Kind: KindURL, Target: srv.URL + "/video.mjpg", FPS: 25},
		Hooks{OnDrop: func(string) { hooked.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan Frame) // unbuffered: only a waiting consumer gets frames
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); src.Run(ctx, out) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "frames read", 15*time.Second, func() bool { return src.Status().Frames >= 10 })
	busy := time.Now()
	time.Sleep(300 * time.Millisecond) // the consumer is busy
	f := recv(t, out, 5*time.Second)
	f.Mat.Close()
	if f.Captured.Before(busy.Add(300 * time.Millisecond)) {
		t.Errorf("frame captured %v after the busy spell began; want a fresh one", f.Captured.Sub(busy))
	}
	s := src.Status()
	if s.Dropped < 5 || uint64(hooked.Load()) != s.Dropped {
		t.Errorf("dropped %d (hook %d), want ≥5 at 25 fps over 0.3 s", s.Dropped, hooked.Load())
	}
}
