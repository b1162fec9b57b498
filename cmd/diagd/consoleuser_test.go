package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diagd/diagd/console/auth"
)

// withStdin runs f with s on the process's stdin.
func withStdin(t *testing.T, s string, f func()) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	w.WriteString(s)
	w.Close()
	old := os.Stdin
	os.Stdin = r
	defer func() { os.Stdin = old; r.Close() }()
	f()
}

func TestConsoleUserLineSignsIn(t *testing.T) {
	var code int
	var out, errs string
	withStdin(t, "a long password\n", func() { code, out, errs = runCLI(t, "console-user", "ann", "operator") })
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	p := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(p, []byte(out), 0o640); err != nil {
		t.Fatal(err)
	}
	us, err := auth.LoadUsers(p)
	if err != nil {
		t.Fatal(err)
	}
	if us[0].Name != "ann" || us[0].Role != auth.Operator || !us[0].CheckPassword("a long password") || us[0].CheckPassword("a long passwor") {
		t.Errorf("the printed line %q does not sign ann in as operator", out)
	}
	for _, args := range [][]string{{"ann", "admin"}, {"bad name", "viewer"}, {"ann"}} {
		withStdin(t, "a long password\n", func() { code, _, errs = runCLI(t, append([]string{"console-user"}, args...)...) })
		if code != 2 || errs == "" {
			t.Errorf("console-user %v: exit %d %q", args, code, errs)
		}
	}
	withStdin(t, "short\n", func() { code, _, errs = runCLI(t, "console-user", "ann", "viewer") })
	if code != 1 || !strings.Contains(errs, "at least 8") {
		t.Errorf("short password: exit %d %q", code, errs)
	}
}
