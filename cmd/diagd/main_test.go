package main

import (
	"bytes"
	"testing"

	"github.com/diagd/diagd/internal/testenv"
)

// runCLI runs a subcommand in-process and returns its exit code, stdout and stderr.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := dispatch(t.Context(), &cliEnv{stdout: &out, stderr: &errb, log: testenv.Logger(t)}, args)
	return code, out.String(), errb.String()
}
