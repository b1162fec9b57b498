package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/diagd/diagd/internal/demo"
)

func init() {
	register("demo-model", command{summary: "write a stand-in detector with random weights, for trying the plumbing", run: runDemoModel})
}

func runDemoModel(_ context.Context, env *cliEnv, args []string) int {
	fs := flag.NewFlagSet("demo-model", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	out := fs.String("out", "", "model folder to create (required)")
	full := fs.Bool("resnet50", false, "full-size ResNet-50 at 704x256 (90 MiB) instead of a small network")
	seed := fs.Uint64("seed", 1, "weight seed")
	samples := fs.String("samples", "", "also write sample frames (a synthetic brushed-metal surface, half of them scratched) into this folder")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if *out == "" {
		fmt.Fprintln(env.stderr, "diagd demo-model: --out is required")
		return exitUsage
	}
	meta, err := demo.WriteModel(*out, *full, *seed)
	if err != nil {
		fmt.Fprintf(env.stderr, "diagd demo-model: %v\n", err)
		return 1
	}
	fmt.Fprintf(env.stdout, "wrote %s (%s, random weights)\n", *out, meta.ModelVersion)
	if *samples != "" {
		if err := demo.WriteFrames(*samples, 6, 1280, 1024, *seed); err != nil {
			fmt.Fprintf(env.stderr, "diagd demo-model: %v\n", err)
			return 1
		}
		fmt.Fprintf(env.stdout, "wrote 6 sample frames to %s\n", *samples)
	}
	return 0
}
