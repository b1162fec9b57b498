package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/demo"
	"github.com/diagd/diagd/retrain/segdec"
)

func init() {
	register("demo-model", command{summary: "write a stand-in detector with random weights, for trying the plumbing", run: runDemoModel})
}

func runDemoModel(_ context.Context, env *cliEnv, args []string) int {
	fs := flag.NewFlagSet("demo-model", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	out := fs.String("out", "", "model folder to create (required)")
	arch := fs.String("arch", "small-resnet", "small-resnet (a small ResNet at 704x256), resnet50 (full size, 90 MiB) or segdec (the segmentation + decision network, CPU default, with a segmentation output)")
	full := fs.Bool("resnet50", false, "the same as --arch resnet50")
	seed := fs.Uint64("seed", 1, "weight seed")
	samples := fs.String("samples", "", "also write sample frames (a synthetic brushed-metal surface, half of them scratched) into this folder")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if *out == "" {
		fmt.Fprintln(env.stderr, "diagd demo-model: --out is required")
		return exitUsage
	}
	if *full {
		*arch = "resnet50"
	}
	var meta detect.Metadata
	var err error
	switch *arch {
	case "small-resnet", "resnet50":
		meta, err = demo.WriteModel(*out, *arch == "resnet50", *seed)
	case segdec.Architecture:
		meta, err = writeSegdec(*out, *seed)
	default:
		fmt.Fprintf(env.stderr, "diagd demo-model: --arch %q: want small-resnet, resnet50 or segdec\n", *arch)
		return exitUsage
	}
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

// writeSegdec writes an untrained segdec network (CPU default, random weights) with its
// model.json.
func writeSegdec(dir string, seed uint64) (detect.Metadata, error) {
	o := segdec.CPUOptions()
	o.Seed = seed
	m, err := o.Model()
	if err != nil {
		return detect.Metadata{}, err
	}
	meta := segdec.Metadata(fmt.Sprintf("demo-segdec-seed%d", seed), o)
	meta.Training = map[string]any{"method": "none", "note": "random weights: verdicts and regions are meaningless; for trying the plumbing only"}
	return meta, segdec.WriteModel(dir, m, meta)
}
