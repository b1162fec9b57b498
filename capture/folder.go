package capture

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/diagd/diagd/internal/atomicfile"
	"github.com/diagd/diagd/internal/imageio"
)

// folder watches a drop folder.
type folder struct {
	*base
	dir    string
	partRE *regexp.Regexp
	jr     *journal // after=keep only

	kmu      sync.Mutex
	inflight map[string]bool // keys emitted and not yet Done
	handled  map[string]bool // keys finished in this run whose file may still be here
}

var errFolderGone = errors.New("folder vanished")

func newFolder(b *base) (*folder, error) {
	c := b.cfg
	f := &folder{base: b, dir: filepath.Clean(c.Target), inflight: map[string]bool{}, handled: map[string]bool{}}
	b.kick = make(chan struct{}, 1)
	if c.PartPattern != "" {
		re, err := regexp.Compile(c.PartPattern)
		if err != nil {
			return nil, fmt.Errorf("source %q: part=%q: %w", c.Name, c.PartPattern, err)
		}
		f.partRE = re
	}
	for _, g := range c.Ignore {
		if _, err := path.Match(g, "x"); err != nil {
			return nil, fmt.Errorf("source %q: ignore=%q: bad glob", c.Name, g)
		}
	}
	switch c.After {
	case AfterKeep:
		if c.StateDir == "" {
			return nil, fmt.Errorf("source %q: after=keep needs state=DIR (a folder for the journal of judged files)", c.Name)
		}
		jr, err := openJournal(b.log, filepath.Join(c.StateDir, c.Name+".journal"), c.Name, c.Target)
		if err != nil {
			return nil, fmt.Errorf("source %q: %w", c.Name, err)
		}
		f.jr = jr
	case AfterMove:
		if c.AfterDir == "" {
			return nil, fmt.Errorf("source %q: after=move needs a folder (after=move:DIR)", c.Name)
		}
	case AfterDelete:
	default:
		return nil, fmt.Errorf("source %q: after=%q: want keep, move:DIR or delete", c.Name, c.After)
	}
	return f, nil
}

