package capture

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/internal/atomicfile"
)

// next decodes the next queued file into a frame, or returns nil when none is ready
// (or, in trigger mode, no trigger is pending).
func (r *folderRun) next() *pending {
	trig := r.f.cfg.Mode == ModeTrigger
	if trig {
		slices.SortStableFunc(r.queue, byMtime)
	}
	for len(r.queue) > 0 {
		it := r.queue[0]
		if trig && (r.f.pendingTriggers() == 0 || r.olderInGrace(it)) {
			return nil
		}
		r.queue = r.queue[1:]
		if it.bad != nil {
			part, _ := r.f.takeTrigger(time.Now())
			return &pending{fr: r.f.unjudged(*it.bad, part), part: true}
		}
		e := r.files[it.name]
		if e == nil || !e.ready || e.gen != it.gen {
			continue
		}
		if p := r.load(e); p != nil {
			return p
		}
	}
	return nil
}

// olderInGrace: in trigger mode files take triggers in the order they were written, so a
// file waiting for its writer (or to be rejected) holds back the files after it;
// otherwise the next part's file would take its trigger.
func (r *folderRun) olderInGrace(it readyItem) bool {
	for _, e := range r.files {
		if !e.incomplete.IsZero() && byMtime(readyItem{name: e.name, mtime: e.id.mtime}, it) < 0 {
			return true
		}
	}
	return false
}

// unjudged is the frame of a rejected file that took a trigger: its part gets an
// unknown verdict with the reason.
func (f *folder) unjudged(bf BadFile, part string) Frame {
	fr := Frame{Source: f.cfg.Name, Captured: time.Now(), PartID: part, File: bf.File, Mat: gocv.NewMat(),
		Err: fmt.Errorf("bad image file: %s", bf.Reason)}
	fr.Seq = f.nextSeq()
	return fr
}

// load reads and decodes a queued file; nil when it is not to be emitted (now).
func (r *folderRun) load(e *entry) *pending {
	f := r.f
	p := filepath.Join(f.dir, e.name)
	b, id, err := f.readFile(p, e.id)
	switch {
	case errors.Is(err, errChanged):
		e.ready, e.stable, e.fast = false, 0, false // changed since it looked complete: watch it again
		e.gen++
		return nil
	case classify(err) == fileGone:
		delete(r.files, e.name)
		return nil
	case classify(err) == fileBad:
		r.reject(e, err, true)
		return nil
	case err != nil: // poll rejects it unless it changes soon
		e.ready, e.incomplete, e.why = false, time.Now(), err
		e.gen++
		return nil
	}
	key := fileKey(f.cfg.Name, id, sha256.Sum256(b))
	if f.jr != nil && f.jr.hasKey(key) {
		// The same content judged before under this name (copied back, restored): done.
		f.setHandled(id)
		delete(r.files, e.name)
		return nil
	}
	m, err := f.limits.Decode(p, b)
	switch classify(err) {
	case fileOK:
	case fileWait: // truncated after all: the writer is not done
		e.ready, e.incomplete, e.why = false, time.Now(), err
		e.gen++
		return nil
	default:
		r.reject(e, err, true)
		return nil
	}
	delete(r.files, e.name)
	return f.emit(p, m, key, id)
}

// emit makes the frame of a decoded file.
func (f *folder) emit(p string, m gocv.Mat, key string, id fileID) *pending {
	now := time.Now()
	f.frameRead(now)
	pd := &pending{fr: Frame{Source: f.cfg.Name, Mat: m, Captured: now, File: p, Key: key, PartID: f.partID(id.name)}, id: id}
	if f.cfg.Mode == ModeTrigger {
		part, _ := f.takeTrigger(now)
		pd.fr.PartID, pd.part = part, true
	}
	f.kmu.Lock()
	f.inflight[id] = true
	f.kmu.Unlock()
	pd.fr.Seq = f.nextSeq()
	var once sync.Once
	pd.fr.Done = func(judged bool) {
		called := false
		once.Do(func() { called = true; f.finish(p, key, id, judged) })
		if !called {
			f.log.Error("Frame.Done called twice", "file", p)
		}
	}
	return pd
}

var errChanged = errors.New("file changed while it was read")

// readFile reads a whole file, within the byte limit, and makes sure it is the file
// that was found complete (was, the fileID seen then).
func (f *folder) readFile(p string, was fileID) ([]byte, fileID, error) {
	fh, fi, err := f.open(p)
	if err != nil {
		return nil, fileID{}, err
	}
	defer fh.Close()
	id := statID(was.name, fi)
	if id.size != was.size || id.mtime != was.mtime {
		return nil, id, errChanged
	}
	if err := f.limits.CheckSize(fi.Size()); err != nil {
		return nil, id, err
	}
	b := make([]byte, fi.Size())
	if _, err := io.ReadFull(fh, b); err != nil {
		return nil, id, fmt.Errorf("%w: %v", errChanged, err)
	}
	if fi2, err := fh.Stat(); err != nil || statID(was.name, fi2) != id {
		return nil, id, errChanged
	}
	return b, id, nil
}

