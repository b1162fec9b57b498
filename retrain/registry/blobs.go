package registry

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
)

// Versions that differ only in their head share their backbone: retraining writes it to
// a side file named by the sha256 of its bytes (<name>-<64 hex>.<ext>, see
// head.BlobName), and Commit replaces a staging folder's copy of such a file by a hard
// link to an equal file another version already holds. A version folder stays
// self-contained (deleting or pruning one never breaks another), and the registry stays
// crash-safe: the link is made inside the staging folder, which a crash leaves to be
// removed at the next Lock, before the folder is renamed into place.
var blobName = regexp.MustCompile(`^[A-Za-z0-9_.]+-([0-9a-f]{64})\.[a-z]+$`)

// shareBlobs links each content-addressed file of staging to an existing equal file.
func (r *Registry) shareBlobs(staging string) error {
	ents, err := os.ReadDir(staging)
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	shared := false
	for _, e := range ents {
		m := blobName.FindStringSubmatch(e.Name())
		if m == nil || !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(staging, e.Name())
		src, err := r.findBlob(e.Name(), m[1], p)
		if err != nil || src == "" {
			continue // nothing to share with: this version holds the first copy
		}
		tmp := filepath.Join(staging, ".link-"+e.Name())
		os.Remove(tmp)
		if err := os.Link(src, tmp); err != nil {
			r.log.Info("registry: backbone not shared (hard link failed); keeping a copy", "file", e.Name(), "err", err.Error())
			continue
		}
		if err := os.Rename(tmp, p); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("registry: %w", err)
		}
		shared = true
		r.log.Info("registry: backbone shared with an earlier version", "file", e.Name(), "with", src)
	}
	if shared {
		r.hook("blobs-shared")
	}
	return nil
}

// findBlob returns another version's file of this name whose bytes hash to sum (a
// hand-damaged copy is never linked), or "" when there is none. A file that already is
// the same inode as p needs nothing.
func (r *Registry) findBlob(name, sum, p string) (string, error) {
	st, err := os.Stat(p)
	if err != nil {
		return "", err
	}
	vs, _, err := r.List()
	if err != nil {
		return "", err
	}
	for i := len(vs) - 1; i >= 0; i-- {
		cand := filepath.Join(vs[i].Dir, name)
		cs, err := os.Stat(cand)
		if err != nil || cs.Size() != st.Size() {
			continue
		}
		if os.SameFile(cs, st) {
			return "", nil
		}
		if ok, err := hashIs(cand, sum); err == nil && ok {
			return cand, nil
		}
	}
	return "", nil
}

func hashIs(path, sum string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false, err
	}
	return hex.EncodeToString(h.Sum(nil)) == sum, nil
}
