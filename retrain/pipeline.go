package retrain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/atomicfile"
	"github.com/diagd/diagd/internal/imageio"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/retrain/dataset"
	"github.com/diagd/diagd/retrain/features"
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
	Trainer   Trainer
	// Tolerance is how far the candidate's AP may fall below the serving model's.
	Tolerance float64
	// TargetRecall > 0 picks the threshold reaching that recall on validation data
	// instead of the max-F1 point.
	TargetRecall float64
	// NoPromote leaves a passing candidate in the registry without promoting it.
	NoPromote bool
	CacheDir  string
	Session   ortenv.Options
	Batch     int
	Progress  func(Progress)
}

// Outcome is what a run did.
type Outcome struct {
	Version   string
	Dir       string
	Promoted  bool
	Decision  registry.Decision
	Candidate metrics.Report
	Serving   *metrics.Report
	Skipped   []dataset.Skip // images that could not be read
	// FeaturesCached is how many images' features came from the cache.
	FeaturesCached int
}

// Holdout splits validation data off a training set when no validation set is given:
// a stratified share frac of the real images of each class (seeded), plus every real
// defect the protocol kept out of training (zero-shot), so validation has real defects
// whenever any exist. Only when it would still hold no defect is the same share of the
// synthetic defects held out too.
func Holdout(train *dataset.Set, excluded []dataset.Item, frac float64, seed uint64) (tr, val *dataset.Set) {
	rng := rand.New(rand.NewPCG(seed, 0x7a1))
	tr, val = &dataset.Set{Skipped: train.Skipped}, &dataset.Set{}
	val.Items = append(val.Items, excluded...)
	held := make([]bool, len(train.Items))
	take := func(pred func(dataset.Item) bool) {
		var idx []int
		for i, it := range train.Items {
			if pred(it) {
				idx = append(idx, i)
			}
		}
		rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
		n := int(math.Round(frac * float64(len(idx))))
		if n == len(idx) && n > 1 {
			n-- // keep at least one for training
		}
		for _, i := range idx[:n] {
			val.Items = append(val.Items, train.Items[i])
			held[i] = true
		}
	}
	take(func(it dataset.Item) bool { return !it.IsSynthetic() && !it.Label })
	take(func(it dataset.Item) bool { return !it.IsSynthetic() && it.Label })
	if _, pos := val.Counts(); pos == 0 {
		take(func(it dataset.Item) bool { return it.IsSynthetic() && it.Label })
	}
	for i, it := range train.Items {
		if !held[i] {
			tr.Items = append(tr.Items, it)
		}
	}
	return tr, val
}

func (c *Config) emit(p Progress) {
	if c.Progress != nil {
		c.Progress(p)
	}
}

// keepOK drops items whose features could not be computed, recording why.
func keepOK(items []dataset.Item, r *features.Result) ([]dataset.Item, [][]float32, []float32, []string, []dataset.Skip) {
	var it []dataset.Item
	var fs [][]float32
	var ls []float32
	var ds []string
	var sk []dataset.Skip
	for i := range items {
		if r.Errs[i] != nil {
			sk = append(sk, dataset.Skip{Path: items[i].Path, Reason: r.Errs[i].Error()})
			continue
		}
		it = append(it, items[i])
		fs = append(fs, r.Features[i])
		ls = append(ls, r.Logits[i])
		ds = append(ds, r.Digests[i])
	}
	return it, fs, ls, ds, sk
}

func labelsOf(items []dataset.Item) []bool {
	y := make([]bool, len(items))
	for i, it := range items {
		y[i] = it.Label
	}
	return y
}

