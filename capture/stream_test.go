package capture

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/diagd/diagd/internal/testenv"
)

func TestVideoReadsEveryFrame(t *testing.T) {
	p := tempPath(t, "clip.avi")
	const n = 15
	writeVideo(t, p, n, 10)
	src, out, _ := startSource(t, Config{Name: "demo", Kind: KindVideo, Target: p})
	for i := range n {
		f := recv(t, out, 5*time.Second)
		if f.Seq != uint64(i+1) || f.Source != "demo" || f.Key != "" || f.Done != nil {
			t.Errorf("frame %d: seq %d source %q key %q done %v", i, f.Seq, f.Source, f.Key, f.Done != nil)
		}
		if got := frameIndex(f.Mat); got != i%11 {
			t.Errorf("frame %d decoded as frame %d (order lost)", i, got)
		}
		f.Mat.Close()
	}
	none(t, out, 300*time.Millisecond)
	waitFor(t, "stopped at end of video", 2*time.Second, func() bool {
		s := src.Status()
		return s.State == StateStopped && s.Reason == "end of video"
	})
	if s := src.Status(); s.Frames != n || s.Emitted != n || s.Reconnects != 0 {
		t.Errorf("status %+v; want %d frames, none lost, no reconnects", s, n)
	}
}

func TestVideoLoop(t *testing.T) {
	p := tempPath(t, "clip.avi")
	const n = 6
	writeVideo(t, p, n, 25)
	_, out, _ := startSource(t, Config{Name: "demo", Kind: KindVideo, Target: p, Loop: true})
	// Two and a half passes: indices must run 0..n-1, 0..n-1, 0.. .
	for i := range 2*n + n/2 {
		f := recv(t, out, 5*time.Second)
		if got := frameIndex(f.Mat); got != i%n {
			t.Fatalf("frame %d decoded as video frame %d, want %d", i, got, i%n)
		}
		if f.Seq != uint64(i+1) {
			t.Fatalf("frame %d has seq %d", i, f.Seq)
		}
		f.Mat.Close()
	}
}

// A looping video whose file disappears: reopening fails, is retried with backoff
// and counted; the source comes back when the file returns.
func TestVideoFileVanishesAndReturns(t *testing.T) {
	p := tempPath(t, "clip.avi")
	writeVideo(t, p, 5, 25)
	src, out, _ := startSource(t, Config{Name: "demo", Kind: KindVideo, Target: p, Loop: true,
		RetryMin: 30 * time.Millisecond, RetryMax: 120 * time.Millisecond})
	first := recv(t, out, 5*time.Second)
	first.Mat.Close()
	if err := os.Rename(p, p+".away"); err != nil {
		t.Fatal(err)
	}
	// Drain whatever was read before the file went; then the source must go offline.
	deadline := time.Now().Add(5 * time.Second)
	for src.Status().Reconnects < 3 {
		select {
		case f := <-out:
			f.Mat.Close()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reconnect attempts counted: %+v", src.Status())
		}
	}
	s := src.Status()
	if s.State != StateOffline && s.State != StateReconnecting {
		t.Fatalf("state %q while the file is missing", s.State)
	}
	if s.LastError == "" {
		t.Error("no last error while the file is missing")
	}
	// Drain, then put the file back: frames flow again and the state is online.
	for len(out) > 0 {
		f := <-out
		f.Mat.Close()
	}
	if err := os.Rename(p+".away", p); err != nil {
		t.Fatal(err)
	}
	f := recv(t, out, 5*time.Second)
	f.Mat.Close()
	waitFor(t, "online again", 2*time.Second, func() bool { return src.Status().State == StateOnline })
}

