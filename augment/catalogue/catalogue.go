// Package catalogue reads the defect catalogue technicians edit: which defect kinds
// to synthesise, their text prompts and weights, where they may appear (masks,
// regions, a box or the image edge), what they look like (shape parameters, contrast
// against the surface), the checks every generated image passes, and the generation
// settings. Every problem is reported with the file, line and reason,
// so a technician can fix a bad edit without reading Go errors.
package catalogue

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/diagd/diagd/augment/shapes"
)

// DefaultNegativePrompt is the DIAG paper's global negative prompt.
const DefaultNegativePrompt = "smooth, plain, black, dark, shadow"

// Generation holds the diffusion settings; the defaults are DIAG's
// (generate_augmented_images.py).
type Generation struct {
	Steps       int     `json:"steps"`
	Guidance    float32 `json:"guidance"`
	Strength    float32 `json:"strength"`
	Padding     int     `json:"padding"`      // padding_mask_crop
	WorkingSize int     `json:"working_size"` // square size the model works at
	Seed        uint64  `json:"seed"`         // batch seed; each image derives its own
	// RoundTrip resizes the whole working-size result back, as DIAG does, instead of
	// keeping the source's own pixels away from the defect.
	RoundTrip bool `json:"round_trip"`
}

// DefaultGeneration returns DIAG's settings.
func DefaultGeneration() Generation {
	return Generation{Steps: 30, Guidance: 20, Strength: 0.99, Padding: 2, WorkingSize: 1024, Seed: 0}
}

// MemSeg holds the settings of the weight-free MemSeg generator.
type MemSeg struct {
	Textures     []string `json:"textures,omitempty"` // texture images; empty: use other negatives
	MinDelta     float64  `json:"min_transparency"`
	MaxDelta     float64  `json:"max_transparency"`
	TexturesLine int      `json:"-"`
}

// Mask is one resolved mask image and the catalogue line that named it.
type Mask struct {
	Path string `json:"path"`
	Line int    `json:"line"`
}

// Kind is one defect kind.
type Kind struct {
	Name           string      `json:"name"`
	Line           int         `json:"line"`
	Prompts        []string    `json:"prompts"`
	NegativePrompt string      `json:"negative_prompt"` // resolved: the kind's, else the global one
	Weight         float64     `json:"weight"`
	Masks          []Mask      `json:"masks,omitempty"`   // exact defect shapes
	Regions        []Mask      `json:"regions,omitempty"` // where random shapes may appear; none: anywhere
	Shape          shapes.Kind `json:"shape"`             // shape drawn inside regions
	Spec           shapes.Spec `json:"shape_spec"`        // its parameters (unset ones take defaults)
	Fill           Fill        `json:"fill"`
	Place          Place       `json:"place"`
}

// Catalogue is a validated catalogue with every mask path resolved to files.
type Catalogue struct {
	Path           string     `json:"path"`
	Digest         string     `json:"digest"` // file content and resolved mask files (name, size, mtime)
	NegativePrompt string     `json:"negative_prompt"`
	Generation     Generation `json:"generation"`
	MemSeg         MemSeg     `json:"memseg"`
	Checks         Checks     `json:"checks"`
	Kinds          []Kind     `json:"kinds"`
	// Dirs are the folders whose content the catalogue depends on: its own and the
	// mask and texture folders. The watcher watches them.
	Dirs []string `json:"-"`
}

// Problem is one thing wrong with a catalogue. Line is 0 when the problem is with the
// file as a whole.
type Problem struct {
	File   string
	Line   int
	Column int
	Reason string
}

func (p Problem) Error() string {
	switch {
	case p.Line > 0 && p.Column > 0:
		return fmt.Sprintf("%s:%d:%d: %s", p.File, p.Line, p.Column, p.Reason)
	case p.Line > 0:
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Reason)
	}
	return fmt.Sprintf("%s: %s", p.File, p.Reason)
}

// ValidationError lists every problem found, in line order.
type ValidationError struct {
	Problems []Problem
	// dirs are the folders the rejected version refers to, so a watcher notices when
	// a missing mask folder or file appears.
	dirs []string
}

