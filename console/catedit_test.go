package console

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diagd/diagd/augment/catalogue"
)

const catYAML = `# Defect catalogue of line 3
negative_prompt: "smooth, plain"
generation:
  seed: 7 # fixed for reproducible batches
kinds:
  # long thin marks from the conveyor
  - name: scratch # the common one
    prompts: ["a thin scratch", "a long scratch"]
    weight: 2
    masks: masks/a.png   # drawn by hand
  - name: dent
    prompt: a small dent
    regions: [masks/a.png]
    shape: blob
# end of kinds
`

type catSetup struct {
	path, data string
	c          *CatalogueFile
}

func newCatSetup(t *testing.T, text string) catSetup {
	t.Helper()
	root := t.TempDir()
	cdir := filepath.Join(root, "etc")
	writeFile(t, filepath.Join(cdir, "masks", "a.png"), maskPNG(t, 16, 16, rect(4, 4, 12, 12)))
	path := filepath.Join(cdir, "catalogue.yaml")
	writeFile(t, path, []byte(text))
	data := filepath.Join(root, "data")
	c, err := OpenCatalogueFile(path, data)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return catSetup{path: path, data: data, c: c}
}

// editOf is the page's edit that changes nothing.
func editOf(d CatalogueDoc) CatalogueEdit {
	e := CatalogueEdit{Hash: d.Hash}
	for _, k := range d.Kinds {
		e.Kinds = append(e.Kinds, KindEdit{Index: k.Index, Name: k.Name, Prompts: k.Prompts, NegativePrompt: k.NegativePrompt,
			Weight: k.Weight, Masks: curMasks(k)})
	}
	return e
}

func TestCatalogueReadForTheEditor(t *testing.T) {
	s := newCatSetup(t, catYAML)
	d, err := s.c.Catalogue()
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Problems) != 0 || d.Digest == "" || len(d.Kinds) != 2 {
		t.Fatalf("doc: problems %v digest %q kinds %d", d.Problems, d.Digest, len(d.Kinds))
	}
	k := d.Kinds[0]
	if k.Name != "scratch" || k.Weight != 2 || len(k.Prompts) != 2 || len(k.Masks) != 1 || k.Masks[0].Files != 1 || k.Masks[0].First != 0 {
		t.Errorf("kind 0: %+v", k)
	}
	if d.Kinds[1].Prompts[0] != "a small dent" || d.Kinds[1].Weight != 1 || len(d.Kinds[1].Regions) != 1 || d.Kinds[1].Extra[0].Key != "shape" {
		t.Errorf("kind 1: %+v", d.Kinds[1])
	}
	want, err := catalogue.Load(s.path)
	if err != nil {
		t.Fatal(err)
	}
	if d.Digest != want.Digest {
		t.Errorf("digest %s, the daemon's loader says %s", d.Digest, want.Digest)
	}
	f, err := s.c.CatalogueMask(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Content.Close()
}

