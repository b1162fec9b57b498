// Package retrain ties retraining together: data set, backbone features, a Trainer,
// evaluation on validation data, write-back into a complete ONNX detector, and the
// registry's promotion decision.
package retrain

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/retrain/dataset"
	"github.com/diagd/diagd/retrain/head"
)

// TrainSet is what a Trainer learns from: the labelled images and, for trainers that
// keep the backbone frozen, the base model's features of each (row i is Items[i]).
type TrainSet struct {
	Items    []dataset.Item
	Features [][]float32     // nil for an ImageTrainer
	Digests  []string        // sha256 of each image file (row i is Items[i]); nil when unknown
	BaseDir  string          // the base model folder (model.onnx + model.json)
	BaseMeta detect.Metadata // its metadata
	// RunDir is the run's own folder, kept across crashes and restarts until the run
	// has decided (a trainer writes its checkpoints there); Resume says whether a
	// checkpoint found there may be continued (when its data and recipe match).
	RunDir string
	Resume bool
}

// Progress is a retraining event: a stage and how far it is. The CLI draws it as a bar;
// the daemon forwards it as an event.
type Progress struct {
	Stage   string  `json:"stage"` // dataset, choose, features or scan, train, evaluate, write, decide, done
	Done    int     `json:"done"`
	Total   int     `json:"total"`
	Loss    float64 `json:"loss,omitempty"`
	Message string  `json:"message,omitempty"`
	// Epoch (1-based) of Epochs, and the trainer's estimate of the time left in
	// seconds (0: none), for trainers that run epochs.
	Epoch  int     `json:"epoch,omitempty"`
	Epochs int     `json:"epochs,omitempty"`
	ETA    float64 `json:"eta_s,omitempty"`
}

// Candidate is a trained model not yet in the registry.
type Candidate struct {
	// WriteModel writes a complete model.onnx (with any side files) at path.
	WriteModel func(path string) error
	// Score gives the candidate's logit from the base model's features, when the trainer
	// kept the backbone (nil otherwise; then the written model is run to score).
	Score func(features []float32) float64
	// Logits, for a trainer that changed the backbone, is its own forward pass (eval
	// mode) of the trained network on image files. The written model's logits in detect,
	// the serving path, must equal it on the validation images before the model enters
	// the registry.
	Logits func(ctx context.Context, paths []string) ([]float64, error)
	// ScoreRounding, when set, bounds how far the written model's float32 logit may lie
	// from Score (see head.Head.RoundingBound); the write-back check allows for it.
	ScoreRounding func(features []float32) float64
	// NotConverged says why the optimiser stopped short of its convergence test ("" when
	// it converged or the trainer cannot tell). Such a candidate is reported, not
	// refused: its validation scores still decide.
	NotConverged string
	// Training describes how it was trained; it goes into model.json's training map.
	Training map[string]any
}

// Trainer turns a TrainSet into a Candidate. HeadTrainer trains the last layer on
// frozen features; a full fine-tuning trainer can implement the same interface.
type Trainer interface {
	Name() string
	Train(ctx context.Context, ds TrainSet, progress func(Progress)) (*Candidate, error)
}

// Preflighter is a Trainer that can tell before any work whether it can train from a
// base model (model folder and metadata); Run asks it before extracting features, so a
// base it cannot write into is refused at once rather than after minutes of work.
type Preflighter interface {
	Preflight(baseDir string, meta detect.Metadata) error
}

// ImageTrainer is a Trainer that reads the training images itself (it trains through
// the backbone): Run extracts no features for it and gives it the images' digests, and
// its Candidate carries Logits.
type ImageTrainer interface {
	Trainer
	ReadsImages()
}

// Chooser is a Trainer that picks the trainer to run once the data is known (e.g. by a
// time budget measured on the data's first images). Run calls Choose before anything
// else is computed; ds has no features or digests yet.
type Chooser interface {
	Trainer
	Choose(ctx context.Context, ds TrainSet, progress func(Progress)) (Trainer, error)
}

// HeadTrainer trains Linear(F,1) on frozen backbone features (package head); the zero
// Config is the default recipe.
type HeadTrainer struct {
	Config head.Config
}

// Name implements Trainer.
func (HeadTrainer) Name() string { return "head" }

// Preflight implements Preflighter: the base's head must be one head.WriteBack can
// replace (a float32 Gemm fed by the features output; not a float16 export).
func (HeadTrainer) Preflight(baseDir string, meta detect.Metadata) error {
	return head.Writable(filepath.Join(baseDir, detect.ModelFile), meta.Outputs.Logit, meta.Outputs.Features)
}

// Train implements Trainer.
func (t HeadTrainer) Train(ctx context.Context, ds TrainSet, progress func(Progress)) (*Candidate, error) {
	if len(ds.Features) != len(ds.Items) {
		return nil, fmt.Errorf("head trainer: %d feature rows for %d images", len(ds.Features), len(ds.Items))
	}
	y := make([]bool, len(ds.Items))
	pos := 0
	for i, it := range ds.Items {
		y[i] = it.Label
		if it.Label {
			pos++
		}
	}
	c := t.Config.WithDefaults()
	h, err := head.Fit(ctx, ds.Features, y, nil, c, func(p head.Progress) {
		if progress != nil {
			progress(Progress{Stage: "train", Done: p.Step, Total: p.Steps, Loss: p.Loss})
		}
	})
	if err != nil {
		return nil, err
	}
	base := filepath.Join(ds.BaseDir, detect.ModelFile)
	return &Candidate{
		WriteModel: func(path string) error {
			return head.WriteBack(base, path, ds.BaseMeta.Outputs.Logit, ds.BaseMeta.Outputs.Features, h)
		},
		Score:         func(f []float32) float64 { return h.Logit(f) },
		ScoreRounding: h.RoundingBound,
		NotConverged:  notConverged(h.Report),
		Training:      headTraining(c, h, len(y), pos),
	}, nil
}

func notConverged(r head.Report) string {
	if r.Converged {
		return ""
	}
	return fmt.Sprintf("%s solver stopped after %d iterations (%s) with gradient %.2g", r.Solver, r.Iterations, r.Status, r.GradNorm)
}

// headTraining is what model.json's training map records about a head fit.
func headTraining(c head.Config, h *head.Head, n, pos int) map[string]any {
	m := map[string]any{
		"method":          "head",
		"solver":          string(c.Solver),
		"standardized":    true,
		"seed":            c.Seed,
		"imbalance":       string(c.Imbalance),
		"pos_weight":      h.PosWeight,
		"imbalance_why":   "pos_weight = negatives/positives gives both classes equal weight in the loss while keeping every sample",
		"final_loss":      h.Report.FinalLoss,
		"loss_trace":      h.Loss,
		"convergence":     h.Report,
		"train_images":    n,
		"train_positives": pos,
		"feature_dim":     len(h.W),
	}
	switch c.Solver {
	case head.LogReg:
		m["description"] = "backbone frozen; features standardised (folded into the written Gemm); L2-regularised logistic regression by L-BFGS, λ by stratified cross-validation (pooled out-of-fold AP)"
		m["lambda"] = h.Report.Lambda
	case head.Adam:
		m["description"] = "backbone frozen; features standardised (folded into the written Gemm); Linear(F,1) trained with BCE-with-logits and Adam (the paper's recipe)"
		m["epochs"], m["lr"], m["batch"] = c.Epochs, c.LR, c.Batch
		m["adam"] = map[string]any{"beta1": c.Beta1, "beta2": c.Beta2, "eps": c.Eps}
	}
	return m
}
