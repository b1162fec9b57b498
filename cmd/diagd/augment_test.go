package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/augment"
	"github.com/diagd/diagd/internal/imageio"
	"github.com/diagd/diagd/internal/onnx/zoo"
	"github.com/diagd/diagd/internal/testenv"
)

// writeGood writes a textured grey surface with OpenCV.
func writeGood(t *testing.T, path string, w, h int, seed int) {
	t.Helper()
	m := gocv.NewMatWithSize(h, w, gocv.MatTypeCV8UC3)
	defer m.Close()
	gocv.RandN(&m, gocv.NewScalar(110+float64(seed), 120, 125, 0), gocv.NewScalar(12, 12, 12, 0))
	if !gocv.IMWrite(path, m) {
		t.Fatalf("IMWrite %s", path)
	}
}

func writeRegion(t *testing.T, path string, w, h int, r image.Rectangle) {
	t.Helper()
	m := gocv.NewMatWithSize(h, w, gocv.MatTypeCV8U)
	defer m.Close()
	roi := m.Region(r)
	roi.SetTo(gocv.NewScalar(255, 0, 0, 0))
	roi.Close()
	if !gocv.IMWrite(path, m) {
		t.Fatalf("IMWrite %s", path)
	}
}

func readSidecar(t *testing.T, path string) augment.Sidecar {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var sc augment.Sidecar
	if err := json.Unmarshal(b, &sc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return sc
}

func TestAugmentCommandMemSeg(t *testing.T) {
	neg, cat, bad := memsegCLIFixture(t)
	out := filepath.Join(t.TempDir(), "out")

	code, stdout, stderr := runCLI(t, "augment", "--negatives", neg, "--catalogue", cat, "--out", out, "--n", "8", "--generator", "memseg", "--seed", "11")
	if code != 0 {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "memseg: wrote 8 of 8 images (00000-00007)") || !strings.Contains(stdout, "contact sheet: ") {
		t.Fatalf("stdout: %s", stdout)
	}
	// stderr is not a terminal here: plain progress lines, ending at 8/8.
	if !strings.Contains(stderr, "augment: 8/8 images (100%), 8 written, 0 skipped") || strings.Contains(stderr, "\r") {
		t.Fatalf("stderr progress: %s", stderr)
	}
	checkSkippedNegatives(t, out, stdout, bad)
	for i := range 8 {
		sc := readSidecar(t, filepath.Join(out, fmt.Sprintf("%05d.json", i)))
		if sc.Generator != "memseg" || sc.BatchSeed != 11 || bad[sc.SourceNegative] || sc.Prompt == "" || sc.NegativePrompt != "smooth, plain, black, dark, shadow" {
			t.Fatalf("sidecar %d: %+v", i, sc)
		}
		for _, f := range []string{sc.Image, sc.Mask} {
			checkImageSize(t, filepath.Join(out, f), 80, 120)
		}
	}
	sheet, err := imageio.Read(filepath.Join(out, "contact-sheet_00000-00007.png"))
	if err != nil {
		t.Fatal(err)
	}
	sheet.Close()
	// No temp files left behind by the atomic writes.
	ents, _ := os.ReadDir(out)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Fatalf("leftover %s", e.Name())
		}
	}
	if len(ents) != 8*3+2 {
		t.Fatalf("%d files in the output folder, want 26", len(ents))
	}
}

