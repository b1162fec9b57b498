package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/diagd/diagd/retrain/dataset"
)

// Synthetic batch folders in DATA_DIR. The daemon writes a batch whole into pending/
// when DIAGD_AUTO_ACCEPT=false; retraining reads only accepted/.
const (
	PendingDir  = "synthetic/pending"
	AcceptedDir = dataset.AcceptedDir
	RejectedDir = "synthetic/rejected"
)

var numberedPNG = regexp.MustCompile(`^([0-9]{5,9})\.png$`)

// Review moves reviewed synthetic images out of pending batches. Accepting image
// NNNNN of batch B moves pending/B/NNNNN.png, NNNNN_mask.png and NNNNN.json to
// accepted/B/ under the same names: exactly what moving the folder by hand gives, so
// both ways keep working. Rejecting moves them to rejected/B/ (kept for the record;
// nothing reads it). When the last image leaves a batch, its contact sheet and
// summary follow into accepted/B/ (or rejected/B/ when nothing was accepted) and the
// pending folder is removed.
type Review struct {
	root    *os.Root
	dataDir string // absolute, to tell whether a source negative lies inside
	mu      sync.Mutex
}

// OpenReview opens DATA_DIR for reviewing.
func OpenReview(dataDir string) (*Review, error) {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, err
	}
	root, err := openDataDir(abs)
	if err != nil {
		return nil, err
	}
	return &Review{root: root, dataDir: abs}, nil
}

// Close releases the folder.
func (r *Review) Close() error { return r.root.Close() }

// sidecar is the part of augment.Sidecar the review shows.
type sidecar struct {
	DefectKind     string `json:"defect_kind"`
	Prompt         string `json:"prompt"`
	SourceNegative string `json:"source_negative"`
}

// maxListed is how many images of a batch the page gets at once (a batch may hold
// 100000); Total says how many there are, and accepting or rejecting a whole batch
// covers them all.
const maxListed = 200

