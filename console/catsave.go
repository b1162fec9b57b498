package console

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"

	"gopkg.in/yaml.v3"

	"github.com/diagd/diagd/augment/catalogue"
)

// Limits on an edit from the page.
const (
	maxKinds        = 200
	maxPrompts      = 50
	maxMasks        = 100
	maxTextLen      = 2000
	maxNameLen      = 200
	catalogueIndent = 2
)

// SaveCatalogue applies the page's edit to the file's node tree, validates the result
// as `diagd validate` does and, when valid and the file is still the version the edit
// was made on, writes it atomically. The daemon's watcher reloads it.
func (c *CatalogueFile) SaveCatalogue(e CatalogueEdit) (CatalogueDoc, error) {
	if c == nil {
		return CatalogueDoc{}, ErrNotConfigured
	}
	if err := checkEdit(e); err != nil {
		return CatalogueDoc{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	b, err := c.read()
	if err != nil {
		return CatalogueDoc{}, err
	}
	if hashOf(b) != e.Hash {
		return CatalogueDoc{}, fmt.Errorf("%w: reload the page to see the file as it is now (your edit was not saved)", ErrConflict)
	}
	out, err := applyEdit(b, e)
	if err != nil {
		return CatalogueDoc{}, err
	}
	if len(out) > maxCatalogueBytes {
		return CatalogueDoc{}, fmt.Errorf("%w: the edited catalogue is %d bytes (at most %d)", ErrBadInput, len(out), maxCatalogueBytes)
	}
	if _, err := catalogue.Parse(c.path, out); err != nil {
		return CatalogueDoc{}, invalid(out, err)
	}
	// Once more just before writing: an edit made on disk meanwhile is never overwritten.
	if now, err := c.read(); err != nil || hashOf(now) != e.Hash {
		return CatalogueDoc{}, fmt.Errorf("%w: it changed while saving (your edit was not saved)", ErrConflict)
	}
	dir, err := c.dir()
	if err != nil {
		return CatalogueDoc{}, err
	}
	defer dir.Close()
	perm := fs.FileMode(0o644)
	if st, err := dir.Stat(filepath.Base(c.path)); err == nil {
		perm = st.Mode().Perm()
	}
	if err := writeAtomic(dir, filepath.Base(c.path), out, perm); err != nil {
		return CatalogueDoc{}, err
	}
	return c.doc(out), nil
}

func checkEdit(e CatalogueEdit) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrBadInput}, a...)...)
	}
	if len(e.Kinds) > maxKinds {
		return bad("%d kinds (at most %d)", len(e.Kinds), maxKinds)
	}
	for i, k := range e.Kinds {
		switch {
		case len(k.Name) > maxNameLen:
			return bad("kind %d: the name is longer than %d characters", i+1, maxNameLen)
		case len(k.Prompts) > maxPrompts:
			return bad("kind %d: %d prompts (at most %d)", i+1, len(k.Prompts), maxPrompts)
		case len(k.Masks) > maxMasks:
			return bad("kind %d: %d masks (at most %d)", i+1, len(k.Masks), maxMasks)
		case len(k.NegativePrompt) > maxTextLen:
			return bad("kind %d: the negative prompt is longer than %d characters", i+1, maxTextLen)
		}
		for _, s := range append(slices.Clone(k.Prompts), k.Masks...) {
			if len(s) > maxTextLen {
				return bad("kind %d: a prompt or mask is longer than %d characters", i+1, maxTextLen)
			}
		}
	}
	return nil
}

// invalid turns a validation error of the edited text into an InvalidCatalogue with
// each problem also filed under the edited kind it falls in.
func invalid(text []byte, err error) error {
	var ve *catalogue.ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	inv := &InvalidCatalogue{ByKind: map[int][]string{}, Text: string(text)}
	var lines []Kind
	var root yaml.Node
	if yaml.Unmarshal(text, &root) == nil && len(root.Content) > 0 {
		if ks := mapValue(root.Content[0], "kinds"); ks != nil {
			for i, kn := range ks.Content {
				lines = append(lines, Kind{Index: i, Line: kn.Line})
			}
		}
	}
	for _, p := range ve.Problems {
		inv.Problems = append(inv.Problems, p.Error())
		if k := kindAtLine(lines, p.Line); k >= 0 {
			inv.ByKind[k] = append(inv.ByKind[k], p.Error())
		}
	}
	return inv
}