// memsegCLIFixture writes three good 80x120 negatives, two corrupt ones (returned in
// bad) and a catalogue of two region kinds.
func memsegCLIFixture(t *testing.T) (neg, cat string, bad map[string]bool) {
	t.Helper()
	root := t.TempDir()
	neg = filepath.Join(root, "negatives")
	os.MkdirAll(neg, 0o755)
	for i := range 3 {
		writeGood(t, filepath.Join(neg, fmt.Sprintf("good%d.png", i)), 80, 120, i)
	}
	bad = map[string]bool{}
	for _, name := range []string{"corrupt.jpg", "empty.png"} {
		p := filepath.Join(neg, name)
		data := []byte("\xff\xd8\xff\xe0 not really a jpeg")
		if name == "empty.png" {
			data = nil
		}
		os.WriteFile(p, data, 0o644)
		bad[p] = true
	}
	cdir := filepath.Join(root, "cat")
	os.MkdirAll(filepath.Join(cdir, "regions"), 0o755)
	writeRegion(t, filepath.Join(cdir, "regions", "centre.png"), 80, 120, image.Rect(20, 30, 60, 90))
	cat = filepath.Join(cdir, "defects.yaml")
	os.WriteFile(cat, []byte("kinds:\n  - name: scratch\n    prompt: copper metal scratches\n    regions: regions/\n    shape: scratch\n  - name: blob\n    prompt: white marks on the wall\n    regions: regions/centre.png\n"), 0o644)
	return neg, cat, bad
}