// PendingBatches lists the pending batches and their first images, oldest batch first.
func (r *Review) PendingBatches() ([]Batch, error) {
	ents, err := fs.ReadDir(r.root.FS(), PendingDir)
	if errors.Is(err, fs.ErrNotExist) {
		return []Batch{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := []Batch{}
	for _, e := range ents {
		if !e.IsDir() || !batchRE.MatchString(e.Name()) {
			continue
		}
		ids, masks, err := r.imageIDs(e.Name())
		if err != nil {
			return nil, err
		}
		b := Batch{ID: e.Name(), Total: len(ids), Images: []ReviewImage{}}
		for _, id := range ids[:min(len(ids), maxListed)] {
			b.Images = append(b.Images, r.image(e.Name(), id, masks[id]))
		}
		out = append(out, b)
	}
	return out, nil
}

// imageIDs lists a pending batch's numbered images (sorted) and which have masks.
func (r *Review) imageIDs(batch string) ([]string, map[string]bool, error) {
	ents, err := fs.ReadDir(r.root.FS(), path.Join(PendingDir, batch))
	if err != nil {
		return nil, nil, err
	}
	names := map[string]bool{}
	for _, e := range ents {
		names[e.Name()] = true
	}
	var ids []string
	masks := map[string]bool{}
	for _, e := range ents {
		if m := numberedPNG.FindStringSubmatch(e.Name()); m != nil && e.Type().IsRegular() {
			ids = append(ids, m[1])
			masks[m[1]] = names[m[1]+"_mask.png"]
		}
	}
	return ids, masks, nil
}

// image describes one pending image from its sidecar.
func (r *Review) image(batch, id string, hasMask bool) ReviewImage {
	im := ReviewImage{ID: id, HasMask: hasMask}
	if sc, err := r.sidecar(batch, id); err == nil {
		im.Kind, im.Prompt = sc.DefectKind, sc.Prompt
		if rel, ok := r.inside(sc.SourceNegative); ok {
			im.HasSource, im.SourceName = true, path.Base(rel)
		}
	}
	return im
}

func (r *Review) sidecar(batch, image string) (sidecar, error) {
	var sc sidecar
	b, err := r.root.ReadFile(path.Join(PendingDir, batch, image+".json"))
	if err != nil {
		return sc, err
	}
	return sc, json.Unmarshal(b, &sc)
}

// inside turns an absolute path from a sidecar into a path relative to DATA_DIR, if
// it lies inside; the console serves nothing outside DATA_DIR.
func (r *Review) inside(p string) (string, bool) {
	if p == "" || !filepath.IsAbs(p) {
		return "", false
	}
	rel, err := filepath.Rel(r.dataDir, filepath.Clean(p))
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", false
	}
	return filepath.ToSlash(rel), true
}

// ReviewFile opens a pending image's "image", "mask" or "source" (the good frame it
// was painted on, when that lies in DATA_DIR).
func (r *Review) ReviewFile(batch, image, which string) (File, error) {
	if err := checkID(batchRE, "batch", batch); err != nil {
		return File{}, err
	}
	if err := checkID(imageIDRE, "image", image); err != nil {
		return File{}, err
	}
	dir := path.Join(PendingDir, batch)
	switch which {
	case "image":
		return openFile(r.root, path.Join(dir, image+".png"))
	case "mask":
		return openFile(r.root, path.Join(dir, image+"_mask.png"))
	case "source":
		sc, err := r.sidecar(batch, image)
		if err != nil {
			return File{}, fmt.Errorf("%w: no sidecar for %s/%s", ErrNotFound, batch, image)
		}
		rel, ok := r.inside(sc.SourceNegative)
		if !ok {
			return File{}, fmt.Errorf("%w: the source image of %s/%s is not in the data folder", ErrNotFound, batch, image)
		}
		return openFile(r.root, rel)
	}
	return File{}, fmt.Errorf("%w: %q (want image, mask or source)", ErrBadID, which)
}

// Decide accepts or rejects images of a pending batch (every image when images is
// empty). An image that cannot be moved is reported in Failed; the others move.
func (r *Review) Decide(batch string, images []string, accept bool) (Decision, error) {
	if err := checkID(batchRE, "batch", batch); err != nil {
		return Decision{}, err
	}
	for _, im := range images {
		if err := checkID(imageIDRE, "image", im); err != nil {
			return Decision{}, err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	src := path.Join(PendingDir, batch)
	if st, err := r.root.Stat(src); err != nil || !st.IsDir() {
		return Decision{}, fmt.Errorf("%w: pending batch %s", ErrNotFound, batch)
	}
	if len(images) == 0 {
		all, _, err := r.imageIDs(batch)
		if err != nil {
			return Decision{}, err
		}
		images = all
	}
	destTop := RejectedDir
	if accept {
		destTop = AcceptedDir
	}
	dest := path.Join(destTop, batch)
	if err := r.root.MkdirAll(dest, 0o755); err != nil {
		return Decision{}, err
	}
	d := Decision{Batch: batch}
	for _, im := range slices.Compact(slices.Sorted(slices.Values(images))) {
		if err := r.moveImage(src, dest, im); err != nil {
			d.Failed = append(d.Failed, im+": "+err.Error())
			continue
		}
		if accept {
			d.Accepted = append(d.Accepted, im)
		} else {
			d.Rejected = append(d.Rejected, im)
		}
	}
	if len(d.Accepted)+len(d.Rejected) == 0 {
		r.root.Remove(dest) // only if empty: a folder made for nothing
	}
	if err := syncDir(r.root, dest); err != nil {
		return d, err
	}
	return d, r.finishIfEmpty(batch)
}

// moveImage moves one image's files: sidecar and mask first, the image last, so the
// image (what training counts) never arrives without its mask.
func (r *Review) moveImage(src, dest, im string) error {
	if _, err := r.root.Stat(path.Join(src, im+".png")); err != nil {
		return fmt.Errorf("not in the pending batch")
	}
	if _, err := r.root.Lstat(path.Join(dest, im+".png")); err == nil {
		return fmt.Errorf("%s already holds an image %s.png; left in pending", dest, im)
	}
	for _, name := range []string{im + ".json", im + "_mask.png", im + ".png"} {
		if _, err := r.root.Lstat(path.Join(src, name)); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := moveFile(r.root, path.Join(src, name), path.Join(dest, name)); err != nil {
			return err
		}
	}
	return nil
}

// finishIfEmpty moves what is left of a batch with no image left (contact sheet,
// summary) beside its accepted images (or rejected ones) and removes the folder.
func (r *Review) finishIfEmpty(batch string) error {
	src := path.Join(PendingDir, batch)
	ents, err := fs.ReadDir(r.root.FS(), src)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if numberedPNG.MatchString(e.Name()) {
			return nil
		}
	}
	dest := path.Join(RejectedDir, batch)
	if st, err := r.root.Stat(path.Join(AcceptedDir, batch)); err == nil && st.IsDir() {
		dest = path.Join(AcceptedDir, batch)
	}
	if err := r.root.MkdirAll(dest, 0o755); err != nil {
		return err
	}
	for _, e := range ents {
		if err := moveFile(r.root, path.Join(src, e.Name()), path.Join(dest, e.Name())); err != nil {
			return fmt.Errorf("batch %s is reviewed but %s stays in pending: %w", batch, e.Name(), err)
		}
	}
	if err := r.root.Remove(src); err != nil {
		return err
	}
	return syncDir(r.root, PendingDir)
}
