package retrain

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/retrain/dataset"
	"github.com/diagd/diagd/retrain/gate"
	"github.com/diagd/diagd/retrain/head"
	"github.com/diagd/diagd/retrain/metrics"
)

// scoreCandidate computes the candidate's validation logits (from the features when
// the trainer kept the backbone, checked against the written model; else by running
// the written model, checked against the trainer's own forward pass when it offers
// one), its report and its threshold. Non-finite logits leave the report
// empty: the gate refuses such a candidate.
func (r *run) scoreCandidate(ctx context.Context) error {
	r.emit(Progress{Stage: "evaluate", Message: "validation"})
	if r.cand.Score != nil {
		r.candLogits = make([]float64, len(r.va.items))
		for i, f := range r.va.feat {
			r.candLogits[i] = r.cand.Score(f)
		}
		if err := r.verify(ctx); err != nil {
			return r.refuseNonFinite(err)
		}
	} else {
		l, err := modelLogits(ctx, r.log, r.staging, r.va.items, r.c.Session)
		if err != nil {
			return r.refuseNonFinite(fmt.Errorf("the written model does not serve: %w", err))
		}
		r.candLogits = l
		if r.cand.Logits != nil {
			if err := r.verifyForward(ctx); err != nil {
				return err
			}
		}
	}
	if n, _ := metrics.NonFinite(r.candLogits); n > 0 || r.refused != nil {
		return nil
	}
	y := r.va.labels()
	rep, err := metrics.Evaluate(r.candLogits, y)
	if err != nil {
		return fmt.Errorf("evaluating the candidate: %w", err)
	}
	r.out.Candidate = rep
	r.thr, r.rule = rep.Threshold, "max-f1"
	if r.c.TargetRecall > 0 {
		thr, p, rc := metrics.ThresholdForRecall(r.candLogits, y, r.c.TargetRecall)
		if math.IsNaN(thr) {
			return fmt.Errorf("no threshold reaches recall %v on the validation set", r.c.TargetRecall)
		}
		r.thr, r.rule = thr, fmt.Sprintf("recall>=%v (precision %.4f, recall %.4f on validation)", r.c.TargetRecall, p, rc)
	}
	return nil
}

// refuseNonFinite keeps a load refusal for non-finite output (detect checks a probe
// image) as the candidate's refusal, for the gate to record; other errors end the run.
func (r *run) refuseNonFinite(err error) error {
	if !errors.Is(err, detect.ErrNonFinite) {
		return err
	}
	r.refused = err
	r.log.Warn("the candidate yields non-finite scores", "err", err.Error())
	return nil
}

// verifyImages is how many validation images the written model is checked on.
const verifyImages = 8

// verify loads the written model the way serving does and checks, on a few validation
// images, that its logits equal the trainer's scores within 1e-4 (relative above 1) or
// the float32 rounding the trainer declares (ScoreRounding), whichever is larger.
func (r *run) verify(ctx context.Context) error {
	sel := r.va.items[:min(verifyImages, len(r.va.items))]
	got, err := modelLogits(ctx, r.log, r.staging, sel, r.c.Session)
	if err != nil {
		return fmt.Errorf("the written model does not serve: %w", err)
	}
	for i := range got {
		want := r.candLogits[i]
		if math.IsNaN(want) || math.IsInf(want, 0) {
			continue // the gate refuses it with the reason
		}
		tol := 1e-4 * max(1, math.Abs(want))
		if r.cand.ScoreRounding != nil {
			tol = max(tol, r.cand.ScoreRounding(r.va.feat[i]))
		}
		if d := math.Abs(got[i] - want); !(d <= tol) {
			return fmt.Errorf("the written model's logit for %s is %v but the trained head gives %v (|diff| %.2g > %.2g): write-back is wrong",
				sel[i].Path, got[i], want, d, tol)
		}
	}
	r.log.Info("written model verified", "dir", r.staging, "images", len(got))
	return nil
}

// scoreServing computes the serving model's logits on the same validation images:
// from the features when it shares the base's backbone and preprocessing (it usually
// is the base), else by running it. A serving model with non-finite scores cannot be
// compared; the gate is told why.
func (r *run) scoreServing(ctx context.Context) error {
	if !r.hasServing {
		return nil
	}
	sm := r.serving.Meta
	var sl []float64
	sh, skey, err := head.ReadHead(filepath.Join(r.serving.Dir, detect.ModelFile), sm.Outputs.Logit, sm.Outputs.Features)
	if err == nil && r.backbone != "" && skey == r.backbone && sm.Input == r.baseMeta.Input {
		sl = make([]float64, len(r.va.feat))
		for i, f := range r.va.feat {
			sl[i] = sh.Logit(f)
		}
	} else if sl, err = modelLogits(ctx, r.log, r.serving.Dir, r.va.items, r.c.Session); errors.Is(err, detect.ErrNonFinite) {
		r.servProb = fmt.Sprintf("%s: %v", r.serving.Name, err)
		r.log.Warn("the serving model cannot be compared", "why", r.servProb)
		return nil
	} else if err != nil {
		return fmt.Errorf("evaluating the serving model %s: %w", r.serving.Name, err)
	}
	if n, first := metrics.NonFinite(sl); n > 0 {
		r.servProb = fmt.Sprintf("%s yields non-finite scores on %d of %d validation images, first %s", r.serving.Name, n, len(sl), r.va.items[first].Path)
		r.log.Warn("the serving model cannot be compared", "why", r.servProb)
		return nil
	}
	srep, err := metrics.Evaluate(sl, r.va.labels())
	if err != nil {
		return fmt.Errorf("evaluating the serving model %s: %w", r.serving.Name, err)
	}
	r.out.Serving, r.servLogits = &srep, sl
	return nil
}

// decide runs the promotion gate on the validation scores.
func (r *run) decide() gate.Result {
	r.emit(Progress{Stage: "decide"})
	if r.refused != nil {
		return gate.RefuseNonFinite(r.refused.Error())
	}
	names := make([]string, len(r.va.items))
	for i, it := range r.va.items {
		names[i] = it.Path
	}
	return r.c.Gate.Decide(gate.Input{Candidate: r.candLogits, Labels: r.va.labels(), Threshold: r.thr, Names: names,
		Serving: r.servLogits, ServingName: r.serving.Name, ServingProblem: r.servProb})
}

// modelLogits runs a model folder through detect (the serving path) on items; every
// image must score (they were read once already for their features).
func modelLogits(ctx context.Context, log *slog.Logger, dir string, items []dataset.Item, so ortenv.Options) ([]float64, error) {
	m, err := detect.LoadModel(log, dir, detect.Options{Session: so, Workers: 1, MaxBatch: 16})
	if err != nil {
		return nil, err
	}
	defer m.Close()
	paths := make([]string, len(items))
	for i, it := range items {
		paths[i] = it.Path
	}
	res, err := m.ScoreFiles(ctx, paths, nil)
	if err != nil {
		return nil, err
	}
	out := make([]float64, len(res))
	for i, s := range res {
		if s.Err != nil {
			return nil, fmt.Errorf("%s: %w", s.Path, s.Err)
		}
		out[i] = float64(s.Logit)
	}
	return out, nil
}