// applyEdit rewrites the kinds list of the YAML in b as the edit says, reusing each
// kept kind's nodes so comments, styles and unedited keys stay.
func applyEdit(b []byte, e CatalogueEdit) ([]byte, error) {
	var root yaml.Node
	if len(bytes.TrimSpace(b)) > 0 {
		if err := yaml.Unmarshal(b, &root); err != nil {
			return nil, fmt.Errorf("%w: the file on disk is not valid YAML, so the form cannot edit it; fix it in a text editor first: %v", ErrBadInput, err)
		}
	}
	if len(root.Content) == 0 {
		root = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode, Tag: "!!map"}}}
	}
	top := root.Content[0]
	if top.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%w: the catalogue is not a mapping of keys; fix it in a text editor first", ErrBadInput)
	}
	ks := mapValue(top, "kinds")
	if ks == nil {
		ks = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		top.Content = append(top.Content, strNode("kinds"), ks)
	}
	var old []*yaml.Node
	if ks.Kind == yaml.SequenceNode {
		old = ks.Content
	} else {
		*ks = yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", HeadComment: ks.HeadComment, LineComment: ks.LineComment}
	}
	used := map[int]bool{}
	content := make([]*yaml.Node, 0, len(e.Kinds))
	for _, ke := range e.Kinds {
		kn := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		if ke.Index >= 0 {
			if ke.Index >= len(old) || used[ke.Index] || old[ke.Index].Kind != yaml.MappingNode {
				return nil, fmt.Errorf("%w: kind %d of the file cannot be edited here (reload the page)", ErrBadInput, ke.Index+1)
			}
			used[ke.Index] = true
			kn = old[ke.Index]
		}
		applyKind(kn, ke)
		content = append(content, kn)
	}
	ks.Content = content
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(catalogueIndent)
	if err := enc.Encode(&root); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// applyKind changes only what differs, so untouched values keep their nodes.
func applyKind(kn *yaml.Node, ke KindEdit) {
	cur := kindOf(0, kn)
	if cur.Name != ke.Name || mapIndex(kn, "name") < 0 {
		setScalar(kn, "name", ke.Name, "!!str")
	}
	if !slices.Equal(cur.Prompts, ke.Prompts) {
		setList(kn, "prompt", "prompts", ke.Prompts)
	}
	if cur.NegativePrompt != ke.NegativePrompt {
		if ke.NegativePrompt == "" {
			deleteKey(kn, "negative_prompt")
		} else {
			setScalar(kn, "negative_prompt", ke.NegativePrompt, "!!str")
		}
	}
	if cur.Weight != ke.Weight {
		setScalar(kn, "weight", strconv.FormatFloat(ke.Weight, 'g', -1, 64), "")
	}
	if masks := curMasks(cur); !slices.Equal(masks, ke.Masks) {
		if len(ke.Masks) == 0 {
			deleteKey(kn, "masks")
		} else {
			setList(kn, "masks", "masks", ke.Masks)
		}
	}
}

func curMasks(k Kind) []string {
	out := make([]string, len(k.Masks))
	for i, m := range k.Masks {
		out[i] = m.Path
	}
	return out
}

func strNode(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }

// setScalar sets key's value, keeping the value node (and its comments) when it is a
// scalar already.
func setScalar(m *yaml.Node, key, value, tag string) {
	i := mapIndex(m, key)
	if i < 0 {
		m.Content = append(m.Content, strNode(key), &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: value})
		return
	}
	v := m.Content[i+1]
	if v.Kind != yaml.ScalarNode {
		*v = yaml.Node{Kind: yaml.ScalarNode, HeadComment: v.HeadComment, LineComment: v.LineComment, FootComment: v.FootComment}
	}
	v.Value, v.Tag = value, tag
	if tag != "!!str" {
		v.Style = 0 // a number is written plain
	}
}

// setList sets a list of strings under key. A one-item edit of a single-value key
// (single, e.g. "prompt: x") stays a single value; otherwise it becomes the list key,
// in the style the list had (flow [a, b] for a new one).
func setList(m *yaml.Node, single, key string, items []string) {
	if len(items) == 1 && single != key && mapIndex(m, single) >= 0 && mapIndex(m, key) < 0 {
		setScalar(m, single, items[0], "!!str")
		return
	}
	if len(items) == 1 && single == key {
		if v := mapValue(m, key); v != nil && v.Kind == yaml.ScalarNode {
			setScalar(m, key, items[0], "!!str")
			return
		}
	}
	if i := mapIndex(m, single); single != key && i >= 0 {
		if mapIndex(m, key) >= 0 {
			deleteKey(m, single)
		} else {
			m.Content[i].Value = key // "prompt: x" becomes "prompts: [...]" where it was
		}
	}
	seq := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Style: yaml.FlowStyle}
	if v := mapValue(m, key); v != nil {
		if v.Kind == yaml.SequenceNode {
			seq.Style = v.Style
		}
		seq.HeadComment, seq.LineComment, seq.FootComment = v.HeadComment, v.LineComment, v.FootComment
	}
	for _, it := range items {
		seq.Content = append(seq.Content, strNode(it))
	}
	if i := mapIndex(m, key); i >= 0 {
		m.Content[i+1] = seq
		return
	}
	m.Content = append(m.Content, strNode(key), seq)
}

func deleteKey(m *yaml.Node, key string) {
	if i := mapIndex(m, key); i >= 0 {
		m.Content = append(m.Content[:i], m.Content[i+2:]...)
	}
}
