package capture

import (
	"context"
	"image"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/internal/testenv"
)

// frameValue is the blue value frame i of a test video is painted with: steps of 20
// survive MJPG compression (which moves flat colours by a few levels).
func frameValue(i int) float64 { return float64(20 + 20*(i%11)) }

// writeVideo writes n flat frames, frame i painted frameValue(i), as MJPG in .avi
// (a codec Debian's OpenCV writes without extra plugins).
func writeVideo(t *testing.T, path string, n int, fps float64) {
	t.Helper()
	w, err := gocv.VideoWriterFile(path, "MJPG", fps, 64, 48, true)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		m := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(frameValue(i), 0, 0, 0), 48, 64, gocv.MatTypeCV8UC3)
		if err := w.Write(m); err != nil {
			t.Fatal(err)
		}
		m.Close()
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// frameIndex recovers i from a decoded frame (nearest frameValue).
func frameIndex(m gocv.Mat) int {
	b := float64(m.GetVecbAt(24, 32)[0])
	best, bestD := -1, 1e9
	for i := range 11 {
		if d := abs(b - frameValue(i)); d < bestD {
			best, bestD = i, d
		}
	}
	return best
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// encodeImage encodes a noisy w×h image (noise makes truncation visible in size).
func encodeImage(t *testing.T, ext gocv.FileExt, seed float64) []byte {
	t.Helper()
	m := gocv.NewMatWithSize(48, 64, gocv.MatTypeCV8UC3)
	defer m.Close()
	gocv.RandU(&m, gocv.NewScalar(0, 0, 0, 0), gocv.NewScalar(255, 255, 255, 0))
	// A flat block carries seed, so a decoded file can be told apart from another.
	block := m.Region(image.Rect(0, 0, 16, 16))
	block.SetTo(gocv.NewScalar(seed, seed, seed, 0))
	block.Close()
	b, err := gocv.IMEncode(ext, m)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	return append([]byte(nil), b.GetBytes()...)
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// runWith runs an already built source until the test ends.
func runWith(t *testing.T, src Source) chan Frame {
	t.Helper()
	out := make(chan Frame, 64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := src.Run(ctx, out); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return out
}

// startSource runs a source until stop is called or the test ends.
func startSource(t *testing.T, c Config) (Source, chan Frame, func()) {
	t.Helper()
	src, err := New(testenv.Logger(t), c, Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan Frame, 64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := src.Run(ctx, out); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	t.Cleanup(stop)
	return src, out, stop
}

func recv(t *testing.T, out <-chan Frame, within time.Duration) Frame {
	t.Helper()
	select {
	case f := <-out:
		return f
	case <-time.After(within):
		t.Fatalf("no frame within %v", within)
		return Frame{}
	}
}

// none asserts that no frame arrives for d.
func none(t *testing.T, out <-chan Frame, d time.Duration) {
	t.Helper()
	select {
	case f := <-out:
		f.Mat.Close()
		t.Fatalf("unexpected frame: seq %d file %q part %q", f.Seq, f.File, f.PartID)
	case <-time.After(d):
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func tempPath(t *testing.T, name string) string { return filepath.Join(t.TempDir(), name) }
