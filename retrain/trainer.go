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
	Features [][]float32
	BaseDir  string          // the base model folder (model.onnx + model.json)
	BaseMeta detect.Metadata // its metadata
}

// Progress is a retraining event: a stage and how far it is. The CLI draws it as a bar;
// the daemon forwards it as an event.
type Progress struct {
	Stage   string  `json:"stage"` // dataset, features, train, evaluate, write, decide, done
	Done    int     `json:"done"`
	Total   int     `json:"total"`
	Loss    float64 `json:"loss,omitempty"`
	Message string  `json:"message,omitempty"`
}

// Candidate is a trained model not yet in the registry.
type Candidate struct {
	// WriteModel writes a complete model.onnx (with any side files) at path.
	WriteModel func(path string) error
	// Score gives the candidate's logit from the base model's features, when the trainer
	// kept the backbone (nil otherwise; then the written model is run to score).
	Score func(features []float32) float64
	// Training describes how it was trained; it goes into model.json's training map.
	Training map[string]any
}

// Trainer turns a TrainSet into a Candidate. HeadTrainer trains the last layer on
// frozen features; a full fine-tuning trainer can implement the same interface.
type Trainer interface {
	Name() string
	Train(ctx context.Context, ds TrainSet, progress func(Progress)) (*Candidate, error)
}

// HeadTrainer trains Linear(F,1) on frozen backbone features (package head).
type HeadTrainer struct {
	Config head.Config
}

// Name implements Trainer.
func (HeadTrainer) Name() string { return "head" }

// Train implements Trainer.
func (t HeadTrainer) Train(ctx context.Context, ds TrainSet, progress func(Progress)) (*Candidate, error) {
	if len(ds.Features) != len(ds.Items) {
		return nil, fmt.Errorf("head trainer: %d feature rows for %d images", len(ds.Features), len(ds.Items))
	}
	y := make([]bool, len(ds.Items))
	for i, it := range ds.Items {
		y[i] = it.Label
	}
	c := t.Config.WithDefaults()
	h, err := head.Fit(ctx, ds.Features, y, nil, c, func(p head.Progress) {
		if progress != nil {
			progress(Progress{Stage: "train", Done: p.Epoch, Total: p.Epochs, Loss: p.Loss})
		}
	})
	if err != nil {
		return nil, err
	}
	pos := 0
	for _, l := range y {
		if l {
			pos++
		}
	}
	base := filepath.Join(ds.BaseDir, detect.ModelFile)
	return &Candidate{
		WriteModel: func(path string) error {
			return head.WriteBack(base, path, ds.BaseMeta.Outputs.Logit, ds.BaseMeta.Outputs.Features, h)
		},
		Score: func(f []float32) float64 { return h.Logit(f) },
		Training: map[string]any{
			"method":          "head",
			"description":     "backbone frozen; Linear(F,1) retrained on pooled features with BCE-with-logits and Adam",
			"epochs":          c.Epochs,
			"lr":              c.LR,
			"batch":           c.Batch,
			"seed":            c.Seed,
			"adam":            map[string]any{"beta1": c.Beta1, "beta2": c.Beta2, "eps": c.Eps},
			"imbalance":       string(c.Imbalance),
			"pos_weight":      h.PosWeight,
			"imbalance_why":   "pos_weight = negatives/positives gives both classes equal weight in the loss while keeping every sample and the paper's batch/epoch schedule",
			"final_loss":      h.Loss[len(h.Loss)-1],
			"loss_per_epoch":  h.Loss,
			"train_images":    len(y),
			"train_positives": pos,
			"feature_dim":     len(h.W),
		},
	}, nil
}
