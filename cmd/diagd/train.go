package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/retrain"
	"github.com/diagd/diagd/retrain/arch"
	"github.com/diagd/diagd/retrain/dataset"
	"github.com/diagd/diagd/retrain/fullnet"
	"github.com/diagd/diagd/retrain/gate"
	"github.com/diagd/diagd/retrain/head"
)

func init() {
	register("train", command{summary: "retrain the detector (its head, last stage or every layer) on real + synthetic images and promote it only when it is shown not to be worse", run: runTrain})
}

// Exit codes of diagd train: 0 promoted, 3 trained but not promoted (rejected, no
// decision, or --no-promote), 1 error, 2 usage.
const exitNotPromoted = 3

// trainFlags are diagd train's flags.
type trainFlags struct {
	o                     retrain.DataDirOptions
	base                  string
	mode, rule, imbalance string
	solver                string
	hc                    head.Config
	provider              string
	threads               int
	trainable, batchNorm  string
	arch                  string
	archName              arch.Name
	fc                    fullnet.Config // the recipe as given for last/all and segdec (zeros: defaults)
	budget                time.Duration
	micro                 int
}

func newTrainFlags(env *cliEnv) (*flag.FlagSet, *trainFlags) {
	f := &trainFlags{}
	fs := flag.NewFlagSet("train", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	o := &f.o
	fs.StringVar(&o.Registry, "registry", "", "model registry folder (required)")
	fs.StringVar(&f.base, "base-model", "", "model folder whose backbone is used (default: the registry's current model; imported as v1 into an empty registry)")
	fs.StringVar(&o.Data, "data", "", "real images: diagd's data folder (negatives/, defects/, synthetic/accepted/), ok/+defect/ folders, KSDD2 root, or a manifest .csv (required)")
	fs.StringVar(&o.Synthetic, "synthetic", "", "generator output folder (default: <data>/synthetic/accepted when present)")
	fs.IntVar(&o.N, "n", 0, "synthetic images to use, first N by name (0 = all)")
	fs.StringVar(&o.Val, "val", "", "labelled validation set (any --data layout); default: <data>/validation, KSDD2's test/, else hold out --val-fraction of the real images plus, in zero-shot, every real defect")
	fs.Float64Var(&o.ValFraction, "val-fraction", 0.2, "share of real images held out for validation when no validation set is given")
	fs.StringVar(&f.mode, "mode", string(dataset.ZeroShot), "zero-shot (real negatives + synthetic), full-shot (all real + synthetic) or auto (full-shot when real defects exist)")
	fs.StringVar(&f.rule, "label-rule", "any", "mask labelling: any (any marked pixel; also any-pixel), or paper (DIAG's resize-and-truncate rule, spec §1.5)")
	fs.StringVar(&f.arch, "arch", "auto", "network: resnet50 (the paper's classifier, from the base model's weights), segdec (segmentation + decision network trained from random weights, every layer, masks supervising its segmentation output) or auto (what the registry serves; resnet50 when nothing does)")
	fs.StringVar(&f.trainable, "trainable", "auto", "what trains: head (last layer on frozen features), last (last stage + head), all (every layer), or auto (all on a GPU; on the CPU the most complete setting whose estimate fits --budget, head without one)")
	fs.DurationVar(&f.budget, "budget", 0, "time budget for training, e.g. 2h: every setting is timed on the data before the run and the estimates printed (0 = none)")
	fs.BoolVar(&o.Resume, "resume", false, "continue an interrupted run from its checkpoint (<registry>/training) when its data and recipe are unchanged")
	fs.StringVar(&f.solver, "solver", string(head.LogReg), "head solver: logreg (standardised L2 logistic regression, λ by cross-validation; nothing to tune) or adam (the paper's recipe)")
	fs.IntVar(&f.hc.Epochs, "epochs", 0, "adam solver and last/all: training epochs (default 30)")
	fs.Float64Var(&f.hc.LR, "lr", 0, "adam solver and last/all: learning rate (default 1e-4)")
	fs.IntVar(&f.hc.Batch, "batch", 0, "adam solver and last/all: batch size (default 32)")
	fs.IntVar(&f.micro, "micro-batch", 0, "last/all: images per graph run; a batch's micro-batches add their gradients (default 8: batch 32 fits a small box)")
	fs.StringVar(&f.batchNorm, "batch-norm", "", "last/all and segdec: paper (train mode in epoch 1, frozen after; resnet50's default), train (segdec's default) or frozen")
	fs.Uint64Var(&o.Seed, "seed", 0, "seed for the hold-out split, the cross-validation folds, adam's initialisation and the image order")
	fs.StringVar(&f.imbalance, "imbalance", string(head.PosWeight), "class imbalance: pos-weight (positives weighted negatives/positives) or none")
	fs.Float64Var(&o.Gate.Tolerance, "tolerance", 0, "AP the candidate may lose: promote when the lower confidence bound of AP(candidate) − AP(serving) is >= −tolerance")
	fs.Float64Var(&o.Gate.Confidence, "confidence", gate.DefaultConfidence, "confidence of the promotion test and of the chance band")
	fs.IntVar(&o.Gate.MinDefects, "min-defects", gate.DefaultMinDefects, "fewest validation defects to decide on; with fewer, nothing is promoted")
	fs.Float64Var(&o.Gate.MaxGoodFail, "max-good-fail", gate.DefaultMaxGoodFail, "largest share of validation good parts the candidate's threshold may fail")
	fs.Float64Var(&o.TargetRecall, "target-recall", 0, "choose the threshold reaching this recall on validation (default: max-F1)")
	fs.IntVar(&o.Keep, "keep", 5, "versions kept besides current and previous")
	fs.BoolVar(&o.NoPromote, "no-promote", false, "add the candidate to the registry but do not promote it")
	fs.StringVar(&o.CacheDir, "cache", "", "feature cache folder (default: <registry>/cache)")
	fs.StringVar(&f.provider, "provider", "auto", "execution provider: auto, tensorrt, cuda or cpu")
	fs.IntVar(&f.threads, "threads", 0, "CPU intra-op threads (0 = ORT's choice)")
	return fs, f
}

// options checks the flags and turns them into the run's options.
func (f *trainFlags) options() error {
	var err error
	o := &f.o
	if o.Mode, err = parseTrainMode(f.mode); err != nil {
		return err
	}
	if o.Rule, err = dataset.ParseLabelRule(f.rule); err != nil {
		return err
	}
	if f.hc.Imbalance, err = head.ParseImbalance(f.imbalance); err != nil {
		return err
	}
	if f.hc.Solver, err = head.ParseSolver(f.solver); err != nil {
		return err
	}
	f.hc.Seed = o.Seed
	prov, err := ortenv.ParseProvider(f.provider)
	if err != nil {
		return err
	}
	o.Session = ortenv.Options{Provider: prov, Threads: f.threads}
	if f.archName, err = arch.Parse(f.arch); err != nil {
		return fmt.Errorf("--arch: %w", err)
	}
	o.ImportIfEmpty, o.BaseModel = f.base, f.base
	// auto is resolved now: segdec's recipe takes --epochs, --lr and --batch
	f.archName = arch.Resolve(f.archName, o)
	if f.archName == arch.SegDec && f.trainable != "auto" && f.trainable != string(fullnet.All) {
		return fmt.Errorf("a segdec network trains every layer from random weights; --trainable %s does not apply (or give --arch resnet50)", f.trainable)
	}
	if err := f.trainerOptions(); err != nil {
		return err
	}
	if !(o.ValFraction > 0 && o.ValFraction < 1) && o.Val == "" {
		return fmt.Errorf("--val-fraction %v must be within (0,1)", o.ValFraction)
	}
	if o.TargetRecall < 0 || o.TargetRecall > 1 {
		return fmt.Errorf("--target-recall %v must be within (0,1]", o.TargetRecall)
	}
	// Every gate setting comes from a flag with its default, so a 0 was typed: check the
	// values as given (WithDefaults would take 0 for "unset").
	g := o.Gate
	g.Replicates, g.Permutations = gate.DefaultResamples, gate.DefaultResamples
	if err := g.Validate(); err != nil {
		return err
	}
	return nil
}

// trainerOptions checks the trainer's flags and builds the chooser: --epochs, --lr and
// --batch set the recipe of last and all, and of the head's adam solver; with the
// logreg solver they are refused when only the head can train (they would be ignored).
func (f *trainFlags) trainerOptions() error {
	var setting fullnet.Setting
	if f.trainable != "auto" {
		var err error
		if setting, err = fullnet.ParseSetting(f.trainable); err != nil {
			return fmt.Errorf("--trainable: %w", err)
		}
	}
	if f.budget < 0 {
		return fmt.Errorf("--budget %v must not be negative", f.budget)
	}
	fc := fullnet.Config{Trainable: fullnet.All, Epochs: f.hc.Epochs, LR: f.hc.LR, Batch: f.hc.Batch, MicroBatch: f.micro,
		Seed: f.o.Seed, Imbalance: f.hc.Imbalance, BatchNorm: fullnet.BNRegime(f.batchNorm)}
	if err := fc.WithDefaults().Validate(); err != nil {
		return err
	}
	fc.Trainable = ""
	f.fc = fc
	hc := f.hc
	fullRecipe := setting == fullnet.Last || setting == fullnet.All || (setting == "" && f.budget > 0) || f.archName == arch.SegDec
	if hc.Solver == head.LogReg && fullRecipe {
		hc.Epochs, hc.LR, hc.Batch = 0, 0, 0 // they are last's and all's; logreg needs none
	}
	if err := hc.Validate(); err != nil {
		return fmt.Errorf("--solver %s: %w (or to --trainable last or all, or auto with --budget)", hc.Solver, err)
	}
	f.o.Trainer = fullnet.Auto{Trainable: setting, Budget: f.budget, Config: fc, Head: retrain.HeadTrainer{Config: hc},
		Session: f.o.Session}
	return nil
}

// printChoice says what will train and why, with every setting's estimate when a budget
// made them be measured.
func printChoice(w io.Writer, c fullnet.Choice) {
	fmt.Fprintf(w, "trainable: %s (%s)\n", c.Setting, c.Why)
	for _, e := range c.Estimates {
		note := ""
		if e.Total > c.Budget {
			note = "  over budget"
		}
		fmt.Fprintf(w, "  %-5s estimate %-10v %s%s\n", e.Setting, fullnet.Approx(e.Total), e.Basis, note)
	}
}

func parseTrainMode(s string) (dataset.Mode, error) {
	if dataset.Mode(s) == retrain.ModeAuto {
		return retrain.ModeAuto, nil
	}
	return dataset.ParseMode(s)
}

func runTrain(ctx context.Context, env *cliEnv, args []string) int {
	fs, f := newTrainFlags(env)
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	fail := func(err error) int {
		fmt.Fprintf(env.stderr, "diagd train: %v\n", err)
		return exitFailure
	}
	if f.o.Registry == "" || f.o.Data == "" {
		fmt.Fprintln(env.stderr, "diagd train: --registry and --data are required")
		return exitUsage
	}
	if err := f.options(); err != nil {
		return fail(err)
	}
	var err error
	if f.o.Session, err = sessionOptions("train", f.o.Session.Provider, f.threads); err != nil {
		fmt.Fprintln(env.stderr, err)
		return exitConfig
	}
	f.o.Log = env.log
	f.o.Plan = func(p retrain.Plan) { printPlan(env, p, f.rule) }
	a := f.o.Trainer.(fullnet.Auto)
	a.Log, a.Report, a.Session = env.log, func(c fullnet.Choice) { printChoice(env.stdout, c) }, f.o.Session
	chosen, err := arch.Prepare(&f.o, arch.Setup{Arch: f.archName, Config: f.fc, GPU: a.OnGPU, ResNet: a,
		Trainer: fullnet.Trainer{Log: env.log, Session: f.o.Session}})
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(env.stdout, "architecture: %s\n", chosen)
	if chosen == arch.SegDec && f.base != "" {
		fmt.Fprintf(env.stdout, "segdec trains from random weights: --base-model %s is only imported into an empty registry, to compare with\n", f.base)
	}
	bar := newTrainBar(env.stderr)
	f.o.Progress = bar.update
	out, _, err := retrain.RunDataDir(ctx, f.o)
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

func printPlan(env *cliEnv, p retrain.Plan, rule string) {
	if p.Imported != "" {
		fmt.Fprintf(env.stdout, "registry was empty: imported the base model as %s and made it current\n", p.Imported)
	}
	if p.Resumed {
		fmt.Fprintln(env.stdout, "resuming the interrupted run on its data")
	} else if p.StartOver != "" {
		fmt.Fprintf(env.stdout, "an interrupted run was found; starting over: %s\n", p.StartOver)
	}
	fmt.Fprintf(env.stdout, "training set (%s):\n%s\nvalidation set (%s):\n%s\n", p.Mode, p.Train, p.ValName, p.Val)
	for _, s := range p.Skipped {
		env.log.Warn("file skipped", "path", s.Path, "reason", s.Reason)
	}
	if n := len(p.Relabelled); n > 0 {
		fmt.Fprintf(env.stderr, "diagd train: warning: the %s label rule labelled %d images ok although their masks mark a defect (first: %s); use --label-rule any to keep them as defects\n",
			rule, n, p.Relabelled[0])
	}
}

func printOutcome(w io.Writer, o *retrain.Outcome) {
	c, d, g := o.Candidate, o.Decision, o.Gate
	name := o.Version
	if name == "" {
		name = "(not stored)"
	}
	if g.NonFinite == 0 {
		fmt.Fprintf(w, "candidate %s: AP %.4f  AUROC %.4f  F1max %.4f  P %.4f  R %.4f  (%d images, %d defects)\n",
			name, c.AP, c.AUROC, c.F1Max, c.Precision, c.Recall, c.N, c.Positives)
	}
	if s := o.Serving; s != nil {
		fmt.Fprintf(w, "serving   %s: AP %.4f  AUROC %.4f  F1max %.4f  P %.4f  R %.4f  (same validation images)\n",
			d.Serving, s.AP, s.AUROC, s.F1Max, s.Precision, s.Recall)
	}
	if b := g.Chance; b != nil {
		fmt.Fprintf(w, "chance    AP of random rankings: mean %.4f, %.0f%% upper %.4f (%d defects in %d images)\n", b.Mean, 100*b.Confidence, b.Upper, b.Positives, b.N)
	}
	if x := g.Diff; x != nil {
		fmt.Fprintf(w, "compare   AP difference %+.4f, interval [%+.4f, %+.4f] (%s, %d replicates; lower end is the %.0f%% bound)\n",
			x.Diff, x.Lower, x.Upper, x.Method, x.Replicates, 100*x.Confidence)
	}
	if g.NonFinite == 0 {
		fmt.Fprintf(w, "threshold %.6g (%s) fails %.1f%% of validation good parts\n", d.Threshold, d.ThresholdRule, 100*g.GoodFail)
	}
	if len(o.Skipped) > 0 {
		fmt.Fprintf(w, "%d unreadable images skipped (see log)\n", len(o.Skipped))
	}
	if o.NotConverged != "" {
		fmt.Fprintf(w, "warning: training did not converge: %s\n", o.NotConverged)
	}
	for _, f := range d.Flags {
		fmt.Fprintf(w, "FLAG      %s\n", f)
	}
	fmt.Fprintf(w, "decision: %s %s: %s\n", d.Action, name, d.Reason)
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
	if p.Stage == "train" && p.Epochs > 0 {
		detail = fmt.Sprintf("%s loss %.4f ETA %s", p.Message, p.Loss, time.Duration(p.ETA*float64(time.Second)).Round(time.Second))
	} else if p.Stage == "train" && p.Total > 0 {
		detail = fmt.Sprintf("step %d/%d loss %.4f", p.Done, p.Total, p.Loss)
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