func TestVideoTrigger(t *testing.T) {
	p := tempPath(t, "clip.avi")
	writeVideo(t, p, 8, 25)
	src, out, _ := startSource(t, Config{Name: "gate", Kind: KindVideo, Target: p, Loop: true, Mode: ModeTrigger})
	waitFor(t, "frames read", 5*time.Second, func() bool { return src.Status().Frames > 10 })
	// Frames are read (the count above grows) but none is emitted without a trigger.
	none(t, out, 200*time.Millisecond)
	before := time.Now()
	if err := src.Trigger("P-1"); err != nil {
		t.Fatal(err)
	}
	f := recv(t, out, 5*time.Second)
	if f.PartID != "P-1" || f.Seq != 1 {
		t.Errorf("triggered frame: part %q seq %d", f.PartID, f.Seq)
	}
	if f.Captured.Before(before) {
		t.Errorf("frame captured %v, before the trigger at %v", f.Captured, before)
	}
	f.Mat.Close()
	// Triggers arriving together are queued and served in order, one frame each.
	for _, p := range []string{"A", "B", "C"} {
		if err := src.Trigger(p); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range []string{"A", "B", "C"} {
		f := recv(t, out, 5*time.Second)
		if f.PartID != want || f.Seq != uint64(i+2) {
			t.Errorf("queued trigger %d: part %q seq %d, want %q seq %d", i, f.PartID, f.Seq, want, i+2)
		}
		f.Mat.Close()
	}
	none(t, out, 200*time.Millisecond)
}

func TestTriggerErrors(t *testing.T) {
	src, err := New(nil, Config{Name: "c", Kind: KindVideo, Target: "/nonexistent.avi"}, Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Trigger("x"); !errors.Is(err, ErrNotTriggerMode) {
		t.Errorf("trigger on a continuous source: %v", err)
	}
	src, err = New(nil, Config{Name: "c", Kind: KindVideo, Target: "/nonexistent.avi", Mode: ModeTrigger, TriggerQueue: 2}, Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := src.Trigger("p"); err != nil {
			t.Fatalf("trigger %d: %v", i, err)
		}
	}
	if err := src.Trigger("p"); !errors.Is(err, ErrTriggerQueueFull) {
		t.Errorf("third trigger with triggers=2: %v", err)
	}
	if got := src.Status().PendingTriggers; got != 2 {
		t.Errorf("pending triggers %d, want 2", got)
	}
}

// Sources that cannot be opened (nobody serving the URL, no such camera, no such file)
// are reported offline and retried with backoff; every attempt is counted.
func TestUnopenableSourcesReconnect(t *testing.T) {
	for _, c := range []Config{
		{Name: "deadurl", Kind: KindURL, Target: "http://127.0.0.1:1/stream.mjpg"},
		{Name: "nodevice", Kind: KindDevice, Device: 63},
		{Name: "nofile", Kind: KindVideo, Target: filepath.Join(t.TempDir(), "missing.avi")},
	} {
		t.Run(c.Name, func(t *testing.T) {
			c.RetryMin, c.RetryMax = 20*time.Millisecond, 50*time.Millisecond
			var mu sync.Mutex
			var reconnects int
			var states []State
			src, err := New(testenv.Logger(t), c, Hooks{
				OnReconnect: func(string) { mu.Lock(); reconnects++; mu.Unlock() },
				OnState:     func(s Status) { mu.Lock(); states = append(states, s.State); mu.Unlock() }})
			if err != nil {
				t.Fatal(err)
			}
			out := make(chan Frame, 1)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- src.Run(ctx, out) }()
			waitFor(t, "reconnect attempts", 5*time.Second, func() bool { return src.Status().Reconnects >= 2 })
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("Run after cancel: %v", err)
			}
			s := src.Status()
			mu.Lock()
			defer mu.Unlock()
			if s.State != StateStopped || uint64(reconnects) != s.Reconnects || s.LastError == "" {
				t.Errorf("status %+v, hook counted %d reconnects", s, reconnects)
			}
			if len(states) < 3 || states[0] != StateOffline || states[1] != StateReconnecting {
				t.Errorf("state sequence %v", states)
			}
			t.Logf("last error: %s", s.LastError)
		})
	}
}

func TestVideoPace(t *testing.T) {
	p := tempPath(t, "clip.avi")
	writeVideo(t, p, 10, 25)
	_, out, _ := startSource(t, Config{Name: "demo", Kind: KindVideo, Target: p, Pace: true})
	start := time.Now()
	for range 10 {
		f := recv(t, out, 5*time.Second)
		f.Mat.Close()
	}
	// 9 intervals of 40 ms at the file's 25 fps (unpaced, this takes a few ms).
	if d := time.Since(start); d < 9*40*time.Millisecond*9/10 {
		t.Errorf("10 paced frames at 25 fps took %v", d)
	}
}
