package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/diagd/diagd/augment"
	"github.com/diagd/diagd/augment/catalogue"
	"github.com/diagd/diagd/internal/ortenv"
)

func init() {
	register("augment", command{summary: "synthesise defect images from good ones (DIAG SDXL inpainting or MemSeg)", run: runAugment})
}

// exportHint tells a user without a model folder how to get one.
const exportHint = "export the inpainting model with optimum " +
	"(optimum-cli export onnx --model diffusers/stable-diffusion-xl-1.0-inpainting-0.1 DIR) and pass --model DIR, " +
	"or use --generator memseg, which needs no model"

func runAugment(ctx context.Context, env *cliEnv, args []string) int {
	fs := flag.NewFlagSet("augment", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	negDir := fs.String("negatives", "", "good (defect-free) images to paint defects into: a folder (plain, KSDD2, ok/defect, images with masks) or a manifest .csv")
	glob := fs.String("glob", "*", "only negatives whose file name matches this pattern (e.g. '*.jpg')")
	catPath := fs.String("catalogue", envOr("DIAGD_CATALOGUE", ""), "defect catalogue (YAML)")
	out := fs.String("out", "", "output folder (NNNNN.png, NNNNN_mask.png, NNNNN.json); a new batch appends")
	n := fs.Int("n", 100, "number of images to make")
	gen := fs.String("generator", "auto", "diag (SDXL inpainting, needs --model), memseg (no model), or auto: diag when a model is configured, else memseg")
	model := fs.String("model", envOr("DIAGD_SDXL_DIR", ""), "SDXL-inpainting ONNX export folder (for --generator diag)")
	seed := fs.Int64("seed", -1, "batch seed; -1 uses the catalogue's generation.seed")
	provider := fs.String("provider", envOr("DIAGD_PROVIDER", "auto"), "execution provider: auto, tensorrt, cuda or cpu")
	rule := fs.String("label-rule", "", "label rule training will use: any (any-pixel) or paper; defects it would call ok are redrawn (default: the catalogue's checks.label_rule)")
	realDir := fs.String("real-defects", "", "folder (or manifest) of real defect images with masks: the contact sheet shows crops of them beside the synthetic ones")
	fs.Usage = func() {
		fmt.Fprintln(env.stderr, "usage: diagd augment --negatives DIR --catalogue FILE --out DIR [--n N] [--generator auto|diag|memseg] [--model DIR] [--seed S] [--provider P] [--label-rule any|paper] [--real-defects DIR]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(env.stderr, "diagd augment: "+format+"\n", a...)
		return code
	}
	switch {
	case fs.NArg() > 0:
		return fail(2, "unexpected argument %q", fs.Arg(0))
	case *negDir == "":
		return fail(2, "--negatives is required")
	case *catPath == "":
		return fail(2, "--catalogue is required (or set DIAGD_CATALOGUE)")
	case *out == "":
		return fail(2, "--out is required")
	case *n <= 0:
		return fail(2, "--n must be > 0, got %d", *n)
	case *seed < -1:
		return fail(2, "--seed must be ≥ 0 (or -1 for the catalogue's), got %d", *seed)
	case *gen != "auto" && *gen != "diag" && *gen != "memseg":
		return fail(2, "--generator must be auto, diag or memseg, got %q", *gen)
	}
	prov, err := ortenv.ParseProvider(*provider)
	if err != nil {
		return fail(2, "--provider: %v", err)
	}
	so, err := sessionOptions("augment", prov, 0)
	if err != nil {
		fmt.Fprintln(env.stderr, err)
		return exitConfig
	}
	if *rule != "" {
		if _, err := catalogue.ParseLabelRule(*rule); err != nil {
			return fail(2, "--label-rule: %v", err)
		}
	}
	cat, err := catalogue.Load(*catPath)
	if err != nil {
		var ve *catalogue.ValidationError
		if errors.As(err, &ve) {
			fmt.Fprintf(env.stderr, "diagd augment: the defect catalogue has %d problem(s):\n", len(ve.Problems))
			for _, p := range ve.Problems {
				fmt.Fprintf(env.stderr, "  %s\n", p)
			}
			return 1
		}
		return fail(1, "%v", err)
	}
	negs, err := augment.FindNegatives(*negDir, *glob)
	if err != nil {
		return fail(1, "%v", err)
	}
	fmt.Fprintf(env.stderr, "diagd augment: %d good images from %s (%s)", len(negs.Files), *negDir, negs.Layout)
	if negs.Left > 0 {
		fmt.Fprintf(env.stderr, "; %d defect images left out", negs.Left)
	}
	fmt.Fprintln(env.stderr)

	g, err := openGenerator(env, *gen, *model, so)
	if err != nil {
		return fail(1, "%v", err)
	}
	defer g.Close()

	cfg := augment.Config{Negatives: negs.Files, NegativesDir: *negDir, Out: *out, N: *n,
		Catalogue: func() *catalogue.Catalogue { return cat }, Generator: g, Log: env.log,
		LabelRule: *rule, RealDefects: *realDir}
	if *seed >= 0 {
		s := uint64(*seed)
		cfg.Seed = &s
	}
	bar := newProgressBar(env.stderr)
	cfg.Progress = bar.update
	sum, err := augment.Run(ctx, cfg)
	bar.finish()
	printSummary(env.stdout, sum)
	if err != nil {
		return fail(1, "%v", err)
	}
	return 0
}

// openGenerator opens the generator asked for; auto is diag when a model is
// configured, else memseg, and says which.
func openGenerator(env *cliEnv, name, model string, so ortenv.Options) (augment.Generator, error) {
	if name == "auto" {
		name = "diag"
		if model == "" {
			name = "memseg"
			fmt.Fprintln(env.stderr, "diagd augment: no SDXL model configured (--model or DIAGD_SDXL_DIR): using the memseg generator, which needs none")
		}
	}
	if name == "memseg" {
		return augment.NewMemSeg(), nil
	}
	if model == "" {
		return nil, fmt.Errorf("--generator diag needs an SDXL-inpainting model folder (--model or DIAGD_SDXL_DIR): %s", exportHint)
	}
	if st, err := os.Stat(model); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("model folder %s is not there: %s", model, exportHint)
	}
	return augment.OpenDIAG(env.log, model, so)
}

func printSummary(w io.Writer, s augment.Summary) {
	fmt.Fprintf(w, "%s: wrote %d of %d images (%s) in %s\n", s.Generator, s.Written, s.Requested, s.Range, s.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(w, "negatives: %s; visibility threshold %.0f grey levels; label rule %s\n", s.Surface, s.MinContrast, s.LabelRule)
	if s.ContactSheet != "" {
		fmt.Fprintf(w, "contact sheet: %s\n", s.ContactSheet)
	}
	if s.Warnings > 0 {
		fmt.Fprintf(w, "warnings: %d (each image's .json lists its own)\n", s.Warnings)
		for _, c := range s.WarningCounts {
			fmt.Fprintf(w, "  %d× %s\n", c.Count, c.Example)
		}
	}
	groups := []struct{ what, title string }{
		{augment.SkipNegative, "negatives skipped (could not be decoded)"},
		{augment.SkipImage, "images not produced"},
		{augment.SkipInvisible, "defects too faint to label, redrawn"},
		{augment.SkipLabelRule, "defects the label rule would call ok, redrawn"},
		{augment.SkipMask, "mask draws rejected and redrawn"},
	}
	for _, g := range groups {
		var reasons []string
		for _, k := range s.Skipped {
			if k.What == g.what {
				reasons = append(reasons, k.Reason)
			}
		}
		if len(reasons) == 0 {
			continue
		}
		fmt.Fprintf(w, "%s: %d\n", g.title, len(reasons))
		printGrouped(w, reasons, 6)
	}
	if s.Stopped != "" {
		fmt.Fprintf(w, "stopped early: %s\n", s.Stopped)
	}
}

var digitRun = regexp.MustCompile(`[0-9]+(\.[0-9]+)?`)

// printGrouped prints messages that differ only in their numbers once, with a count
// and the first example, most frequent first, at most limit groups.
func printGrouped(w io.Writer, msgs []string, limit int) {
	type group struct {
		example string
		n       int
	}
	idx := map[string]int{}
	var groups []group
	for _, m := range msgs {
		k := digitRun.ReplaceAllString(m, "N")
		if i, ok := idx[k]; ok {
			groups[i].n++
			continue
		}
		idx[k] = len(groups)
		groups = append(groups, group{m, 1})
	}
	sort.SliceStable(groups, func(i, j int) bool { return groups[i].n > groups[j].n })
	for i, g := range groups {
		if i == limit {
			fmt.Fprintf(w, "  … and %d other kinds of reason\n", len(groups)-limit)
			break
		}
		if g.n > 1 {
			fmt.Fprintf(w, "  %d× like: %s\n", g.n, g.example)
		} else {
			fmt.Fprintf(w, "  %s\n", g.example)
		}
	}
}

// progressBar draws a bar with ETA on a terminal, and plain lines (at most one per
// 5 s, plus each tenth of the batch) when stderr is a file or pipe.
type progressBar struct {
	w         io.Writer
	tty       bool
	last      time.Time
	lastTenth int
	lastDone  int
	drawn     bool
}

func newProgressBar(w io.Writer) *progressBar {
	b := &progressBar{w: w, lastTenth: -1, lastDone: -1}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			b.tty = true
		}
	}
	return b
}

