// Command bench measures diagd's speed and memory against baselines run in the same
// process, and prints ratios (never absolute pass/fail times). Run: go run ./bench <name>.
package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"

	"github.com/diagd/diagd/internal/ortenv"
)

var benches = map[string]func(args []string) error{}

func register(name string, f func(args []string) error) { benches[name] = f }

func main() {
	if len(os.Args) < 2 || benches[os.Args[1]] == nil {
		names := make([]string, 0, len(benches))
		for n := range benches {
			names = append(names, n)
		}
		sort.Strings(names)
		fmt.Fprintf(os.Stderr, "usage: go run ./bench <name> [flags]\nbenchmarks: %v\n", names)
		os.Exit(2)
	}
	if err := benches[os.Args[1]](os.Args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// quietLog is the benchmarks' logger: warnings and errors only, so figures stay readable.
func quietLog() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// initORT points ONNX Runtime at bin/ (where scripts/setup.sh puts it) unless
// DIAGD_ORT_LIB says otherwise; go run's binary lives in a temp folder, so "next to the
// binary" cannot find it.
func initORT(log *slog.Logger) error {
	if os.Getenv(ortenv.LibEnv) == "" {
		if wd, err := os.Getwd(); err == nil {
			os.Setenv(ortenv.LibEnv, filepath.Join(wd, "bin", ortenv.LibName))
		}
	}
	_, err := ortenv.Init(log)
	return err
}
