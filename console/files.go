package console

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"regexp"
)

// ErrNotFound is returned for an id that names nothing (or nothing the console serves).
var ErrNotFound = errors.New("not found")

// ErrBadID is returned for an id that is not of the form the server makes.
var ErrBadID = errors.New("bad id")

// ErrBadInput is returned for a request the console refuses (wrong label, bad mask...).
var ErrBadInput = errors.New("bad input")

// Id forms. Every id from the browser must match its form before it is joined to a
// folder, and the join is opened beneath an os.Root, which refuses ".." and symlinks
// that leave it: two locks on the same door.
var (
	failIDRE  = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}\.[0-9]{3}Z-[A-Za-z0-9_-]{1,64}-[0-9]{4}$`)
	batchRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	imageIDRE = regexp.MustCompile(`^[0-9]{5,9}$`)
	nameRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$`)
	versionRE = regexp.MustCompile(`^v[0-9]{1,9}$`)
)

func checkID(re *regexp.Regexp, what, id string) error {
	if !re.MatchString(id) {
		return fmt.Errorf("%w: %s %q", ErrBadID, what, id)
	}
	return nil
}

// openDataDir creates DATA_DIR (0750) when it is missing and opens it as a Root, which
// keeps every path the console builds from a request beneath it.
func openDataDir(dataDir string) (*os.Root, error) {
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return nil, err
	}
	return os.OpenRoot(dataDir)
}

// writeAtomic writes name beneath root: a temp file in the same folder, fsync, rename
// over name, fsync the folder (as internal/atomicfile, but confined to root).
func writeAtomic(root *os.Root, name string, data []byte, perm fs.FileMode) (err error) {
	dir := path.Dir(name)
	var rnd [6]byte
	rand.Read(rnd[:])
	tmp := path.Join(dir, "."+path.Base(name)+".tmp-"+hex.EncodeToString(rnd[:]))
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			root.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("write %s: fsync: %w", name, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err = root.Rename(tmp, name); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return syncDir(root, dir)
}

// syncDir fsyncs a folder beneath root so renames into it survive a power cut.
func syncDir(root *os.Root, dir string) error {
	d, err := root.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// openFile opens name beneath root as a File for the browser; a missing file is
// ErrNotFound.
func openFile(root *os.Root, name string) (File, error) {
	f, err := root.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return File{}, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err != nil {
		return File{}, err
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		f.Close()
		return File{}, fmt.Errorf("%w: %s is not a file", ErrNotFound, name)
	}
	return File{Name: name, ModTime: st.ModTime(), Content: f}, nil
}

// moveFile renames from → to beneath root, refusing to replace an existing file.
func moveFile(root *os.Root, from, to string) error {
	if _, err := root.Lstat(to); err == nil {
		return fmt.Errorf("%s already exists", to)
	}
	return root.Rename(from, to)
}
