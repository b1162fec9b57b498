package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/atomicfile"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/retrain/dataset"
	"github.com/diagd/diagd/retrain/metrics"
)

func init() {
	register("eval", command{summary: "score a detector on labelled images: AP, AUROC, max-F1 P/R, PR curve", run: runEval})
}

// evalSkip is an image left out of the evaluation, with why.
type evalSkip struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// evalPoint is the detector's quality under one threshold (rule score >= threshold).
type evalPoint struct {
	Threshold float64 `json:"threshold"`
	Precision float64 `json:"precision"`
	Recall    float64 `json:"recall"`
	TP        int     `json:"tp"`
	FP        int     `json:"fp"`
	TN        int     `json:"tn"`
	FN        int     `json:"fn"`
}

// evalResult is metrics.json.
type evalResult struct {
	ModelDir     string `json:"model_dir"`
	ModelVersion string `json:"model_version"`
	ModelSHA256  string `json:"model_sha256"`
	Data         string `json:"data"`
	LabelRule    string `json:"label_rule"`
	// Scores are sigmoid(logit), the quantity model.json's threshold applies to.
	Score     string  `json:"score"`
	Images    int     `json:"images"`
	Positives int     `json:"positives"`
	AP        float64 `json:"ap"`
	AUROC     float64 `json:"auroc"`
	F1Max     float64 `json:"f1_max"`
	// MaxF1 is the max-F1 point of the PR curve; its threshold is the midpoint
	// convention of metrics.Report.Threshold.
	MaxF1 evalPoint `json:"max_f1"`
	// AtModelThreshold is how the model performs with the threshold it ships with.
	AtModelThreshold evalPoint `json:"at_model_threshold"`
	// Pixel holds the segmentation's figures, for a model with a segmentation output on
	// data with masks.
	Pixel     *evalPixel `json:"pixel,omitempty"`
	Skipped   []evalSkip `json:"skipped"`
	CreatedAt time.Time  `json:"created_at"`
}

