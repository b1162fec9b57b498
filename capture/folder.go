package capture

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/diagd/diagd/internal/imageio"
)

// folder watches a drop folder.
type folder struct {
	*base
	dir    string
	partRE *regexp.Regexp
	jr     *journal // after=keep only
	limits imageio.Limits

	kmu      sync.Mutex
	inflight map[fileID]bool // files emitted and not yet Done
	handled  map[fileID]bool // files finished in this run that may still be here
}

var errFolderGone = errors.New("folder vanished")

func newFolder(b *base) (*folder, error) {
	c := b.cfg
	f := &folder{base: b, dir: filepath.Clean(c.Target), inflight: map[fileID]bool{}, handled: map[fileID]bool{},
		limits: imageio.Limits{MaxBytes: c.MaxBytes, MaxPixels: c.MaxPixels}}
	b.kick = make(chan struct{}, 1)
	if c.PartPattern != "" {
		re, err := regexp.Compile(c.PartPattern)
		if err != nil {
			return nil, fmt.Errorf("source %q: part=%q: %w", c.Name, c.PartPattern, err)
		}
		f.partRE = re
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
	case AfterMove, AfterDelete:
	default:
		return nil, fmt.Errorf("source %q: after=%q: want keep, move:DIR or delete", c.Name, c.After)
	}
	return f, nil
}

func (f *folder) ignored(name string) bool {
	for _, g := range f.cfg.Ignore {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

// known: emitted and not done, finished in this run, or journaled, and unchanged since.
func (f *folder) known(id fileID) bool {
	f.kmu.Lock()
	k := f.inflight[id] || f.handled[id]
	f.kmu.Unlock()
	return k || (f.jr != nil && f.jr.hasID(id))
}

func (f *folder) setHandled(id fileID) {
	f.kmu.Lock()
	f.handled[id] = true
	f.kmu.Unlock()
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

func (f *folder) Run(ctx context.Context, out chan<- Frame) error {
	defer f.stop()
	ctx, cancel := context.WithCancel(ctx)
	wait := f.startExpiry(ctx, out)
	defer wait()
	defer cancel()
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
	w, err := watchDir(f.dir)
	if err != nil {
		return fmt.Errorf("camera %q: %w", f.cfg.Name, err)
	}
	defer w.Close()
	f.setState(StateOnline, "", nil)
	r := &folderRun{f: f, files: map[string]*entry{}}
	defer r.forgetPending()
	if err := r.scan(); err != nil {
		return fmt.Errorf("camera %q: %w", f.cfg.Name, err)
	}
	poll := time.NewTicker(f.cfg.Settle)
	defer poll.Stop()
	rescan := time.NewTicker(f.cfg.Rescan)
	defer rescan.Stop()
	for {
		if r.pend == nil {
			r.pend = r.next()
		}
		var send chan<- Frame
		var fr Frame
		if r.pend != nil {
			send, fr = out, r.pend.fr
		}
		select {
		case <-ctx.Done():
			return nil
		case send <- fr:
			r.pend = nil
		case <-f.kick:
		case ev, ok := <-w.Events():
			if !ok {
				return fmt.Errorf("camera %q: watcher closed", f.cfg.Name)
			}
			if err := r.event(ev); err != nil {
				return err
			}
		case err := <-w.Errors():
			return fmt.Errorf("camera %q: watch %s: %w", f.cfg.Name, f.dir, err)
		case <-poll.C:
			r.poll()
		case <-rescan.C:
			// Also catches writes over NFS/SMB, which raise no inotify events here.
			if err := r.scan(); err != nil {
				return fmt.Errorf("camera %q: %s: %w", f.cfg.Name, f.dir, errFolderGone)
			}
		}
	}
}

// folderRun is the state of one watch of the folder.
type folderRun struct {
	f     *folder
	files map[string]*entry
	queue []readyItem
	pend  *pending
}

// entry is a file being watched until it is completely written.
type entry struct {
	name       string
	id         fileID    // as of the last stat
	seen       time.Time // when this run first saw it
	stable     int       // consecutive polls with unchanged size and mtime
	fast       bool      // renamed in or closed after writing: no settle window
	ready      bool      // complete, queued for emission
	gen        uint64    // bumped on every change; stale queue items are skipped
	incomplete time.Time // when the stable file was first found truncated or unreadable
	why        error     // ... and why
}

// readyItem is a complete file waiting to be read, or, in trigger mode, a rejected file
// waiting for the trigger it takes (bad != nil).
type readyItem struct {
	name  string
	gen   uint64
	mtime int64
	seen  time.Time
	bad   *BadFile
}

// pending is a frame waiting for the consumer.
type pending struct {
	fr   Frame
	id   fileID
	part bool // consumed a trigger
}

// forgetPending drops a frame not delivered: its file stays for the next pass.
func (r *folderRun) forgetPending() {
	p := r.pend
	if p == nil {
		return
	}
	p.fr.Mat.Close()
	r.f.kmu.Lock()
	delete(r.f.inflight, p.id)
	r.f.kmu.Unlock()
	r.f.unSeq()
	if p.part {
		r.f.log.Warn("triggered file not delivered: source stopping", "file", p.fr.File, "part", p.fr.PartID)
	}
}

func (r *folderRun) event(ev fsEvent) error {
	switch {
	case ev.op == opDirGone:
		return fmt.Errorf("camera %q: %s: %w", r.f.cfg.Name, r.f.dir, errFolderGone)
	case ev.op == opOverflow:
		// The kernel dropped events: the rescan finds the files.
		r.f.log.Warn("folder watch overflowed; rescanning")
		if err := r.scan(); err != nil {
			return fmt.Errorf("camera %q: %w", r.f.cfg.Name, err)
		}
		return nil
	case ev.name == "" || r.f.ignored(ev.name):
		return nil
	case ev.op == opGone:
		delete(r.files, ev.name)
		return nil
	}
	e := r.touch(ev.name)
	if ev.op == opComplete {
		// Its writer is done: no need to wait for the size to settle.
		e.fast = true
		r.examine(e, time.Now())
	}
	return nil
}

// touch notes a change to a file: it is watched again from the start.
func (r *folderRun) touch(name string) *entry {
	e := r.files[name]
	if e == nil {
		e = &entry{name: name, id: fileID{size: -1}, seen: time.Now()}
		r.files[name] = e
		return e
	}
	e.stable, e.ready, e.fast, e.incomplete = 0, false, false, time.Time{}
	e.gen++
	return e
}

// scan adds the folder's files that are not known yet.
func (r *folderRun) scan() error {
	des, err := os.ReadDir(r.f.dir)
	if err != nil {
		return err
	}
	for _, de := range des {
		name := de.Name()
		if r.files[name] != nil || r.f.ignored(name) {
			continue
		}
		fi, err := os.Lstat(filepath.Join(r.f.dir, name))
		if err != nil || fi.IsDir() {
			continue // subfolders (rejected/, done/) are not files to judge
		}
		if fi.Mode().IsRegular() && r.f.known(statID(name, fi)) {
			continue
		}
		r.files[name] = &entry{name: name, id: fileID{size: -1}, seen: time.Now()}
	}
	return nil
}