func (e *ValidationError) Error() string {
	s := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		s[i] = p.Error()
	}
	return "invalid defect catalogue: " + strings.Join(s, "; ")
}

// ImageExts are the mask and texture file types diagd reads (through OpenCV).
var ImageExts = []string{".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}

// IsImage reports whether a file name has an image extension and is not hidden (an
// editor's or atomic writer's temp file).
func IsImage(name string) bool {
	base := filepath.Base(name)
	return !strings.HasPrefix(base, ".") && slices.Contains(ImageExts, strings.ToLower(filepath.Ext(base)))
}

// Load reads and validates the catalogue at path.
func Load(path string) (*Catalogue, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(abs)
	if err != nil {
		return nil, &ValidationError{Problems: []Problem{{File: path, Reason: fmt.Sprintf("cannot read the catalogue: %v", err)}}, dirs: []string{filepath.Dir(abs)}}
	}
	return Parse(abs, data)
}

// Parse validates catalogue bytes as if read from file; relative mask paths resolve
// against the file's folder and must exist.
func Parse(file string, data []byte) (*Catalogue, error) {
	p := &parser{file: file, dir: filepath.Dir(file)}
	c := p.parse(data)
	if len(p.problems) > 0 {
		slices.SortStableFunc(p.problems, func(a, b Problem) int { return cmp.Compare(a.Line, b.Line) })
		return nil, &ValidationError{Problems: p.problems, dirs: c.Dirs}
	}
	c.Path = file
	c.Digest = p.digest(data)
	return c, nil
}

type parser struct {
	file     string
	dir      string
	problems []Problem
	dirs     map[string]bool
	files    []string
}

func (p *parser) addf(n *yaml.Node, format string, args ...any) {
	pr := Problem{File: p.file, Reason: fmt.Sprintf(format, args...)}
	if n != nil {
		pr.Line, pr.Column = n.Line, n.Column
	}
	p.problems = append(p.problems, pr)
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func (p *parser) parse(data []byte) *Catalogue {
	c := &Catalogue{NegativePrompt: DefaultNegativePrompt, Generation: DefaultGeneration(), Checks: DefaultChecks()}
	c.MemSeg.MinDelta, c.MemSeg.MaxDelta = 0.15, 1
	p.dirs = map[string]bool{p.dir: true}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		pr := Problem{File: p.file, Reason: "not valid YAML: " + err.Error()}
		if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
			pr.Line, _ = strconv.Atoi(m[1])
			pr.Reason = "not valid YAML: " + m[2]
		}
		p.problems = append(p.problems, pr)
		return c
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		p.addf(nil, "the file is empty: it needs at least a 'kinds:' list")
		return c
	}
	root := doc.Content[0]
	seenKinds := false
	p.mapping(root, "the catalogue", func(key string, k, v *yaml.Node) bool {
		switch key {
		case "negative_prompt":
			c.NegativePrompt = p.text(v, key, false)
		case "generation":
			p.generation(v, &c.Generation)
		case "memseg":
			p.memseg(v, &c.MemSeg)
		case "checks":
			p.checks(v, &c.Checks)
		case "kinds":
			seenKinds = true
			c.Kinds = p.kinds(v, c)
		default:
			return false
		}
		return true
	}, "negative_prompt", "generation", "memseg", "checks", "kinds")
	if root.Kind == yaml.MappingNode && !seenKinds {
		p.addf(root, "no 'kinds:' list: the catalogue must define at least one defect kind")
	}
	for i := range c.Kinds {
		if c.Kinds[i].NegativePrompt == "" {
			c.Kinds[i].NegativePrompt = c.NegativePrompt
		}
	}
	for d := range p.dirs {
		c.Dirs = append(c.Dirs, d)
	}
	slices.Sort(c.Dirs)
	return c
}

