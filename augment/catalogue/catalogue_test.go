package catalogue

import (
	"image"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/diagd/diagd/augment/shapes"
)

func writeMask(t *testing.T, path string, w, h int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	m := image.NewGray(image.Rect(0, 0, w, h))
	for i := range m.Pix[:len(m.Pix)/2] {
		m.Pix[i] = 255
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := png.Encode(f, m); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

const good = `# line 1
negative_prompt: "smooth, plain"
generation:
  steps: 12
  guidance: 7.5
  seed: 42
  round_trip: true
memseg:
  transparency: [0.2, 0.9]
kinds:
  - name: marks
    prompts: ["white marks on the wall", "chalk marks"]
    weight: 3
    masks: shapes/              # a folder
  - name: scratches
    prompt: copper metal scratches
    negative_prompt: blurry
    regions: [regions/*.png]    # a glob
    shape: scratch
  - name: spots
    prompts: [dark spots]
    masks: [extra/one.png]      # one file
`

func goodTree(t *testing.T) string {
	dir := t.TempDir()
	writeMask(t, filepath.Join(dir, "shapes", "a.png"), 20, 30)
	writeMask(t, filepath.Join(dir, "shapes", "b.png"), 20, 30)
	writeFile(t, filepath.Join(dir, "shapes", "notes.txt"), "not an image")
	writeMask(t, filepath.Join(dir, "regions", "r1.png"), 20, 30)
	writeMask(t, filepath.Join(dir, "extra", "one.png"), 20, 30)
	writeFile(t, filepath.Join(dir, "defects.yaml"), good)
	return dir
}

func TestLoadGood(t *testing.T) {
	dir := goodTree(t)
	c, err := Load(filepath.Join(dir, "defects.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	checkGoodSettings(t, c)
	checkGoodKinds(t, c, dir)
	for _, d := range []string{dir, filepath.Join(dir, "shapes"), filepath.Join(dir, "regions"), filepath.Join(dir, "extra")} {
		if !slices.Contains(c.Dirs, d) {
			t.Fatalf("dirs %v lack %s", c.Dirs, d)
		}
	}
	// Weighted choice: weights 3,1,1 split [0,1) at 0.6 and 0.8.
	if c.Pick(0.59).Name != "marks" || c.Pick(0.61).Name != "scratches" || c.Pick(0.99).Name != "spots" {
		t.Fatal("Pick does not follow the weights")
	}
}

// checkGoodSettings checks the generation and memseg sections of the good catalogue.
func checkGoodSettings(t *testing.T, c *Catalogue) {
	t.Helper()
	g := c.Generation
	// steps, guidance, seed are set in the file; strength, padding and working size keep DIAG's values.
	if g.Steps != 12 || g.Guidance != 7.5 || g.Seed != 42 || g.Strength != 0.99 || g.Padding != 2 || g.WorkingSize != 1024 || !g.RoundTrip {
		t.Fatalf("generation = %+v", g)
	}
	if c.MemSeg.MinDelta != 0.2 || c.MemSeg.MaxDelta != 0.9 {
		t.Fatalf("memseg = %+v", c.MemSeg)
	}
}

// checkGoodKinds checks the three kinds of the good catalogue, rooted at dir.
func checkGoodKinds(t *testing.T, c *Catalogue, dir string) {
	t.Helper()
	if len(c.Kinds) != 3 {
		t.Fatalf("%d kinds", len(c.Kinds))
	}
	marks, scr, spots := c.Kinds[0], c.Kinds[1], c.Kinds[2]
	if marks.Name != "marks" || marks.Line != 11 || marks.Weight != 3 || len(marks.Prompts) != 2 || marks.NegativePrompt != "smooth, plain" {
		t.Fatalf("marks = %+v", marks)
	}
	if got := []string{filepath.Base(marks.Masks[0].Path), filepath.Base(marks.Masks[1].Path)}; len(marks.Masks) != 2 || !slices.Equal(got, []string{"a.png", "b.png"}) || marks.Masks[0].Line != 14 {
		t.Fatalf("marks masks = %+v", marks.Masks)
	}
	if scr.NegativePrompt != "blurry" || scr.Shape != shapes.Scratch || scr.Weight != 1 || len(scr.Regions) != 1 || scr.Prompts[0] != "copper metal scratches" {
		t.Fatalf("scratches = %+v", scr)
	}
	if spots.Shape != shapes.Blob || len(spots.Masks) != 1 || spots.Masks[0].Path != filepath.Join(dir, "extra", "one.png") {
		t.Fatalf("spots = %+v", spots)
	}
}

func TestDefaultsAreDIAGs(t *testing.T) {
	dir := t.TempDir()
	writeMask(t, filepath.Join(dir, "m.png"), 4, 4)
	c, err := Parse(filepath.Join(dir, "c.yaml"), []byte("kinds:\n  - name: k\n    prompt: x\n    masks: m.png\n"))
	if err != nil {
		t.Fatal(err)
	}
	// DIAG's generate_augmented_images.py constants (diag-spec.md §1.3).
	if c.Generation != (Generation{Steps: 30, Guidance: 20, Strength: 0.99, Padding: 2, WorkingSize: 1024}) {
		t.Fatalf("defaults %+v", c.Generation)
	}
	if c.Kinds[0].NegativePrompt != "smooth, plain, black, dark, shadow" {
		t.Fatalf("negative prompt %q", c.Kinds[0].NegativePrompt)
	}
}

func TestProblemsNameLines(t *testing.T) {
	dir := t.TempDir()
	writeMask(t, filepath.Join(dir, "ok.png"), 4, 4)
	src := `generation:
  steps: many
  strength: 1.5
  colour: red
kinds:
  - name: a
    prompts: ["  "]
    masks: [ok.png, missing.png]
  - name: a
    prompt: fine
    regions: nothere/*.png
    weight: -1
    shape: star
  - prompt: y
    masks: ok.png
    sizes: 3
  - name: c
    prompt: z
`
	file := filepath.Join(dir, "defects.yaml")
	_, err := Parse(file, []byte(src))
	probs := Problems(err)
	if probs == nil {
		t.Fatalf("no problems: %v", err)
	}
	want := []struct {
		line int
		text string
	}{
		{2, "generation.steps must be a whole number"},
		{3, "generation.strength must be in (0, 1]"},
		{4, `unknown key "colour"`},
		{7, "prompts is empty"},
		{8, `"missing.png" does not exist`},
		{9, `"a" is already used on line 6`},
		{11, `no image file matches "nothere/*.png"`},
		{12, "weight must be in (0, 1e+06]"},
		{13, `unknown shape "star"`},
		{14, "has no name"},
		{16, `unknown key "sizes"`},
	}
	for _, w := range want {
		found := false
		for _, p := range probs {
			if p.Line == w.line && strings.Contains(p.Reason, w.text) && p.File == file {
				found = true
			}
		}
		if !found {
			t.Errorf("no problem on line %d containing %q; got:\n%v", w.line, w.text, err)
		}
	}
	if len(probs) != len(want) {
		t.Errorf("%d problems, want %d:\n%v", len(probs), len(want), err)
	}
	if !strings.Contains(err.Error(), file+":2:10: generation.steps") {
		t.Errorf("message lacks file:line:col: %v", err)
	}
}

func TestSyntaxAndShapeErrors(t *testing.T) {
	for _, tc := range []struct {
		src, text string
		line      int
	}{
		{"kinds:\n  - name: a\n    prompt: p\n    masks: x\n    weight: 2\n      shape: blob\n", "not valid YAML: mapping values are not allowed", 6},
		{"", "the file is empty", 0},
		{"- a\n- b\n", "must be a mapping", 1},
		{"generation:\n  steps: 10\n", "no 'kinds:' list", 1},
		{"kinds: {}\n", "kinds must be a list", 1},
		{"generation:\n  round_trip: maybe\nkinds: []\n", "generation.round_trip must be true or false", 2},
		{"kinds:\n  - name: a\n    prompt: p\n    masks: x\ngeneration:\n  working_size: 1020\n", "multiple of 8", 6},
		{"kinds:\n  - name: a\n    prompt: p\n    masks: x\nkinds: []\n", `key "kinds" appears twice`, 5},
	} {
		_, err := Parse("/nonexistent/c.yaml", []byte(tc.src))
		found := false
		for _, p := range Problems(err) {
			if strings.Contains(p.Reason, tc.text) && p.Line == tc.line {
				found = true
			}
		}
		if !found {
			t.Errorf("%q: want %q on line %d, got %v", tc.src, tc.text, tc.line, err)
		}
	}
}

func TestMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "absent.yaml"))
	if p := Problems(err); len(p) != 1 || !strings.Contains(p[0].Reason, "cannot read") {
		t.Fatalf("got %v", err)
	}
}

// Shapes with parameters, fills, places and checks are read as written.
func TestShapeFillPlaceChecks(t *testing.T) {
	dir := t.TempDir()
	src := `checks:
  min_contrast: 9
  ring: 3
  retries: 4
  label_rule: paper
kinds:
  - name: crack
    shape:
      type: crack
      length: [20%, 60%]
      width: [1, 2.5]
      angle: [-10, 10]
      branches: 2
    fill:
      contrast: [-60, -30]
      grain: 3
    place:
      box: [0, 0.5, 1, 1]
  - name: chip
    shape: stain
    place:
      edge: 5%
`
	c, err := Parse(filepath.Join(dir, "c.yaml"), []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if c.Checks.MinContrast == nil || *c.Checks.MinContrast != 9 || c.Checks.Ring != 3 || c.Checks.Retries != 4 || c.Checks.LabelRule != "paper" {
		t.Fatalf("checks %+v", c.Checks)
	}
	k := c.Kinds[0]
	s := k.Spec
	if s.Kind != shapes.Crack || s.Length != shapes.Percent(20, 60) || s.Width != shapes.Between(1, 2.5) ||
		s.Angle != shapes.Between(-10, 10) || s.Branches != shapes.Fixed(2) || s.Wiggle.Set {
		t.Fatalf("crack spec %+v", s)
	}
	if k.Fill.Contrast != shapes.Between(-60, -30) || k.Fill.Grain != shapes.Fixed(3) || k.Fill.Texture.Set ||
		k.Place.Box == nil || *k.Place.Box != [4]float64{0, 0.5, 1, 1} || k.Prompts[0] != "crack" {
		t.Fatalf("crack kind %+v", k)
	}
	if c.Kinds[1].Spec.Kind != shapes.Stain || c.Kinds[1].Place.Edge != shapes.Percent(5, 5) || len(c.Kinds[1].Regions) != 0 {
		t.Fatalf("chip kind %+v", c.Kinds[1])
	}
	// Defaults: automatic contrast threshold, the any-pixel rule.
	d, err := Parse(filepath.Join(dir, "d.yaml"), []byte("kinds:\n  - name: k\n    shape: pit\n"))
	if err != nil || d.Checks.MinContrast != nil || d.Checks.LabelRule != "any-pixel" || d.Checks.Retries != 8 {
		t.Fatalf("defaults %+v %v", d, err)
	}
}

// Every bad shape, fill, place or check value is named by line and column.
func TestShapeFillPlaceErrors(t *testing.T) {
	dir := t.TempDir()
	bad := `checks:
  min_contrast: -1
  label_rule: strict
kinds:
  - name: a
    shape:
      type: crack
      length: [50, 10]
      width: 0
      angle: [0%, 10%]
      branches: 1.5
      radius: 4
  - name: b
    shape:
      length: 10
    fill:
      contrast: [-20, 20]
      texture: 2
    place:
      box: [0.5, 0, 0.2, 1]
      edge: [1, 2]
  - name: c
    shape: {type: scratch, length: [10, 20%], width: nan}
`
	_, err := Parse(filepath.Join(dir, "bad.yaml"), []byte(bad))
	want := []struct {
		line, col int
		text      string
	}{
		{2, 17, "checks.min_contrast must be in [0, 255]"},
		{3, 15, `unknown label rule "strict"`},
		{8, 15, "shape.length: min 50 is above max 10"},
		{9, 14, "shape.width must be in [0.5, 500]"},
		{10, 15, "shape.angle cannot be a percentage"},
		{10, 19, "shape.angle cannot be a percentage"},
		{11, 17, "shape.branches must be a whole number"},
		{12, 7, `unknown key "radius" in shape`},
		{15, 7, "shape needs a type:"},
		{17, 17, "fill.contrast [-20, 20] contains 0"},
		{18, 16, "fill.texture must be in [0, 1]"},
		{20, 12, "place.box [0.5, 0, 0.2, 1] is empty"},
		{21, 13, "place.edge must be one distance"},
		{23, 36, "shape.length: give both ends in px or both in %"},
		{23, 54, "shape.width must be a number"},
	}
	probs := Problems(err)
	for _, w := range want {
		found := false
		for _, p := range probs {
			if p.Line == w.line && p.Column == w.col && strings.Contains(p.Reason, w.text) {
				found = true
			}
		}
		if !found {
			t.Errorf("no problem at %d:%d containing %q; got:\n%v", w.line, w.col, w.text, err)
		}
	}
	if len(probs) != len(want) {
		t.Errorf("%d problems, want %d:\n%v", len(probs), len(want), err)
	}
}

// The example catalogues shipped with diagd stay valid.
func TestExamplesLoad(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "examples", "*.yaml"))
	if len(files) == 0 {
		t.Fatal("no example catalogue in augment/examples")
	}
	for _, f := range files {
		if _, err := Load(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
