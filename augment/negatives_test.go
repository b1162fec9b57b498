package augment

import (
	"image"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeMaskPNG writes a w×h mask, 255 inside r (empty when r is).
func writeMaskPNG(t *testing.T, path string, w, h int, r image.Rectangle) {
	t.Helper()
	m := image.NewGray(image.Rect(0, 0, w, h))
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			m.Pix[y*m.Stride+x] = 255
		}
	}
	writePNG(t, path, m)
}

func names(t *testing.T, root string, files []string) string {
	t.Helper()
	var out []string
	for _, f := range files {
		r, err := filepath.Rel(root, f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return strings.Join(out, " ")
}

// --negatives takes only defect-free images in every layout diagd knows, never a mask.
func TestFindNegativesLayouts(t *testing.T) {
	root := t.TempDir()
	defect := image.Rect(2, 2, 6, 6)
	img := func(p string) { writeGrey(t, filepath.Join(root, p), 16, 16, 1) }
	mask := func(p string, r image.Rectangle) { writeMaskPNG(t, filepath.Join(root, p), 16, 16, r) }
	// KSDD2: a root with train/ (and test/), NNNNN.png + NNNNN_GT.png.
	img("ksdd2/train/10000.png")
	mask("ksdd2/train/10000_GT.png", image.Rectangle{})
	img("ksdd2/train/10001.png")
	mask("ksdd2/train/10001_GT.png", defect)
	img("ksdd2/train/10002.png")
	mask("ksdd2/train/10002_GT.png", image.Rectangle{})
	img("ksdd2/test/20000.png")
	mask("ksdd2/test/20000_GT.png", image.Rectangle{})
	// ok/ and defect/ folders, a mask beside an ok image.
	img("okdef/ok/a.png")
	mask("okdef/ok/a_mask.png", image.Rectangle{})
	img("okdef/defect/b.png")
	// Magnetic-tile: X.jpg with X.png masks.
	img("mt/free.jpg")
	mask("mt/free.png", image.Rectangle{})
	img("mt/crack.jpg")
	mask("mt/crack.png", defect)
	img("mt/plain.bmp")
	// A manifest.
	img("man/imgs/g.png")
	img("man/imgs/d.png")
	os.WriteFile(filepath.Join(root, "man/manifest.csv"), []byte("image,label\nimgs/g.png,0\nimgs/d.png,1\n"), 0o644)
	// A folder of symbolic links to images elsewhere.
	os.MkdirAll(filepath.Join(root, "links"), 0o755)
	for _, f := range []string{"mt/free.jpg", "mt/plain.bmp"} {
		if err := os.Symlink(filepath.Join(root, f), filepath.Join(root, "links", filepath.Base(f))); err != nil {
			t.Fatal(err)
		}
	}
	// Generator output: every image is a defect.
	img("gen/00000.png")
	mask("gen/00000_mask.png", defect)

	for _, tc := range []struct {
		dir, want, layout string
		left              int
	}{
		{"ksdd2", "ksdd2/train/10000.png ksdd2/train/10002.png", "KSDD2 train/", 1},
		{"ksdd2/train", "ksdd2/train/10000.png ksdd2/train/10002.png", "KSDD2 split folder", 1},
		{"ksdd2/test", "ksdd2/test/20000.png", "KSDD2 split folder", 0},
		{"okdef", "okdef/ok/a.png", "ok/ and defect/", 1},
		{"mt", "mt/free.jpg mt/plain.bmp", "masks beside them", 1},
		{"man", "man/imgs/g.png", "manifest.csv", 1},
		{"man/manifest.csv", "man/imgs/g.png", "manifest", 1},
		{"links", "links/free.jpg links/plain.bmp", "plain folder", 0},
	} {
		n, err := FindNegatives(filepath.Join(root, tc.dir), "")
		if err != nil {
			t.Errorf("%s: %v", tc.dir, err)
			continue
		}
		if got := names(t, root, n.Files); got != tc.want || n.Left != tc.left || !strings.Contains(n.Layout, tc.layout) {
			t.Errorf("%s: %q (%s, %d left out), want %q (%s, %d)", tc.dir, got, n.Layout, n.Left, tc.want, tc.layout, tc.left)
		}
	}
	if n, err := FindNegatives(filepath.Join(root, "mt"), "*.bmp"); err != nil || names(t, root, n.Files) != "mt/plain.bmp" {
		t.Errorf("glob: %v %v", n.Files, err)
	}
	if _, err := FindNegatives(filepath.Join(root, "gen"), ""); err == nil || !strings.Contains(err.Error(), "no defect-free image") {
		t.Errorf("generator output taken for negatives: %v", err)
	}
}

// Real defects for the contact sheet: images whose mask beside them is not empty,
// found in subfolders too.
func TestListRealDefects(t *testing.T) {
	root := t.TempDir()
	writeGrey(t, filepath.Join(root, "MT_Crack/Imgs/c1.jpg"), 16, 16, 1)
	writeMaskPNG(t, filepath.Join(root, "MT_Crack/Imgs/c1.png"), 16, 16, image.Rect(3, 3, 9, 5))
	writeGrey(t, filepath.Join(root, "MT_Free/Imgs/f1.jpg"), 16, 16, 2)
	writeMaskPNG(t, filepath.Join(root, "MT_Free/Imgs/f1.png"), 16, 16, image.Rectangle{})
	d, err := ListRealDefects(root)
	if err != nil || len(d) != 1 || !strings.HasSuffix(d[0].Image, "c1.jpg") || !strings.HasSuffix(d[0].Mask, "c1.png") {
		t.Fatalf("%+v %v", d, err)
	}
	e, err := realEntries(root)
	if err != nil || len(e) != 1 || !strings.HasPrefix(e[0].label, "c1.jpg") {
		t.Fatalf("%+v %v", e, err)
	}
}