// checkSkippedNegatives checks that the summary file and stdout agree on the skipped
// negatives, which are exactly corrupt files.
func checkSkippedNegatives(t *testing.T, out, stdout string, bad map[string]bool) {
	t.Helper()
	var sum augment.Summary
	b, err := os.ReadFile(filepath.Join(out, "summary_00000-00007.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatal(err)
	}
	nbad := 0
	for _, k := range sum.Skipped {
		if k.What == augment.SkipNegative {
			nbad++
			if !bad[k.File] || !strings.Contains(k.Reason, "bad frame") {
				t.Fatalf("skipped negative %+v is not one of the corrupt files", k)
			}
		}
	}
	if nbad > 0 && !strings.Contains(stdout, fmt.Sprintf("negatives skipped (could not be decoded): %d", nbad)) {
		t.Fatalf("stdout does not report %d bad negatives: %s", nbad, stdout)
	}
}

// checkImageSize decodes path with OpenCV and checks it is w x h.
func checkImageSize(t *testing.T, path string, w, h int) {
	t.Helper()
	m, err := imageio.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Cols() != w || m.Rows() != h {
		t.Fatalf("%s is %dx%d", filepath.Base(path), m.Cols(), m.Rows())
	}
}

func TestAugmentCommandErrors(t *testing.T) {
	root := t.TempDir()
	writeGood(t, filepath.Join(root, "g.png"), 16, 16, 0)
	cat := filepath.Join(root, "defects.yaml")
	os.WriteFile(cat, []byte("kinds:\n  - name: a\n    prompt: x\n    masks: nowhere.png\n    weight: heavy\n"), 0o644)
	code, _, stderr := runCLI(t, "augment", "--negatives", root, "--catalogue", cat, "--out", filepath.Join(root, "o"), "--generator", "memseg")
	if code != 1 || !strings.Contains(stderr, cat+":4:12: masks: file \"nowhere.png\" does not exist") || !strings.Contains(stderr, cat+":5:13: weight must be a number") {
		t.Fatalf("bad catalogue: exit %d, stderr %s", code, stderr)
	}
	writeRegion(t, filepath.Join(root, "nowhere.png"), 16, 16, image.Rect(2, 2, 8, 8))
	os.WriteFile(cat, []byte("kinds:\n  - name: a\n    prompt: x\n    masks: nowhere.png\n"), 0o644)
	code, _, stderr = runCLI(t, "augment", "--negatives", root, "--glob", "g.*", "--catalogue", cat, "--out", filepath.Join(root, "o"), "--generator", "diag")
	if code != 1 || !strings.Contains(stderr, "--generator memseg") || !strings.Contains(stderr, "optimum-cli export onnx") {
		t.Fatalf("diag without a model: exit %d, stderr %s", code, stderr)
	}
	code, _, stderr = runCLI(t, "augment", "--negatives", root, "--catalogue", cat, "--out", filepath.Join(root, "o"), "--generator", "gan")
	if code != 2 || !strings.Contains(stderr, `--generator must be auto, diag or memseg, got "gan"`) {
		t.Fatalf("unknown generator: exit %d, stderr %s", code, stderr)
	}
	code, _, stderr = runCLI(t, "augment", "--catalogue", cat, "--out", filepath.Join(root, "o"))
	if code != 2 || !strings.Contains(stderr, "--negatives is required") {
		t.Fatalf("missing flag: exit %d, stderr %s", code, stderr)
	}
	code, _, stderr = runCLI(t, "augment", "--negatives", root, "--catalogue", cat, "--out", filepath.Join(root, "o"), "--label-rule", "strict")
	if code != 2 || !strings.Contains(stderr, `--label-rule: unknown label rule "strict"`) {
		t.Fatalf("bad label rule: exit %d, stderr %s", code, stderr)
	}
}

// Without a generator flag or a configured SDXL model, augment uses MemSeg and says so.
func TestAugmentPicksMemSegWithoutModel(t *testing.T) {
	t.Setenv("DIAGD_SDXL_DIR", "")
	root := t.TempDir()
	for i := range 2 {
		writeGood(t, filepath.Join(root, fmt.Sprintf("g%d.png", i)), 40, 40, i)
	}
	cat := filepath.Join(root, "defects.yaml")
	os.WriteFile(cat, []byte("kinds:\n  - name: pits\n    shape: pit\n"), 0o644)
	out := filepath.Join(root, "out")
	code, stdout, stderr := runCLI(t, "augment", "--negatives", root, "--catalogue", cat, "--out", out, "--n", "2")
	if code != 0 || !strings.Contains(stderr, "no SDXL model configured") || !strings.Contains(stderr, "using the memseg generator") ||
		!strings.Contains(stdout, "memseg: wrote 2 of 2 images") {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
}

// TestAugmentMagneticTile paints Magnetic-tile crack shapes into real defect-free
// tiles: real JPEGs of varied sizes, soft PNG masks of other sizes (scaled, with a
// warning in the sidecar).
func TestAugmentMagneticTile(t *testing.T) {
	mt := testenv.Shared(t, "data/magnetic-tile")
	cdir := t.TempDir()
	shapesDir := filepath.Join(cdir, "cracks")
	os.MkdirAll(shapesDir, 0o755)
	cracks, _ := filepath.Glob(filepath.Join(mt, "MT_Crack", "Imgs", "*.png"))
	if len(cracks) < 3 {
		t.Skipf("MT_Crack masks missing in %s", mt)
	}
	for _, c := range cracks[:3] {
		b, err := os.ReadFile(c)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(shapesDir, filepath.Base(c)), b, 0o644)
	}
	cat := filepath.Join(cdir, "defects.yaml")
	os.WriteFile(cat, []byte("kinds:\n  - name: crack\n    prompt: dark crack on a magnetic tile\n    masks: cracks/\n"), 0o644)
	out := filepath.Join(t.TempDir(), "out")
	code, stdout, stderr := runCLI(t, "augment", "--negatives", filepath.Join(mt, "MT_Free", "Imgs"), "--glob", "*.jpg",
		"--catalogue", cat, "--out", out, "--n", "4", "--generator", "memseg")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	for i := range 4 {
		sc := readSidecar(t, filepath.Join(out, fmt.Sprintf("%05d.json", i)))
		src, err := augment.ReadRGB(sc.SourceNegative)
		if err != nil {
			t.Fatal(err)
		}
		img, err := augment.ReadRGB(filepath.Join(out, sc.Image))
		if err != nil {
			t.Fatal(err)
		}
		if img.Rect.Size() != src.Rect.Size() || !strings.HasSuffix(sc.SourceNegative, ".jpg") {
			t.Fatalf("output %d: %v from %s", i, img.Rect.Size(), sc.SourceNegative)
		}
		mask, _, err := augment.ReadMask(filepath.Join(out, sc.Mask), img.Rect.Size())
		if err != nil {
			t.Fatal(err)
		}
		changed, masked := 0, 0
		for y := range img.Rect.Dy() {
			for x := range img.Rect.Dx() {
				in := mask.GrayAt(x, y).Y > 0
				if in {
					masked++
				}
				if img.RGBAAt(x, y) != src.RGBAAt(x, y) {
					if !in {
						t.Fatalf("output %d: pixel (%d,%d) outside the mask changed", i, x, y)
					}
					changed++
				}
			}
		}
		if masked == 0 || changed == 0 {
			t.Fatalf("output %d: %d masked, %d changed pixels", i, masked, changed)
		}
		t.Logf("%s: %d px painted, warnings %q", filepath.Base(sc.SourceNegative), changed, sc.Warnings)
	}
}

// TestAugmentCommandDIAG runs the command end to end with the DIAG generator on the
// tiny stand-in SDXL export.
func TestAugmentCommandDIAG(t *testing.T) {
	testenv.ORT(t)
	model := t.TempDir()
	if err := zoo.WriteSDXLInpaint(model, zoo.SDXLConfig{Export: zoo.OptimumNew, Seed: 4}); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	for i := range 2 {
		writeGood(t, filepath.Join(root, fmt.Sprintf("g%d.jpg", i)), 48, 96, i)
	}
	writeRegion(t, filepath.Join(root, "shape.png"), 24, 48, image.Rect(8, 20, 16, 30)) // half size: scaled
	cat := filepath.Join(root, "defects.yaml")
	os.WriteFile(cat, []byte("generation:\n  working_size: 64\n  steps: 6\nkinds:\n  - name: marks\n    prompt: white marks on the wall\n    masks: shape.png\n"), 0o644)
	out := filepath.Join(root, "out")
	code, stdout, stderr := runCLI(t, "augment", "--negatives", root, "--glob", "*.jpg", "--catalogue", cat, "--out", out,
		"--n", "2", "--generator", "diag", "--model", model, "--provider", "cpu")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "diag: wrote 2 of 2 images") || !strings.Contains(stdout, "warnings: ") {
		t.Fatalf("stdout %s", stdout)
	}
	for i := range 2 {
		sc := readSidecar(t, filepath.Join(out, fmt.Sprintf("%05d.json", i)))
		if sc.Generator != "diag" || sc.ModelDigest == "" || sc.Prompt != "white marks on the wall" || sc.Settings.Steps != 6 ||
			len(sc.Warnings) == 0 || !strings.Contains(sc.Warnings[0], "is 24x48, the image is 48x96: mask scaled") {
			t.Fatalf("sidecar %+v", sc)
		}
		m, err := imageio.Read(filepath.Join(out, sc.Image))
		if err != nil || m.Cols() != 48 || m.Rows() != 96 {
			t.Fatalf("output %d: %v", i, err)
		}
		m.Close()
	}
}

