package browsertest

import (
	"context"
	"fmt"
	"image"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/console"
)

// outlineBackend is a console over a real Hub with a camera and nothing else: no model
// of diagd segments yet, so the outline a segmenting model would give is offered here
// directly. Only the live page's calls are answered; the embedded nil Backend would
// panic on any other, failing the test.
type outlineBackend struct {
	console.Backend
	hub *console.Hub
}

func (b outlineBackend) SubscribeVerdicts(ctx context.Context) <-chan console.Event {
	return b.hub.SubscribeVerdicts(ctx)
}

func (b outlineBackend) LatestFrame(camera string) (console.Frame, bool) {
	return b.hub.LatestFrame(camera)
}

func (outlineBackend) Status() console.Status {
	return console.Status{Station: "seg", Ready: true, NotReady: []string{}, Model: "seg-1",
		Cameras: []console.Camera{{Name: "cam", State: "online", FPS: 1}}}
}

func TestLiveDrawsTheOutlineOfASegmentingModel(t *testing.T) {
	hub := console.NewHub(slog.New(slog.DiscardHandler), console.HubOptions{FrameEvery: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go hub.Run(ctx)
	srv, err := console.New(console.Options{Loopback: true}, outlineBackend{hub: hub})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	tb := newTab(t, ts.URL)
	tb.open("live")
	tb.waitJS(`document.getElementById('live-summary').textContent.includes('seg-1')`)

	mask := gocv.NewMatWithSize(100, 200, gocv.MatTypeCV8UC1)
	defer mask.Close()
	region := mask.Region(image.Rect(100, 50, 140, 70))
	region.SetTo(gocv.NewScalar(255, 0, 0, 0))
	region.Close()
	outline := console.Outline(mask, 4)
	frame := gocv.NewMatWithSize(100, 200, gocv.MatTypeCV8UC3)
	defer frame.Close()
	frame.SetTo(gocv.NewScalar(120, 120, 120, 0))
	hub.Offer("cam", frame, console.Verdict{Camera: "cam", Time: time.Now(), Verdict: "fail", Score: 0.9, Threshold: 0.5}, outline)

	var pts []string
	for _, p := range outline[0] {
		pts = append(pts, fmt.Sprintf("%d,%d", p.X, p.Y))
	}
	tb.waitJS(fmt.Sprintf(`(() => { const p = document.querySelector('[data-camera="cam"] svg polygon');
		return !!p && p.getAttribute('points') === %q && p.ownerSVGElement.getAttribute('viewBox') === '0 0 200 100'; })()`, strings.Join(pts, " ")))
	// Drawn over the picture: the polygon's box on screen lies inside the image's.
	tb.waitJS(`(() => { const i = document.querySelector('[data-camera="cam"] img'); return i.complete && i.naturalWidth === 200; })()`)
	inside := js[bool](tb, `(() => { const i = document.querySelector('[data-camera="cam"] img').getBoundingClientRect();
		const p = document.querySelector('[data-camera="cam"] svg polygon').getBoundingClientRect();
		return p.width > 0 && p.left >= i.left && p.right <= i.right && p.top >= i.top && p.bottom <= i.bottom; })()`)
	if !inside {
		t.Error("the outline is not drawn over the frame")
	}
	tb.screenshot("live-outline")
}
