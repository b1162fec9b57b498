package capture

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/diagd/diagd/internal/imageio"
)

// errRefused marks a file diagd will not open at all (a symbolic link, a FIFO, ...).
var errRefused = errors.New("refused")

// poll re-stats the watched files and queues the ones that are completely written.
func (r *folderRun) poll() {
	now := time.Now()
	n := len(r.queue)
	for _, e := range r.files {
		if !e.ready {
			r.examine(e, now)
		}
	}
	// Oldest first, as the camera wrote them (the map gives them in random order).
	slices.SortStableFunc(r.queue[n:], byMtime)
	if r.f.cfg.Mode == ModeTrigger {
		r.dropOrphans(now)
	}
}

// examine looks at one file: still being written, complete (queued), incomplete (given
// the incomplete grace), or bad (rejected).
func (r *folderRun) examine(e *entry, now time.Time) {
	p := filepath.Join(r.f.dir, e.name)
	fi, err := r.f.lstat(p)
	switch {
	case os.IsNotExist(err), errors.Is(err, errFolderEntry):
		delete(r.files, e.name)
		return
	case err != nil: // a refused link or special file
		r.reject(e, err, true)
		return
	}
	id := statID(e.name, fi)
	if id.size == e.id.size && id.mtime == e.id.mtime {
		e.stable++
	} else {
		e.stable, e.incomplete = 0, time.Time{}
		e.gen++
	}
	e.id = id
	if e.stable < r.f.cfg.SettlePolls && !e.fast {
		return
	}
	if r.f.known(id) {
		delete(r.files, e.name)
		return
	}
	if e.incomplete.IsZero() {
		err := r.f.checkFile(p)
		switch classify(err) {
		case fileGone:
			delete(r.files, e.name)
			return
		case fileBad:
			r.reject(e, err, true)
			return
		case fileWait:
			e.incomplete, e.why, e.fast = now, err, false
			r.f.log.Debug("file stable but not complete; waiting for a change", "file", p, "err", err)
		}
	}
	r.readyOrGrace(e, now)
}

func (r *folderRun) readyOrGrace(e *entry, now time.Time) {
	if e.incomplete.IsZero() {
		e.ready = true
		r.queue = append(r.queue, readyItem{name: e.name, gen: e.gen, mtime: e.id.mtime, seen: e.seen})
		return
	}
	// An incomplete file gets `incomplete` to change (a writer pausing longer than the
	// settle window, permissions fixed after an upload); one last modified longer ago
	// than that is done for.
	if now.Sub(e.incomplete) >= r.f.cfg.Incomplete || now.Sub(time.Unix(0, e.id.mtime)) >= r.f.cfg.Incomplete {
		r.reject(e, fmt.Errorf("%w (unchanged for %v)", e.why, r.f.cfg.Incomplete), true)
	}
}

func byMtime(a, b readyItem) int {
	if a.mtime != b.mtime {
		return int(min(max(a.mtime-b.mtime, -1), 1))
	}
	return strings.Compare(a.name, b.name)
}

// lstat stats a folder entry; a symbolic link is followed only with symlinks=true, and
// only regular files are read.
func (f *folder) lstat(p string) (os.FileInfo, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return nil, err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		if !f.cfg.Symlinks {
			return nil, fmt.Errorf("%w: a symbolic link (it may point outside the folder; symlinks=true follows links)", errRefused)
		}
		if fi, err = os.Stat(p); err != nil {
			return nil, err
		}
	}
	switch {
	case fi.IsDir():
		return nil, errFolderEntry
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("%w: not a regular file (%v)", errRefused, fi.Mode().Type())
	}
	return fi, nil
}

// errFolderEntry: a subfolder (rejected/, done/, anything a user makes) is not a file to
// judge or to reject; it is left alone.
var errFolderEntry = errors.New("a folder")

// open opens a file for reading without following a link (unless symlinks=true) and
// without blocking on a FIFO swapped in since it was looked at.
func (f *folder) open(p string) (*os.File, os.FileInfo, error) {
	flags := os.O_RDONLY | syscall.O_NONBLOCK
	if !f.cfg.Symlinks {
		flags |= syscall.O_NOFOLLOW
	}
	fh, err := os.OpenFile(p, flags, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, nil, fmt.Errorf("%w: a symbolic link (symlinks=true follows links)", errRefused)
	}
	if err != nil {
		return nil, nil, err
	}
	fi, err := fh.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%w: not a regular file (%v)", errRefused, fi.Mode().Type())
	}
	if err != nil {
		fh.Close()
		return nil, nil, err
	}
	return fh, fi, nil
}

// checkFile reads a file's header: complete by its format, and within the limits.
func (f *folder) checkFile(p string) error {
	fh, fi, err := f.open(p)
	if err != nil {
		return err
	}
	defer fh.Close()
	if err := f.limits.CheckSize(fi.Size()); err != nil {
		return err
	}
	h, err := imageio.Probe(fh, fi.Size())
	if err != nil {
		return err
	}
	return f.limits.Check(fi.Size(), h)
}

type fileState int

const (
	fileOK   fileState = iota
	fileGone           // vanished
	fileWait           // may still change: truncated, or unreadable for now (permissions, I/O)
	fileBad            // will not get better: corrupt, too large, unsupported, a link
)

func classify(err error) fileState {
	switch {
	case err == nil:
		return fileOK
	case os.IsNotExist(err):
		return fileGone
	case errors.Is(err, imageio.ErrIncomplete):
		return fileWait
	case errors.Is(err, imageio.ErrBadFrame), errors.Is(err, errRefused):
		return fileBad
	default:
		return fileWait
	}
}

// dropOrphans: in trigger mode a file and a trigger pair only when they came within
// triggerttl of each other; a file left waiting longer has lost its trigger (it expired,
// or never came) and is rejected, so that it is not paired with a later part's trigger.
func (r *folderRun) dropOrphans(now time.Time) {
	ttl := r.f.cfg.TriggerTTL
	kept := r.queue[:0]
	for _, it := range r.queue {
		if now.Sub(it.seen) <= ttl || r.f.pendingTriggers() > 0 {
			kept = append(kept, it)
			continue
		}
		if it.bad != nil {
			r.f.log.Warn("rejected file had no trigger within triggerttl", "file", it.bad.File, "triggerttl", ttl)
			continue
		}
		if e := r.files[it.name]; e != nil && e.gen == it.gen {
			r.reject(e, fmt.Errorf("no trigger within triggerttl=%v of the file", ttl), false)
		}
	}
	r.queue = kept
}
