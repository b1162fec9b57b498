package main

import (
	"context"
	"fmt"

	"github.com/diagd/diagd/daemon"
	"github.com/diagd/diagd/internal/config"
)

func init() {
	register("run", command{summary: "run the inspection daemon (configured by DIAGD_* environment variables)", run: runDaemon})
	registerCheck("daemon", checkDaemonConfig)
}

func runDaemon(ctx context.Context, env *cliEnv, args []string) int {
	if len(args) > 0 {
		fmt.Fprintf(env.stderr, "diagd run takes no arguments; it is configured by DIAGD_* variables (see README): %v\n", args)
		return 2
	}
	cfg, err := config.Load()
	if err != nil {
		fmt.Fprintf(env.stderr, "diagd run: %v\n", err)
		return 2
	}
	d, err := daemon.New(env.log, cfg)
	if err != nil {
		fmt.Fprintf(env.stderr, "diagd run: %v\n", err)
		return 1
	}
	if err := d.Run(ctx); err != nil {
		fmt.Fprintf(env.stderr, "diagd run: %v\n", err)
		return 1
	}
	return 0
}

// checkDaemonConfig is 'diagd validate's check of the DIAGD_* variables.
func checkDaemonConfig(_ context.Context, env *cliEnv, _ validateOptions) bool {
	cfg, err := config.Load()
	if err != nil {
		fmt.Fprintf(env.stderr, "validate: environment: %v\n", err)
		return false
	}
	fmt.Fprintf(env.stdout, "validate: environment ok (station %s, model %s, broker %s)\n", cfg.Station, cfg.ModelDir, cfg.MQTTBroker)
	return true
}
