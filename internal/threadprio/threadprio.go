// Package threadprio lowers the CPU priority of the calling goroutine's OS thread, so
// that background work (the daemon's jobs, the console's frame encoder and failed-frame
// writer) yields to the judge's threads (nice 0) when both want the CPU.
package threadprio

// Nice is the niceness Lower gives a thread.
const Nice = 10