func TestProgressBar(t *testing.T) {
	var b bytes.Buffer
	bar := &progressBar{w: &b, tty: true, lastTenth: -1, lastDone: -1}
	bar.update(augment.Progress{Done: 1, Total: 4, Written: 1, Step: 0, Steps: 29, Elapsed: 10 * time.Second, ETA: 30 * time.Second})
	bar.update(augment.Progress{Done: 4, Total: 4, Written: 3, Skipped: 1, Elapsed: 40 * time.Second, Finished: true})
	bar.finish()
	got := b.String()
	for _, want := range []string{"\r[#######.......................] 1/4  25% 00:10 ETA 00:30 skipped 0 step 0/29", "\r[##############################] 4/4 100% 00:40 ETA 00:00 skipped 1\033[K\n"} {
		if !strings.Contains(got, want) {
			t.Fatalf("terminal output %q lacks %q", got, want)
		}
	}
	// Not a terminal: one line per tenth (or 5 s), never carriage returns.
	b.Reset()
	bar = newProgressBar(&b)
	for i := range 101 {
		bar.update(augment.Progress{Done: i, Total: 100, Written: i})
	}
	if lines := strings.Count(b.String(), "\n"); lines != 11 || strings.Contains(b.String(), "\r") {
		t.Fatalf("%d plain lines:\n%s", lines, b.String())
	}
}
