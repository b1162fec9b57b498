package detect_test

import (
	"image"
	"image/color"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/onnx/zoo"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/internal/testenv"
)

// writeSegModel writes zoo.BlockSegmenter at segH×segW: a cell's logit is
// 20·(mean brightness of its 8×8 block, in [0,1]) − 10, so white blocks are defects.
const segH, segW = 64, 96

func writeSegModel(t *testing.T, threshold float64) string {
	t.Helper()
	g, err := zoo.BlockSegmenter(segH, segW)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := g.Save(filepath.Join(dir, detect.ModelFile)); err != nil {
		t.Fatal(err)
	}
	meta := detect.DefaultMetadata("seg-1")
	meta.Input.Height, meta.Input.Width = segH, segW
	meta.Input.Mean, meta.Input.Std = [3]float32{}, [3]float32{1, 1, 1}
	meta.Outputs = detect.OutputSpec{Logit: "logit", Segmentation: "segmentation"}
	meta.Threshold = threshold
	if err := detect.WriteMetadata(dir, meta); err != nil {
		t.Fatal(err)
	}
	return dir
}

// blocks is a black w×h BGR frame with white rectangles.
func blocks(w, h int, rects ...image.Rectangle) gocv.Mat {
	m := gocv.NewMatWithSize(h, w, gocv.MatTypeCV8UC3)
	for _, r := range rects {
		gocv.Rectangle(&m, image.Rect(r.Min.X, r.Min.Y, r.Max.X-1, r.Max.Y-1), color.RGBA{255, 255, 255, 0}, -1)
	}
	return m
}

// A failed 300×200 frame (the model sees it at 96×64, so a cell is 25×25 source pixels)
// carries its two white blocks as regions in source pixels, the larger first, with the
// areas of their cells; the map itself comes with the result.
func TestSegmentationRegionsInSourcePixels(t *testing.T) {
	testenv.ORT(t)
	d := detect.New(testenv.Logger(t), detect.Options{Session: ortenv.Options{Provider: ortenv.CPU}})
	defer d.Close()
	if err := d.LoadAndSwap(writeSegModel(t, 0.5)); err != nil {
		t.Fatal(err)
	}
	big := image.Rect(50, 75, 100, 125)     // cells 2-3 across, 3-4 down
	small := image.Rect(250, 0, 275, 25)    // cell 10 across, 0 down
	clean := image.Rect(150, 150, 151, 151) // one pixel: far below the threshold
	frame := blocks(300, 200, small, big, clean)
	defer frame.Close()
	res := make([]detect.Result, 1)
	if err := d.Judge([]gocv.Mat{frame}, res); err != nil {
		t.Fatal(err)
	}
	r := res[0]
	if r.Verdict != detect.Fail || r.Segmentation == nil || r.Segmentation.W != 12 || r.Segmentation.H != 8 {
		t.Fatalf("verdict %s, map %+v", r.Verdict, r.Segmentation)
	}
	want := []detect.Region{{X: 50, Y: 75, W: 50, H: 50, Area: 4 * 625}, {X: 250, Y: 0, W: 25, H: 25, Area: 625}}
	if len(r.Regions) != len(want) {
		t.Fatalf("regions %+v, want %+v", r.Regions, want)
	}
	for i, g := range r.Regions {
		if g.Peak < 0.99 {
			t.Errorf("region %d peak %v", i, g.Peak)
		}
		g.Peak = 0
		if g != want[i] {
			t.Errorf("region %d = %+v, want %+v", i, g, want[i])
		}
	}
	if p := r.Segmentation.P[5*12+6]; p > 1e-3 {
		t.Errorf("the clean cell under the lone pixel has p %v", p)
	}
}

