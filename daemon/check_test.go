package daemon

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diagd/diagd/internal/mosquittotest"
	"github.com/diagd/diagd/internal/testenv"
)

// Check refuses what Run could not work with, naming the variable; a port held by a
// running diagd is only a warning for validate (the daemon being reconfigured), and an
// error for run.
func TestCheck(t *testing.T) {
	testenv.ORT(t)
	b := mosquittotest.Start(t)
	watched := filepath.Join(t.TempDir(), "drop")
	os.MkdirAll(watched, 0o755)
	cfg := testConfig(t, b.URL(), folderSource("cam", watched))
	if w, err := Check(testenv.Logger(t), cfg, CheckOptions{}); err != nil || len(w) != 0 {
		t.Fatalf("a good configuration: warnings %q, error %v", w, err)
	}

	// The port of a running diagd.
	r := start(t, cfg)
	held := cfg
	held.HTTPAddr = r.httpAddr(t)
	if w, err := Check(testenv.Logger(t), held, CheckOptions{RunningDiagdOK: true}); err != nil || len(w) != 1 || !strings.Contains(w[0], "held by a running diagd") {
		t.Fatalf("validate on a running station: warnings %q, error %v", w, err)
	}
	if _, err := Check(testenv.Logger(t), held, CheckOptions{}); err == nil || !strings.Contains(err.Error(), "DIAGD_HTTP_ADDR") {
		t.Fatalf("run with the port held: %v", err)
	}
	// A port held by something else is an error either way.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	other := cfg
	other.HTTPAddr = l.Addr().String()
	if _, err := Check(testenv.Logger(t), other, CheckOptions{RunningDiagdOK: true}); err == nil || !strings.Contains(err.Error(), "DIAGD_HTTP_ADDR") {
		t.Fatalf("a port held by another program: %v", err)
	}
	// A data folder that cannot be created, and a folder journal that cannot be written.
	file := filepath.Join(t.TempDir(), "a-file")
	os.WriteFile(file, nil, 0o644)
	bad := cfg
	bad.DataDir = filepath.Join(file, "data")
	bad.Sources = folderSource("cam", watched, "after=keep", "state="+filepath.Join(file, "state"))
	_, err = Check(testenv.Logger(t), bad, CheckOptions{})
	if err == nil || !contains(err.Error(), "DIAGD_DATA_DIR", "DIAGD_SOURCES: source \"cam\": state=", "not a directory") {
		t.Fatalf("unwritable folders: %v", err)
	}
}

// The demo runs with no sources (it makes its own video): Check must not ask for them
// (before, `scripts/demo.sh`, the README's quick start, stopped at "DIAGD_SOURCES: no
// sources given").
func TestCheckDemoNeedsNoSources(t *testing.T) {
	testenv.ORT(t)
	b := mosquittotest.Start(t)
	cfg := testConfig(t, b.URL(), folderSource("cam", t.TempDir()))
	cfg.Sources, cfg.Demo = "", true
	if _, err := Check(testenv.Logger(t), cfg, CheckOptions{}); err != nil {
		t.Fatalf("demo without sources: %v", err)
	}
}
