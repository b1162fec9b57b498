package console

import (
	"context"
	"image"
	"log/slog"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/internal/imageio"
)

func TestHubUnwatchedCostsNothing(t *testing.T) {
	h := NewHub(slog.New(slog.DiscardHandler), HubOptions{})
	m := testFrame(64, 48, 1)
	defer m.Close()
	v := Verdict{Camera: "cam", Verdict: "pass", Score: 0.1}
	if allocs := testing.AllocsPerRun(100, func() { h.Offer("cam", m, v, nil) }); allocs != 0 {
		t.Errorf("Offer allocates %v times per frame with nobody watching, want 0", allocs)
	}
	if _, ok := h.LatestFrame("cam"); ok {
		t.Error("a frame was kept with nobody watching")
	}
	if len(h.enc) != 0 {
		t.Error("a frame was queued for encoding with nobody watching")
	}
}

func TestHubStreamsVerdictsAndThrottledFrames(t *testing.T) {
	h := NewHub(slog.New(slog.DiscardHandler), HubOptions{FrameEvery: time.Hour, MaxWidth: 100})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.Run(ctx); close(done) }()
	sub, unsub := context.WithCancel(context.Background())
	ch := h.SubscribeVerdicts(sub)
	m := testFrame(400, 300, 2)
	defer m.Close()
	outline := [][]Point{{{0, 0}, {200, 0}, {200, 100}}}
	for i := range 5 {
		h.Offer("cam", m, Verdict{Camera: "cam", Verdict: "fail", Score: float64(i) / 10}, outline)
	}
	var verdicts, frames int
	var fe *FrameEvent
	timeout := time.After(10 * time.Second)
	for verdicts < 5 || frames < 1 {
		select {
		case e := <-ch:
			if e.Verdict != nil {
				verdicts++
			}
			if e.Frame != nil {
				frames++
				fe = e.Frame
			}
		case <-timeout:
			t.Fatalf("got %d verdicts and %d frames", verdicts, frames)
		}
	}
	// One frame per FrameEvery (an hour here): the other four were not even copied.
	select {
	case e := <-ch:
		t.Fatalf("unexpected event %+v", e)
	case <-time.After(200 * time.Millisecond):
	}
	f, ok := h.LatestFrame("cam")
	if !ok || f.ID != fe.ID || f.Verdict.Score != 0 {
		t.Fatalf("latest frame %+v", f)
	}
	img, err := imageio.Decode("latest", f.JPEG)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if img.Cols() != 100 || img.Rows() != 75 || f.Width != 100 || f.Height != 75 {
		t.Errorf("latest frame %dx%d (says %dx%d), want 100x75", img.Cols(), img.Rows(), f.Width, f.Height)
	}
	if got := fe.Outline[0][2]; got != (Point{50, 25}) {
		t.Errorf("outline scaled to %v, want {50 25}", got)
	}
	if !h.Watching() {
		t.Error("not watching while subscribed")
	}
	unsub()
	waitFor(t, "unsubscribed", func() bool { return !h.Watching() })
	// A second stream ends when the hub stops.
	ch2 := h.SubscribeVerdicts(context.Background())
	cancel()
	<-done
	if _, ok := <-ch2; ok {
		t.Error("stream still open after the hub stopped")
	}
	if _, ok := <-h.SubscribeVerdicts(context.Background()); ok {
		t.Error("a new stream opened after the hub stopped")
	}
}

func TestOutlineOfAMask(t *testing.T) {
	m := gocv.NewMatWithSize(100, 120, gocv.MatTypeCV8UC1)
	defer m.Close()
	big := m.Region(image.Rect(10, 20, 60, 70)) // 50×50
	big.SetTo(gocv.NewScalar(255, 0, 0, 0))
	big.Close()
	small := m.Region(image.Rect(90, 5, 100, 15)) // 10×10, soft: 200 > 127 counts
	small.SetTo(gocv.NewScalar(200, 0, 0, 0))
	small.Close()
	faint := m.Region(image.Rect(80, 80, 90, 90)) // 100 ≤ 127: not defect
	faint.SetTo(gocv.NewScalar(100, 0, 0, 0))
	faint.Close()
	polys := Outline(m, 0)
	if len(polys) != 2 {
		t.Fatalf("%d polygons, want 2: %v", len(polys), polys)
	}
	want := map[Point]bool{{10, 20}: true, {59, 20}: true, {59, 69}: true, {10, 69}: true}
	if len(polys[0]) != 4 {
		t.Fatalf("largest polygon %v, want the 4 corners of the 50×50 square", polys[0])
	}
	for _, p := range polys[0] {
		if !want[p] {
			t.Errorf("corner %v not one of %v", p, want)
		}
	}
	if got := Outline(m, 1); len(got) != 1 || len(got[0]) != 4 {
		t.Errorf("max 1: %v", got)
	}
}
