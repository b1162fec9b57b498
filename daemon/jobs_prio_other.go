//go:build !linux

package daemon

import "runtime"

// JobNice is the niceness a job's thread gets on Linux.
const JobNice = 10

// LowerJobPriority locks the goroutine to its thread; per-thread niceness is Linux-only.
func LowerJobPriority() error {
	runtime.LockOSThread()
	return nil
}
