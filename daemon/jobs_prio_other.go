//go:build !linux

package daemon

import "runtime"

// lowerJobPriority locks the goroutine to its thread; per-thread niceness is Linux-only.
func lowerJobPriority() error {
	runtime.LockOSThread()
	return nil
}
