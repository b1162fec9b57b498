// Package testenv gives tests the real parts they need: the ONNX Runtime library that
// scripts/setup.sh installed, the shared data set, and a logger that writes to t.Log.
package testenv

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diagd/diagd/internal/ortenv"
)

// ModuleRoot is the folder holding go.mod.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("testenv: go.mod not found above the test's folder")
		}
		dir = parent
	}
}

// ORT initialises ONNX Runtime for the test process. Tests run with a temporary binary,
// so "next to the executable" does not apply: the library is taken from DIAGD_ORT_LIB or
// from bin/ in the module, where scripts/setup.sh puts it. A missing library fails the
// test (it is a setup error, not a reason to skip).
func ORT(t testing.TB) {
	t.Helper()
	if os.Getenv(ortenv.LibEnv) == "" {
		lib := filepath.Join(ModuleRoot(t), "bin", ortenv.LibName)
		if _, err := os.Stat(lib); err == nil {
			os.Setenv(ortenv.LibEnv, lib)
		}
	}
	if _, err := ortenv.Init(Logger(t)); err != nil {
		t.Fatalf("testenv: %v", err)
	}
}

// Shared returns a path under ../shared (beside the project). When the shared folder
// is not there the test is skipped with a clear message, or fails under CI (see Missing).
func Shared(t testing.TB, rel string) string {
	t.Helper()
	p := filepath.Join(ModuleRoot(t), "..", "shared", rel)
	if _, err := os.Stat(p); err != nil {
		Missing(t, "shared data %s is absent (%v): this test needs ../shared beside the project", rel, err)
	}
	return p
}

// CI reports whether the tests run under CI: the CI variable is set to anything but
// "", "0" or "false" (GitHub, GitLab and most CI systems set CI=true; scripts/test.sh
// sets CI=1 unless it is set).
func CI() bool {
	switch strings.ToLower(os.Getenv("CI")) {
	case "", "0", "false":
		return false
	}
	return true
}

// Missing reports a dependency the test needs and does not have. Under CI it fails the
// test: nothing may skip silently there, since scripts/setup.sh installs everything
// the tests need. Elsewhere (a developer's go test without setup.sh) it skips with the
// message.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if CI() {
		t.Fatalf("missing test dependency under CI: "+format, args...)
	}
	t.Skipf(format, args...)
}

// Logger returns a slog.Logger that writes through t.Log, so output appears only for
// failing or -v tests and is attributed to the test.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	// After the test ends t.Log panics; goroutines still logging then are dropped.
	defer func() { _ = recover() }()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
