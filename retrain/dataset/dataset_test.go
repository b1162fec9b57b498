package dataset

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/diagd/diagd/internal/imageops"
	"github.com/diagd/diagd/internal/testenv"
	"github.com/diagd/diagd/retrain/rtest"
)

// Pillow's bilinear upscale of the row [0 255] to 4 pixels, worked by hand from the
// coefficient formula of spec §2.10: output centres 0.25, 0.75, 1.25, 1.75 give weights
// on the two inputs (1,0), (.75,.25), (.25,.75), (0,1), so 0, 63.75, 191.25, 255, and the
// fixed-point rounding (+2^21 before >>22) makes 64 and 191.
func TestPILBilinearRow(t *testing.T) {
	got := resize(t, []uint8{0, 255}, 2, 1, 4, 1)
	if !slices.Equal(got, []uint8{0, 64, 191, 255}) {
		t.Errorf("got %v; want [0 64 191 255]", got)
	}
	// Downscaling by 2 widens the filter (filterscale 2, support 2): output 0 is centred
	// at 1 and weighs inputs 0..2 by (.75, .75, .25)/1.75, so 255·1/1.75 = 145.7 -> 146;
	// output 1 mirrors it.
	d := resize(t, []uint8{0, 255, 255, 0}, 4, 1, 2, 1)
	if !slices.Equal(d, []uint8{146, 146}) {
		t.Errorf("downscale got %v; want [146 146]", d)
	}
}

// resize is the PIL bilinear resize the paper's labelling rule uses (imageops).
func resize(t *testing.T, px []uint8, w, h, ow, oh int) []uint8 {
	t.Helper()
	r, err := imageops.Resize(&imageops.Image{W: w, H: h, C: 1, Pix: px}, ow, oh, imageops.Bilinear)
	if err != nil {
		t.Fatal(err)
	}
	return r.Pix
}

func gray(w, h int, set func(x, y int) uint8) *image.Gray {
	g := image.NewGray(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			g.SetGray(x, y, color.Gray{set(x, y)})
		}
	}
	return g
}

// The paper's rule on 224×632 masks (KSDD2 after preprocessing) resized to 256×704.
// Upscaling, an output pixel is 255 only when all inputs it straddles are 255 or its
// centre falls exactly on an input centre; (xx+0.5)·224/256 = x+0.5 means
// 7(2xx+1) = 8(2x+1), odd = even, so never (likewise 79(2yy+1) = 88(2y+1) vertically).
// Hence a lone 255 pixel is labelled ok, a 2×2 block (some output straddles it on
// both axes, since outputs are < 1 input apart) is a defect, and 254 never is.
func TestPaperLabelRule(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name      string
		set       func(x, y int) uint8
		any, pape bool
	}{
		{"empty", func(x, y int) uint8 { return 0 }, false, false},
		{"lone-pixel", func(x, y int) uint8 { return b2u(x == 100 && y == 300, 255) }, true, false},
		{"block-2x2", func(x, y int) uint8 { return b2u(x >= 100 && x < 102 && y >= 300 && y < 302, 255) }, true, true},
		{"block-254", func(x, y int) uint8 { return b2u(x >= 100 && x < 120 && y >= 300 && y < 320, 254) }, true, false},
	}
	for _, c := range cases {
		p := filepath.Join(dir, c.name+"_GT.png")
		rtest.WritePNG(t, p, gray(224, 632, c.set))
		for _, r := range []struct {
			rule LabelRule
			want bool
		}{{AnyPixel, c.any}, {PaperRule, c.pape}} {
			got, err := MaskLabel(p, r.rule)
			if err != nil || got != r.want {
				t.Errorf("%s rule %d: %v %v; want %v", c.name, r.rule, got, err, r.want)
			}
		}
	}
}

func b2u(b bool, v uint8) uint8 {
	if b {
		return v
	}
	return 0
}