// A pass carries the map but no regions, even where cells reach the segmentation
// threshold; a model without a segmentation output gives neither.
func TestNoRegionsWithoutAFail(t *testing.T) {
	testenv.ORT(t)
	log := testenv.Logger(t)
	m, err := detect.LoadModel(log, writeSegModel(t, 1), detect.Options{Session: ortenv.Options{Provider: ortenv.CPU}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	frame := blocks(96, 64, image.Rect(0, 0, 8, 8))
	defer frame.Close()
	logits, segs, errs := make([]float32, 1), make([]detect.SegMap, 1), make([]error, 1)
	if err := m.Segment([]gocv.Mat{frame}, logits, segs, errs); err != nil || errs[0] != nil {
		t.Fatal(err, errs[0])
	}
	r := m.Result(logits[0])
	m.Locate(&r, &segs[0], 96, 64)
	if r.Verdict != detect.Pass || r.Regions != nil || r.Segmentation == nil || segs[0].P[0] < 0.99 {
		t.Errorf("threshold 1: verdict %s, regions %v, map %v", r.Verdict, r.Regions, r.Segmentation)
	}

	d := detect.New(log, detect.Options{Session: ortenv.Options{Provider: ortenv.CPU}})
	defer d.Close()
	plain, err := detect.LoadModel(log, writeMeanSqrtModel(t, 0), detect.Options{Session: ortenv.Options{Provider: ortenv.CPU}})
	if err != nil {
		t.Fatal(err)
	}
	if ok, _, _ := plain.Segments(); ok {
		t.Error("a model without a segmentation output says it segments")
	}
	d.Swap(plain) // the detector closes it
	res := make([]detect.Result, 1)
	if err := d.Judge([]gocv.Mat{frame}, res); err != nil {
		t.Fatal(err)
	}
	if res[0].Segmentation != nil || res[0].Regions != nil {
		t.Errorf("no segmentation output, yet %+v", res[0])
	}
}

// model.json naming a segmentation output the model lacks is refused, naming it.
func TestMissingSegmentationOutputRefused(t *testing.T) {
	testenv.ORT(t)
	dir := writeSegModel(t, 0.5)
	meta, err := detect.ReadMetadata(dir)
	if err != nil {
		t.Fatal(err)
	}
	meta.Outputs.Segmentation = "mask"
	if err := detect.WriteMetadata(dir, meta); err != nil {
		t.Fatal(err)
	}
	_, err = detect.LoadModel(testenv.Logger(t), dir, detect.Options{Session: ortenv.Options{Provider: ortenv.CPU}})
	if err == nil || !strings.Contains(err.Error(), `outputs.segmentation: no output "mask"`) {
		t.Errorf("error %v, want one naming outputs.segmentation", err)
	}
}

// ScoreFiles hands back each image's map and size; Overlay paints the defect and leaves
// the clean surface as it was.
func TestScoreFilesMapsAndOverlay(t *testing.T) {
	testenv.ORT(t)
	m, err := detect.LoadModel(testenv.Logger(t), writeSegModel(t, 0.5), detect.Options{Session: ortenv.Options{Provider: ortenv.CPU}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	frame := blocks(300, 200, image.Rect(50, 75, 100, 125))
	defer frame.Close()
	grey := gocv.NewMat()
	defer grey.Close()
	gocv.CvtColor(frame, &grey, gocv.ColorBGRToGray)
	p := filepath.Join(t.TempDir(), "a.png")
	if !gocv.IMWrite(p, grey) {
		t.Fatal("cannot write the image")
	}
	res, err := m.ScoreFiles(t.Context(), []string{p}, nil)
	if err != nil || res[0].Err != nil || res[0].Seg == nil || res[0].Width != 300 || res[0].Height != 200 {
		t.Fatalf("%+v %v", res, err)
	}
	r := m.Result(res[0].Logit)
	m.Locate(&r, res[0].Seg, 300, 200)
	img, err := detect.Overlay(grey, *res[0].Seg, 0.5, r.Regions)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if img.Cols() != 300 || img.Rows() != 200 || img.Channels() != 3 {
		t.Fatalf("overlay %dx%d, %d channels", img.Cols(), img.Rows(), img.Channels())
	}
	// White under JET's top colour (BGR 0,0,128) at 0.6: about (102,102,179).
	if v := img.GetVecbAt(100, 75); v[0] > 130 || v[2] < v[0]+50 {
		t.Errorf("inside the defect BGR %v: not painted red", v)
	}
	if v := img.GetVecbAt(190, 280); v[0] != 0 || v[1] != 0 || v[2] != 0 {
		t.Errorf("far from the defect %v: the clean surface changed", v)
	}
	out := filepath.Join(t.TempDir(), "o.png")
	if !gocv.IMWrite(out, img) {
		t.Fatal("overlay not written")
	}
	if st, err := os.Stat(out); err != nil || st.Size() == 0 {
		t.Fatal(err)
	}
}
