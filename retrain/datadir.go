package retrain

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/retrain/dataset"
	"github.com/diagd/diagd/retrain/gate"
	"github.com/diagd/diagd/retrain/registry"
)

// ModeAuto trains full-shot when the real data holds defects, else zero-shot.
const ModeAuto dataset.Mode = "auto"

// ValidationDir is the optional labelled validation set inside diagd's data folder
// (any dataset.Load layout); when present it is used instead of a hold-out.
const ValidationDir = "validation"

// DataDirOptions is one retraining run from labelled folders: the one entry point that
// `diagd train` and the daemon's retrain job share.
type DataDirOptions struct {
	Log      *slog.Logger
	Registry string // registry folder (created when missing)
	Keep     int    // versions pruning keeps besides current and previous (default 5)
	// ImportIfEmpty is a model folder imported and made current when the registry has
	// no current model ("" imports nothing).
	ImportIfEmpty string
	// BaseModel is the model folder whose backbone is used; "" means the registry's
	// current model (and the imported one, if ImportIfEmpty was used).
	BaseModel string
	// Data is diagd's data folder (negatives/, defects/, synthetic/accepted/), a KSDD2
	// root (train/, test/), or anything dataset.Load reads.
	Data string
	// Synthetic is generator output to add ("" uses <data>/synthetic/accepted when Data
	// is a data folder); N keeps its first N images (0: all).
	Synthetic string
	N         int
	// Val is a labelled validation set; "" uses <data>/validation, else KSDD2's test/,
	// else a seeded hold-out of ValFraction of the real images (see Holdout).
	Val          string
	ValFraction  float64
	Seed         uint64
	Mode         dataset.Mode // zero-shot, full-shot or ModeAuto
	Rule         dataset.LabelRule
	Trainer      Trainer
	Gate         gate.Settings
	TargetRecall float64
	NoPromote    bool
	CacheDir     string // "" is <registry>/cache
	Session      ortenv.Options
	Batch        int
	Progress     func(Progress)
	// Plan, when set, sees the assembled data before training starts.
	Plan func(Plan)
	// Resume continues an interrupted run (see RunDirName) when its data options and
	// files are unchanged, and lets the trainer continue from its checkpoint; without it
	// an interrupted run is discarded.
	Resume bool
}

// Plan is the data a run will train and validate on.
type Plan struct {
	Imported   string // version imported into an empty registry ("" when none)
	Mode       dataset.Mode
	Train      dataset.Summary
	Val        dataset.Summary
	ValName    string
	Skipped    []dataset.Skip
	Relabelled []string // marked defects the label rule made ok (training and validation data)
	// Resumed says the data is an interrupted run's; StartOver says why an interrupted
	// run was not resumed ("" when there was none, or it was).
	Resumed   bool
	StartOver string
}

// RunDataDir locks the registry, imports a first model into an empty one, assembles the
// training and validation sets from folders and runs Run.
func RunDataDir(ctx context.Context, o DataDirOptions) (*Outcome, Plan, error) {
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	reg, err := registry.Open(log, o.Registry, registry.Options{Keep: o.Keep})
	if err != nil {
		return nil, Plan{}, err
	}
	release, err := reg.Lock()
	if err != nil {
		return nil, Plan{}, err
	}
	defer release()
	var plan Plan
	if plan.Imported, err = EnsureBase(reg, o.ImportIfEmpty); err != nil {
		return nil, plan, err
	}
	if plan.Imported != "" {
		log.Info("registry was empty: imported a model and made it current", "model", o.ImportIfEmpty, "version", plan.Imported)
		if o.BaseModel == o.ImportIfEmpty {
			o.BaseModel = "" // the imported version is the same model
		}
	}
	runDir := filepath.Join(reg.Dir, RunDirName)
	train, val, err := runData(log, runDir, o, &plan)
	if err != nil {
		return nil, plan, err
	}
	if len(plan.Relabelled) > 0 {
		log.Warn("the label rule made marked defects ok", "images", len(plan.Relabelled), "first", plan.Relabelled[0])
	}
	if o.Plan != nil {
		o.Plan(plan)
	}
	cache := o.CacheDir
	if cache == "" {
		cache = filepath.Join(reg.Dir, "cache")
	}
	out, err := Run(ctx, Config{Log: log, Registry: reg, BaseModel: o.BaseModel, Train: train, Val: val, ValName: plan.ValName,
		Trainer: o.Trainer, Gate: o.Gate, TargetRecall: o.TargetRecall, NoPromote: o.NoPromote, CacheDir: cache,
		Session: o.Session, Batch: o.Batch, Progress: o.Progress, RunDir: runDir, Resume: o.Resume})
	if err == nil || ctx.Err() == nil {
		// Decided, or failed in a way a resume would repeat: only an interruption (a crash,
		// a restart, a cancel) leaves the run to be continued.
		if rerr := os.RemoveAll(runDir); rerr != nil {
			log.Warn("the finished run's folder could not be removed", "dir", runDir, "err", rerr)
		}
	}
	return out, plan, err
}