// Run trains a candidate, evaluates it and the serving model on the same validation
// data, writes it into the registry and promotes it when the rule allows. The caller
// holds the registry's Lock for the whole run.
func Run(ctx context.Context, c Config) (*Outcome, error) {
	log := c.Log
	if log == nil {
		log = slog.Default()
	}
	if c.Trainer == nil {
		c.Trainer = HeadTrainer{}
	}
	reg := c.Registry
	serving, err := reg.Current()
	hasServing := err == nil
	if err != nil && !errors.Is(err, registry.ErrNoCurrent) {
		return nil, err
	}
	base := c.BaseModel
	if base == "" {
		if !hasServing {
			return nil, fmt.Errorf("no base model: the registry %s has no current model; pass a base model folder", reg.Dir)
		}
		base = serving.Dir
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
	c.emit(Progress{Stage: "dataset", Done: len(c.Train.Items), Total: len(c.Train.Items),
		Message: fmt.Sprintf("train %d images, validation %d images", len(c.Train.Items), len(c.Val.Items))})

	bmeta, err := detect.ReadMetadata(base)
	if err != nil {
		return nil, err
	}
	_, backbone, herr := head.ReadHead(filepath.Join(base, detect.ModelFile), bmeta.Outputs.Logit, bmeta.Outputs.Features)
	if herr != nil {
		log.Info("feature cache keyed by the whole model file", "reason", herr.Error())
		backbone = ""
	}
	ex, err := features.Open(log, base, features.Options{Session: c.Session, Batch: c.Batch, CacheDir: c.CacheDir, CacheKey: backbone})
	if err != nil {
		return nil, err
	}
	defer ex.Close()
	all := append(append([]dataset.Item(nil), c.Train.Items...), c.Val.Items...)
	res, err := ex.Extract(ctx, all, func(done, total int) {
		c.emit(Progress{Stage: "features", Done: done, Total: total})
	})
	if err != nil {
		return nil, err
	}
	log.Info("features extracted", "images", len(all), "cached", res.Cached, "failed", res.Failed, "model", base)
	nTrain := len(c.Train.Items)
	trRes := &features.Result{Features: res.Features[:nTrain], Logits: res.Logits[:nTrain], Digests: res.Digests[:nTrain], Errs: res.Errs[:nTrain]}
	vaRes := &features.Result{Features: res.Features[nTrain:], Logits: res.Logits[nTrain:], Digests: res.Digests[nTrain:], Errs: res.Errs[nTrain:]}
	trItems, trFeat, _, trDig, sk1 := keepOK(c.Train.Items, trRes)
	vaItems, vaFeat, _, vaDig, sk2 := keepOK(c.Val.Items, vaRes)
	out := &Outcome{Skipped: append(sk1, sk2...), FeaturesCached: res.Cached}
	for _, s := range out.Skipped {
		log.Warn("image skipped", "path", s.Path, "reason", s.Reason)
	}
	if err := (&dataset.Set{Items: trItems}).RequireBothClasses("training set after unreadable images were skipped"); err != nil {
		return nil, err
	}
	if err := (&dataset.Set{Items: vaItems}).RequireBothClasses("validation set after unreadable images were skipped"); err != nil {
		return nil, err
	}
	baseMeta := ex.Meta

	cand, err := c.Trainer.Train(ctx, TrainSet{Items: trItems, Features: trFeat, BaseDir: base, BaseMeta: baseMeta}, c.Progress)
	if err != nil {
		return nil, fmt.Errorf("training: %w", err)
	}

	version, err := reg.NextVersion()
	if err != nil {
		return nil, err
	}
	staging, err := reg.Stage(version)
	if err != nil {
		return nil, err
	}
	committed := false
	defer func() {
		if !committed {
			os.RemoveAll(staging)
		}
	}()
	c.emit(Progress{Stage: "write", Message: "writing " + version})
	if err := cand.WriteModel(filepath.Join(staging, detect.ModelFile)); err != nil {
		return nil, fmt.Errorf("writing the candidate model: %w", err)
	}

	// Evaluate the candidate and the serving model on the same validation images.
	c.emit(Progress{Stage: "evaluate", Message: "validation"})
	vy := labelsOf(vaItems)
	candLogits := make([]float64, len(vaItems))
	if cand.Score != nil {
		for i, f := range vaFeat {
			candLogits[i] = cand.Score(f)
		}
	}
	// A provisional model.json so the written model can be loaded and checked.
	meta := baseMeta
	meta.ModelVersion = version
	meta.CreatedAt = time.Now().UTC().Truncate(time.Second)
	if err := detect.WriteMetadata(staging, meta); err != nil {
		return nil, err
	}
	served, err := verify(ctx, log, staging, vaItems, candLogits, cand.Score != nil, c.Session)
	if err != nil {
		return nil, err
	}
	if cand.Score == nil {
		candLogits = served
	}
	rep, err := metrics.Evaluate(candLogits, vy)
	if err != nil {
		return nil, fmt.Errorf("evaluating the candidate: %w", err)
	}
	out.Candidate = rep
	thr, rule := rep.Threshold, "max-f1"
	if c.TargetRecall > 0 {
		var p, r float64
		thr, p, r = metrics.ThresholdForRecall(candLogits, vy, c.TargetRecall)
		if math.IsNaN(thr) {
			return nil, fmt.Errorf("no threshold reaches recall %v on the validation set", c.TargetRecall)
		}
		rule = fmt.Sprintf("recall>=%v (precision %.4f, recall %.4f on validation)", c.TargetRecall, p, r)
	}

	var servingAP *float64
	var servingName string
	if hasServing {
		servingName = serving.Name
		// When the serving model has the base's backbone and preprocessing (it usually is
		// the base), its logits are its head applied to the features already computed.
		var sl []float64
		sm := serving.Meta
		sh, skey, serr := head.ReadHead(filepath.Join(serving.Dir, detect.ModelFile), sm.Outputs.Logit, sm.Outputs.Features)
		if serr == nil && backbone != "" && skey == backbone && sm.Input == bmeta.Input {
			sl = make([]float64, len(vaFeat))
			for i, f := range vaFeat {
				sl[i] = sh.Logit(f)
			}
		} else if sl, err = modelLogits(ctx, log, serving.Dir, vaItems, c.Session); err != nil {
			return nil, fmt.Errorf("evaluating the serving model %s: %w", serving.Name, err)
		}
		if srep, err := metrics.Evaluate(sl, vy); err == nil {
			out.Serving = &srep
			servingAP = &srep.AP
		} else {
			return nil, fmt.Errorf("evaluating the serving model %s: %w", serving.Name, err)
		}
	}

	// Validation images identical to training images (same bytes) inflate the scores;
	// say so rather than refuse, since real data sets carry duplicates.
	inTrain := make(map[string]bool, len(trDig))
	for _, d := range trDig {
		inTrain[d] = true
	}
	overlap := 0
	for i, d := range vaDig {
		if inTrain[d] {
			if overlap == 0 {
				log.Warn("validation image also in the training set (same bytes); its score is optimistic", "path", vaItems[i].Path)
			}
			overlap++
		}
	}
	// Pictures for people: the candidate's PR curve and per-image validation scores.
	names := make([]string, len(vaItems))
	for i, it := range vaItems {
		names[i] = it.Path
	}
	if err := metrics.WritePRCurvePNG(filepath.Join(staging, PRCurveFile), candLogits, vy,
		fmt.Sprintf("%s on %s", version, c.ValName)); err != nil {
		log.Warn("PR curve not written", "err", err.Error())
	}
	if err := metrics.WriteScoresCSV(filepath.Join(staging, ScoresFile), names, candLogits, vy, thr); err != nil {
		log.Warn("validation scores not written", "err", err.Error())
	}

	// Final metadata.
	digest, err := dataset.Digest(trItems, trDig)
	if err != nil {
		return nil, err
	}
	realDefects := 0
	for _, it := range vaItems {
		if it.Label && !it.IsSynthetic() {
			realDefects++
		}
	}
	meta.Threshold = detect.Sigmoid(float32(thr))
	meta.ThresholdRule = rule
	meta.TrainingDataDigest = digest
	meta.Validation = &detect.ValidationScores{Dataset: c.ValName, Images: rep.N, Positives: rep.Positives,
		AP: rep.AP, AUROC: rep.AUROC, F1Max: rep.F1Max, Precision: rep.Precision, Recall: rep.Recall}
	meta.Training = cand.Training
	meta.Training["trainer"] = c.Trainer.Name()
	meta.Training["base_model"] = map[string]any{"dir": base, "model_version": baseMeta.ModelVersion, "sha256": ex.ModelDigest}
	sum := (&dataset.Set{Items: trItems}).Summarize()
	meta.Training["dataset"] = map[string]any{"images": sum.Total, "negatives": sum.Negatives, "positives": sum.Positives,
		"by_source": sum.BySource, "skipped": len(out.Skipped)}
	meta.Training["threshold_logit"] = thr
	if err := detect.WriteMetadata(staging, meta); err != nil {
		return nil, err
	}
	if err := writeJSON(filepath.Join(staging, registry.MetricsFile), map[string]any{
		"validation": map[string]any{"name": c.ValName, "images": len(vaItems), "real_defects": realDefects,
			"also_in_training": overlap, "scores": "logits"},
		"candidate": rep, "serving": out.Serving, "serving_version": servingName,
		"threshold_logit": thr, "threshold_score": meta.Threshold, "threshold_rule": rule,
	}); err != nil {
		return nil, err
	}
	if err := writeJSON(filepath.Join(staging, registry.ManifestFile), map[string]any{
		"training_data_digest": digest,
		"train":                manifestRows(trItems, trDig),
		"validation":           manifestRows(vaItems, vaDig),
		"skipped":              out.Skipped,
	}); err != nil {
		return nil, err
	}
	dir, err := reg.Commit(staging, version)
	if err != nil {
		return nil, err
	}
	committed = true
	out.Version, out.Dir = version, dir

	c.emit(Progress{Stage: "decide"})
	promote, reason := registry.Decide(rep.AP, servingAP, c.Tolerance)
	if promote && c.NoPromote {
		reason += "; passes, but promotion was not requested"
	}
	ap := rep.AP
	d := registry.Decision{Candidate: version, Serving: servingName, CandidateAP: &ap, ServingAP: servingAP,
		Tolerance: c.Tolerance, Validation: c.ValName, ValImages: rep.N, ValPositives: rep.Positives,
		RealDefects: realDefects, Threshold: meta.Threshold, ThresholdRule: rule, Reason: reason, Action: "reject"}
	if realDefects == 0 {
		d.Reason += "; validation has no real defects (synthetic only)"
	}
	if promote && !c.NoPromote {
		d.Action = "promote"
	} else if promote {
		d.Action = "hold"
	}
	if err := reg.LogDecision(d); err != nil {
		return nil, err
	}
	out.Decision = d
	if d.Action == "promote" {
		if err := reg.Promote(version); err != nil {
			return nil, err
		}
		out.Promoted = true
		if removed, err := reg.Prune(); err != nil {
			log.Warn("pruning old versions failed", "err", err.Error())
		} else if len(removed) > 0 {
			log.Info("pruned old versions", "versions", removed)
		}
	}
	c.emit(Progress{Stage: "done", Message: d.Action + " " + version})
	return out, nil
}

type manifestRow struct {
	Path   string `json:"path"`
	Label  bool   `json:"label"`
	Source string `json:"source"`
	SHA256 string `json:"sha256"`
}

func manifestRows(items []dataset.Item, digests []string) []manifestRow {
	rows := make([]manifestRow, len(items))
	for i, it := range items {
		rows[i] = manifestRow{Path: it.Path, Label: it.Label, Source: it.Source, SHA256: digests[i]}
	}
	return rows
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, append(b, '\n'), 0o644)
}

