package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/retrain"
	"github.com/diagd/diagd/retrain/dataset"
	"github.com/diagd/diagd/retrain/head"
	"github.com/diagd/diagd/retrain/registry"
)

func init() {
	register("train", command{summary: "retrain the detector's head on real + synthetic images and promote it if it is not worse", run: runTrain})
}

// Exit codes of diagd train: 0 promoted, 3 trained but not promoted (rejected or
// --no-promote), 1 error, 2 usage.
const exitNotPromoted = 3

func runTrain(ctx context.Context, env *cliEnv, args []string) int {
	fs := flag.NewFlagSet("train", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	regDir := fs.String("registry", "", "model registry folder (required)")
	base := fs.String("base-model", "", "model folder whose backbone is used (default: the registry's current model; imported as v1 into an empty registry)")
	data := fs.String("data", "", "real images: diagd's data folder (negatives/, defects/, synthetic/accepted/), ok/+defect/ folders, KSDD2 root, or a manifest .csv (required)")
	synth := fs.String("synthetic", "", "generator output folder (default: <data>/synthetic/accepted when present)")
	n := fs.Int("n", 0, "synthetic images to use, first N by name (0 = all)")
	val := fs.String("val", "", "labelled validation set (any --data layout); default: KSDD2's test/ split, else hold out --val-fraction of the real images plus, in zero-shot, every real defect")
	valFrac := fs.Float64("val-fraction", 0.2, "share of real images held out for validation when --val is not given")
	modeName := fs.String("mode", string(dataset.ZeroShot), "zero-shot (real negatives + synthetic) or full-shot (all real + synthetic)")
	rule := fs.String("label-rule", "any-pixel", "mask labelling: any-pixel, or paper (DIAG's resize-and-truncate rule, spec §1.5)")
	epochs := fs.Int("epochs", 30, "training epochs")
	lr := fs.Float64("lr", 1e-4, "Adam learning rate")
	batch := fs.Int("batch", 32, "training batch size")
	seed := fs.Uint64("seed", 0, "seed for initialisation, shuffling and the hold-out split")
	imb := fs.String("imbalance", string(head.PosWeight), "class imbalance: pos-weight (BCE pos_weight = negatives/positives) or none")
	tol := fs.Float64("tolerance", 0, "promote when candidate AP >= serving AP - tolerance")
	recall := fs.Float64("target-recall", 0, "choose the threshold reaching this recall on validation (default: max-F1)")
	keep := fs.Int("keep", 5, "versions kept besides current and previous")
	noPromote := fs.Bool("no-promote", false, "add the candidate to the registry but do not promote it")
	cache := fs.String("cache", "", "feature cache folder (default: <registry>/cache)")
	provider := fs.String("provider", "auto", "execution provider: auto, tensorrt, cuda or cpu")
	threads := fs.Int("threads", 0, "CPU intra-op threads (0 = ORT's choice)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(env.stderr, "diagd train: %v\n", err)
		return 1
	}
	if *regDir == "" || *data == "" {
		fmt.Fprintln(env.stderr, "diagd train: --registry and --data are required")
		return 2
	}
	mode, err := dataset.ParseMode(*modeName)
	if err != nil {
		return fail(err)
	}
	lrule, err := dataset.ParseLabelRule(*rule)
	if err != nil {
		return fail(err)
	}
	imbalance, err := head.ParseImbalance(*imb)
	if err != nil {
		return fail(err)
	}
	prov, err := ortenv.ParseProvider(*provider)
	if err != nil {
		return fail(err)
	}
	if !(*valFrac > 0 && *valFrac < 1) && *val == "" {
		return fail(fmt.Errorf("--val-fraction %v must be within (0,1)", *valFrac))
	}
	if *recall < 0 || *recall > 1 {
		return fail(fmt.Errorf("--target-recall %v must be within (0,1]", *recall))
	}
	if *cache == "" {
		*cache = filepath.Join(*regDir, "cache")
	}
	opts := dataset.Options{Rule: lrule}

	reg, err := registry.Open(env.log, *regDir, registry.Options{Keep: *keep})
	if err != nil {
		return fail(err)
	}
	release, err := reg.Lock()
	if err != nil {
		return fail(err)
	}
	defer release()
	if v, err := retrain.EnsureBase(reg, *base); err != nil {
		return fail(err)
	} else if v != "" {
		fmt.Fprintf(env.stdout, "registry was empty: imported %s as %s and made it current\n", *base, v)
		*base = ""
	}

	// Data.
	var real, syn, ksddTest *dataset.Set
	isDir := func(p string) bool { st, err := os.Stat(p); return err == nil && st.IsDir() }
	switch {
	case isDir(filepath.Join(*data, dataset.NegativesDir)):
		if real, syn, err = dataset.DataDir(*data, opts); err != nil {
			return fail(err)
		}
	case isDir(filepath.Join(*data, "train")):
		// KSDD2: train on train/, validate on test/ as the paper does (spec §1.5).
		if real, err = dataset.KSDD2(*data, "train", opts); err != nil {
			return fail(err)
		}
		if isDir(filepath.Join(*data, "test")) {
			if ksddTest, err = dataset.KSDD2(*data, "test", opts); err != nil {
				return fail(err)
			}
		}
	default:
		if real, err = dataset.Load(*data, opts); err != nil {
			return fail(err)
		}
	}
	if *synth != "" {
		if syn, err = dataset.Generator(*synth, opts); err != nil {
			return fail(err)
		}
	}
	train, err := dataset.Compose(real, syn, mode, *n)
	if err != nil {
		return fail(err)
	}
	var valSet *dataset.Set
	valName := *val
	switch {
	case *val != "":
		if valSet, err = dataset.Load(*val, opts); err != nil {
			return fail(err)
		}
	case ksddTest != nil:
		valSet, valName = ksddTest, filepath.Join(*data, "test")
	default:
		train, valSet, valName = retrain.HoldoutValidation(train, real, mode, *valFrac, *seed, *data)
	}
	fmt.Fprintf(env.stdout, "training set (%s):\n%s\nvalidation set (%s):\n%s\n", mode, train.Summarize(), valName, valSet.Summarize())
	for _, s := range append(train.Skipped, valSet.Skipped...) {
		env.log.Warn("file skipped", "path", s.Path, "reason", s.Reason)
	}

	bar := newTrainBar(env.stderr)
	out, err := retrain.Run(ctx, retrain.Config{
		Log: env.log, Registry: reg, BaseModel: *base, Train: train, Val: valSet, ValName: valName,
		Trainer:   retrain.HeadTrainer{Config: head.Config{Epochs: *epochs, LR: *lr, Batch: *batch, Seed: *seed, Imbalance: imbalance}},
		Tolerance: *tol, TargetRecall: *recall, NoPromote: *noPromote, CacheDir: *cache,
		Session:  ortenv.Options{Provider: prov, Threads: *threads},
		Progress: bar.update,
	})
	bar.finish()
	if err != nil {
		return fail(err)
	}
	printOutcome(env.stdout, out)
	if !out.Promoted {
		return exitNotPromoted
	}
	return 0
}

func printOutcome(w io.Writer, o *retrain.Outcome) {
	c := o.Candidate
	fmt.Fprintf(w, "candidate %s: AP %.4f  AUROC %.4f  F1max %.4f  P %.4f  R %.4f  (%d images, %d defects)\n",
		o.Version, c.AP, c.AUROC, c.F1Max, c.Precision, c.Recall, c.N, c.Positives)
	if s := o.Serving; s != nil {
		fmt.Fprintf(w, "serving   %s: AP %.4f  AUROC %.4f  F1max %.4f  P %.4f  R %.4f  (same validation images)\n",
			o.Decision.Serving, s.AP, s.AUROC, s.F1Max, s.Precision, s.Recall)
	}
	if len(o.Skipped) > 0 {
		fmt.Fprintf(w, "%d unreadable images skipped (see log)\n", len(o.Skipped))
	}
	fmt.Fprintf(w, "decision: %s %s: %s\nthreshold %.6g (%s)\n", o.Decision.Action, o.Version, o.Decision.Reason,
		o.Decision.Threshold, o.Decision.ThresholdRule)
}

// trainBar draws retraining progress: one rewritten line per stage on a terminal,
// otherwise a line per stage change and per tenth of a stage.
type trainBar struct {
	w         io.Writer
	tty       bool
	stage     string
	lastTenth int
	last      time.Time
	start     time.Time
	drawn     bool
}

func newTrainBar(w io.Writer) *trainBar {
	b := &trainBar{w: w, start: time.Now()}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			b.tty = true
		}
	}
	return b
}