// mapping walks a mapping node; handle returns false for an unknown key.
func (p *parser) mapping(n *yaml.Node, what string, handle func(key string, k, v *yaml.Node) bool, known ...string) {
	if n.Kind != yaml.MappingNode {
		p.addf(n, "%s must be a mapping of key: value lines, got %s", what, describe(n))
		return
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if prev, dup := seen[k.Value]; dup {
			p.addf(k, "key %q appears twice in %s (first on line %d)", k.Value, what, prev)
			continue
		}
		seen[k.Value] = k.Line
		if !handle(k.Value, k, v) {
			p.addf(k, "unknown key %q in %s (known keys: %s)", k.Value, what, strings.Join(known, ", "))
		}
	}
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing"
		}
		return fmt.Sprintf("%q", n.Value)
	case yaml.AliasNode:
		return "an alias"
	}
	return "an empty document"
}

func (p *parser) text(v *yaml.Node, key string, required bool) string {
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
		if required || v.Kind != yaml.ScalarNode {
			p.addf(v, "%s must be text, got %s", key, describe(v))
		}
		return ""
	}
	s := strings.TrimSpace(v.Value)
	if s == "" && required {
		p.addf(v, "%s is empty", key)
	}
	return s
}

func (p *parser) integer(v *yaml.Node, key string, lo, hi int64) int64 {
	if v.Kind == yaml.ScalarNode {
		if x, err := strconv.ParseInt(strings.ReplaceAll(v.Value, "_", ""), 10, 64); err == nil {
			if x < lo || x > hi {
				p.addf(v, "%s must be between %d and %d, got %d", key, lo, hi, x)
			}
			return x
		}
	}
	p.addf(v, "%s must be a whole number, got %s", key, describe(v))
	return 0
}

func (p *parser) number(v *yaml.Node, key string, lo, hi float64, loOpen bool) float64 {
	if v.Kind == yaml.ScalarNode {
		if x, err := strconv.ParseFloat(v.Value, 64); err == nil && !math.IsNaN(x) && !math.IsInf(x, 0) {
			if x < lo || x > hi || (loOpen && x == lo) {
				open := "["
				if loOpen {
					open = "("
				}
				p.addf(v, "%s must be in %s%g, %g], got %s", key, open, lo, hi, v.Value)
			}
			return x
		}
	}
	p.addf(v, "%s must be a number, got %s", key, describe(v))
	return 0
}

func (p *parser) generation(n *yaml.Node, g *Generation) {
	p.mapping(n, "generation", func(key string, k, v *yaml.Node) bool {
		switch key {
		case "steps":
			g.Steps = int(p.integer(v, "generation.steps", 1, 1000))
		case "guidance":
			g.Guidance = float32(p.number(v, "generation.guidance", 0, 100, false))
		case "strength":
			g.Strength = float32(p.number(v, "generation.strength", 0, 1, true))
		case "padding":
			g.Padding = int(p.integer(v, "generation.padding", 0, 4096))
		case "working_size":
			s := p.integer(v, "generation.working_size", 64, 4096)
			if s%8 != 0 {
				p.addf(v, "generation.working_size must be a multiple of 8 (the VAE downsamples by 8), got %d", s)
			}
			g.WorkingSize = int(s)
		case "round_trip":
			if v.Kind == yaml.ScalarNode && v.Tag == "!!bool" {
				g.RoundTrip = v.Value == "true" || v.Value == "True" || v.Value == "TRUE"
				break
			}
			p.addf(v, "generation.round_trip must be true or false, got %s", describe(v))
		case "seed":
			if v.Kind == yaml.ScalarNode {
				if x, err := strconv.ParseUint(v.Value, 10, 64); err == nil {
					g.Seed = x
					break
				}
			}
			p.addf(v, "generation.seed must be a whole number ≥ 0, got %s", describe(v))
		default:
			return false
		}
		return true
	}, "steps", "guidance", "strength", "padding", "working_size", "seed", "round_trip")
}

