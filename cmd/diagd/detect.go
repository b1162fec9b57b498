package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/ortenv"
)

func init() {
	register("detect", command{summary: "judge image files with a detector model (one verdict per image)", run: runDetect})
}

// detectLine is one --json output line.
type detectLine struct {
	Image        string  `json:"image"`
	Verdict      string  `json:"verdict,omitempty"`
	Score        float64 `json:"score"`
	Threshold    float64 `json:"threshold"`
	ModelVersion string  `json:"model_version,omitempty"`
	Error        string  `json:"error,omitempty"`
}

func runDetect(ctx context.Context, env *cliEnv, args []string) int {
	fs := flag.NewFlagSet("detect", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	modelDir := fs.String("model", envOr("DIAGD_MODEL_DIR", "models/current"), "model folder holding model.onnx and model.json")
	asJSON := fs.Bool("json", false, "print JSON lines instead of text")
	provider := fs.String("provider", envOr("DIAGD_PROVIDER", "auto"), "execution provider: auto, tensorrt, cuda or cpu")
	batch := fs.Int("batch", 8, "images per model call")
	fs.Usage = func() {
		fmt.Fprintln(env.stderr, "usage: diagd detect [--model DIR] [--json] [--provider P] IMAGE...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	p, err := ortenv.ParseProvider(*provider)
	if err != nil {
		fmt.Fprintf(env.stderr, "diagd detect: --provider: %v\n", err)
		return 2
	}
	m, err := detect.LoadModel(env.log, *modelDir, detect.Options{Session: ortenv.Options{Provider: p}, MaxBatch: *batch, Workers: 1})
	if err != nil {
		fmt.Fprintf(env.stderr, "diagd detect: %v\n", err)
		return 1
	}
	defer m.Close()

	enc := json.NewEncoder(env.stdout)
	failed := 0
	emit := func(l detectLine) {
		if *asJSON {
			enc.Encode(l)
			return
		}
		if l.Error != "" {
			fmt.Fprintf(env.stdout, "%s\terror\t%s\n", l.Image, l.Error)
			return
		}
		fmt.Fprintf(env.stdout, "%s\t%s\tscore=%.6f\tthreshold=%.4f\tmodel=%s\n", l.Image, l.Verdict, l.Score, l.Threshold, l.ModelVersion)
	}
	paths := fs.Args()
	// Batches are read, judged and printed in input order; a bad image is reported and
	// the rest go on. A failure of the model itself is reported for every image left.
	reported := 0
	report := func(batch []detect.FileScore) {
		for _, fsc := range batch {
			l := detectLine{Image: fsc.Path}
			if fsc.Err != nil {
				l.Error = fsc.Err.Error()
				failed++
			} else {
				r := m.Result(fsc.Logit)
				l.Score, l.Threshold, l.ModelVersion, l.Verdict = r.Score, r.Threshold, r.ModelVersion, string(r.Verdict)
			}
			emit(l)
		}
		reported += len(batch)
	}
	if _, err := m.ScoreFiles(ctx, paths, report); err != nil {
		for _, p := range paths[reported:] {
			emit(detectLine{Image: p, Error: err.Error()})
			failed++
		}
	}
	if failed > 0 {
		fmt.Fprintf(env.stderr, "diagd detect: %d of %d images could not be judged\n", failed, len(paths))
		return 1
	}
	return 0
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
