package capture

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// inotifyWatcher watches one folder with inotify directly. It exists because the
// difference between a file created (a writer may still be at work) and a file renamed
// into the folder or closed after writing (its writer is done) is what lets a complete
// file be judged at once instead of after the settle window; fsnotify reports
// IN_MOVED_TO as a plain Create and keeps IN_CLOSE_WRITE unexported.
type inotifyWatcher struct {
	f      *os.File
	events chan fsEvent
	errs   chan error
	done   chan struct{}
	once   sync.Once
}

const inotifyMask = unix.IN_CREATE | unix.IN_MODIFY | unix.IN_ATTRIB | unix.IN_CLOSE_WRITE |
	unix.IN_MOVED_TO | unix.IN_MOVED_FROM | unix.IN_DELETE | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF |
	unix.IN_ONLYDIR | unix.IN_EXCL_UNLINK

func watchDir(dir string) (dirWatcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	if _, err := unix.InotifyAddWatch(fd, dir, inotifyMask); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("watch %s: %w", dir, err)
	}
	// A non-blocking descriptor goes to Go's poller: Read waits without a thread, and
	// Close wakes it.
	w := &inotifyWatcher{f: os.NewFile(uintptr(fd), "inotify"), events: make(chan fsEvent, 256),
		errs: make(chan error, 1), done: make(chan struct{})}
	go w.read()
	return w, nil
}

func (w *inotifyWatcher) Events() <-chan fsEvent { return w.events }
func (w *inotifyWatcher) Errors() <-chan error   { return w.errs }

func (w *inotifyWatcher) Close() error {
	w.once.Do(func() { close(w.done) })
	return w.f.Close()
}

func (w *inotifyWatcher) read() {
	defer close(w.events)
	var buf [64 * 1024]byte
	for {
		n, err := w.f.Read(buf[:])
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				select {
				case w.errs <- err:
				default:
				}
			}
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			raw := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := ""
			if raw.Len > 0 {
				b := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(raw.Len)]
				name = string(b[:clen(b)])
			}
			off += unix.SizeofInotifyEvent + int(raw.Len)
			if !w.send(fsEvent{name: name, op: opOf(raw.Mask)}) {
				return
			}
		}
	}
}

func (w *inotifyWatcher) send(ev fsEvent) bool {
	select {
	case w.events <- ev:
		return true
	case <-w.done:
		return false
	}
}

// opOf maps an inotify mask to what the folder source needs to know.
func opOf(mask uint32) fsOp {
	switch {
	case mask&unix.IN_Q_OVERFLOW != 0:
		return opOverflow
	case mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF|unix.IN_IGNORED|unix.IN_UNMOUNT) != 0:
		return opDirGone
	case mask&(unix.IN_DELETE|unix.IN_MOVED_FROM) != 0:
		return opGone
	case mask&(unix.IN_MOVED_TO|unix.IN_CLOSE_WRITE) != 0:
		return opComplete
	default:
		return opTouched
	}
}

func clen(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return len(b)
}
