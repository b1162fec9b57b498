package console

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/diagd/diagd/augment/catalogue"
	"github.com/diagd/diagd/retrain/dataset"
)

// MasksDir is where the console stores uploaded and painted masks, in DATA_DIR.
const MasksDir = "masks"

// maxGoodFrames is how many pooled good frames the painter offers (the newest).
const maxGoodFrames = 60

var (
	cameraRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	slugRE   = regexp.MustCompile(`[^a-z0-9_-]+`)
)

// CatalogueMask opens the index-th mask file kind resolves to in the valid catalogue.
// These are files the catalogue (written by a technician) names, which may lie beside
// the catalogue rather than in DATA_DIR; the browser only ever names them by number.
func (c *CatalogueFile) CatalogueMask(kind, index int) (File, error) {
	if c == nil {
		return File{}, ErrNotConfigured
	}
	cat, err := catalogue.Load(c.path)
	if err != nil {
		return File{}, fmt.Errorf("%w: the catalogue does not load: %v", ErrNotFound, err)
	}
	if kind < 0 || kind >= len(cat.Kinds) || index < 0 || index >= len(cat.Kinds[kind].Masks) {
		return File{}, fmt.Errorf("%w: mask %d of kind %d", ErrNotFound, index, kind)
	}
	p := cat.Kinds[kind].Masks[index].Path
	f, err := os.Open(p)
	if err != nil {
		return File{}, fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		f.Close()
		return File{}, fmt.Errorf("%w: %s", ErrNotFound, p)
	}
	return File{Name: p, ModTime: st.ModTime(), Content: f}, nil
}

// AddMask stores a mask (PNG or JPEG; saved as a 0/255 PNG) under
// DATA_DIR/masks/<kind>/ and returns the path to write in the catalogue: relative to
// the catalogue's folder when it lies below it, else absolute.
func (c *CatalogueFile) AddMask(kind string, b []byte) (string, error) {
	if c == nil {
		return "", ErrNotConfigured
	}
	clean, err := cleanMask(b, 0, 0)
	if err != nil {
		return "", err
	}
	slug := strings.Trim(slugRE.ReplaceAllString(strings.ToLower(kind), "-"), "-")
	if len(slug) > 40 {
		slug = slug[:40]
	}
	if slug == "" {
		slug = "kind"
	}
	var rnd [3]byte
	rand.Read(rnd[:])
	rel := path.Join(MasksDir, slug, time.Now().UTC().Format("20060102T150405Z")+"-"+hex.EncodeToString(rnd[:])+".png")
	if err := c.data.MkdirAll(path.Dir(rel), 0o755); err != nil {
		return "", err
	}
	if err := writeAtomic(c.data, rel, clean, 0o644); err != nil {
		return "", err
	}
	abs := filepath.Join(c.data.Name(), filepath.FromSlash(rel))
	if abs, err = filepath.Abs(abs); err != nil {
		return "", err
	}
	if r, err := filepath.Rel(filepath.Dir(c.path), abs); err == nil && !strings.HasPrefix(r, "..") {
		return filepath.ToSlash(r), nil
	}
	return abs, nil
}

// GoodFrames lists the newest pooled good frames (DATA_DIR/negatives and its camera
// folders) to paint a mask on.
func (c *CatalogueFile) GoodFrames() ([]GoodFrame, error) {
	if c == nil {
		return nil, ErrNotConfigured
	}
	type entry struct{ name, camera string }
	var all []entry
	list := func(dir, camera string) {
		ents, err := fs.ReadDir(c.data.FS(), dir)
		if err != nil {
			return
		}
		for _, e := range ents {
			if e.Type().IsRegular() && catalogue.IsImage(e.Name()) && nameRE.MatchString(e.Name()) {
				all = append(all, entry{e.Name(), camera})
			}
		}
	}
	list(dataset.NegativesDir, "-")
	if ents, err := fs.ReadDir(c.data.FS(), dataset.NegativesDir); err == nil {
		for _, e := range ents {
			if e.IsDir() && cameraRE.MatchString(e.Name()) {
				list(path.Join(dataset.NegativesDir, e.Name()), e.Name())
			}
		}
	}
	// Names start with the capture time: the newest sort last.
	slices.SortFunc(all, func(a, b entry) int { return strings.Compare(b.name, a.name) })
	out := []GoodFrame{}
	for _, e := range all[:min(len(all), maxGoodFrames)] {
		out = append(out, GoodFrame{ID: e.camera + "/" + e.name, Camera: e.camera})
	}
	return out, nil
}

// GoodFrame opens a pooled good frame by the id GoodFrames gave ("camera/name", "-"
// for the pool's top folder).
func (c *CatalogueFile) GoodFrame(id string) (File, error) {
	if c == nil {
		return File{}, ErrNotConfigured
	}
	camera, name, ok := strings.Cut(id, "/")
	if !ok || (camera != "-" && !cameraRE.MatchString(camera)) || !nameRE.MatchString(name) || !catalogue.IsImage(name) {
		return File{}, fmt.Errorf("%w: good frame %q", ErrBadID, id)
	}
	dir := dataset.NegativesDir
	if camera != "-" {
		dir = path.Join(dir, camera)
	}
	f, err := openFile(c.data, path.Join(dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return File{}, fmt.Errorf("%w: good frame %s", ErrNotFound, id)
	}
	return f, err
}
