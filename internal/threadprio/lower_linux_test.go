package threadprio

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// threadNice reads the calling thread's niceness from /proc (field 19 of its stat
// line). It returns an error rather than failing the test, so that it can run on
// other goroutines (t.Fatal there would end only that goroutine and hang the test).
func threadNice() (int, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b, err := os.ReadFile("/proc/self/task/" + strconv.Itoa(syscall.Gettid()) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields after ")" are fixed.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 17 {
		return 0, fmt.Errorf("short stat line %q", s)
	}
	return strconv.Atoi(f[16]) // field 19 overall: nice
}

// The calling thread is niced; other threads (the judge's) are not.
func TestLowerNicesOnlyTheCallingThread(t *testing.T) {
	type prio struct {
		lowered int
		err     error
	}
	before, err := threadNice()
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan prio, 1)
	go func() {
		if err := Lower(); err != nil {
			got <- prio{err: err}
			return
		}
		n, err := threadNice()
		got <- prio{lowered: n, err: err}
	}()
	p := <-got
	if p.err != nil {
		t.Fatal(p.err)
	}
	if want := min(before+Nice, 19); p.lowered != want {
		t.Fatalf("lowered thread nice %d, want %d (this thread: %d)", p.lowered, want, before)
	}
	now, err := threadNice()
	if err != nil {
		t.Fatal(err)
	}
	if now != before {
		t.Fatalf("the test's own thread changed priority: %d -> %d", before, now)
	}
}