// sources are the sets read from the folders before a protocol composes them.
type sources struct {
	real, syn, val *dataset.Set
	valName        string
}

// assemble reads the folders, composes the training set under the mode and picks the
// validation set, filling in plan.
func assemble(o DataDirOptions, plan *Plan) (train, val *dataset.Set, err error) {
	src, err := readSources(o)
	if err != nil {
		return nil, nil, err
	}
	plan.Mode = o.Mode
	if o.Mode == ModeAuto || o.Mode == "" {
		plan.Mode = dataset.ZeroShot
		if _, pos := src.real.Counts(); pos > 0 {
			plan.Mode = dataset.FullShot // real defects exist: train on them too
		}
	}
	if train, err = dataset.Compose(src.real, src.syn, plan.Mode, o.N); err != nil {
		return nil, nil, err
	}
	val, plan.ValName = src.val, src.valName
	if val == nil {
		frac := o.ValFraction
		if frac == 0 {
			frac = 0.2
		}
		if !(frac > 0 && frac < 1) {
			return nil, nil, fmt.Errorf("validation fraction %v must be within (0,1)", frac)
		}
		train, val, plan.ValName = HoldoutValidation(train, src.real, plan.Mode, frac, o.Seed, o.Data)
	}
	plan.Train, plan.Val = train.Summarize(), val.Summarize()
	plan.Skipped = append(append([]dataset.Skip(nil), train.Skipped...), val.Skipped...)
	for _, s := range []*dataset.Set{src.real, src.syn, src.val} {
		if s != nil {
			plan.Relabelled = append(plan.Relabelled, s.Relabelled...)
		}
	}
	return train, val, nil
}

// readSources reads the real, synthetic and (when one exists) validation sets.
func readSources(o DataDirOptions) (sources, error) {
	var s sources
	var err error
	opts := dataset.Options{Rule: o.Rule}
	switch {
	case isDir(filepath.Join(o.Data, dataset.NegativesDir)):
		if s.real, s.syn, err = dataset.DataDir(o.Data, opts); err != nil {
			return s, err
		}
		if vdir := filepath.Join(o.Data, ValidationDir); o.Val == "" && isDir(vdir) {
			o.Val = vdir
		}
	case isDir(filepath.Join(o.Data, "train")):
		// KSDD2: train on train/, validate on test/ as the paper does (spec §1.5).
		if s.real, err = dataset.KSDD2(o.Data, "train", opts); err != nil {
			return s, err
		}
		if o.Val == "" && isDir(filepath.Join(o.Data, "test")) {
			if s.val, err = dataset.KSDD2(o.Data, "test", opts); err != nil {
				return s, err
			}
			s.valName = filepath.Join(o.Data, "test")
		}
	default:
		if s.real, err = dataset.Load(o.Data, opts); err != nil {
			return s, err
		}
	}
	if o.Synthetic != "" {
		if s.syn, err = dataset.Generator(o.Synthetic, opts); err != nil {
			return s, err
		}
	}
	if o.Val != "" {
		if s.val, err = dataset.Load(o.Val, opts); err != nil {
			return s, fmt.Errorf("validation set: %w", err)
		}
		s.valName = o.Val
	}
	return s, nil
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}
