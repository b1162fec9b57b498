package main

import (
	"encoding/json"
	"image"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/imageio"
	"github.com/diagd/diagd/internal/onnx/zoo"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/internal/testenv"
	"github.com/diagd/diagd/retrain/segdec"
)

// writeSegTestModel writes zoo.BlockSegmenter at 64×96 (white 8×8 blocks are defect
// cells) with metadata naming its segmentation output.
func writeSegTestModel(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	g, err := zoo.BlockSegmenter(64, 96)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Save(filepath.Join(dir, detect.ModelFile)); err != nil {
		t.Fatal(err)
	}
	meta := detect.DefaultMetadata("seg-1")
	meta.Input.Height, meta.Input.Width = 64, 96
	meta.Input.Mean, meta.Input.Std = [3]float32{}, [3]float32{1, 1, 1}
	meta.Outputs = detect.OutputSpec{Logit: zoo.DetectorLogit, Segmentation: zoo.DetectorSegmentation}
	if err := detect.WriteMetadata(dir, meta); err != nil {
		t.Fatal(err)
	}
	return dir
}

// writeBlockImage writes a black w×h PNG with white rectangles and, when mask is not
// "", the rectangles as a mask.
func writeBlockImage(t *testing.T, path, mask string, w, h int, rects ...image.Rectangle) {
	t.Helper()
	m := gocv.NewMatWithSize(h, w, gocv.MatTypeCV8UC3)
	defer m.Close()
	k := gocv.NewMatWithSize(h, w, gocv.MatTypeCV8U)
	defer k.Close()
	for _, r := range rects {
		gocv.Rectangle(&m, image.Rect(r.Min.X, r.Min.Y, r.Max.X-1, r.Max.Y-1), color.RGBA{255, 255, 255, 0}, -1)
		gocv.Rectangle(&k, image.Rect(r.Min.X, r.Min.Y, r.Max.X-1, r.Max.Y-1), color.RGBA{255, 255, 255, 0}, -1)
	}
	if !gocv.IMWrite(path, m) || (mask != "" && !gocv.IMWrite(mask, k)) {
		t.Fatalf("cannot write %s", path)
	}
}

// detect on a segmenting model: a fail's JSON line carries its regions in the image's
// pixels (300×200 seen at 96×64: 25-pixel cells), the text line too, and --heatmap
// writes each image with its map overlaid, at the image's size, unique names for equal
// base names. --heatmap with a model that does not segment is a usage error.
func TestDetectRegionsAndHeatmap(t *testing.T) {
	testenv.ORT(t)
	model := writeSegTestModel(t)
	imgs := t.TempDir()
	a, b := filepath.Join(imgs, "a.png"), filepath.Join(imgs, "sub", "a.png")
	writeBlockImage(t, a, "", 300, 200, image.Rect(50, 75, 100, 125))
	if err := os.MkdirAll(filepath.Dir(b), 0o755); err != nil {
		t.Fatal(err)
	}
	writeBlockImage(t, b, "", 300, 200)
	heat := filepath.Join(t.TempDir(), "heat")
	code, out, errs := runCLI(t, "detect", "--model", model, "--json", "--heatmap", heat, a, b)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var fail, pass detectLine
	if len(lines) != 2 || json.Unmarshal([]byte(lines[0]), &fail) != nil || json.Unmarshal([]byte(lines[1]), &pass) != nil {
		t.Fatalf("output %q", out)
	}
	if fail.Verdict != "fail" || len(fail.Regions) != 1 || pass.Verdict != "pass" || pass.Regions != nil || strings.Contains(lines[1], "regions") {
		t.Fatalf("lines %+v %+v", fail, pass)
	}
	if r := fail.Regions[0]; r.X != 50 || r.Y != 75 || r.W != 50 || r.H != 50 || r.Area != 2500 {
		t.Errorf("region %+v, want 50,75 50x50 area 2500", r)
	}
	for _, name := range []string{"a.png", "a-2.png"} {
		m, err := imageio.Read(filepath.Join(heat, name))
		if err != nil {
			t.Fatal(err)
		}
		if m.Cols() != 300 || m.Rows() != 200 {
			t.Errorf("%s is %dx%d", name, m.Cols(), m.Rows())
		}
		m.Close()
	}
	code, out, _ = runCLI(t, "detect", "--model", model, a)
	if code != 0 || !strings.Contains(out, "\tregions=50,75,50x50\n") {
		t.Errorf("text line %q", out)
	}
	code, _, errs = runCLI(t, "detect", "--model", writeTestModel(t), "--heatmap", heat, a)
	if code != exitUsage || !strings.Contains(errs, "no segmentation output") {
		t.Errorf("--heatmap without a segmentation: exit %d, %s", code, errs)
	}
}

