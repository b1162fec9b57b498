package arch

import (
	"github.com/diagd/diagd/retrain/fullnet"
	"github.com/diagd/diagd/retrain/segdec"
)

// Defaults of a segdec run from scratch on a CPU box; each applies where the user set
// nothing.
const (
	SegDecEpochs     = 30
	SegDecLR         = 1e-3 // Adam's usual rate from scratch; the paper's 1e-4 is for fine-tuning
	SegDecBatch      = 16
	SegDecMicroBatch = 8
	SegDecShift      = 8   // pixels at the input, each axis
	SegDecBrightness = 0.1 // ±10 %
)

// Recipe is the training recipe of a segdec network from random weights (issue 12,
// after Božič et al. 2021): every layer; BatchNorm always in train mode (there are no
// pretrained statistics to keep); loss a·pixel + b·image with (a, b) moving linearly
// from the segmentation to the decision over the epochs; defect pixels weighted by the
// distance transform (the paper's Max 3, P 2) on the output's cells; images labelled
// defective without a mask train the decision only (mixed supervision); the image
// loss's gradient stopped where the decision reads the segmentation part (the papers'
// gradient-flow switch, on by default); flips, ±8 px shifts and ±10 % brightness,
// seeded. User-set epochs, learning rate, batch, micro-batch, imbalance and seed are
// kept.
func Recipe(c fullnet.Config, o segdec.Options) fullnet.Config {
	c.Trainable = fullnet.All
	if c.Epochs == 0 {
		c.Epochs = SegDecEpochs
	}
	if c.LR == 0 {
		c.LR = SegDecLR
	}
	if c.Batch == 0 {
		c.Batch = SegDecBatch
	}
	if c.MicroBatch == 0 {
		c.MicroBatch = min(SegDecMicroBatch, c.Batch)
	}
	if c.BatchNorm == "" {
		c.BatchNorm = fullnet.BNAlwaysTrain
	}
	c.Augment = fullnet.SurfaceAugment{FlipH: true, FlipV: true, MaxShift: SegDecShift, Brightness: SegDecBrightness}
	c.Segmentation = &fullnet.Segmentation{
		Output:       segdec.SegmentationName,
		Weights:      cellWeights,
		Schedule:     fullnet.LinearSchedule,
		Name:         "distance-transform weights (max 3, p 2), linear pixel→image schedule",
		StopGradient: segdec.DecisionInputs[:],
	}
	return c.WithDefaults()
}

// cellWeights are the paper's distance-transform weights on the output's cells; nil
// (reported by the trainer) only for a map of the wrong size, which cannot happen here.
func cellWeights(target []float32, h, w int) []float32 {
	ws, err := segdec.DistanceWeights(target, w, h, segdec.PaperWeighting())
	if err != nil {
		return nil
	}
	return ws
}