// fileKey is a file's stable identity: the same file judged twice (after a crash
// between the verdict and the after-action) gets the same key and so the same
// message id; a file rewritten under the same name gets a new one.
func fileKey(source, name string, size int64, mtime time.Time) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%d\x00%d", source, name, size, mtime.UnixNano())
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func (f *folder) ignored(name string) bool {
	for _, g := range f.cfg.Ignore {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

func (f *folder) known(key string) bool {
	f.kmu.Lock()
	k := f.inflight[key] || f.handled[key]
	f.kmu.Unlock()
	return k || (f.jr != nil && f.jr.has(key))
}

// partID parses the part id from a file name.
func (f *folder) partID(name string) string {
	if f.partRE == nil {
		return strings.TrimSuffix(name, filepath.Ext(name))
	}
	m := f.partRE.FindStringSubmatch(name)
	switch {
	case m == nil:
		return ""
	case f.partRE.SubexpIndex("part") > 0:
		return m[f.partRE.SubexpIndex("part")]
	case len(m) > 1:
		return m[1]
	default:
		return m[0]
	}
}

// entry is a file being watched until it is completely written.
type entry struct {
	name       string
	size       int64
	mtime      time.Time
	stable     int       // consecutive polls with unchanged size and mtime
	ready      bool      // complete, queued for emission
	gen        uint64    // bumped on every change; stale queue items are skipped
	incomplete time.Time // when the stable file was first found truncated or undecodable
	why        error     // ... and why
}

type readyItem struct {
	name string
	gen  uint64
}

// pending is a decoded frame waiting for the consumer.
type pending struct {
	fr   Frame
	part bool // consumed a trigger
}

func (f *folder) Run(ctx context.Context, out chan<- Frame) error {
	defer f.stop()
	for _, d := range []string{f.cfg.RejectDir, f.cfg.AfterDir} {
		if d != "" {
			if err := os.MkdirAll(d, 0o755); err != nil {
				f.log.Error("cannot create folder", "dir", d, "err", err)
			}
		}
	}
	bo := backoff{min: f.cfg.RetryMin, max: f.cfg.RetryMax}
	retrying := false
	for ctx.Err() == nil {
		if retrying {
			f.reconnected()
		}
		err := f.watch(ctx, out)
		if ctx.Err() != nil {
			return nil
		}
		if f.Status().State == StateOnline {
			bo.reset() // it worked for a while: start the backoff over
		}
		f.resetRate()
		reason := "folder unavailable"
		if errors.Is(err, errFolderGone) || errors.Is(err, os.ErrNotExist) {
			reason = "folder missing"
		}
		f.setState(StateOffline, reason, err)
		retrying = true
		if !sleep(ctx, bo.next()) {
			return nil
		}
	}
	return nil
}

// watch runs while the folder exists.
func (f *folder) watch(ctx context.Context, out chan<- Frame) error {
	fi, err := os.Stat(f.dir)
	if err != nil {
		return fmt.Errorf("camera %q: %w", f.cfg.Name, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("camera %q: %s is not a folder", f.cfg.Name, f.dir)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("camera %q: %w", f.cfg.Name, err)
	}
	defer w.Close()
	if err := w.Add(f.dir); err != nil {
		return fmt.Errorf("camera %q: watch %s: %w", f.cfg.Name, f.dir, err)
	}
	f.setState(StateOnline, "", nil)

	files := map[string]*entry{}
	var queue []readyItem
	var pend *pending
	defer func() {
		if pend != nil { // not delivered: forget it, the file stays for the next pass
			pend.fr.Mat.Close()
			f.kmu.Lock()
			delete(f.inflight, pend.fr.Key)
			f.kmu.Unlock()
			f.unSeq()
			if pend.part {
				f.log.Warn("triggered file not delivered: source stopping", "file", pend.fr.File, "part", pend.fr.PartID)
			}
		}
	}()

	touch := func(name string) {
		if e := files[name]; e != nil {
			e.stable, e.ready, e.incomplete = 0, false, time.Time{}
			e.gen++
			return
		}
		files[name] = &entry{name: name, size: -1}
	}
	scan := func() error {
		des, err := os.ReadDir(f.dir)
		if err != nil {
			return err
		}
		for _, de := range des {
			name := de.Name()
			if files[name] != nil || f.ignored(name) {
				continue
			}
			info, err := os.Stat(filepath.Join(f.dir, name))
			if err != nil || !info.Mode().IsRegular() {
				continue
			}
			if f.known(fileKey(f.cfg.Name, name, info.Size(), info.ModTime())) {
				continue
			}
			files[name] = &entry{name: name, size: -1}
		}
		return nil
	}
	if err := scan(); err != nil {
		return fmt.Errorf("camera %q: %w", f.cfg.Name, err)
	}

	poll := time.NewTicker(f.cfg.Settle)
	defer poll.Stop()
	rescan := time.NewTicker(f.cfg.Rescan)
	defer rescan.Stop()
	for {
		if pend == nil {
			pend = f.next(files, &queue)
		}
		var send chan<- Frame
		var fr Frame
		if pend != nil {
			send, fr = out, pend.fr
		}
		select {
		case <-ctx.Done():
			return nil
		case send <- fr:
			pend = nil
		case <-f.kick:
		case ev, ok := <-w.Events:
			if !ok {
				return fmt.Errorf("camera %q: watcher closed", f.cfg.Name)
			}
			if filepath.Clean(ev.Name) == f.dir {
				if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
					return fmt.Errorf("camera %q: %s: %w", f.cfg.Name, f.dir, errFolderGone)
				}
				continue
			}
			name := filepath.Base(ev.Name)
			if filepath.Dir(ev.Name) != f.dir || f.ignored(name) {
				continue
			}
			switch {
			case ev.Has(fsnotify.Create), ev.Has(fsnotify.Write), ev.Has(fsnotify.Chmod):
				touch(name)
			case ev.Has(fsnotify.Remove), ev.Has(fsnotify.Rename):
				delete(files, name)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return fmt.Errorf("camera %q: watcher closed", f.cfg.Name)
			}
			// An overflowed event queue loses events: the rescan finds the files.
			f.log.Warn("folder watch error; rescanning", "err", err)
			if err := scan(); err != nil {
				return fmt.Errorf("camera %q: %w", f.cfg.Name, err)
			}
		case <-poll.C:
			f.poll(files, &queue)
		case <-rescan.C:
			// Also catches writes over NFS/SMB, which raise no inotify events here.
			if err := scan(); err != nil {
				return fmt.Errorf("camera %q: %s: %w", f.cfg.Name, f.dir, errFolderGone)
			}
		}
	}
}

// poll re-stats the watched files and queues the ones that are completely written.
func (f *folder) poll(files map[string]*entry, queue *[]readyItem) {
	now := time.Now()
	var done []*entry
	for name, e := range files {
		if e.ready {
			continue
		}
		p := filepath.Join(f.dir, name)
		fi, err := os.Stat(p)
		if err != nil || !fi.Mode().IsRegular() {
			delete(files, name)
			continue
		}
		if fi.Size() == e.size && fi.ModTime().Equal(e.mtime) {
			e.stable++
		} else {
			e.size, e.mtime, e.stable, e.incomplete = fi.Size(), fi.ModTime(), 0, time.Time{}
			e.gen++
		}
		if e.stable < f.cfg.SettlePolls {
			continue
		}
		key := fileKey(f.cfg.Name, name, e.size, e.mtime)
		if f.known(key) {
			delete(files, name)
			continue
		}
		if e.incomplete.IsZero() {
			if err := checkFileComplete(p, e.size); err != nil {
				if os.IsNotExist(err) {
					delete(files, name)
					continue
				}
				if errors.Is(err, errIncomplete) {
					err = fmt.Errorf("%s: %w", p, err)
				}
				e.incomplete, e.why = now, err
				f.log.Debug("file stable but not ready; waiting for a change", "file", p, "err", err)
			}
		}
		switch {
		case !e.incomplete.IsZero():
			// A bad file gets `incomplete` to change (a writer pausing longer than the
			// settle window, permissions fixed after the upload); one last modified
			// longer ago than that is done for.
			if now.Sub(e.incomplete) >= f.cfg.Incomplete || now.Sub(e.mtime) >= f.cfg.Incomplete {
				f.reject(p, name, key, fmt.Errorf("%w (unchanged for %v)", e.why, f.cfg.Incomplete))
				delete(files, name)
			}
		default:
			e.ready = true
			done = append(done, e)
		}
	}
	// Oldest first, as the camera wrote them.
	slices.SortFunc(done, func(a, b *entry) int {
		if c := a.mtime.Compare(b.mtime); c != 0 {
			return c
		}
		return strings.Compare(a.name, b.name)
	})
	for _, e := range done {
		*queue = append(*queue, readyItem{e.name, e.gen})
	}
}

// next decodes the next queued file into a frame, or returns nil when none is
// ready (or, in trigger mode, no trigger is pending).
func (f *folder) next(files map[string]*entry, queue *[]readyItem) *pending {
	trig := f.cfg.Mode == ModeTrigger
	for len(*queue) > 0 {
		if trig && f.pendingTriggers() == 0 {
			return nil
		}
		it := (*queue)[0]
		*queue = (*queue)[1:]
		e := files[it.name]
		if e == nil || !e.ready || e.gen != it.gen {
			continue
		}
		p := filepath.Join(f.dir, e.name)
		key := fileKey(f.cfg.Name, e.name, e.size, e.mtime)
		b, err := os.ReadFile(p)
		if err != nil {
			if os.IsNotExist(err) {
				delete(files, e.name)
			} else { // poll rejects it unless it changes soon
				e.ready, e.incomplete, e.why = false, time.Now(), err
				e.gen++
			}
			continue
		}
		fi, serr := os.Stat(p)
		if serr != nil || int64(len(b)) != e.size || !fi.ModTime().Equal(e.mtime) || checkComplete(b) != nil {
			// Changed since it looked complete: watch it again.
			e.ready, e.stable = false, 0
			e.gen++
			continue
		}
		m, err := imageio.Decode(p, b)
		if err != nil {
			// Rejected by poll unless the file changes soon (unknown formats have no
			// completeness check, so a paused writer looks like a corrupt file).
			e.ready, e.incomplete, e.why = false, time.Now(), err
			e.gen++
			continue
		}
		delete(files, e.name)
		now := time.Now()
		f.frameRead(now)
		fr := Frame{Source: f.cfg.Name, Mat: m, Captured: now, File: p, Key: key, PartID: f.partID(e.name)}
		pd := &pending{fr: fr}
		if trig {
			part, _ := f.takeTrigger(time.Now())
			pd.fr.PartID, pd.part = part, true
		}
		f.kmu.Lock()
		f.inflight[key] = true
		f.kmu.Unlock()
		pd.fr.Seq = f.nextSeq()
		name := e.name
		var once sync.Once
		pd.fr.Done = func(judged bool) {
			called := false
			once.Do(func() { called = true; f.finish(p, name, key, judged) })
			if !called {
				f.log.Error("Frame.Done called twice", "file", p)
			}
		}
		return pd
	}
	return nil
}

// finish runs the after-action for a file whose frame the daemon is done with.
func (f *folder) finish(p, name, key string, judged bool) {
	f.kmu.Lock()
	delete(f.inflight, key)
	if !judged {
		// Not retried in this run (it may be what made the daemon drop it); a restart
		// tries again.
		f.handled[key] = true
		f.kmu.Unlock()
		f.log.Warn("frame dropped without verdict; file left in place", "file", p)
		return
	}
	f.kmu.Unlock()
	fi, err := os.Stat(p)
	if err == nil && fileKey(f.cfg.Name, name, fi.Size(), fi.ModTime()) != key {
		f.log.Warn("file changed after it was judged; left in place to be judged again", "file", p)
		return
	}
	if err != nil {
		f.log.Warn("judged file vanished before its after-action", "file", p, "err", err)
		return
	}
	switch f.cfg.After {
	case AfterKeep:
		err = f.jr.add(key, "judged", name)
	case AfterMove:
		_, err = moveFile(p, f.cfg.AfterDir, key)
	case AfterDelete:
		if err = os.Remove(p); err == nil {
			err = atomicfile.SyncDir(f.dir)
		}
	}
	if err != nil {
		f.log.Error("after-action failed; file kept, not judged again in this run", "file", p, "after", f.cfg.After, "err", err)
		f.kmu.Lock()
		f.handled[key] = true
		f.kmu.Unlock()
	}
}

// reject counts a bad file and moves it to the rejected folder so it is not retried.
func (f *folder) reject(p, name, key string, cause error) {
	f.badFile(p, cause)
	dst, err := moveFile(p, f.cfg.RejectDir, key)
	if err == nil {
		f.log.Info("bad file moved", "file", p, "to", dst)
		return
	}
	f.log.Error("cannot move bad file; remembering it instead", "file", p, "err", err)
	f.kmu.Lock()
	f.handled[key] = true
	f.kmu.Unlock()
	if f.jr != nil {
		if err := f.jr.add(key, "rejected", name); err != nil {
			f.log.Error("journal", "err", err)
		}
	}
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
		err = atomicfile.Write(dst, 0o644, func(w io.Writer) error {
			src, err := os.Open(p)
			if err != nil {
				return err
			}
			defer src.Close()
			_, err = io.Copy(w, src)
			return err
		})
		if err == nil {
			err = os.Remove(p)
		}
	} else if err == nil {
		err = atomicfile.SyncDir(dir)
	}
	if err != nil {
		return "", err
	}
	return dst, atomicfile.SyncDir(filepath.Dir(p))
}
