package ortenv

import (
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
)

// An explicit DIAGD_ORT_LIB that does not exist is an error naming it, not a silent
// fall back to another library (say the CPU build beside the binary instead of the GPU
// build the user named).
func TestMissingExplicitLibraryIsAnError(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "libonnxruntime.so")
	t.Setenv(LibEnv, missing)
	_, _, err := initialise(slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), LibEnv+"="+missing) {
		t.Fatalf("initialise with a missing %s: %v", LibEnv, err)
	}
}
