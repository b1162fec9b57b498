package augment

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diagd/diagd/augment/catalogue"
	"github.com/diagd/diagd/internal/imageio"
)

// writeSurface writes a noisy grey surface, like a good product image.
func writeSurface(t *testing.T, path string, w, h int, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 1))
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			v := uint8(90 + 40*y/h + rng.IntN(20))
			img.SetRGBA(x, y, color.RGBA{v, v, uint8(int(v) * 9 / 10), 255})
		}
	}
	var b bytes.Buffer
	var err error
	if strings.HasSuffix(path, ".jpg") {
		err = jpeg.Encode(&b, img, &jpeg.Options{Quality: 92})
	} else {
		err = png.Encode(&b, img)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeMaskRect writes a soft-edged grey mask: 255 inside r, 100 on a one-pixel rim
// (below MaskThreshold, so not defect), 0 elsewhere.
func writeMaskRect(t *testing.T, path string, w, h int, r image.Rectangle) {
	t.Helper()
	m := image.NewGray(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			p := image.Pt(x, y)
			switch {
			case p.In(r):
				m.SetGray(x, y, color.Gray{255})
			case p.In(r.Inset(-1)):
				m.SetGray(x, y, color.Gray{100})
			}
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// fixture builds negatives (one corrupt) and a catalogue with a region kind, a
// shape kind whose mask is a different size, and a kind whose only mask is empty.
func fixture(t *testing.T) (negDir, catPath string) {
	root := t.TempDir()
	negDir = filepath.Join(root, "negatives")
	os.MkdirAll(negDir, 0o755)
	for i := range 6 {
		writeSurface(t, filepath.Join(negDir, fmt.Sprintf("good%02d.jpg", i)), 64, 96, uint64(i))
	}
	os.WriteFile(filepath.Join(negDir, "broken.png"), []byte("\x89PNG\r\n\x1a\nthis is not a png"), 0o644)
	cdir := filepath.Join(root, "catalogue")
	os.MkdirAll(filepath.Join(cdir, "regions"), 0o755)
	os.MkdirAll(filepath.Join(cdir, "shapes"), 0o755)
	writeMaskRect(t, filepath.Join(cdir, "regions", "lower.png"), 64, 96, fixtureRegionLower)
	writeMaskRect(t, filepath.Join(cdir, "shapes", "big.png"), 128, 192, image.Rect(40, 40, 80, 100)) // 2x the image
	writeMaskRect(t, filepath.Join(cdir, "shapes", "empty.png"), 64, 96, image.Rectangle{})
	catPath = filepath.Join(cdir, "defects.yaml")
	os.WriteFile(catPath, []byte(`generation:
  seed: 5
kinds:
  - name: stains
    prompt: brown stain
    regions: regions/lower.png
    weight: 2
  - name: dents
    prompt: dent
    masks: shapes/big.png
  - name: nothing
    prompt: never drawn
    masks: shapes/empty.png
    weight: 0.5
`), 0o644)
	return negDir, catPath
}

func run(t *testing.T, negDir, catPath, out string, n int) Summary {
	t.Helper()
	cat, err := catalogue.Load(catPath)
	if err != nil {
		t.Fatal(err)
	}
	negs, err := ListNegatives(negDir, "")
	if err != nil {
		t.Fatal(err)
	}
	var last Progress
	s, err := Run(t.Context(), Config{Negatives: negs, NegativesDir: negDir, Out: out, N: n,
		Catalogue: func() *catalogue.Catalogue { return cat }, Generator: NewMemSeg(),
		Progress: func(p Progress) { last = p }})
	if err != nil {
		t.Fatal(err)
	}
	if !last.Finished || last.Done != n || last.Written != s.Written {
		t.Fatalf("last progress %+v, summary %+v", last, s)
	}
	return s
}

// The fixture's allowed areas: the region kind's rectangle, and big.png's rectangle at
// half scale (the dents' mask is twice the image's size).
var (
	fixtureRegionLower = image.Rect(8, 50, 56, 90)
	fixtureDentRect    = image.Rect(20, 20, 40, 50)
)

func TestRunMemSegBatch(t *testing.T) {
	negDir, catPath := fixture(t)
	out := filepath.Join(t.TempDir(), "out")
	const n = 14
	s := run(t, negDir, catPath, out, n)
	if s.Written != n || s.Count(SkipImage) != 0 {
		t.Fatalf("summary %+v", s)
	}
	// The corrupt file is dropped once (if it was ever drawn) and never used.
	if s.Count(SkipNegative) > 1 {
		t.Fatalf("%d negative skips for one bad file", s.Count(SkipNegative))
	}
	kinds := map[string]int{}
	for i := range n {
		sc := readSidecar(t, out, i)
		kinds[sc.DefectKind]++
		checkMemSegOutput(t, out, i, sc)
	}
	if kinds["nothing"] != 0 || kinds["stains"] == 0 || kinds["dents"] == 0 {
		t.Fatalf("kinds drawn: %v", kinds)
	}
	checkBatchReports(t, s, out)

	// Same seed, same files: the same bytes. A second batch into the same folder
	// appends after the first instead of overwriting it.
	out2 := filepath.Join(t.TempDir(), "again")
	run(t, negDir, catPath, out2, 3)
	for i := range 3 {
		a, _ := os.ReadFile(filepath.Join(out, fmt.Sprintf("%05d.png", i)))
		b, _ := os.ReadFile(filepath.Join(out2, fmt.Sprintf("%05d.png", i)))
		if !bytes.Equal(a, b) {
			t.Fatalf("image %d differs between two runs with the same seed", i)
		}
	}
	s3 := run(t, negDir, catPath, out, 2)
	if s3.First != n || s3.Range != "00014-00015" {
		t.Fatalf("appending batch: %+v", s3)
	}
}

// readSidecar reads output i's sidecar from out.
func readSidecar(t *testing.T, out string, i int) Sidecar {
	t.Helper()
	var sc Sidecar
	b, err := os.ReadFile(filepath.Join(out, fmt.Sprintf("%05d.json", i)))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &sc); err != nil {
		t.Fatal(err)
	}
	return sc
}

// checkMemSegOutput checks output i of the fixture's batch (seed 5): its sidecar, its
// warnings, and that it differs from its source negative only inside its mask, which
// lies inside the kind's allowed area.
func checkMemSegOutput(t *testing.T, out string, i int, sc Sidecar) {
	t.Helper()
	if sc.Generator != "memseg" || sc.Seed != ImageSeed(5, i) || sc.BatchSeed != 5 || sc.Settings.Steps != 30 {
		t.Fatalf("sidecar %d: %+v", i, sc)
	}
	if filepath.Base(sc.SourceNegative) == "broken.png" {
		t.Fatalf("output %d used the corrupt negative", i)
	}
	img, err := ReadRGB(filepath.Join(out, sc.Image))
	if err != nil {
		t.Fatal(err)
	}
	mask, _, err := ReadMask(filepath.Join(out, sc.Mask), img.Rect.Size())
	if err != nil {
		t.Fatal(err)
	}
	src, err := ReadRGB(sc.SourceNegative)
	if err != nil {
		t.Fatal(err)
	}
	allowed := fixtureRegionLower
	if sc.DefectKind == "dents" {
		allowed = fixtureDentRect
		checkDentWarnings(t, i, sc.Warnings)
	}
	px := 0
	for y := range img.Rect.Dy() {
		for x := range img.Rect.Dx() {
			in := mask.GrayAt(x, y).Y > 0
			if in {
				px++
				if !image.Pt(x, y).In(allowed) {
					t.Fatalf("output %d (%s): mask pixel (%d,%d) outside %v", i, sc.DefectKind, x, y, allowed)
				}
			} else if img.RGBAAt(x, y) != src.RGBAAt(x, y) {
				t.Fatalf("output %d: pixel (%d,%d) outside the mask changed", i, x, y)
			}
		}
	}
	if px == 0 {
		t.Fatalf("output %d: empty mask", i)
	}
	if want := fixtureDentRect.Dx() * fixtureDentRect.Dy(); sc.DefectKind == "dents" && px != want {
		t.Fatalf("dents %d: %d mask pixels, want the scaled rectangle's %d", i, px, want)
	}
}

// checkDentWarnings checks a dents output's warnings: the scaled mask is always said;
// a texture draw may also hit the corrupt file.
func checkDentWarnings(t *testing.T, i int, warnings []string) {
	t.Helper()
	if len(warnings) == 0 || !strings.Contains(warnings[0], "128x192, the image is 64x96: mask scaled") {
		t.Fatalf("dents %d: warnings %q", i, warnings)
	}
	for _, w := range warnings[1:] {
		if !strings.Contains(w, "texture skipped: ") || !strings.Contains(w, "broken.png") {
			t.Fatalf("dents %d: warnings %q", i, warnings)
		}
	}
}

// checkBatchReports checks what the fixture's 14-image batch reports: the empty mask's
// skip reason, a readable contact sheet and the summary file.
func checkBatchReports(t *testing.T, s Summary, out string) {
	t.Helper()
	// Every draw of the empty mask is reported with its reason.
	for _, k := range s.Skipped {
		if k.What == SkipMask && !strings.Contains(k.Reason, "empty.png (catalogue line 13) is empty") {
			t.Fatalf("mask skip reason %q", k.Reason)
		}
	}
	sheet, err := imageio.Read(s.ContactSheet)
	if err != nil {
		t.Fatalf("contact sheet: %v", err)
	}
	sheet.Close()
	if _, err := os.Stat(filepath.Join(out, "summary_00000-00013.json")); err != nil {
		t.Fatal(err)
	}
}

func TestRunAllNegativesBad(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.png"), nil, 0o644)
	os.WriteFile(filepath.Join(dir, "b.jpg"), []byte("garbage"), 0o644)
	_, catPath := fixture(t)
	cat, err := catalogue.Load(catPath)
	if err != nil {
		t.Fatal(err)
	}
	negs, _ := ListNegatives(dir, "")
	s, err := Run(t.Context(), Config{Negatives: negs, Out: filepath.Join(dir, "out"), N: 3,
		Catalogue: func() *catalogue.Catalogue { return cat }, Generator: NewMemSeg()})
	if err == nil || s.Count(SkipNegative) != 2 || s.Written != 0 || !strings.Contains(s.Stopped, "all 2 negatives failed") {
		t.Fatalf("err %v, summary %+v", err, s)
	}
}

// TestRunTakesLiveCatalogue: Run asks for the catalogue before every image, so an
// edit applied by a Watcher reaches the next image.
func TestRunTakesLiveCatalogue(t *testing.T) {
	negDir, catPath := fixture(t)
	first, err := catalogue.Load(catPath)
	if err != nil {
		t.Fatal(err)
	}
	src, _ := os.ReadFile(catPath)
	edited := strings.Replace(string(src), "name: stains", "name: rust", 1)
	edited = strings.Replace(edited, "weight: 2", "weight: 1000", 1)
	second, err := catalogue.Parse(catPath, []byte(edited))
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	negs, _ := ListNegatives(negDir, "*.jpg")
	out := t.TempDir()
	s, err := Run(t.Context(), Config{Negatives: negs, Out: out, N: 4, Generator: NewMemSeg(),
		Catalogue: func() *catalogue.Catalogue {
			calls++
			if calls > 3 { // Run's first call reads the batch seed; then one per image
				return second
			}
			return first
		}})
	if err != nil || s.Written != 4 {
		t.Fatalf("%v %+v", err, s)
	}
	for i, want := range []string{"", "", "rust", "rust"} {
		b, _ := os.ReadFile(filepath.Join(out, fmt.Sprintf("%05d.json", i)))
		var sc Sidecar
		json.Unmarshal(b, &sc)
		if want != "" && (sc.DefectKind != want || sc.CatalogueDigest != second.Digest) {
			t.Fatalf("image %d: kind %q digest %s, want the edited catalogue", i, sc.DefectKind, sc.CatalogueDigest[:8])
		}
		if want == "" && (sc.DefectKind == "rust" || sc.CatalogueDigest != first.Digest) {
			t.Fatalf("image %d made with the edited catalogue too early", i)
		}
	}
}

// TestRunCancel: cancelling keeps what was written complete and records why it stopped.
func TestRunCancel(t *testing.T) {
	negDir, catPath := fixture(t)
	cat, _ := catalogue.Load(catPath)
	negs, _ := ListNegatives(negDir, "*.jpg")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out := t.TempDir()
	s, err := Run(ctx, Config{Negatives: negs, Out: out, N: 10, Generator: NewMemSeg(),
		Catalogue: func() *catalogue.Catalogue { return cat },
		Progress: func(p Progress) {
			if p.Written == 2 {
				cancel()
			}
		}})
	if !errors.Is(err, context.Canceled) || s.Written != 2 || !strings.HasPrefix(s.Stopped, "cancelled") {
		t.Fatalf("err %v, summary %+v", err, s)
	}
	ents, _ := os.ReadDir(out)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	want := "00000.json 00000.png 00000_mask.png 00001.json 00001.png 00001_mask.png contact-sheet_00000-00009.png summary_00000-00009.json"
	if strings.Join(names, " ") != want {
		t.Fatalf("output folder: %v", names)
	}
}