func (b *trainBar) update(p retrain.Progress) {
	if p.Stage != b.stage {
		if b.tty && b.drawn {
			fmt.Fprintln(b.w)
		}
		b.stage, b.lastTenth, b.start, b.drawn = p.Stage, -1, time.Now(), false
	}
	frac := 0.0
	if p.Total > 0 {
		frac = float64(p.Done) / float64(p.Total)
	}
	detail := p.Message
	if p.Stage == "train" {
		detail = fmt.Sprintf("epoch %d/%d loss %.4f", p.Done, p.Total, p.Loss)
	} else if p.Total > 0 {
		rate := float64(p.Done) / max(time.Since(b.start).Seconds(), 1e-3)
		detail = fmt.Sprintf("%d/%d (%.1f/s) %s", p.Done, p.Total, rate, p.Message)
	}
	if b.tty {
		if time.Since(b.last) < 100*time.Millisecond && p.Done < p.Total {
			return
		}
		b.last = time.Now()
		const width = 24
		fill := int(frac * width)
		fmt.Fprintf(b.w, "\r%-9s [%s%s] %s\033[K", p.Stage, strings.Repeat("#", fill), strings.Repeat(".", width-fill), detail)
		b.drawn = true
		return
	}
	tenth := int(frac * 10)
	if p.Total > 0 && tenth == b.lastTenth {
		return
	}
	b.lastTenth = tenth
	fmt.Fprintf(b.w, "train: %s %s\n", p.Stage, detail)
}

func (b *trainBar) finish() {
	if b.tty && b.drawn {
		fmt.Fprintln(b.w)
	}
}
