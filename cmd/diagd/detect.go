package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

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
	// Regions are where a fail's defect is, for a model with a segmentation output.
	Regions []detect.Region `json:"regions,omitempty"`
}

func runDetect(ctx context.Context, env *cliEnv, args []string) int {
	fs := flag.NewFlagSet("detect", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	modelDir := fs.String("model", envOr("DIAGD_MODEL_DIR", "models/current"), "model folder holding model.onnx and model.json")
	asJSON := fs.Bool("json", false, "print JSON lines instead of text")
	provider := fs.String("provider", envOr("DIAGD_PROVIDER", "auto"), "execution provider: auto, tensorrt, cuda or cpu")
	batch := fs.Int("batch", 8, "images per model call")
	heatmap := fs.String("heatmap", "", "write each image with the model's segmentation overlaid into this folder (PNG; the model needs a segmentation output)")
	fs.Usage = func() {
		fmt.Fprintln(env.stderr, "usage: diagd detect [--model DIR] [--json] [--provider P] [--heatmap DIR] IMAGE...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return exitUsage
	}
	p, err := ortenv.ParseProvider(*provider)
	if err != nil {
		fmt.Fprintf(env.stderr, "diagd detect: --provider: %v\n", err)
		return exitUsage
	}
	so, err := sessionOptions("detect", p, 0)
	if err != nil {
		fmt.Fprintln(env.stderr, err)
		return exitConfig
	}
	m, err := detect.LoadModel(env.log, *modelDir, detect.Options{Session: so, MaxBatch: *batch, Workers: 1})
	if err != nil {
		fmt.Fprintf(env.stderr, "diagd detect: %v\n", err)
		return exitFailure
	}
	defer m.Close()
	var heat *heatmapWriter
	if *heatmap != "" {
		if heat, err = newHeatmapWriter(m, *heatmap); err != nil {
			fmt.Fprintf(env.stderr, "diagd detect: --heatmap: %v\n", err)
			return exitUsage
		}
	}

	out := detectPrinter{w: env.stdout, json: *asJSON}
	paths := fs.Args()
	// Batches are read, judged and printed in input order; a bad image is reported and
	// the rest go on. A failure of the model itself is reported for every image left.
	failed, reported := 0, 0
	report := func(batch []detect.FileScore) {
		for i, l := range detectLines(m, batch) {
			if l.Error == "" && heat != nil {
				if err := heat.write(batch[i], l.Regions); err != nil {
					l.Error = "heatmap: " + err.Error()
				}
			}
			if l.Error != "" {
				failed++
			}
			out.print(l)
		}
		reported += len(batch)
	}
	if _, err := m.ScoreFiles(ctx, paths, report); err != nil {
		for _, p := range paths[reported:] {
			out.print(detectLine{Image: p, Error: err.Error()})
			failed++
		}
	}
	if failed > 0 {
		fmt.Fprintf(env.stderr, "diagd detect: %d of %d images could not be judged\n", failed, len(paths))
		return exitFailure
	}
	return 0
}

// detectLines turns scored files into result lines, in order. An image that cannot be
// read, preprocessed or trusted (a non-finite score) gets its reason.
func detectLines(m *detect.Model, batch []detect.FileScore) []detectLine {
	lines := make([]detectLine, len(batch))
	for i, f := range batch {
		lines[i] = detectLine{Image: f.Path}
		if f.Err != nil {
			lines[i].Error = f.Err.Error()
			continue
		}
		r := m.Result(f.Logit)
		lines[i].Threshold, lines[i].ModelVersion = r.Threshold, r.ModelVersion
		if r.Err != nil {
			lines[i].Error = r.Err.Error()
			continue
		}
		lines[i].Score, lines[i].Verdict = r.Score, string(r.Verdict)
		if f.Seg != nil {
			m.Locate(&r, f.Seg, f.Width, f.Height)
			lines[i].Regions = r.Regions
		}
	}
	return lines
}

// detectPrinter prints result lines as text or JSON lines.
type detectPrinter struct {
	w    io.Writer
	json bool
}

func (p detectPrinter) print(l detectLine) {
	if p.json {
		json.NewEncoder(p.w).Encode(l)
		return
	}
	if l.Error != "" {
		fmt.Fprintf(p.w, "%s\terror\t%s\n", l.Image, l.Error)
		return
	}
	var where strings.Builder
	sep := "\tregions=" // x,y,wxh of each region, largest first
	for _, r := range l.Regions {
		fmt.Fprintf(&where, "%s%d,%d,%dx%d", sep, r.X, r.Y, r.W, r.H)
		sep = ";"
	}
	fmt.Fprintf(p.w, "%s\t%s\tscore=%.6f\tthreshold=%.4f\tmodel=%s%s\n", l.Image, l.Verdict, l.Score, l.Threshold, l.ModelVersion, where.String())
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
