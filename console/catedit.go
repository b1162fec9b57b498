package console

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"

	"github.com/diagd/diagd/augment/catalogue"
)

// ErrConflict is returned when the catalogue changed on disk since the page read it.
var ErrConflict = errors.New("the catalogue file changed since you opened it")

// ErrNotConfigured is returned when DIAGD_CATALOGUE is not set.
var ErrNotConfigured = errors.New("no defect catalogue configured (set DIAGD_CATALOGUE)")

// maxCatalogueBytes bounds the file the console reads and writes.
const maxCatalogueBytes = 1 << 20

// InvalidCatalogue is an edit that does not validate; nothing was written. Problems
// are file:line:col reasons against the text the edit would have written; ByKind maps
// an edited kind's position in the edit to its own problems.
type InvalidCatalogue struct {
	Problems []string
	ByKind   map[int][]string
	Text     string
}

func (e *InvalidCatalogue) Error() string {
	return "the edited catalogue is invalid: " + strings.Join(e.Problems, "; ")
}

// CatalogueFile edits the defect catalogue through its YAML node tree, so comments and
// the keys the page does not edit survive, checks every edit with the same validation
// as `diagd validate` (augment/catalogue), and writes it atomically only when the file
// on disk is still the version the edit was made on. A nil *CatalogueFile (no
// catalogue configured) answers ErrNotConfigured.
type CatalogueFile struct {
	path string   // absolute
	data *os.Root // DATA_DIR: masks the console stores, good frames to paint on
	mu   sync.Mutex
}

// OpenCatalogueFile prepares editing the catalogue at path, storing new masks under
// DATA_DIR/masks. The catalogue's folder need not exist yet (the daemon starts without
// a catalogue too); it is opened for each read and save.
func OpenCatalogueFile(path, dataDir string) (*CatalogueFile, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	data, err := openDataDir(dataDir)
	if err != nil {
		return nil, err
	}
	return &CatalogueFile{path: abs, data: data}, nil
}

// Close releases DATA_DIR.
func (c *CatalogueFile) Close() error {
	if c == nil {
		return nil
	}
	return c.data.Close()
}

// dir opens the catalogue's folder: only the catalogue's own name is ever read or
// written through it.
func (c *CatalogueFile) dir() (*os.Root, error) {
	r, err := os.OpenRoot(filepath.Dir(c.path))
	if err != nil {
		return nil, fmt.Errorf("the catalogue's folder: %w", err)
	}
	return r, nil
}

func hashOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// read returns the file's bytes; a missing file reads as empty (hash of nothing).
func (c *CatalogueFile) read() ([]byte, error) {
	dir, err := c.dir()
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	name := filepath.Base(c.path)
	st, err := dir.Stat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if st.Size() > maxCatalogueBytes {
		return nil, fmt.Errorf("%s is %d bytes (the console edits files up to %d)", c.path, st.Size(), maxCatalogueBytes)
	}
	return dir.ReadFile(name)
}

// Catalogue reads the file for the editor, with its problems if it does not validate.
func (c *CatalogueFile) Catalogue() (CatalogueDoc, error) {
	if c == nil {
		return CatalogueDoc{}, ErrNotConfigured
	}
	b, err := c.read()
	if err != nil {
		return CatalogueDoc{}, err
	}
	return c.doc(b), nil
}

