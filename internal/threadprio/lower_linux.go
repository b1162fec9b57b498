package threadprio

import (
	"runtime"
	"syscall"
)

// Lower locks the calling goroutine to its OS thread and makes that thread nicer
// (Nice). The thread is never unlocked, so it exits with the goroutine instead of
// returning, niced, to the pool that runs the judge. Only work on this thread yields:
// goroutines the caller starts (image decoding helpers) run at normal priority.
func Lower() error {
	runtime.LockOSThread()
	return syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), Nice)
}
