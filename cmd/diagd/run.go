package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/diagd/diagd/daemon"
	"github.com/diagd/diagd/internal/config"
)

func init() {
	register("run", command{summary: "run the inspection daemon (configured by DIAGD_* environment variables)", run: runDaemon})
	registerCheck("daemon", checkDaemonConfig)
}

// runDaemon exits 0 after a clean stop, exitConfig (78) when the configuration cannot
// work (the unit does not restart it), and 1 on any other failure (restarted).
func runDaemon(ctx context.Context, env *cliEnv, args []string) int {
	// SIGHUP reloads the model and the defect catalogue (see Daemon.Reload) instead of
	// killing the daemon, from the very start.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if len(args) > 0 {
		fmt.Fprintf(env.stderr, "diagd run takes no arguments; it is configured by DIAGD_* variables (see README): %v\n", args)
		return exitConfig
	}
	cfg, err := config.Load()
	if err != nil {
		fmt.Fprintf(env.stderr, "diagd run: %v\n", err)
		return exitConfig
	}
	for _, w := range config.Warnings() {
		env.log.Warn("configuration: " + w)
	}
	if _, err := daemon.Check(env.log, cfg, daemon.CheckOptions{}); err != nil {
		fmt.Fprintf(env.stderr, "diagd run: %v\n", err)
		return exitConfig
	}
	d, err := daemon.New(env.log, cfg)
	if err != nil {
		fmt.Fprintf(env.stderr, "diagd run: %v\n", err)
		return exitFailure
	}
	go func() {
		for range hup {
			d.Reload("SIGHUP")
		}
	}()
	if err := d.Run(ctx); err != nil {
		fmt.Fprintf(env.stderr, "diagd run: %v\n", err)
		return exitFailure
	}
	return 0
}

// checkDaemonConfig is 'diagd validate's check of the DIAGD_* variables and of what
// `diagd run` needs from them (see daemon.Check).
func checkDaemonConfig(_ context.Context, env *cliEnv, _ validateOptions) bool {
	for _, w := range config.Warnings() {
		fmt.Fprintf(env.stderr, "validate: warning: %s\n", w)
	}
	cfg, err := config.Load()
	if err != nil {
		fmt.Fprintf(env.stderr, "validate: environment: %v\n", err)
		return false
	}
	warnings, err := daemon.Check(env.log, cfg, daemon.CheckOptions{RunningDiagdOK: true})
	for _, w := range warnings {
		fmt.Fprintf(env.stderr, "validate: warning: %s\n", w)
	}
	if err != nil {
		fmt.Fprintf(env.stderr, "validate: environment: %v\n", err)
		return false
	}
	fmt.Fprintf(env.stdout, "validate: environment ok (station %s, model %s, broker %s)\n", cfg.Station, cfg.ModelDir, config.Redact(cfg.MQTTBroker))
	return true
}