func (p *parser) memseg(n *yaml.Node, m *MemSeg) {
	p.mapping(n, "memseg", func(key string, k, v *yaml.Node) bool {
		switch key {
		case "textures":
			m.TexturesLine = v.Line
			for _, f := range p.paths(v, "memseg.textures") {
				m.Textures = append(m.Textures, f.Path)
			}
		case "transparency":
			if v.Kind != yaml.SequenceNode || len(v.Content) != 2 {
				p.addf(v, "memseg.transparency must be a list of two numbers [min, max], got %s", describe(v))
				break
			}
			// δ = 0 would paint nothing while the mask still says "defect".
			m.MinDelta = p.number(v.Content[0], "memseg.transparency min", 0, 1, true)
			m.MaxDelta = p.number(v.Content[1], "memseg.transparency max", 0, 1, true)
			if m.MinDelta > m.MaxDelta {
				p.addf(v, "memseg.transparency min %g is above max %g", m.MinDelta, m.MaxDelta)
			}
		default:
			return false
		}
		return true
	}, "textures", "transparency")
}

func (p *parser) kinds(n *yaml.Node, c *Catalogue) []Kind {
	if n.Kind != yaml.SequenceNode {
		p.addf(n, "kinds must be a list (lines starting with '- name: ...'), got %s", describe(n))
		return nil
	}
	if len(n.Content) == 0 {
		p.addf(n, "kinds is empty: define at least one defect kind")
	}
	names := map[string]int{}
	var out []Kind
	for _, kn := range n.Content {
		k := Kind{Line: kn.Line, Weight: 1}
		hasName, hasPrompt := false, false
		what := fmt.Sprintf("the kind on line %d", kn.Line)
		p.mapping(kn, what, func(key string, kk, v *yaml.Node) bool {
			switch key {
			case "name":
				hasName = true
				k.Name = p.text(v, "name", true)
				if prev, dup := names[k.Name]; dup && k.Name != "" {
					p.addf(v, "kind name %q is already used on line %d", k.Name, prev)
				}
				names[k.Name] = v.Line
			case "prompt", "prompts":
				hasPrompt = true
				k.Prompts = append(k.Prompts, p.prompts(v, key)...)
			case "negative_prompt":
				k.NegativePrompt = p.text(v, "negative_prompt", false)
			case "weight":
				k.Weight = p.number(v, "weight", 0, 1e6, true)
			case "masks":
				k.Masks = p.paths(v, "masks")
			case "regions":
				k.Regions = p.paths(v, "regions")
			case "shape":
				k.Spec = p.shape(v)
			case "fill":
				k.Fill = p.fill(v)
			case "place":
				k.Place = p.place(v)
			default:
				return false
			}
			return true
		}, "name", "prompts", "prompt", "negative_prompt", "weight", "masks", "regions", "shape", "fill", "place")
		if kn.Kind != yaml.MappingNode {
			continue
		}
		if !hasName {
			p.addf(kn, "%s has no name", what)
		}
		if !hasPrompt && k.Name != "" {
			// MemSeg needs no prompt; DIAG gets the kind's name.
			k.Prompts = []string{k.Name}
		}
		if k.Spec.Kind == "" {
			k.Spec.Kind = shapes.Blob
		}
		k.Shape = k.Spec.Kind
		out = append(out, k)
	}
	return out
}

