package console

import (
	"runtime"
	"syscall"
)

// backgroundNice is the niceness of the console's own threads (latest-frame encoder,
// failed-frame writer): the kernel gives the judge's threads (nice 0) the CPU first.
const backgroundNice = 10

// lowerPriority locks the calling goroutine to its OS thread and makes that thread
// nicer; the thread is never unlocked, so it exits with the goroutine instead of
// returning, niced, to the pool that runs the judge (as daemon jobs do).
func lowerPriority() error {
	runtime.LockOSThread()
	return syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), backgroundNice)
}