// verifyImages is how many validation images the written model is checked on.
const verifyImages = 8

// verify loads the written model the way serving does and checks, on a few validation
// images, that its logits equal the trainer's scores (features·w + b) within 1e-4
// (relative for |logit| > 1: float32 sums of 2048 products differ in the last bits).
// With check=false (a trainer without Score) every image is run and the logits returned.
func verify(ctx context.Context, log *slog.Logger, dir string, items []dataset.Item, want []float64, check bool, so ortenv.Options) ([]float64, error) {
	sel := items
	if check && len(sel) > verifyImages {
		sel = sel[:verifyImages]
	}
	got, err := modelLogits(ctx, log, dir, sel, so)
	if err != nil {
		return nil, fmt.Errorf("the written model does not serve: %w", err)
	}
	if !check {
		return got, nil
	}
	for i := range got {
		if d := math.Abs(got[i] - want[i]); d > 1e-4*max(1, math.Abs(want[i])) {
			return nil, fmt.Errorf("the written model's logit for %s is %v but the trained head gives %v (|diff| %.2g): write-back is wrong",
				sel[i].Path, got[i], want[i], d)
		}
	}
	log.Info("written model verified", "dir", dir, "images", len(got))
	return got, nil
}

// modelLogits runs a model folder through detect (the serving path) on items.
func modelLogits(ctx context.Context, log *slog.Logger, dir string, items []dataset.Item, so ortenv.Options) ([]float64, error) {
	m, err := detect.LoadModel(log, dir, detect.Options{Session: so, Workers: 1})
	if err != nil {
		return nil, err
	}
	defer m.Close()
	out := make([]float64, len(items))
	const chunk = 16
	for s := 0; s < len(items); s += chunk {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		e := min(s+chunk, len(items))
		frames := make([]gocv.Mat, 0, e-s)
		for _, it := range items[s:e] {
			f, err := imageio.Read(it.Path)
			if err != nil {
				for _, f := range frames {
					f.Close()
				}
				return nil, err
			}
			frames = append(frames, f)
		}
		lg := make([]float32, len(frames))
		errs := make([]error, len(frames))
		err := m.Logits(frames, lg, errs)
		for _, f := range frames {
			f.Close()
		}
		if err != nil {
			return nil, err
		}
		for i, e := range errs {
			if e != nil {
				return nil, fmt.Errorf("%s: %w", items[s+i].Path, e)
			}
			out[s+i] = float64(lg[i])
		}
	}
	return out, nil
}
