package catalogue

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Event reports one reload: Catalogue is set when an edit was applied, Err (usually a
// *ValidationError naming file, line and reason) when it was rejected and the previous
// catalogue stays in force.
type Event struct {
	Time      time.Time
	File      string
	Catalogue *Catalogue
	Err       error
}

// Problems lists a rejection's problems (file, line, reason), or nil.
func (e Event) Problems() []Problem { return Problems(e.Err) }

// Applied reports whether the event put a new catalogue in force.
func (e Event) Applied() bool { return e.Err == nil && e.Catalogue != nil }

// WatchOptions tune a Watcher.
type WatchOptions struct {
	// Debounce is how long the folders must be quiet before a reload: editors write a
	// file in several steps (truncate, write, rename) and a copied mask folder arrives
	// file by file. Default 300 ms.
	Debounce time.Duration
	// OnEvent receives every applied or rejected reload, from the watcher's goroutine.
	OnEvent func(Event)
	Log     *slog.Logger
}

// Watcher keeps the last good catalogue in force while technicians edit the file and
// its mask folders.
type Watcher struct {
	path string
	o    WatchOptions
	fw   *fsnotify.Watcher

	mu      sync.RWMutex
	current *Catalogue

	watched  map[string]bool
	lastBad  string // the last rejection's message, so a burst of events reports it once
	cancel   context.CancelFunc
	done     chan struct{}
	reloadCh chan struct{}
}

// Watch loads the catalogue at path (an invalid one is an error: there is no last
// good version yet) and watches for edits until ctx ends or Close is called.
//
// It watches folders, not files: editors that save by writing a new file and
// renaming it over the old one replace the inode, and a watch on the file would die
// with the old one.
func Watch(ctx context.Context, path string, o WatchOptions) (*Watcher, error) {
	if o.Debounce <= 0 {
		o.Debounce = 300 * time.Millisecond
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	c, err := Load(abs)
	if err != nil {
		return nil, err
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &Watcher{path: abs, o: o, fw: fw, current: c, watched: map[string]bool{}, cancel: cancel,
		done: make(chan struct{}), reloadCh: make(chan struct{}, 1)}
	w.rewatch(c.Dirs)
	go w.loop(ctx)
	return w, nil
}

// Current returns the catalogue in force.
func (w *Watcher) Current() *Catalogue {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.current
}

// Close stops watching and waits for the watcher's goroutine.
func (w *Watcher) Close() error {
	w.cancel()
	<-w.done
	return nil
}

// Reload asks for a reload now (after the debounce), e.g. on SIGHUP.
func (w *Watcher) Reload() {
	select {
	case w.reloadCh <- struct{}{}:
	default:
	}
}

func (w *Watcher) rewatch(dirs []string) {
	want := map[string]bool{}
	for _, d := range dirs {
		want[d] = true
	}
	for d := range w.watched {
		if !want[d] {
			_ = w.fw.Remove(d)
			delete(w.watched, d)
		}
	}
	for d := range want {
		if w.watched[d] {
			continue
		}
		if err := w.fw.Add(d); err != nil {
			w.o.Log.Warn("catalogue: cannot watch folder", "dir", d, "err", err)
			continue
		}
		w.watched[d] = true
	}
}

// relevant filters events: the catalogue file itself under any name change, and image
// files in the other watched folders. Hidden files (editor swap files, atomic-write
// temps) are ignored; their final rename shows up as an event on the real name.
func (w *Watcher) relevant(ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	name := filepath.Clean(ev.Name)
	if name == w.path {
		return true
	}
	if w.watched[name] { // a watched folder itself was removed or renamed
		return true
	}
	// While an edit is rejected, anything may be the fix (a folder it names being
	// created, say): reload on any change. Reloading is cheap.
	if w.lastBad != "" && !strings.HasPrefix(filepath.Base(name), ".") {
		return true
	}
	dir := filepath.Dir(name)
	if !w.watched[dir] || !IsImage(name) {
		return false
	}
	// The catalogue's own folder is always watched; its images matter only when the
	// catalogue takes masks or textures from it.
	return dir != filepath.Dir(w.path) || w.usesDir(dir)
}

// usesDir reports whether the catalogue takes masks or textures straight from its own
// folder, in which case image events there matter too.
func (w *Watcher) usesDir(dir string) bool {
	c := w.Current()
	for _, k := range c.Kinds {
		for _, m := range append(append([]Mask{}, k.Masks...), k.Regions...) {
			if filepath.Dir(m.Path) == dir {
				return true
			}
		}
	}
	for _, t := range c.MemSeg.Textures {
		if filepath.Dir(t) == dir {
			return true
		}
	}
	return false
}

func (w *Watcher) loop(ctx context.Context) {
	defer close(w.done)
	defer w.fw.Close()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case ev, ok := <-w.fw.Events:
			if !ok {
				return
			}
			if w.relevant(ev) {
				w.o.Log.Debug("catalogue: change", "file", ev.Name, "op", ev.Op.String())
				timer.Reset(w.o.Debounce)
			}
		case err, ok := <-w.fw.Errors:
			if !ok {
				return
			}
			// An overflow loses events; reloading is always safe, so do that.
			w.o.Log.Warn("catalogue: watch error, reloading", "err", err)
			timer.Reset(w.o.Debounce)
		case <-w.reloadCh:
			timer.Reset(w.o.Debounce)
		case <-timer.C:
			w.reload()
		}
	}
}

func (w *Watcher) reload() {
	c, err := Load(w.path)
	now := time.Now()
	if err != nil {
		// A missing file mid-save is normal for editors; keep watching the folder so
		// its reappearance triggers another reload.
		// Watch what the rejected version refers to as well, so that creating the
		// missing mask folder or file it names is noticed.
		var ve *ValidationError
		if errors.As(err, &ve) {
			w.rewatch(append(slices.Clone(w.Current().Dirs), ve.dirs...))
		}
		if msg := err.Error(); msg != w.lastBad {
			w.lastBad = msg
			w.o.Log.Warn("catalogue: edit rejected, keeping the last good catalogue", "file", w.path, "err", err)
			w.emit(Event{Time: now, File: w.path, Err: err})
		}
		return
	}
	w.lastBad = ""
	w.rewatch(c.Dirs)
	if c.Digest == w.Current().Digest {
		return
	}
	w.mu.Lock()
	w.current = c
	w.mu.Unlock()
	w.o.Log.Info("catalogue: edit applied", "file", w.path, "kinds", len(c.Kinds), "digest", c.Digest[:12])
	w.emit(Event{Time: now, File: w.path, Catalogue: c})
}

func (w *Watcher) emit(e Event) {
	if w.o.OnEvent != nil {
		w.o.OnEvent(e)
	}
}

// Problems returns the problems in a rejection error, or nil.
func Problems(err error) []Problem {
	var ve *ValidationError
	if errors.As(err, &ve) {
		return ve.Problems
	}
	return nil
}