// prompts accepts one text or a list of texts.
func (p *parser) prompts(v *yaml.Node, key string) []string {
	var out []string
	items := []*yaml.Node{v}
	if v.Kind == yaml.SequenceNode {
		items = v.Content
		if len(items) == 0 {
			p.addf(v, "%s is an empty list", key)
		}
	}
	for _, it := range items {
		if s := p.text(it, key, true); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// paths resolves one path or a list; each entry is a file, a folder (its images) or a
// glob, relative to the catalogue's folder.
func (p *parser) paths(v *yaml.Node, key string) []Mask {
	items := []*yaml.Node{v}
	if v.Kind == yaml.SequenceNode {
		items = v.Content
		if len(items) == 0 {
			p.addf(v, "%s is an empty list", key)
		}
	}
	var out []Mask
	for _, it := range items {
		pat := p.text(it, key, true)
		if pat == "" {
			continue
		}
		for _, f := range p.resolve(it, key, pat) {
			out = append(out, Mask{Path: f, Line: it.Line})
		}
	}
	return out
}

func (p *parser) resolve(n *yaml.Node, key, pat string) []string {
	full := pat
	if !filepath.IsAbs(full) {
		full = filepath.Join(p.dir, full)
	}
	if strings.ContainsAny(pat, "*?[") {
		matches, err := filepath.Glob(full)
		if err != nil {
			p.addf(n, "%s: bad pattern %q: %v", key, pat, err)
			return nil
		}
		p.watchStatic(full)
		var out []string
		for _, m := range matches {
			if st, err := os.Stat(m); err == nil && st.Mode().IsRegular() && IsImage(m) {
				out = append(out, m)
				p.watch(filepath.Dir(m))
			}
		}
		if len(out) == 0 {
			p.addf(n, "%s: no image file matches %q (looked in %s)", key, pat, filepath.Dir(full))
		}
		return p.record(out)
	}
	st, err := os.Stat(full)
	switch {
	case errors.Is(err, os.ErrNotExist):
		p.addf(n, "%s: file %q does not exist (looked for %s)", key, pat, full)
		p.watch(filepath.Dir(full))
		return nil
	case err != nil:
		p.addf(n, "%s: %q: %v", key, pat, err)
		return nil
	case st.IsDir():
		p.watch(full)
		ents, err := os.ReadDir(full)
		if err != nil {
			p.addf(n, "%s: cannot list folder %q: %v", key, pat, err)
			return nil
		}
		var out []string
		for _, e := range ents {
			if e.Type().IsRegular() && IsImage(e.Name()) {
				out = append(out, filepath.Join(full, e.Name()))
			}
		}
		if len(out) == 0 {
			p.addf(n, "%s: folder %q holds no image (%s)", key, pat, strings.Join(ImageExts, ", "))
		}
		return p.record(out)
	case !IsImage(full):
		p.addf(n, "%s: %q is not an image file (want %s)", key, pat, strings.Join(ImageExts, ", "))
		return nil
	}
	p.watch(filepath.Dir(full))
	return p.record([]string{full})
}

func (p *parser) record(files []string) []string {
	slices.Sort(files)
	p.files = append(p.files, files...)
	return files
}

func (p *parser) watch(dir string) {
	if st, err := os.Stat(dir); err == nil && st.IsDir() {
		p.dirs[filepath.Clean(dir)] = true
	}
}

// watchStatic watches the deepest folder of a glob that has no pattern characters,
// so a first matching file appearing there is noticed.
func (p *parser) watchStatic(glob string) {
	d := filepath.Dir(glob)
	for strings.ContainsAny(d, "*?[") {
		d = filepath.Dir(d)
	}
	// The nearest folder that exists, so the creation of a missing one is seen.
	for {
		if st, err := os.Stat(d); (err == nil && st.IsDir()) || filepath.Dir(d) == d {
			break
		}
		d = filepath.Dir(d)
	}
	p.watch(d)
}

// digest covers the file's bytes and every resolved file's name, size and mtime, so
// replacing or adding a mask changes it.
func (p *parser) digest(data []byte) string {
	h := sha256.New()
	h.Write(data)
	files := slices.Clone(p.files)
	slices.Sort(files)
	for _, f := range slices.Compact(files) {
		fmt.Fprintf(h, "\x00%s", f)
		if st, err := os.Stat(f); err == nil {
			fmt.Fprintf(h, "\x00%d\x00%d", st.Size(), st.ModTime().UnixNano())
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Pick returns a kind drawn by weight from u in [0,1).
func (c *Catalogue) Pick(u float64) *Kind {
	var total float64
	for _, k := range c.Kinds {
		total += k.Weight
	}
	x := u * total
	for i := range c.Kinds {
		x -= c.Kinds[i].Weight
		if x < 0 {
			return &c.Kinds[i]
		}
	}
	return &c.Kinds[len(c.Kinds)-1]
}
