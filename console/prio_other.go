//go:build !linux

package console

import "runtime"

// lowerPriority locks the goroutine to its thread; per-thread niceness is Linux-only.
func lowerPriority() error {
	runtime.LockOSThread()
	return nil
}
