package retrain

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/retrain/dataset"
	"github.com/diagd/diagd/retrain/features"
	"github.com/diagd/diagd/retrain/gate"
	"github.com/diagd/diagd/retrain/head"
	"github.com/diagd/diagd/retrain/metrics"
	"github.com/diagd/diagd/retrain/registry"
)

// Files Run writes into a version folder besides model.onnx, model.json and the
// registry's metrics.json and manifest.json.
const (
	PRCurveFile = "pr_curve.png"          // the candidate's PR curve on validation data
	ScoresFile  = "validation_scores.csv" // its logit for each validation image
)

// Config is one retraining run.
type Config struct {
	Log      *slog.Logger
	Registry *registry.Registry
	// BaseModel is the model folder whose backbone is used; "" means the registry's
	// current model.
	BaseModel string
	Train     *dataset.Set // the composed training set
	Val       *dataset.Set // labelled validation data; see Holdout
	ValName   string       // how the validation set is described in model.json
	Trainer   Trainer      // nil: HeadTrainer with the default recipe
	// Gate decides promotion (see package gate); zero values take its defaults.
	Gate gate.Settings
	// TargetRecall > 0 picks the threshold reaching that recall on validation data
	// instead of the max-F1 point.
	TargetRecall float64
	// NoPromote leaves a passing candidate in the registry without promoting it.
	NoPromote bool
	CacheDir  string
	Session   ortenv.Options
	Batch     int
	Progress  func(Progress)
	// RunDir and Resume are passed to the trainer (TrainSet): where it keeps state that
	// outlives a crash, and whether it may continue from it.
	RunDir string
	Resume bool
}

// Outcome is what a run did.
type Outcome struct {
	Version   string // "" when the candidate was not stored (non-finite scores)
	Dir       string
	Promoted  bool
	Decision  registry.Decision
	Gate      gate.Result
	Candidate metrics.Report
	Serving   *metrics.Report
	Skipped   []dataset.Skip // images that could not be read
	// FeaturesCached is how many images' features came from the cache.
	FeaturesCached int
	// NotConverged says why the trainer's optimiser stopped short ("" if it converged).
	NotConverged string
}

// part is one side of the data after feature extraction: the images whose features
// could be computed, with their features and file digests.
type part struct {
	items []dataset.Item
	feat  [][]float32
	dig   []string
}

func (p part) labels() []bool {
	y := make([]bool, len(p.items))
	for i, it := range p.items {
		y[i] = it.Label
	}
	return y
}

// run is the state of one retraining run; each stage is a method that fills in its part.
type run struct {
	c          Config
	log        *slog.Logger
	reg        *registry.Registry
	serving    registry.Version
	hasServing bool
	base       string
	baseMeta   detect.Metadata
	backbone   string // head.ReadHead's backbone digest of the base ("" if unknown)
	baseDigest string // sha256 of the base's model.onnx
	tr, va     part
	out        *Outcome

	cand       *Candidate
	version    string
	staging    string
	meta       detect.Metadata
	candLogits []float64
	thr        float64
	rule       string
	servLogits []float64
	servProb   string
	refused    error // the written candidate was refused at load for non-finite output
	overlap    int
}

// Run trains a candidate, evaluates it and the serving model on the same validation
// data, writes it into the registry and promotes it when the gate allows. The caller
// holds the registry's Lock for the whole run.
func Run(ctx context.Context, c Config) (*Outcome, error) {
	r, err := newRun(c)
	if err != nil {
		return nil, err
	}
	if err := r.choose(ctx); err != nil {
		return nil, err
	}
	if err := r.extract(ctx); err != nil {
		return nil, err
	}
	if err := r.train(ctx); err != nil {
		return nil, err
	}
	defer r.discardStaging()
	for _, stage := range []func(context.Context) error{r.stage, r.scoreCandidate, r.scoreServing} {
		if err := stage(ctx); err != nil {
			return nil, err
		}
	}
	if r.out.Gate = r.decide(); slices.Contains(r.out.Gate.Flags, gate.FlagNonFinite) {
		return r.out, r.finish(false) // a model that cannot serve is not stored
	}
	if err := r.writeRecords(); err != nil {
		return nil, err
	}
	if err := r.commit(); err != nil {
		return nil, err
	}
	return r.out, r.finish(true)
}

