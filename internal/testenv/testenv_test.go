package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestMissingChild is run by TestMissingFailsUnderCI in a child process.
func TestMissingChild(t *testing.T) {
	if os.Getenv("TESTENV_CHILD") != "1" {
		return // only meaningful in the child process
	}
	Missing(t, "widget %s is absent", "x")
}

// A missing dependency fails the test under CI and skips it elsewhere.
func TestMissingFailsUnderCI(t *testing.T) {
	for _, tc := range []struct {
		ci       string
		fails    bool
		wantText string
	}{
		{"1", true, "missing test dependency under CI: widget x is absent"},
		{"true", true, "missing test dependency under CI"},
		{"", false, "widget x is absent"},
		{"false", false, "widget x is absent"},
		{"0", false, "widget x is absent"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMissingChild$", "-test.v")
		cmd.Env = append(os.Environ(), "TESTENV_CHILD=1", "CI="+tc.ci)
		out, err := cmd.CombinedOutput()
		if failed := err != nil; failed != tc.fails || !strings.Contains(string(out), tc.wantText) {
			t.Errorf("CI=%q: failed=%v (want %v), output:\n%s", tc.ci, failed, tc.fails, out)
		}
		if !tc.fails && !strings.Contains(string(out), "--- SKIP: TestMissingChild") {
			t.Errorf("CI=%q: not skipped:\n%s", tc.ci, out)
		}
	}
}
