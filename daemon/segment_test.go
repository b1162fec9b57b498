package daemon

import (
	"context"
	"image"
	"image/color"
	"path/filepath"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/console"
	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/onnx/zoo"
	"github.com/diagd/diagd/mqtt"
)

// writeSegModel writes zoo.BlockSegmenter (64×96 input, white 8×8 blocks are defect
// cells) with metadata naming its segmentation output.
func writeSegModel(t testing.TB, dir string) {
	t.Helper()
	g, err := zoo.BlockSegmenter(64, 96)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Save(filepath.Join(dir, detect.ModelFile)); err != nil {
		t.Fatal(err)
	}
	meta := detect.DefaultMetadata("seg1")
	meta.Architecture = "block-segmenter"
	meta.Input.Height, meta.Input.Width = 64, 96
	meta.Input.Mean, meta.Input.Std = [3]float32{}, [3]float32{1, 1, 1}
	meta.Outputs = detect.OutputSpec{Logit: zoo.DetectorLogit, Segmentation: zoo.DetectorSegmentation}
	if err := detect.WriteMetadata(dir, meta); err != nil {
		t.Fatal(err)
	}
}

// writeBlocks writes a black 300×200 PNG with white rectangles.
func writeBlocks(t testing.TB, path string, rects ...image.Rectangle) {
	t.Helper()
	m := gocv.NewMatWithSize(200, 300, gocv.MatTypeCV8UC3)
	defer m.Close()
	for _, r := range rects {
		gocv.Rectangle(&m, image.Rect(r.Min.X, r.Min.Y, r.Max.X-1, r.Max.Y-1), color.RGBA{255, 255, 255, 0}, -1)
	}
	if !gocv.IMWrite(path, m) {
		t.Fatalf("cannot write %s", path)
	}
}

// A fail by a segmenting model is published with its defects in the frame's pixels
// (the model saw the 300×200 frame at 96×64: a cell is 25×25 source pixels), and the
// live page gets the outline of the defect; a pass carries neither.
func TestFailCarriesWhereTheDefectIs(t *testing.T) {
	st := newStation(t, verdictTopic)
	writeSegModel(t, st.cfg.ModelDir)
	r := start(t, st.cfg)
	waitReady(t, r)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := r.d.console.Hub.SubscribeVerdicts(ctx)

	big, small := image.Rect(50, 75, 100, 125), image.Rect(250, 0, 275, 25)
	writeBlocks(t, filepath.Join(st.watched, "fail.png"), small, big)
	ms := st.sub.WaitFor(t, 30*time.Second, "the fail's verdict", countVerdicts(t, verdictTopic, 1))
	v := verdictsOf(t, ms, verdictTopic)[0]
	want := []mqtt.Defect{
		{BBox: mqtt.BBox{TopLeftX: 50, TopLeftY: 75, BottomRightX: 100, BottomRightY: 125}, Area: 2500},
		{BBox: mqtt.BBox{TopLeftX: 250, TopLeftY: 0, BottomRightX: 275, BottomRightY: 25}, Area: 625},
	}
	if v.Verdict != mqtt.Fail || len(v.Defects) != 2 || v.DefectArea != 3125 {
		t.Fatalf("verdict %+v", v)
	}
	for i, d := range v.Defects {
		if d.Confidence < 0.99 {
			t.Errorf("defect %d confidence %v", i, d.Confidence)
		}
		d.Confidence = 0
		if d != want[i] {
			t.Errorf("defect %d = %+v, want %+v", i, d, want[i])
		}
	}
	outline := frameOutline(t, events)
	if len(outline) != 2 {
		t.Fatalf("outline %v, want the two blocks", outline)
	}
	if b := bounds(outline[0]); b.Min.X < 48 || b.Min.X > 52 || b.Max.X < 97 || b.Max.X > 101 || b.Min.Y < 73 || b.Max.Y > 126 {
		t.Errorf("the larger outline spans %v, want about %v", b, big)
	}

	writeBlocks(t, filepath.Join(st.watched, "pass.png"))
	ms = st.sub.WaitFor(t, 30*time.Second, "the pass's verdict", countVerdicts(t, verdictTopic, 2))
	if p := verdictsOf(t, ms, verdictTopic)[1]; p.Verdict != mqtt.Pass || p.Defects != nil || p.DefectArea != 0 {
		t.Errorf("pass verdict %+v", p)
	}
}

func waitReady(t *testing.T, r *running) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, ok := r.d.det.Metadata(); ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the model never loaded")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// frameOutline waits for the live stream's first frame event and returns its outline.
func frameOutline(t *testing.T, events <-chan console.Event) [][]console.Point {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case e := <-events:
			if e.Frame != nil {
				return e.Frame.Outline
			}
		case <-timeout:
			t.Fatal("no frame on the live stream")
		}
	}
}

func bounds(poly []console.Point) image.Rectangle {
	b := image.Rect(poly[0].X, poly[0].Y, poly[0].X, poly[0].Y)
	for _, p := range poly {
		b = b.Union(image.Rect(p.X, p.Y, p.X+1, p.Y+1))
	}
	return b
}