func TestCatalogueEditKeepsCommentsAndUntouchedText(t *testing.T) {
	s := newCatSetup(t, catYAML)
	d, _ := s.c.Catalogue()
	e := editOf(d)
	e.Kinds[0].Weight = 3.5
	e.Kinds[1].Prompts = []string{"a small dent", "a round dent"} // prompt: x becomes a list
	e.Kinds[1].NegativePrompt = "true"                            // must stay a string
	out, err := s.c.SaveCatalogue(e)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(s.path)
	text := string(b)
	for _, want := range []string{"# Defect catalogue of line 3", "# fixed for reproducible batches", "# long thin marks from the conveyor",
		"# the common one", "# drawn by hand", "# end of kinds", "weight: 3.5", "prompts: [a small dent, a round dent]\n    regions",
		`negative_prompt: "true"`, `prompts: ["a thin scratch", "a long scratch"]`, "shape: blob"} {
		if !strings.Contains(text, want) {
			t.Errorf("saved file lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "prompt: a small dent") {
		t.Errorf("the single prompt key stayed beside the list:\n%s", text)
	}
	cat, err := catalogue.Load(s.path)
	if err != nil {
		t.Fatal(err)
	}
	if cat.Kinds[0].Weight != 3.5 || len(cat.Kinds[1].Prompts) != 2 || cat.Kinds[1].NegativePrompt != "true" {
		t.Errorf("the daemon's loader reads %+v", cat.Kinds)
	}
	if out.Hash != hashOf(b) || out.Digest != cat.Digest {
		t.Error("the returned document is not the saved file")
	}
	// Saving again without a change writes the same bytes.
	if _, err := s.c.SaveCatalogue(editOf(out)); err != nil {
		t.Fatal(err)
	}
	if b2, _ := os.ReadFile(s.path); string(b2) != text {
		t.Errorf("a no-op save changed the file:\n%s\n---\n%s", text, b2)
	}
}

func TestCatalogueInvalidEditChangesNothing(t *testing.T) {
	s := newCatSetup(t, catYAML)
	before, _ := os.ReadFile(s.path)
	d, _ := s.c.Catalogue()
	e := editOf(d)
	e.Kinds[1].Weight = -1
	e.Kinds[1].Prompts = nil
	_, err := s.c.SaveCatalogue(e)
	var inv *InvalidCatalogue
	if !errors.As(err, &inv) {
		t.Fatalf("err %v, want *InvalidCatalogue", err)
	}
	joined := strings.Join(inv.ByKind[1], "\n")
	if !strings.Contains(joined, s.path+":") || !strings.Contains(joined, "weight must be in (0, 1e+06], got -1") || !strings.Contains(joined, "prompts is an empty list") {
		t.Errorf("problems of kind 2: %q", inv.ByKind[1])
	}
	if len(inv.ByKind[0]) != 0 {
		t.Errorf("kind 1 blamed: %v", inv.ByKind[0])
	}
	// file:line:col, as diagd validate prints it.
	if !strings.Contains(joined, ".yaml:") || strings.Count(inv.ByKind[1][0], ":") < 3 {
		t.Errorf("not file:line:col: %q", inv.ByKind[1][0])
	}
	after, _ := os.ReadFile(s.path)
	if string(after) != string(before) {
		t.Error("an invalid edit changed the file")
	}
	// A mask that does not exist is refused the same way.
	e = editOf(d)
	e.Kinds[0].Masks = []string{"masks/missing.png"}
	if _, err := s.c.SaveCatalogue(e); !errors.As(err, &inv) || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing mask: %v", err)
	}
}

func TestCatalogueEditMadeOnDiskIsNeverOverwritten(t *testing.T) {
	s := newCatSetup(t, catYAML)
	d, _ := s.c.Catalogue()
	onDisk := strings.Replace(catYAML, "weight: 2", "weight: 9", 1)
	writeFile(t, s.path, []byte(onDisk))
	e := editOf(d)
	e.Kinds[0].Name = "scratches"
	if _, err := s.c.SaveCatalogue(e); !errors.Is(err, ErrConflict) {
		t.Fatalf("err %v, want ErrConflict", err)
	}
	if b, _ := os.ReadFile(s.path); string(b) != onDisk {
		t.Error("the edit made on disk was overwritten")
	}
}

func TestCatalogueNewKindWithUploadedMask(t *testing.T) {
	s := newCatSetup(t, catYAML)
	p, err := s.c.AddMask("Oil Stain!", maskPNG(t, 20, 10, rect(2, 2, 9, 8)))
	if err != nil {
		t.Fatal(err)
	}
	// DATA_DIR is not below the catalogue's folder here: the path is absolute.
	if !filepath.IsAbs(p) || !strings.HasPrefix(p, filepath.Join(s.data, MasksDir, "oil-stain")) {
		t.Errorf("mask path %q", p)
	}
	if _, err := s.c.AddMask("x", maskPNG(t, 20, 10, rect(0, 0, 0, 0))); !errors.Is(err, ErrBadInput) {
		t.Errorf("empty mask: %v", err)
	}
	d, _ := s.c.Catalogue()
	e := editOf(d)
	e.Kinds = append(e.Kinds[:1], KindEdit{Index: -1, Name: "oil", Prompts: []string{"an oil stain"}, Weight: 1, Masks: []string{p}})
	out, err := s.c.SaveCatalogue(e)
	if err != nil {
		t.Fatal(err)
	}
	cat, err := catalogue.Load(s.path)
	if err != nil {
		t.Fatal(err)
	}
	if len(cat.Kinds) != 2 || cat.Kinds[1].Name != "oil" || cat.Kinds[1].Masks[0].Path != p {
		t.Errorf("kinds after the edit: %+v", cat.Kinds)
	}
	if out.Kinds[1].Masks[0].Files != 1 {
		t.Errorf("doc kind: %+v", out.Kinds[1])
	}
	b, _ := os.ReadFile(s.path)
	if strings.Contains(string(b), "dent") || !strings.Contains(string(b), "# long thin marks") {
		t.Errorf("removed kind still there, or comments lost:\n%s", b)
	}
}

func TestCatalogueMaskBesideTheCatalogueIsRelative(t *testing.T) {
	root := t.TempDir()
	path := filepath.Join(root, "catalogue.yaml")
	writeFile(t, path, []byte("kinds: []\n"))
	c, err := OpenCatalogueFile(path, filepath.Join(root, "data"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p, err := c.AddMask("k", maskPNG(t, 8, 8, rect(0, 0, 4, 4)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(p, "data/masks/k/") {
		t.Errorf("mask path %q, want relative to the catalogue", p)
	}
	// The file starts invalid (no kinds); the editor still reads it and a valid edit saves.
	d, err := c.Catalogue()
	if err != nil || len(d.Problems) == 0 {
		t.Fatalf("doc %+v err %v", d, err)
	}
	if _, err := c.SaveCatalogue(CatalogueEdit{Hash: d.Hash, Kinds: []KindEdit{{Index: -1, Name: "k", Prompts: []string{"p"}, Weight: 1, Masks: []string{p}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := catalogue.Load(path); err != nil {
		t.Fatal(err)
	}
}

func TestCatalogueInAFolderNotThereYet(t *testing.T) {
	root := t.TempDir()
	path := filepath.Join(root, "etc", "diagd", "catalogue.yaml")
	c, err := OpenCatalogueFile(path, filepath.Join(root, "data"))
	if err != nil {
		t.Fatalf("the daemon starts without a catalogue folder; the console must too: %v", err)
	}
	defer c.Close()
	d, err := c.Catalogue()
	if err != nil || len(d.Problems) == 0 || d.Hash != hashOf(nil) {
		t.Fatalf("doc %+v err %v", d, err)
	}
	writeFile(t, filepath.Join(root, "etc", "diagd", "m.png"), maskPNG(t, 8, 8, rect(0, 0, 4, 4)))
	if _, err := c.SaveCatalogue(CatalogueEdit{Hash: d.Hash, Kinds: []KindEdit{{Index: -1, Name: "k", Prompts: []string{"p"}, Weight: 1, Masks: []string{"m.png"}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := catalogue.Load(path); err != nil {
		t.Fatal(err)
	}
}
