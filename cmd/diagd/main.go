// Command diagd is the line-side inspection daemon and its tools: it judges camera
// frames with a ResNet-50 detector, publishes verdicts over MQTT, generates synthetic
// defects with DIAG (SDXL inpainting) and retrains the detector on them.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// version is set at build time by scripts/setup.sh (-ldflags -X main.version=...).
var version = "dev"

// Exit statuses. A bad configuration of `diagd run` exits with exitConfig, after which
// the systemd unit does not restart (RestartPreventExitStatus): restarting cannot fix
// it. It is not 2, because the Go runtime itself exits 2 on an unrecovered panic and on
// a fatal signal inside C code (OpenCV, ONNX Runtime); those are failures a restart may
// cure, so the unit must restart them like any other exit 1.
const (
	exitFailure = 1
	exitUsage   = 2  // a command's flags are wrong (interactive use)
	exitConfig  = 78 // EX_CONFIG of sysexits.h: the configuration is bad
)

// command is one subcommand. run returns the process exit code.
type command struct {
	summary string
	run     func(ctx context.Context, env *cliEnv, args []string) int
}

// cliEnv carries what subcommands share, so tests can run them in-process.
type cliEnv struct {
	stdout, stderr io.Writer
	log            *slog.Logger
}

var commands = map[string]command{}

func register(name string, c command) { commands[name] = c }

func init() {
	register("help", command{summary: "list the subcommands", run: runHelp})
	register("version", command{summary: "print the version and the ONNX Runtime in use", run: runVersion})
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(dispatch(ctx, &cliEnv{stdout: os.Stdout, stderr: os.Stderr, log: newLogger(os.Stderr)}, os.Args[1:]))
}

// newLogger builds the logger every command uses from DIAGD_LOG_LEVEL and
// DIAGD_LOG_FORMAT. A bad value falls back to the default here (a logger is needed to
// report it); `diagd run` and `diagd validate` refuse it through internal/config.
func newLogger(w io.Writer) *slog.Logger {
	var level slog.Level // info unless DIAGD_LOG_LEVEL says debug, warn or error
	if err := level.UnmarshalText([]byte(os.Getenv("DIAGD_LOG_LEVEL"))); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if os.Getenv("DIAGD_LOG_FORMAT") == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func dispatch(ctx context.Context, env *cliEnv, args []string) int {
	if len(args) == 0 {
		runHelp(ctx, env, nil)
		return exitUsage
	}
	name := args[0]
	if name == "-h" || name == "--help" {
		name = "help"
	}
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(env.stderr, "diagd: unknown command %q; run 'diagd help'\n", args[0])
		return exitUsage
	}
	return c.run(ctx, env, args[1:])
}

func runHelp(_ context.Context, env *cliEnv, _ []string) int {
	fmt.Fprintln(env.stdout, "usage: diagd <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(env.stdout, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(env.stdout, "\nrun 'diagd <command> -h' for a command's flags")
	return 0
}