// newRun resolves the serving and base models and checks the data sets.
func newRun(c Config) (*run, error) {
	r := &run{c: c, log: c.Log, reg: c.Registry, out: &Outcome{}}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.c.Trainer == nil {
		r.c.Trainer = HeadTrainer{}
	}
	r.c.Gate = c.Gate.WithDefaults()
	if err := r.c.Gate.Validate(); err != nil {
		return nil, fmt.Errorf("promotion gate: %w", err)
	}
	var err error
	r.serving, err = r.reg.Current()
	r.hasServing = err == nil
	if err != nil && !errors.Is(err, registry.ErrNoCurrent) {
		return nil, err
	}
	r.base = c.BaseModel
	if r.base == "" {
		if !r.hasServing {
			return nil, fmt.Errorf("no base model: the registry %s has no current model; pass a base model folder", r.reg.Dir)
		}
		r.base = r.serving.Dir
	}
	if err := c.Train.RequireBothClasses("training set"); err != nil {
		return nil, err
	}
	if c.Val == nil {
		return nil, errors.New("no validation set")
	}
	if err := c.Val.RequireBothClasses("validation set"); err != nil {
		return nil, err
	}
	r.emit(Progress{Stage: "dataset", Done: len(c.Train.Items), Total: len(c.Train.Items),
		Message: fmt.Sprintf("train %d images, validation %d images", len(c.Train.Items), len(c.Val.Items))})
	return r, nil
}

func (r *run) emit(p Progress) {
	if r.c.Progress != nil {
		r.c.Progress(p)
	}
}

// extract computes the base backbone's features of every training and validation
// image (through the cache) and drops the images that cannot be read. An ImageTrainer
// needs no features: the images are only digested and checked (scan).
func (r *run) extract(ctx context.Context) error {
	if _, ok := r.c.Trainer.(ImageTrainer); ok {
		return r.scan(ctx)
	}
	bmeta, err := detect.ReadMetadata(r.base)
	if err != nil {
		return err
	}
	if _, r.backbone, err = head.ReadHead(filepath.Join(r.base, detect.ModelFile), bmeta.Outputs.Logit, bmeta.Outputs.Features); err != nil {
		r.log.Info("feature cache keyed by the whole model file", "reason", err.Error())
		r.backbone = ""
	}
	ex, err := features.Open(r.log, r.base, features.Options{Session: r.c.Session, Batch: r.c.Batch, CacheDir: r.c.CacheDir, CacheKey: r.backbone})
	if err != nil {
		return err
	}
	defer ex.Close()
	if p, ok := r.c.Trainer.(Preflighter); ok {
		if err := p.Preflight(r.base, ex.Meta); err != nil {
			return fmt.Errorf("the %s trainer cannot train from %s: %w", r.c.Trainer.Name(), r.base, err)
		}
	}
	all := append(append([]dataset.Item(nil), r.c.Train.Items...), r.c.Val.Items...)
	res, err := ex.Extract(ctx, all, func(done, total int) {
		r.emit(Progress{Stage: "features", Done: done, Total: total})
	})
	if err != nil {
		return err
	}
	r.log.Info("features extracted", "images", len(all), "cached", res.Cached, "failed", res.Failed, "model", r.base)
	r.baseMeta, r.baseDigest, r.out.FeaturesCached = ex.Meta, ex.ModelDigest, res.Cached
	var sk1, sk2 []dataset.Skip
	r.tr, sk1 = keepReadable(r.c.Train.Items, res.Errs, res.Digests, res.Features, 0)
	r.va, sk2 = keepReadable(r.c.Val.Items, res.Errs, res.Digests, res.Features, len(r.c.Train.Items))
	return r.afterSkips(append(sk1, sk2...))
}

func (r *run) train(ctx context.Context) error {
	ds := TrainSet{Items: r.tr.items, Features: r.tr.feat, Digests: r.tr.dig, BaseDir: r.base, BaseMeta: r.baseMeta,
		RunDir: r.c.RunDir, Resume: r.c.Resume}
	cand, err := r.c.Trainer.Train(ctx, ds, r.c.Progress)
	if err != nil {
		return fmt.Errorf("training: %w", err)
	}
	r.cand, r.out.NotConverged = cand, cand.NotConverged
	if cand.NotConverged != "" {
		r.log.Warn("training did not converge; the validation scores decide", "why", cand.NotConverged)
	}
	return nil
}

// stage writes the candidate model and a provisional model.json into a staging folder.
func (r *run) stage(context.Context) error {
	var err error
	if r.version, err = r.reg.NextVersion(); err != nil {
		return err
	}
	if r.staging, err = r.reg.Stage(r.version); err != nil {
		return err
	}
	r.emit(Progress{Stage: "write", Message: "writing " + r.version})
	if err := r.cand.WriteModel(filepath.Join(r.staging, detect.ModelFile)); err != nil {
		return fmt.Errorf("writing the candidate model: %w", err)
	}
	// A provisional model.json so the written model can be loaded and checked.
	r.meta = r.baseMeta
	r.meta.ModelVersion = r.version
	r.meta.CreatedAt = time.Now().UTC().Truncate(time.Second)
	return detect.WriteMetadata(r.staging, r.meta)
}

// discardStaging removes the staging folder of a run that did not commit.
func (r *run) discardStaging() {
	if r.staging != "" {
		os.RemoveAll(r.staging)
	}
}
