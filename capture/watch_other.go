//go:build !linux

package capture

import (
	"path/filepath"
	"sync"

	"github.com/fsnotify/fsnotify"
)

// fsnotifyWatcher is the portable watcher: it cannot tell a file renamed in or closed
// after writing from one still being written, so every file waits out the settle window.
type fsnotifyWatcher struct {
	w      *fsnotify.Watcher
	dir    string
	events chan fsEvent
	done   chan struct{}
	once   sync.Once
}

func watchDir(dir string) (dirWatcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	if err := w.Add(dir); err != nil {
		w.Close()
		return nil, err
	}
	fw := &fsnotifyWatcher{w: w, dir: filepath.Clean(dir), events: make(chan fsEvent, 256), done: make(chan struct{})}
	go fw.run()
	return fw, nil
}

func (fw *fsnotifyWatcher) run() {
	defer close(fw.events)
	for ev := range fw.w.Events {
		e := fsEvent{name: filepath.Base(ev.Name), op: opTouched}
		if filepath.Clean(ev.Name) == fw.dir {
			if !ev.Has(fsnotify.Remove) && !ev.Has(fsnotify.Rename) {
				continue
			}
			e = fsEvent{op: opDirGone}
		} else if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
			e.op = opGone
		}
		select {
		case fw.events <- e:
		case <-fw.done:
			return
		}
	}
}

func (fw *fsnotifyWatcher) Events() <-chan fsEvent { return fw.events }
func (fw *fsnotifyWatcher) Errors() <-chan error   { return fw.w.Errors }

func (fw *fsnotifyWatcher) Close() error {
	fw.once.Do(func() { close(fw.done) })
	return fw.w.Close()
}
