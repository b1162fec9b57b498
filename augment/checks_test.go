package augment

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diagd/diagd/augment/catalogue"
	"github.com/diagd/diagd/retrain/dataset"
)

// writeGrey writes a grey PNG (R = G = B): a gradient with ±12 levels of noise.
func writeGrey(t *testing.T, path string, w, h int, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 3))
	img := image.NewGray(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Pix[y*img.Stride+x] = uint8(105 + 30*x/w + rng.IntN(25))
		}
	}
	writePNG(t, path, img)
}

func writePNG(t *testing.T, path string, img image.Image) {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// colourful is a saturated red and cyan texture: mixed into a grey image it would
// show as colour if the generator did not keep grey images grey.
func colourful(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			c := color.RGBA{240, 30, 40, 255}
			if (x/4+y/4)%2 == 1 {
				c = color.RGBA{20, 220, 230, 255}
			}
			img.SetRGBA(x, y, c)
		}
	}
	return img
}

func runBatch(t *testing.T, negs []string, cat *catalogue.Catalogue, n int, rule string) (Summary, string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out")
	s, err := Run(t.Context(), Config{Negatives: negs, Out: out, N: n, LabelRule: rule,
		Catalogue: func() *catalogue.Catalogue { return cat }, Generator: NewMemSeg()})
	if err != nil {
		t.Fatal(err)
	}
	return s, out
}

type written struct {
	sc       Sidecar
	img, src *image.RGBA
	mask     *image.Gray
}

func readWritten(t *testing.T, out string, s Summary) []written {
	t.Helper()
	var ws []written
	for i := s.First; i <= s.Last; i++ {
		b, err := os.ReadFile(filepath.Join(out, fmt.Sprintf("%05d.json", i)))
		if os.IsNotExist(err) {
			continue
		}
		var w written
		if err := jsonUnmarshal(b, &w.sc); err != nil {
			t.Fatal(err)
		}
		if w.img, err = ReadRGB(filepath.Join(out, w.sc.Image)); err != nil {
			t.Fatal(err)
		}
		if w.src, err = ReadRGB(w.sc.SourceNegative); err != nil {
			t.Fatal(err)
		}
		if w.mask, _, err = ReadMask(filepath.Join(out, w.sc.Mask), w.img.Rect.Size()); err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
	}
	return ws
}

// On grey negatives every output pixel is grey, whatever the shape or texture (a
// red-and-cyan texture file is mixed into the blobs); every written defect passes the
// visibility check when measured again from the files; a kind too faint to see is
// redrawn every time and never written; kinds that set no contrast get a darker fill
// measured from the negatives.
func TestGreyVisibleDefects(t *testing.T) {
	dir := t.TempDir()
	var negs []string
	for i := range 4 {
		p := filepath.Join(dir, "neg", fmt.Sprintf("g%d.png", i))
		writeGrey(t, p, 96, 80, uint64(i))
		negs = append(negs, p)
	}
	writePNG(t, filepath.Join(dir, "tex.png"), colourful(32, 32))
	cat, err := catalogue.Parse(filepath.Join(dir, "c.yaml"), []byte(`
memseg:
  textures: tex.png
checks:
  min_contrast: 12
  retries: 6
kinds:
  - name: cracks
    shape: {type: crack, length: [30, 60], width: [1.5, 3], angle: [-20, 20]}
  - name: pits
    shape: pit
  - name: stains
    shape: stain
  - name: blobs
    shape: blob
  - name: faint
    shape: {type: scratch, width: [1, 2]}
    fill: {contrast: [-4, -2]}
`))
	if err != nil {
		t.Fatal(err)
	}
	s, out := runBatch(t, negs, cat, 24, "")
	ws := readWritten(t, out, s)
	if len(ws) != s.Written || s.Written < 20 {
		t.Fatalf("%d written, %d read back; summary %+v", s.Written, len(ws), s)
	}
	for _, w := range ws {
		for i := 0; i < len(w.img.Pix); i += 4 {
			if p := w.img.Pix[i : i+3]; p[0] != p[1] || p[1] != p[2] {
				t.Fatalf("%s (%s): pixel %d is %v, not grey", w.sc.Image, w.sc.DefectKind, i/4, p)
			}
		}
		v := MeasureVisibility(w.src, w.img, w.mask, cat.Checks.Ring)
		if !v.Visible(12) || w.sc.Visibility == nil || *w.sc.Visibility != v {
			t.Errorf("%s (%s): measured %+v, sidecar %+v, threshold 12", w.sc.Image, w.sc.DefectKind, v, w.sc.Visibility)
		}
		if w.sc.DefectKind == "faint" {
			t.Errorf("%s: the faint kind was written", w.sc.Image)
		}
		if c, _ := w.sc.Details["contrast"].(float64); w.sc.DefectKind != "blobs" && c >= 0 {
			t.Errorf("%s (%s): contrast %v, want a darker default on this bright surface", w.sc.Image, w.sc.DefectKind, c)
		}
	}
	if s.Redrawn[SkipInvisible] == 0 || s.Redrawn[SkipInvisible] != s.Count(SkipInvisible) || s.MinContrast != 12 {
		t.Fatalf("invisible redraws: %d counted, %d listed, threshold %v", s.Redrawn[SkipInvisible], s.Count(SkipInvisible), s.MinContrast)
	}
	t.Logf("%d written, redrawn %v, %d not produced", s.Written, s.Redrawn, s.Count(SkipImage))
	if !s.Surface.Grey || s.Surface.Images != 4 {
		t.Fatalf("surface %+v", s.Surface)
	}
}

