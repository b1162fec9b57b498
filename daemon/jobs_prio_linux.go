package daemon

import (
	"runtime"
	"syscall"
)

// JobNice is the niceness of a job's thread: the kernel then gives the judge's threads
// (nice 0) the CPU first when both want it.
const JobNice = 10

// LowerJobPriority locks the calling goroutine to its OS thread and makes that thread
// nicer (JobNice). It is never unlocked, so the thread exits with the goroutine instead
// of returning, niced, to the pool that runs the judge. Work done on this thread (ONNX
// Runtime with one intra-op thread runs on the caller, MemSeg, head training) yields to
// judging; helper goroutines the job starts (image decoding) run at normal priority.
// Exported for bench/jobs.go, which measures exactly what the daemon does.
func LowerJobPriority() error {
	runtime.LockOSThread()
	return syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), JobNice)
}