func runEval(ctx context.Context, env *cliEnv, args []string) int {
	fs := flag.NewFlagSet("eval", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	modelDir := fs.String("model", "", "model folder holding model.onnx and model.json (required)")
	data := fs.String("data", "", "labelled data: KSDD2 folder (NNNNN.png + NNNNN_GT.png, or with train/ test/), a folder with ok/ and defect/, or a manifest .csv (required)")
	outDir := fs.String("out", "eval", "parent folder: scores.csv, pr_curve.png and metrics.json go to <out>/<model version>-<first 8 hex of model.onnx's sha256>, so models never overwrite each other")
	provider := fs.String("provider", "auto", "execution provider: auto, tensorrt, cuda or cpu")
	rule := fs.String("label-rule", "any", "how KSDD2/generator masks become labels: any (a defect pixel) or paper (a pixel exactly 255 after the paper's bilinear resize to 704x256, spec §1.5)")
	split := fs.String("split", "", "manifest only: keep rows of this split")
	batch := fs.Int("batch", 8, "images per model call")
	fs.Usage = func() {
		fmt.Fprintln(env.stderr, "usage: diagd eval --model DIR --data DIR|CSV [--out DIR] [--provider P] [--label-rule any|paper]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if *modelDir == "" || *data == "" || fs.NArg() > 0 {
		fs.Usage()
		return exitUsage
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(env.stderr, "diagd eval: "+format+"\n", a...)
		return exitFailure
	}
	p, err := ortenv.ParseProvider(*provider)
	if err != nil {
		fmt.Fprintf(env.stderr, "diagd eval: --provider: %v\n", err)
		return exitUsage
	}
	so, err := sessionOptions("eval", p, 0)
	if err != nil {
		fmt.Fprintln(env.stderr, err)
		return exitConfig
	}
	lr, err := dataset.ParseLabelRule(*rule)
	if err != nil {
		fmt.Fprintf(env.stderr, "diagd eval: --label-rule: %v\n", err)
		return exitUsage
	}
	set, err := dataset.Load(*data, dataset.Options{Rule: lr, Split: *split})
	if err != nil {
		return fail("%v", err)
	}
	var skipped []evalSkip
	for _, s := range set.Skipped {
		skipped = append(skipped, evalSkip{s.Path, s.Reason})
	}
	fmt.Fprintf(env.stderr, "%s\n", set.Summarize())

	m, err := detect.LoadModel(env.log, *modelDir, detect.Options{Session: so, MaxBatch: *batch, Workers: 1})
	if err != nil {
		return fail("%v", err)
	}
	defer m.Close()
	digest, err := m.Digest()
	if err != nil {
		return fail("%v", err)
	}

	scored, bad, err := scoreItems(ctx, m, set.Items, newProgress(env.stderr, "eval", "images"))
	if err != nil {
		return fail("%v", err)
	}
	skipped = append(skipped, bad...)
	for _, s := range bad {
		fmt.Fprintf(env.stderr, "skipped %s: %s\n", s.Path, s.Reason)
	}

	res := evalResult{ModelDir: *modelDir, ModelVersion: m.Meta.ModelVersion, ModelSHA256: digest,
		Data: *data, LabelRule: *rule, Score: "sigmoid(logit)", Skipped: skipped}
	res.Pixel = evalPixels(m, scored)
	out := filepath.Join(*outDir, evalFolder(m.Meta.ModelVersion, digest))
	if err := writeEval(out, &res, scored, m.Meta.Threshold); err != nil {
		return fail("%v", err)
	}
	if err := writeWorstSheet(out, m, scored.cases()); err != nil {
		return fail("%v", err)
	}
	printEval(env.stdout, res, out)
	return 0
}

// evalScores are the scored images, in order, with their items and model outputs.
type evalScores struct {
	names  []string
	scores []float64
	labels []bool
	items  []dataset.Item
	files  []detect.FileScore
}

// cases are the scored images as the worst-cases sheet sees them.
func (s evalScores) cases() []sheetCase {
	out := make([]sheetCase, len(s.names))
	for i := range out {
		out[i] = sheetCase{path: s.names[i], mask: s.items[i].Mask, defect: s.labels[i], score: s.scores[i], seg: s.files[i].Seg}
	}
	return out
}

// writeEval computes the metrics into res and writes scores.csv, pr_curve.png and
// metrics.json into out. The per-image scores are kept even when the set cannot be
// scored as a whole (a single class).
func writeEval(out string, res *evalResult, s evalScores, modelThreshold float64) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	rep, evalErr := metrics.Evaluate(s.scores, s.labels)
	thr := rep.Threshold
	if evalErr != nil {
		thr = modelThreshold
	}
	csvPath := filepath.Join(out, "scores.csv")
	if err := metrics.WriteScoresCSV(csvPath, s.names, s.scores, s.labels, thr); err != nil {
		return err
	}
	if evalErr != nil {
		return fmt.Errorf("%s: %w (scores written to %s)", res.Data, evalErr, csvPath)
	}
	title := fmt.Sprintf("%s on %s (%d images, %d defects)", res.ModelVersion, filepath.Base(filepath.Clean(res.Data)), rep.N, rep.Positives)
	if err := metrics.WritePRCurvePNG(filepath.Join(out, "pr_curve.png"), s.scores, s.labels, title); err != nil {
		return err
	}
	res.Images, res.Positives, res.AP, res.AUROC, res.F1Max = rep.N, rep.Positives, rep.AP, rep.AUROC, rep.F1Max
	res.MaxF1 = evalPoint{Threshold: rep.Threshold, Precision: rep.Precision, Recall: rep.Recall, TP: rep.TP, FP: rep.FP, TN: rep.TN, FN: rep.FN}
	res.AtModelThreshold = pointAt(s.scores, s.labels, modelThreshold)
	res.CreatedAt = time.Now().UTC().Truncate(time.Second)
	if res.Skipped == nil {
		res.Skipped = []evalSkip{}
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(out, "metrics.json"), append(b, '\n'), 0o644)
}

func pointAt(scores []float64, labels []bool, thr float64) evalPoint {
	tp, fp, tn, fn := metrics.Confusion(scores, labels, thr)
	pt := evalPoint{Threshold: thr, TP: tp, FP: fp, TN: tn, FN: fn}
	if tp+fp > 0 {
		pt.Precision = float64(tp) / float64(tp+fp)
	}
	if tp+fn > 0 {
		pt.Recall = float64(tp) / float64(tp+fn)
	}
	return pt
}

func printEval(w io.Writer, r evalResult, out string) {
	fmt.Fprintf(w, "model      %s (%s)\n", r.ModelVersion, r.ModelDir)
	fmt.Fprintf(w, "data       %s: %d images, %d defects, %d skipped\n", r.Data, r.Images, r.Positives, len(r.Skipped))
	fmt.Fprintf(w, "AP         %.4f\nAUROC      %.4f\nF1max      %.4f\n", r.AP, r.AUROC, r.F1Max)
	for _, c := range []struct {
		name string
		p    evalPoint
	}{{"max-F1", r.MaxF1}, {"model.json", r.AtModelThreshold}} {
		fmt.Fprintf(w, "%-10s threshold %.6g: precision %.4f recall %.4f  TP %d FP %d TN %d FN %d\n",
			c.name, c.p.Threshold, c.p.Precision, c.p.Recall, c.p.TP, c.p.FP, c.p.TN, c.p.FN)
	}
	if p := r.Pixel; p != nil {
		ap := fmt.Sprintf("%.4f", p.AP)
		if p.Problem != "" {
			ap = "n/a: " + p.Problem
		}
		fmt.Fprintf(w, "pixel AP   %s (%d images with pixel truth, %d cells of which %d defect; %d defect images without a mask, %d masks unreadable)\n",
			ap, p.Images, p.Cells, p.DefectCells, p.NoMask, len(p.Unreadable))
		fmt.Fprintf(w, "defects    %d of %d hit (%.1f%%) at segmentation threshold %.4g\n", p.DefectsHit, p.Defects, 100*p.HitShare, p.Threshold)
	}
	fmt.Fprintf(w, "wrote      %s/{scores.csv,pr_curve.png,metrics.json,worst_cases.png}\n", out)
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// evalFolder names a model's results: its version (made safe for a file name; it comes
// from model.json) and the start of its model.onnx digest, so two models never share a
// folder even when their versions collide (v3 of two registries).
func evalFolder(version, digest string) string {
	v := strings.Trim(unsafeChars.ReplaceAllString(version, "_"), ".")
	if v == "" {
		v = "model"
	}
	return v + "-" + digest[:min(8, len(digest))]
}

// scoreItems scores the items with detect's ScoreFiles. Unreadable images and frames
// the model cannot take are returned as skips, never silently dropped; a failure of the
// model itself ends the run.
func scoreItems(ctx context.Context, m *detect.Model, items []dataset.Item, progress func(done, total int)) (
	s evalScores, skipped []evalSkip, err error) {
	paths := make([]string, len(items))
	for i, it := range items {
		paths[i] = it.Path
	}
	done := 0
	res, err := m.ScoreFiles(ctx, paths, func(b []detect.FileScore) {
		if done += len(b); progress != nil {
			progress(done, len(items))
		}
	})
	if err != nil {
		return s, nil, err
	}
	for i, r := range res {
		if r.Err != nil {
			skipped = append(skipped, evalSkip{r.Path, r.Err.Error()})
			continue
		}
		s.names = append(s.names, r.Path)
		s.scores = append(s.scores, detect.Sigmoid(r.Logit))
		s.labels = append(s.labels, items[i].Label)
		s.items = append(s.items, items[i])
		s.files = append(s.files, r)
	}
	return s, skipped, nil
}

// newProgress returns a progress callback for a long job: on a terminal it rewrites one
// line; elsewhere (logs, pipes) it prints a line at every 10% so logs stay readable.
func newProgress(w io.Writer, job, unit string) func(done, total int) {
	tty := false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	start := time.Now()
	lastTenth := -1
	return func(done, total int) {
		if total <= 0 {
			return
		}
		rate := float64(done) / max(time.Since(start).Seconds(), 1e-3)
		if tty {
			fmt.Fprintf(w, "\r%s: %d/%d %s (%.1f/s)", job, done, total, unit, rate)
			if done >= total {
				fmt.Fprintln(w)
			}
			return
		}
		if tenth := done * 10 / total; tenth != lastTenth {
			lastTenth = tenth
			fmt.Fprintf(w, "%s: %d/%d %s (%.1f/s)\n", job, done, total, unit, rate)
		}
	}
}
