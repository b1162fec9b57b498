package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/imageio"
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

func runDetect(_ context.Context, env *cliEnv, args []string) int {
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
	// Decode a batch, judge it, print in input order; a bad image is reported and the rest go on.
	for start := 0; start < len(paths); start += m.MaxBatch() {
		chunk := paths[start:min(start+m.MaxBatch(), len(paths))]
		lines := make([]detectLine, len(chunk))
		var mats []gocv.Mat
		var idx []int
		for i, path := range chunk {
			lines[i] = detectLine{Image: path}
			mat, err := imageio.Read(path)
			if err != nil {
				var pe *os.PathError
				if errors.As(err, &pe) {
					err = fmt.Errorf("cannot read: %w", pe.Err)
				}
				lines[i].Error = err.Error()
				continue
			}
			mats = append(mats, mat)
			idx = append(idx, i)
		}
		logits := make([]float32, len(mats))
		errs := make([]error, len(mats))
		if err := m.Logits(mats, logits, errs); err != nil {
			for _, i := range idx {
				lines[i].Error = err.Error()
			}
		} else {
			for j, i := range idx {
				if errs[j] != nil {
					lines[i].Error = errs[j].Error()
					continue
				}
				r := m.Result(logits[j])
				lines[i].Score, lines[i].Threshold, lines[i].ModelVersion, lines[i].Verdict = r.Score, r.Threshold, r.ModelVersion, string(r.Verdict)
			}
		}
		for _, mat := range mats {
			mat.Close()
		}
		for _, l := range lines {
			if l.Error != "" {
				failed++
			}
			emit(l)
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