func writeKSDD2(t *testing.T) string {
	root := t.TempDir()
	dir := filepath.Join(root, "train")
	rtest.Folder(t, dir, 3, false, false, 1)
	for i, name := range []string{"00000", "00001"} {
		rtest.WritePNG(t, filepath.Join(dir, name+"_GT.png"), gray(rtest.W, rtest.H, func(x, y int) uint8 { return b2u(i == 1 && x < 5 && y < 5, 255) }))
	}
	// 00002 has no mask; the official set's duplicate is ignored like the paper does.
	os.WriteFile(filepath.Join(dir, "10301 (copy).png"), []byte("x"), 0o644)
	return root
}

func TestKSDD2(t *testing.T) {
	root := writeKSDD2(t)
	s, err := KSDD2(root, "train", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Items) != 2 || s.Items[0].Label || !s.Items[1].Label || s.Items[1].Mask == "" {
		t.Errorf("items %+v", s.Items)
	}
	if len(s.Skipped) != 1 || !strings.Contains(s.Skipped[0].Reason, "00002_GT.png is missing") {
		t.Errorf("skipped %+v; want 00002 for its missing mask", s.Skipped)
	}
	if _, err := KSDD2(root, "test", Options{}); err == nil || !strings.Contains(err.Error(), "test") {
		t.Errorf("missing split: %v", err)
	}
	if l, err := Load(root, Options{}); err != nil || len(l.Items) != 2 {
		t.Errorf("Load guessed wrong: %v %v", l, err)
	}
}