// demo-model --arch segdec writes an untrained segdec that detect serves, with its
// segmentation output at 1/8 of the input.
func TestDemoModelSegdec(t *testing.T) {
	testenv.ORT(t)
	dir := filepath.Join(t.TempDir(), "m")
	if code, _, errs := runCLI(t, "demo-model", "--arch", "segdec", "--out", dir); code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	m, err := detect.LoadModel(testenv.Logger(t), dir, detect.Options{Session: ortenv.Options{Provider: ortenv.CPU}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	o := segdec.CPUOptions()
	ok, w, h := m.Segments()
	if !ok || w != o.Width/8 || h != o.Height/8 || m.Meta.Architecture != "segdec" || m.Meta.Outputs.Features == "" {
		t.Errorf("segments %v %dx%d, metadata %+v", ok, w, h, m.Meta)
	}
	if code, _, _ := runCLI(t, "demo-model", "--arch", "vgg", "--out", dir); code != exitUsage {
		t.Errorf("unknown --arch: exit %d", code)
	}
}

// eval on a segmenting model with masks: pixel AP and defects hit by hand. Three
// 300×200 images (25×25-pixel cells, 96 per image) in the KSDD2 layout: a defect whose
// white block (4 cells, p ≈ 1) is in its mask with a second, unseen region (1 black
// cell, p ≈ 0); a good image with a grey block (1 cell, p 0.9966); a black good image.
// Ranked: 4 defect cells, the grey cell, then 283 cells at p ≈ 0 holding the 5th defect
// cell, so AP = 0.8·1 + 0.2·5/288, and 1 of 2 defects is hit. The worst-cases sheet is
// written.
func TestEvalPixelFigures(t *testing.T) {
	testenv.ORT(t)
	data := filepath.Join(t.TempDir(), "ksdd2")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	block, unseen := image.Rect(50, 75, 100, 125), image.Rect(200, 25, 225, 50)
	writeBlockImage(t, filepath.Join(data, "10000.png"), "", 300, 200, block)
	writeBlockImage(t, filepath.Join(data, "10000_GT.png"), "", 300, 200, block, unseen)
	grey := gocv.NewMatWithSize(200, 300, gocv.MatTypeCV8UC3)
	defer grey.Close()
	gocv.Rectangle(&grey, image.Rect(250, 0, 274, 24), color.RGBA{200, 200, 200, 0}, -1)
	imwrite(t, filepath.Join(data, "10001.png"), grey)
	writeBlockImage(t, filepath.Join(data, "10001_GT.png"), "", 300, 200)
	writeBlockImage(t, filepath.Join(data, "10002.png"), "", 300, 200)
	writeBlockImage(t, filepath.Join(data, "10002_GT.png"), "", 300, 200)

	out := t.TempDir()
	code, stdout, errs := runCLI(t, "eval", "--model", writeSegTestModel(t), "--data", data, "--out", out, "--provider", "cpu")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	r := readResult(t, out)
	p := r.Pixel
	if p == nil {
		t.Fatalf("no pixel figures: %+v\n%s", r, stdout)
	}
	if want := 0.8 + 0.2*5/288; math.Abs(p.AP-want) > 1e-9 || p.Cells != 288 || p.DefectCells != 5 || p.Defects != 2 || p.DefectsHit != 1 || p.HitShare != 0.5 || p.Images != 3 {
		t.Errorf("pixel figures %+v, want AP %.6f, 5 of 288 cells, 1 of 2 defects hit", p.PixelReport, want)
	}
	if !strings.Contains(stdout, "defects    1 of 2 hit (50.0%)") {
		t.Errorf("printed:\n%s", stdout)
	}
	sheet, err := imageio.Read(filepath.Join(resultDir(t, out), "worst_cases.png"))
	if err != nil {
		t.Fatal(err)
	}
	defer sheet.Close()
	if sheet.Cols() != sheetPerRow*sheetTile || sheet.Rows() != 2*(sheetTitle+sheetTile+sheetCap) {
		t.Errorf("sheet %dx%d", sheet.Cols(), sheet.Rows())
	}
}
