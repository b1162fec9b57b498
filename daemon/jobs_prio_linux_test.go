package daemon

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// getNice reads the calling thread's niceness from /proc (field 19 of its stat line).
func getNice(t *testing.T) int {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b, err := os.ReadFile("/proc/self/task/" + strconv.Itoa(syscall.Gettid()) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	// The command name (field 2) may hold spaces; fields after ")" are fixed.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	n, err := strconv.Atoi(f[16]) // field 19 overall: nice
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// A job's thread is niced; the judge's threads are not.
func TestJobThreadIsNiced(t *testing.T) {
	type prio struct{ job, other int }
	got := make(chan prio)
	before := getNice(t)
	go func() {
		if err := lowerJobPriority(); err != nil {
			t.Error(err)
		}
		got <- prio{job: getNice(t)}
	}()
	p := <-got
	if p.job != min(before+jobNice, 19) {
		t.Fatalf("job thread nice %d, want %d (this thread: %d)", p.job, before+jobNice, before)
	}
	if now := getNice(t); now != before {
		t.Fatalf("the test's own thread changed priority: %d -> %d", before, now)
	}
}