func TestFolderGeneratorAndDataDir(t *testing.T) {
	d := t.TempDir()
	rtest.Folder(t, filepath.Join(d, NegativesDir), 5, false, false, 1)
	rtest.Folder(t, filepath.Join(d, DefectsDir), 2, true, true, 2)
	acc := filepath.Join(d, AcceptedDir)
	rtest.Folder(t, acc, 4, true, true, 3)
	os.WriteFile(filepath.Join(acc, "00001.json"), []byte(`{"seed":1,"defect_kind":"scratch"}`), 0o644)
	os.WriteFile(filepath.Join(acc, "contact-sheet_00000-00003.png"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(acc, "00002.json"), []byte(`{"seed":`), 0o644) // torn sidecar
	os.WriteFile(filepath.Join(d, NegativesDir, "notes.txt"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(d, NegativesDir, "00009.png"), nil, 0o644) // empty file
	real, syn, err := DataDir(d, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if n, p := real.Counts(); n != 5 || p != 2 {
		t.Errorf("real %d ok %d defect; want 5 and 2", n, p)
	}
	if real.Items[5].Mask == "" || !strings.HasSuffix(real.Items[5].Mask, "_mask.png") {
		t.Errorf("real defect mask not attached: %+v", real.Items[5])
	}
	if len(real.Skipped) != 2 {
		t.Errorf("skipped %+v; want notes.txt and the empty 00009.png", real.Skipped)
	}
	if len(syn.Items) != 3 || !syn.Items[0].IsSynthetic() || len(syn.Skipped) != 1 {
		t.Errorf("synthetic %+v skipped %+v; want 3 items and the torn sidecar skipped", syn.Items, syn.Skipped)
	}
	zs, err := Compose(real, syn, ZeroShot, 2)
	if err != nil {
		t.Fatal(err)
	}
	sum := zs.Summarize()
	if sum.Negatives != 5 || sum.Positives != 2 || sum.BySource["synthetic:generator"] != [2]int{0, 1} || sum.BySource["synthetic:scratch"] != [2]int{0, 1} {
		t.Errorf("zero-shot summary %+v", sum)
	}
	fs, err := Compose(real, syn, FullShot, 0)
	if err != nil {
		t.Fatal(err)
	}
	if n, p := fs.Counts(); n != 5 || p != 5 {
		t.Errorf("full-shot %d/%d; want 5 ok, 2 real + 3 synthetic defects", n, p)
	}
	if _, err := Compose(real, syn, ZeroShot, 10); err == nil {
		t.Error("asking for more synthetic images than exist succeeded")
	}
	t.Log("\n" + fs.Summarize().String())
	neg := &Set{Items: real.Items[:5]}
	if err := neg.RequireBothClasses("train"); !errors.Is(err, ErrEmptyClass) || !strings.Contains(err.Error(), "none of them a defect") {
		t.Errorf("empty class: %v", err)
	}
	// ok/defect folder.
	f := t.TempDir()
	rtest.Folder(t, filepath.Join(f, "ok"), 2, false, false, 4)
	rtest.Folder(t, filepath.Join(f, "defect"), 1, true, true, 5)
	s, err := Load(f, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if n, p := s.Counts(); n != 2 || p != 1 || len(s.Skipped) != 0 {
		t.Errorf("folder %d/%d skipped %v", n, p, s.Skipped)
	}
	if _, err := Folder(t.TempDir()); err == nil || !strings.Contains(err.Error(), "none of the subfolders ok/") {
		t.Errorf("empty folder: %v", err)
	}
}

func TestManifest(t *testing.T) {
	d := t.TempDir()
	rtest.Folder(t, filepath.Join(d, "imgs"), 2, true, true, 1)
	csv := "image,label,mask,group\nimgs/00000.png,1,imgs/00000_mask.png,A\nimgs/00001.png,0,,B\nimgs/none.png,0,,B\nimgs/00001.png,maybe,,B\n"
	p := filepath.Join(d, "m.csv")
	os.WriteFile(p, []byte(csv), 0o644)
	s, err := Manifest(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Items) != 2 || !s.Items[0].Label || s.Items[0].Source != "real:A" || s.Items[0].Mask == "" {
		t.Errorf("items %+v", s.Items)
	}
	if len(s.Skipped) != 2 || !strings.Contains(s.Skipped[0].Path, "m.csv:4") || !strings.Contains(s.Skipped[1].Reason, `label "maybe"`) {
		t.Errorf("skipped %+v", s.Skipped)
	}
	os.WriteFile(p, []byte("path,y\n"), 0o644)
	if _, err := Manifest(p, Options{}); err == nil || !strings.Contains(err.Error(), `no "image" column`) {
		t.Errorf("bad header: %v", err)
	}
}

// The real magnetic-tile set: 952 defect-free and 392 defect images (manifest.csv's
// label column), every file present and matching its sha1.
func TestMagneticTileManifest(t *testing.T) {
	dir := testenv.Shared(t, "data/magnetic-tile")
	s, err := Load(filepath.Join(dir, "manifest.csv"), Options{VerifyChecksums: true})
	if err != nil {
		t.Fatal(err)
	}
	sum := s.Summarize()
	if sum.Negatives != 952 || sum.Positives != 392 || len(s.Skipped) != 0 {
		t.Errorf("summary %+v skipped %v", sum, s.Skipped)
	}
	if sum.BySource["real:MT_Blowhole"] != [2]int{0, 115} {
		t.Errorf("blowhole %v", sum.BySource["real:MT_Blowhole"])
	}
	t.Log("\n" + sum.String())
}

// "any" is the short name the README and eval use; train refused it before.
func TestParseLabelRuleAliases(t *testing.T) {
	for _, s := range []string{"any", "any-pixel", ""} {
		if r, err := ParseLabelRule(s); err != nil || r != AnyPixel {
			t.Errorf("%q: %v %v; want AnyPixel", s, r, err)
		}
	}
	if r, err := ParseLabelRule("paper"); err != nil || r != PaperRule {
		t.Errorf("paper: %v %v", r, err)
	}
	if _, err := ParseLabelRule("all"); err == nil || !strings.Contains(err.Error(), "want any, any-pixel or paper") {
		t.Errorf("unknown rule: %v", err)
	}
}

// The paper's rule turns a thin or soft marked defect into ok; loaders list every such
// image so train can say how many it relabelled. A lone 255 pixel is marked yet ok under
// the paper's rule (see TestPaperLabelRule); a 4×4 block survives it.
func TestRelabelledCounted(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "train")
	rtest.Folder(t, dir, 3, false, false, 1)
	masks := []func(x, y int) uint8{
		func(x, y int) uint8 { return 0 },
		func(x, y int) uint8 { return b2u(x == 10 && y == 10, 255) },
		func(x, y int) uint8 { return b2u(x >= 10 && x < 14 && y >= 10 && y < 14, 255) },
	}
	for i, m := range masks {
		rtest.WritePNG(t, filepath.Join(dir, fmt.Sprintf("%05d_GT.png", i)), gray(rtest.W, rtest.H, m))
	}
	for _, c := range []struct {
		rule       LabelRule
		relabelled int
		pos        int
	}{{AnyPixel, 0, 2}, {PaperRule, 1, 1}} {
		s, err := KSDD2(root, "train", Options{Rule: c.rule})
		if err != nil {
			t.Fatal(err)
		}
		if _, pos := s.Counts(); pos != c.pos || len(s.Relabelled) != c.relabelled {
			t.Errorf("rule %d: %d defects, relabelled %v; want %d and %d", c.rule, pos, s.Relabelled, c.pos, c.relabelled)
		}
	}
	if s, err := KSDD2(root, "train", Options{Rule: PaperRule}); err == nil && (len(s.Relabelled) != 1 || !strings.HasSuffix(s.Relabelled[0], "00001.png")) {
		t.Errorf("relabelled %v; want 00001.png", s.Relabelled)
	}
	// Generator output: every image is a defect unless the paper's rule says otherwise.
	gen := t.TempDir()
	rtest.Folder(t, gen, 2, true, false, 2)
	for i, m := range masks[1:] {
		rtest.WritePNG(t, filepath.Join(gen, fmt.Sprintf("%05d_mask.png", i)), gray(rtest.W, rtest.H, m))
	}
	s, err := Generator(gen, Options{Rule: PaperRule})
	if err != nil {
		t.Fatal(err)
	}
	all := &Set{}
	all.Append(s)
	if len(all.Relabelled) != 1 || !strings.HasSuffix(all.Relabelled[0], "00000.png") {
		t.Errorf("generator relabelled %v; want 00000.png (a lone pixel)", all.Relabelled)
	}
}

// KSDD2 and the generator loader list the same NNNNN.png files: an empty image is
// skipped as an image, a subfolder and other names are passed over, and the skips keep
// the folder's order whichever check refused the image.
func TestNumberedImagesSkippedInOrder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "train")
	rtest.Folder(t, dir, 4, false, false, 3) // 00000.png … 00003.png
	os.WriteFile(filepath.Join(dir, "00000.png"), nil, 0o644)
	os.Mkdir(filepath.Join(dir, "00004.png"), 0o755)
	os.WriteFile(filepath.Join(dir, "notes.png"), []byte("x"), 0o644)
	for _, name := range []string{"00001", "00003"} {
		rtest.WritePNG(t, filepath.Join(dir, name+"_GT.png"), gray(rtest.W, rtest.H, func(x, y int) uint8 { return 0 }))
	}
	os.WriteFile(filepath.Join(dir, "00001.json"), []byte("{"), 0o644)
	reasons := func(s *Set) []string {
		var out []string
		for _, k := range s.Skipped {
			out = append(out, filepath.Base(k.Path)+": "+k.Reason)
		}
		return out
	}
	k, err := KSDD2(filepath.Dir(dir), "train", Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"00000.png: image empty file (0 bytes)", "00002.png: mask 00002_GT.png is missing; KSDD2 labels come from the masks"}
	if got := reasons(k); !slices.Equal(got, want) || len(k.Items) != 2 {
		t.Errorf("KSDD2: skipped %q, %d items; want %q and 2 items", got, len(k.Items), want)
	}
	g, err := Generator(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want = []string{"00000.png: image empty file (0 bytes)", "00001.png: sidecar 00001.json is not valid JSON: unexpected end of JSON input"}
	if got := reasons(g); !slices.Equal(got, want) || len(g.Items) != 2 {
		t.Errorf("generator: skipped %q, %d items; want %q and 2 items", got, len(g.Items), want)
	}
}
