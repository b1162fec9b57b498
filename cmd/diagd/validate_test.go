package main

import (
	"bytes"
	"image"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diagd/diagd/internal/testenv"
)

// The catalogue check on its own: other areas register their own checks, whose
// outcome depends on their environment variables.
func TestValidateCatalogueCheck(t *testing.T) {
	dir := t.TempDir()
	writeRegion(t, filepath.Join(dir, "r.png"), 16, 16, image.Rect(2, 2, 8, 8))
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("kinds:\n  - name: a\n    prompt: x\n    regions: r.png\n"), 0o644)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("kinds:\n  - name: a\n    prompt: x\n    regions: r.png\n    colour: red\n"), 0o644)
	for _, tc := range []struct {
		file     string
		ok       bool
		out, err string
	}{
		{good, true, "good.yaml ok: 1 kinds, 0 defect-shape masks, 1 region masks; steps 30, guidance 20, strength 0.99", ""},
		{bad, false, "", bad + `:5:5: unknown key "colour"`},
		{"", true, "DIAGD_CATALOGUE is not set", ""},
	} {
		var out, errb bytes.Buffer
		ok := checkCatalogue(t.Context(), &cliEnv{stdout: &out, stderr: &errb, log: testenv.Logger(t)}, validateOptions{catalogue: tc.file})
		if ok != tc.ok || !strings.Contains(out.String(), tc.out) || !strings.Contains(errb.String(), tc.err) {
			t.Errorf("%q: ok=%v stdout %q stderr %q", tc.file, ok, out.String(), errb.String())
		}
	}
}

// validate --catalogue FILE checks the catalogue alone, whatever the daemon's variables
// say; without the flag the daemon's check runs too.
func TestValidateCatalogueOnly(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("kinds:\n  - name: cracks\n    shape: {type: crack, width: [1, 2]}\n    fill: {contrast: [-50, -20]}\n"), 0o644)
	t.Setenv("DIAGD_SOURCES", "bogus")
	code, stdout, stderr := runCLI(t, "validate", "--catalogue", good)
	if code != 0 || !strings.Contains(stdout, "cracks: crack, contrast [-50, -20]") || !strings.Contains(stdout, "only the catalogue was checked") || stderr != "" {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	t.Setenv("DIAGD_CATALOGUE", good)
	if code, _, stderr := runCLI(t, "validate"); code != 1 || !strings.Contains(stderr, "DIAGD_SOURCES") {
		t.Fatalf("without --catalogue: exit %d, stderr %s", code, stderr)
	}
}
