package outbox

import (
	"os"
	"syscall"
)

// File is an open segment, as the outbox writes it. The default is the OS file; tests
// pass Options.OpenFile to inject write, fsync and truncate errors (ENOSPC, EIO).
type File interface {
	Write(p []byte) (int, error)
	// Sync makes what was written durable (fdatasync: the data and the file size).
	Sync() error
	Truncate(size int64) error
	Close() error
}

// OpenFileFunc opens a segment file; flag and perm are os.OpenFile's.
type OpenFileFunc func(path string, flag int, perm os.FileMode) (File, error)

func openOSFile(path string, flag int, perm os.FileMode) (File, error) {
	f, err := os.OpenFile(path, flag, perm)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

type osFile struct{ *os.File }

// Sync is fdatasync: it also flushes the file size, which appends need to be readable,
// and skips the inode times nobody reads.
func (f osFile) Sync() error { return syscall.Fdatasync(int(f.Fd())) }