func (b *progressBar) update(p augment.Progress) {
	now := time.Now()
	frac := p.Fraction()
	eta := "--:--"
	if p.Done > 0 || p.Step > 0 {
		eta = fmtDur(p.ETA)
	}
	if b.tty {
		if now.Sub(b.last) < 100*time.Millisecond && !p.Finished {
			return
		}
		b.last = now
		const width = 30
		fill := int(frac * width)
		step := ""
		if p.Steps > 1 && !p.Finished {
			step = fmt.Sprintf(" step %d/%d", p.Step, p.Steps)
		}
		fmt.Fprintf(b.w, "\r[%s%s] %d/%d %3.0f%% %s ETA %s skipped %d%s\033[K",
			strings.Repeat("#", fill), strings.Repeat(".", width-fill), p.Done, p.Total, 100*frac,
			fmtDur(p.Elapsed), eta, p.Skipped, step)
		b.drawn = true
		return
	}
	tenth := int(frac * 10)
	if p.Done == b.lastDone && !p.Finished {
		return
	}
	if !p.Finished && tenth == b.lastTenth && now.Sub(b.last) < 5*time.Second {
		return
	}
	b.last, b.lastTenth, b.lastDone = now, tenth, p.Done
	fmt.Fprintf(b.w, "augment: %d/%d images (%.0f%%), %d written, %d skipped, elapsed %s, ETA %s\n",
		p.Done, p.Total, 100*frac, p.Written, p.Skipped, fmtDur(p.Elapsed), eta)
}

func (b *progressBar) finish() {
	if b.tty && b.drawn {
		fmt.Fprintln(b.w)
	}
}

func fmtDur(d time.Duration) string {
	s := int(d.Round(time.Second).Seconds())
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%02d:%02d", s/60, s%60)
}
