package fullnet

import (
	"errors"
	"fmt"
	"math"

	"github.com/diagd/diagd/retrain/autodiff"
	"github.com/diagd/diagd/retrain/head"
)

// BNRegime says when BatchNormalization layers with trainable scale and bias use batch
// statistics.
type BNRegime string

// BatchNorm regimes.
const (
	// BNPaper is the paper's: train mode (batch statistics, running statistics updated)
	// in the first epoch, frozen from the second on (spec §1.6). The default.
	BNPaper BNRegime = "paper"
	// BNAlwaysTrain keeps train mode throughout (PyTorch's model.train()).
	BNAlwaysTrain BNRegime = "train"
	// BNAlwaysFrozen never updates the running statistics.
	BNAlwaysFrozen BNRegime = "frozen"
)

// mode is the BatchNormalization mode of a 0-based epoch.
func (r BNRegime) mode(epoch int) autodiff.BNMode {
	switch r {
	case BNAlwaysFrozen:
		return autodiff.BNFrozen
	case BNAlwaysTrain:
		return autodiff.BNTrain
	}
	if epoch == 0 {
		return autodiff.BNTrain
	}
	return autodiff.BNFrozen
}

// Config is the recipe. Zero values take the paper's (spec §1.6): every layer, Adam
// lr 1e-4 (betas 0.9/0.999, eps 1e-8), batch 32, 30 epochs, BatchNorm in train mode for
// epoch 1 and frozen after; the loss is BCE-with-logits with the head trainer's imbalance
// rule (pos_weight = negatives/positives) unless Imbalance is head.NoWeighting (the
// paper's plain mean).
type Config struct {
	Trainable  Setting
	Epochs     int
	LR         float64
	Batch      int // images per optimizer update
	MicroBatch int // images per graph run; gradients of a batch's micro-batches add up (default min(8, Batch))
	Seed       uint64
	Imbalance  head.Imbalance
	BatchNorm  BNRegime

	// Augment, when set, changes each training sample before batching (flips, shifts,
	// brightness: SurfaceAugment). Seeded per epoch and image.
	Augment Augmenter
	// Segmentation, when set, adds per-pixel supervision on a segmentation output
	// (segmentation + decision networks).
	Segmentation *Segmentation
}

// Limits on the recipe: beyond them a value is a typo.
const (
	MaxEpochs = 10000
	MaxBatch  = 4096
)

// WithDefaults fills unset values.
func (c Config) WithDefaults() Config {
	if c.Trainable == "" {
		c.Trainable = All
	}
	if c.Epochs == 0 {
		c.Epochs = 30
	}
	if c.LR == 0 {
		c.LR = 1e-4
	}
	if c.Batch == 0 {
		c.Batch = 32
	}
	if c.MicroBatch == 0 {
		c.MicroBatch = min(8, c.Batch)
	}
	if c.Imbalance == "" {
		c.Imbalance = head.PosWeight
	}
	if c.BatchNorm == "" {
		c.BatchNorm = BNPaper
	}
	return c
}

// Validate checks a recipe after WithDefaults.
func (c Config) Validate() error {
	var errs []error
	if _, err := ParseSetting(string(c.Trainable)); err != nil {
		errs = append(errs, err)
	}
	if c.Epochs < 1 || c.Epochs > MaxEpochs {
		errs = append(errs, fmt.Errorf("epochs %d is outside 1..%d", c.Epochs, MaxEpochs))
	}
	if !(c.LR > 0 && c.LR < 10) || math.IsInf(c.LR, 0) {
		errs = append(errs, fmt.Errorf("learning rate %v is outside (0, 10)", c.LR))
	}
	if c.Batch < 1 || c.Batch > MaxBatch {
		errs = append(errs, fmt.Errorf("batch %d is outside 1..%d", c.Batch, MaxBatch))
	}
	if c.MicroBatch < 1 || c.MicroBatch > c.Batch {
		errs = append(errs, fmt.Errorf("micro-batch %d is outside 1..batch (%d)", c.MicroBatch, c.Batch))
	}
	if _, err := head.ParseImbalance(string(c.Imbalance)); err != nil {
		errs = append(errs, err)
	}
	switch c.BatchNorm {
	case BNPaper, BNAlwaysTrain, BNAlwaysFrozen:
	default:
		errs = append(errs, fmt.Errorf("batch-norm regime %q (want paper, train or frozen)", c.BatchNorm))
	}
	if s := c.Segmentation; s != nil && s.Output == "" {
		errs = append(errs, errors.New("segmentation needs the name of its output"))
	}
	return errors.Join(errs...)
}

// recipe is what a checkpoint must agree on to be resumed, and what model.json records.
type recipe struct {
	Trainable    Setting  `json:"trainable"`
	Epochs       int      `json:"epochs"`
	LR           float64  `json:"lr"`
	Batch        int      `json:"batch"`
	MicroBatch   int      `json:"micro_batch"`
	Seed         uint64   `json:"seed"`
	Imbalance    string   `json:"imbalance"`
	BatchNorm    BNRegime `json:"batch_norm"`
	Optimizer    string   `json:"optimizer"`
	Augment      string   `json:"augment,omitempty"`
	Segmentation string   `json:"segmentation,omitempty"`
}

func (c Config) recipe() recipe {
	r := recipe{Trainable: c.Trainable, Epochs: c.Epochs, LR: c.LR, Batch: c.Batch, MicroBatch: c.MicroBatch,
		Seed: c.Seed, Imbalance: string(c.Imbalance), BatchNorm: c.BatchNorm,
		Optimizer: "adam (betas 0.9, 0.999, eps 1e-8, no weight decay)"}
	if c.Augment != nil {
		r.Augment = c.Augment.String()
	}
	if s := c.Segmentation; s != nil {
		r.Segmentation = s.String()
	}
	return r
}