func (c *CatalogueFile) doc(b []byte) CatalogueDoc {
	d := CatalogueDoc{File: c.path, Hash: hashOf(b), Text: string(b), Kinds: []Kind{}}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err == nil && len(root.Content) > 0 && root.Content[0].Kind == yaml.MappingNode {
		top := root.Content[0]
		if v := mapValue(top, "negative_prompt"); v != nil {
			d.Global.NegativePrompt = v.Value
		}
		if ks := mapValue(top, "kinds"); ks != nil && ks.Kind == yaml.SequenceNode {
			for i, kn := range ks.Content {
				d.Kinds = append(d.Kinds, kindOf(i, kn))
			}
		}
	}
	if len(b) == 0 {
		d.Problems = []string{c.path + ": the file does not exist or is empty"}
		return d
	}
	cat, err := catalogue.Parse(c.path, b)
	var ve *catalogue.ValidationError
	switch {
	case errors.As(err, &ve):
		for _, p := range ve.Problems {
			d.Problems = append(d.Problems, p.Error())
			if k := kindAtLine(d.Kinds, p.Line); k >= 0 {
				d.Kinds[k].Problems = append(d.Kinds[k].Problems, p.Error())
			}
		}
	case err != nil:
		d.Problems = []string{err.Error()}
	default:
		d.Digest = cat.Digest
		countMaskFiles(d.Kinds, cat)
	}
	return d
}

// kindOf reads one kind's node for the editor.
func kindOf(i int, kn *yaml.Node) Kind {
	k := Kind{Index: i, Line: kn.Line, Weight: 1, Prompts: []string{}, Masks: []MaskRef{}}
	if kn.Kind != yaml.MappingNode {
		return k
	}
	for j := 0; j+1 < len(kn.Content); j += 2 {
		key, v := kn.Content[j].Value, kn.Content[j+1]
		switch key {
		case "name":
			k.Name = v.Value
		case "prompt", "prompts":
			k.Prompts = append(k.Prompts, scalars(v)...)
		case "negative_prompt":
			k.NegativePrompt = v.Value
		case "weight":
			if w, err := strconv.ParseFloat(v.Value, 64); err == nil {
				k.Weight = w
			}
		case "masks":
			for _, n := range scalarNodes(v) {
				k.Masks = append(k.Masks, MaskRef{Path: n.Value, First: -1})
				k.maskLines = append(k.maskLines, n.Line)
			}
		case "regions":
			k.Regions = scalars(v)
		default:
			var buf bytes.Buffer
			enc := yaml.NewEncoder(&buf)
			enc.Encode(v)
			enc.Close()
			k.Extra = append(k.Extra, KeyValue{Key: key, Value: strings.TrimSpace(buf.String())})
		}
	}
	return k
}

// countMaskFiles fills in how many files each masks entry resolved to, and the index
// of its first file for CatalogueMask.
func countMaskFiles(kinds []Kind, cat *catalogue.Catalogue) {
	for i := range kinds {
		if i >= len(cat.Kinds) {
			return
		}
		resolved := cat.Kinds[i].Masks
		lines := kinds[i].maskLines
		for j := range kinds[i].Masks {
			for r, m := range resolved {
				if j < len(lines) && m.Line == lines[j] {
					if kinds[i].Masks[j].Files == 0 {
						kinds[i].Masks[j].First = r
					}
					kinds[i].Masks[j].Files++
				}
			}
		}
	}
}

func kindAtLine(kinds []Kind, line int) int {
	at := -1
	for i, k := range kinds {
		if line >= k.Line {
			at = i
		}
	}
	return at
}

func scalars(v *yaml.Node) []string {
	var out []string
	for _, n := range scalarNodes(v) {
		out = append(out, n.Value)
	}
	return out
}

// scalarNodes is one scalar, or the scalars of a list.
func scalarNodes(v *yaml.Node) []*yaml.Node {
	if v.Kind == yaml.ScalarNode {
		return []*yaml.Node{v}
	}
	var out []*yaml.Node
	if v.Kind == yaml.SequenceNode {
		for _, it := range v.Content {
			if it.Kind == yaml.ScalarNode {
				out = append(out, it)
			}
		}
	}
	return out
}

func mapValue(m *yaml.Node, key string) *yaml.Node {
	if i := mapIndex(m, key); i >= 0 {
		return m.Content[i+1]
	}
	return nil
}

func mapIndex(m *yaml.Node, key string) int {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return i
		}
	}
	return -1
}
