package main

import (
	"context"
	"flag"
	"fmt"
	"image"
	"image/color"
	"math/rand/v2"
	"os"
	"path/filepath"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/onnx/zoo"
)

func init() {
	register("demo-model", command{summary: "write a stand-in detector with random weights, for trying the plumbing", run: runDemoModel})
}

// runDemoModel writes a model folder whose interface matches a real export. Its weights
// are random, so its verdicts mean nothing; the metadata says so, for anyone who finds it.
func runDemoModel(_ context.Context, env *cliEnv, args []string) int {
	fs := flag.NewFlagSet("demo-model", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	out := fs.String("out", "", "model folder to create (required)")
	full := fs.Bool("resnet50", false, "full-size ResNet-50 at 704x256 (94 MiB) instead of a small network")
	seed := fs.Uint64("seed", 1, "weight seed")
	samples := fs.String("samples", "", "also write sample frames (a synthetic textured surface, half of them scratched) into this folder")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *out == "" {
		fmt.Fprintln(env.stderr, "diagd demo-model: --out is required")
		return 2
	}
	cfg := zoo.SmallResNet(704, 256, *seed)
	if *full {
		cfg = zoo.ResNet50(*seed)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintf(env.stderr, "diagd demo-model: %v\n", err)
		return 1
	}
	if err := zoo.WriteResNet(cfg, filepath.Join(*out, detect.ModelFile)); err != nil {
		fmt.Fprintf(env.stderr, "diagd demo-model: %v\n", err)
		return 1
	}
	meta := detect.DefaultMetadata(fmt.Sprintf("demo-%s-seed%d", cfg.Name, *seed))
	meta.Architecture = cfg.Name
	meta.Training = map[string]any{"method": "none", "note": "random weights: verdicts are meaningless; for trying the plumbing only"}
	if err := detect.WriteMetadata(*out, meta); err != nil {
		fmt.Fprintf(env.stderr, "diagd demo-model: %v\n", err)
		return 1
	}
	fmt.Fprintf(env.stdout, "wrote %s (%s, random weights)\n", *out, meta.ModelVersion)
	if *samples != "" {
		if err := writeSampleFrames(*samples, 6, *seed); err != nil {
			fmt.Fprintf(env.stderr, "diagd demo-model: %v\n", err)
			return 1
		}
		fmt.Fprintf(env.stdout, "wrote 6 sample frames to %s\n", *samples)
	}
	return 0
}

// writeSampleFrames draws frames of a brushed-metal-like surface (1280×1024, blurred
// noise); odd-numbered ones carry a dark scratch. They stand in for a camera's output.
func writeSampleFrames(dir string, n int, seed uint64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(seed, 99))
	for i := range n {
		f := gocv.NewMatWithSize(1024, 1280, gocv.MatTypeCV8UC3)
		gocv.RandN(&f, gocv.NewScalar(128, 128, 128, 0), gocv.NewScalar(30, 30, 30, 0))
		gocv.GaussianBlur(f, &f, image.Pt(21, 3), 0, 0, gocv.BorderReflect101)
		name := fmt.Sprintf("frame-%02d-good.png", i)
		if i%2 == 1 {
			p0 := image.Pt(200+r.IntN(800), 100+r.IntN(300))
			p1 := image.Pt(p0.X+r.IntN(300)-150, p0.Y+300+r.IntN(400))
			gocv.Line(&f, p0, p1, color.RGBA{35, 35, 40, 0}, 4)
			name = fmt.Sprintf("frame-%02d-scratch.png", i)
		}
		ok := gocv.IMWrite(filepath.Join(dir, name), f)
		f.Close()
		if !ok {
			return fmt.Errorf("cannot write %s", filepath.Join(dir, name))
		}
	}
	return nil
}
