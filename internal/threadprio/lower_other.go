//go:build !linux

package threadprio

import "runtime"

// Lower locks the goroutine to its thread; per-thread niceness is Linux-only.
func Lower() error {
	runtime.LockOSThread()
	return nil
}