// finish runs the after-action for a file whose frame the daemon is done with.
func (f *folder) finish(p, key string, id fileID, judged bool) {
	f.kmu.Lock()
	delete(f.inflight, id)
	f.kmu.Unlock()
	if !judged {
		// Not retried in this run (it may be what made the daemon drop it); a restart
		// tries again.
		f.setHandled(id)
		f.log.Warn("frame dropped without verdict; file left in place", "file", p)
		return
	}
	fi, err := os.Lstat(p)
	if err != nil {
		f.log.Warn("judged file vanished before its after-action", "file", p, "err", err)
		return
	}
	if statID(id.name, fi) != id {
		f.log.Warn("file changed after it was judged; left in place to be judged again", "file", p)
		return
	}
	switch f.cfg.After {
	case AfterKeep:
		err = f.jr.add(key, id, "judged")
	case AfterMove:
		_, err = moveFile(p, f.cfg.AfterDir, key)
	case AfterDelete:
		if err = os.Remove(p); err == nil {
			err = atomicfile.SyncDir(f.dir)
		}
	}
	if err != nil {
		f.log.Error("after-action failed; file kept, not judged again in this run", "file", p, "after", f.cfg.After, "err", err)
		f.setHandled(id)
	}
}

// reject moves a bad file to the rejected folder, so it is not retried, and reports it
// once. In trigger mode a rejected file takes the next trigger, like a good file would
// (unless takesTrigger is false: a file that had no trigger).
func (r *folderRun) reject(e *entry, cause error, takesTrigger bool) {
	f := r.f
	p := filepath.Join(f.dir, e.name)
	delete(r.files, e.name)
	bf := BadFile{Camera: f.cfg.Name, File: p, Reason: strings.TrimPrefix(cause.Error(), p+": "), Size: max(e.id.size, 0), Time: time.Now()}
	key := statKey(f.cfg.Name, e.id)
	dst, err := moveFile(p, f.cfg.RejectDir, key)
	if err == nil {
		bf.MovedTo = dst
	} else {
		// Remembered instead, so it is not rejected again and again.
		bf.Reason += fmt.Sprintf(" (could not be moved to %s: %v; left in place)", f.cfg.RejectDir, err)
		f.setHandled(e.id)
		if f.jr != nil {
			if jerr := f.jr.add(key, e.id, "rejected"); jerr != nil {
				f.log.Error("journal", "err", jerr)
			}
		}
	}
	f.badFile(bf)
	if takesTrigger && f.cfg.Mode == ModeTrigger {
		r.queue = append(r.queue, readyItem{name: e.name, mtime: e.id.mtime, seen: e.seen, bad: &bf})
	}
}

// statKey identifies a rejected file, which is not read for a content key.
func statKey(source string, id fileID) string {
	return fileKeyV1(source, id.name+"\x00"+strconv.FormatUint(id.ino, 10)+"\x00"+strconv.FormatInt(id.ctime, 10), id.size, time.Unix(0, id.mtime))
}

// moveFile moves p into dir durably; a name already there gets the key as suffix.
// Across file systems it copies, fsyncs, then removes the original.
func moveFile(p, dir, key string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	name := filepath.Base(p)
	dst := filepath.Join(dir, name)
	if _, err := os.Lstat(dst); err == nil {
		ext := filepath.Ext(name)
		dst = filepath.Join(dir, strings.TrimSuffix(name, ext)+"-"+key[:12]+ext)
		for i := 2; ; i++ {
			if _, err := os.Lstat(dst); err != nil {
				break
			}
			dst = filepath.Join(dir, strings.TrimSuffix(name, ext)+"-"+key[:12]+"-"+strconv.Itoa(i)+ext)
		}
	}
	err := os.Rename(p, dst)
	if errors.Is(err, syscall.EXDEV) {
		err = copyAcross(p, dst)
	} else if err == nil {
		err = atomicfile.SyncDir(dir)
	}
	if err != nil {
		return "", err
	}
	return dst, atomicfile.SyncDir(filepath.Dir(p))
}

// copyAcross moves p to dst on another file system: a regular file is copied and
// fsynced, a symbolic link is made again (never followed), then p is removed.
func copyAcross(p, dst string) error {
	if target, err := os.Readlink(p); err == nil {
		if err := os.Symlink(target, dst); err != nil {
			return err
		}
		return os.Remove(p)
	}
	err := atomicfile.Write(dst, 0o644, func(w io.Writer) error {
		src, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
		if err != nil {
			return err
		}
		defer src.Close()
		if fi, err := src.Stat(); err != nil || !fi.Mode().IsRegular() {
			return fmt.Errorf("%s: not a regular file", p)
		}
		_, err = io.Copy(w, src)
		return err
	})
	if err != nil {
		return err
	}
	return os.Remove(p)
}