// Under the paper's label rule a defect that would be labelled ok after resizing to
// 704×256 is redrawn: thin vertical scratches on wide images never survive the
// horizontal shrink, stains do. Every mask written passes the rule as the training
// loader applies it (dataset.MaskLabel on the file); under any-pixel the thin
// scratches are written.
func TestPaperRuleAtGeneration(t *testing.T) {
	dir := t.TempDir()
	var negs []string
	for i := range 3 {
		p := filepath.Join(dir, fmt.Sprintf("w%d.png", i))
		writeGrey(t, p, 512, 96, uint64(i))
		negs = append(negs, p)
	}
	cat, err := catalogue.Parse(filepath.Join(dir, "c.yaml"), []byte(`
checks: {retries: 10}
kinds:
  - name: thin
    shape: {type: scratch, width: 1, angle: 90, length: 60, taper: 0}
    fill: {contrast: [-60, -40]}
  - name: stain
    shape: {type: stain, radius: [14, 20]}
    fill: {contrast: [-50, -40]}
`))
	if err != nil {
		t.Fatal(err)
	}
	s, out := runBatch(t, negs, cat, 10, "paper")
	if s.Redrawn[SkipLabelRule] == 0 || s.LabelRule != "paper" {
		t.Fatalf("no label-rule redraws: %+v", s.Redrawn)
	}
	for _, w := range readWritten(t, out, s) {
		ok, err := dataset.MaskLabel(filepath.Join(out, w.sc.Mask), dataset.PaperRule)
		if err != nil || !ok || w.sc.DefectKind == "thin" || w.sc.LabelRule != "paper" {
			t.Errorf("%s (%s): paper-rule label %v (%v)", w.sc.Image, w.sc.DefectKind, ok, err)
		}
	}
	for _, k := range s.Skipped {
		if k.What == SkipLabelRule && !strings.Contains(k.Reason, `kind "thin"`) {
			t.Errorf("label-rule redraw of another kind: %s", k.Reason)
		}
	}
	t.Logf("paper: %d written, redrawn %v, %d not produced", s.Written, s.Redrawn, s.Count(SkipImage))
	s, out = runBatch(t, negs, cat, 10, "any")
	thin := 0
	for _, w := range readWritten(t, out, s) {
		if w.sc.DefectKind == "thin" {
			thin++
		}
	}
	if thin == 0 || s.Redrawn[SkipLabelRule] != 0 {
		t.Fatalf("any-pixel: %d thin scratches written, %d label-rule redraws", thin, s.Redrawn[SkipLabelRule])
	}
}

// PaperSurvives agrees with the training loader's rule on masks of every size class.
func TestPaperSurvivesMatchesLoader(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(8, 8))
	kept := 0
	for i := range 16 {
		w, h := 64+rng.IntN(700), 64+rng.IntN(700)
		m := image.NewGray(image.Rect(0, 0, w, h))
		x0, y0 := rng.IntN(w-4), rng.IntN(h-4)
		bw, bh := 1+rng.IntN(6), 1+rng.IntN(6)
		for y := y0; y < min(h, y0+bh); y++ {
			for x := x0; x < min(w, x0+bw); x++ {
				m.Pix[y*m.Stride+x] = 255
			}
		}
		p := filepath.Join(dir, fmt.Sprintf("m%d.png", i))
		writePNG(t, p, m)
		want, err := dataset.MaskLabel(p, dataset.PaperRule)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := PaperSurvives(m); err != nil || got != want {
			t.Errorf("%dx%d mask with a %dx%d box: PaperSurvives %v, loader %v", w, h, bw, bh, got, want)
		}
		if want {
			kept++
		}
	}
	if kept == 0 || kept == 16 {
		t.Fatalf("%d of 16 masks survive: the cases do not cover both outcomes", kept)
	}
}

// Warnings that differ only in numbers are counted as one, logged once.
func TestWarningCounter(t *testing.T) {
	w := newWarningCounter(nil)
	w.log = discardLogger()
	for _, m := range []string{"mask a.png is 10x20, the image is 30x40: mask scaled to fit",
		"mask a.png is 10x20, the image is 50x60: mask scaled to fit", "texture skipped: bad"} {
		w.add(m, 0)
	}
	c := w.counts()
	if len(c) != 2 || c[0].Count != 2 || !strings.Contains(c[0].Example, "30x40") || c[1].Count != 1 {
		t.Fatalf("counts %+v", c)
	}
}
