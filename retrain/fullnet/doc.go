// Package fullnet trains a detector through its backbone: every layer, the last stage and
// the head, or the head alone, on ONNX Runtime, with the training graphs of package
// autodiff. Trainer is a retrain.ImageTrainer (it reads the images itself); Auto is a
// retrain.Chooser that picks head, last or all by a time budget measured on the data.
//
// # Training
//
// The base model's weights are the starting point (random ones train from scratch). What
// trains is resolved from the graph's structure (Resolve). Images are decoded and
// preprocessed by detect.Preprocessor, exactly as served, on worker goroutines one batch
// ahead of the step that trains; a batch of Config.Batch images runs as micro-batches of
// Config.MicroBatch whose gradients add up before one Adam update. The order is
// reshuffled every epoch from the seed (the head trainer's stream, so --trainable head
// through the graphs takes the Adam solver's batches); BatchNorm follows the paper's
// regime by default (train mode in epoch 1, frozen after). A cancelled context stops
// between steps or inside one.
//
// # Checkpoints
//
// With TrainSet.RunDir set, CheckpointFile is rewritten atomically after every epoch:
// parameters, Adam's state, BatchNorm statistics and mode, the epoch, the shuffling
// state and order, and digests of the data (images, labels, masks, in order), the base
// model and the recipe. With TrainSet.Resume a matching checkpoint is continued; any
// mismatch starts over, saying why. On ONNX Runtime's CPU provider with one thread a
// resumed run ends bit-identical to an uninterrupted one.
//
// # Segmentation + decision networks
//
// A network with a segmentation output (issue 12's) trains through the same Trainer with
// three hooks in Config:
//
//	Config{
//		Segmentation: &Segmentation{
//			Output:   "segmentation",         // [N,1,h,w] logits, static h and w
//			Weights:  distanceTransform,      // func(target []float32, h, w int) []float32; nil: 1
//			Schedule: LinearSchedule,         // func(epoch, epochs int) (pixel, image float32); nil: LinearSchedule
//			Name:     "dt-weights, linear",   // identifies the hooks in the recipe and checkpoints
//		},
//		Augment: SurfaceAugment{FlipH: true, FlipV: true, MaxShift: 8, Brightness: 0.1},
//	}
//
// The loss is then a·pixel + b·image, (a, b) = Schedule(epoch, epochs) fed per step;
// pixel = mean(weight·BCE) over the segmentation output, image the decision logit's BCE
// (with pos_weight). Each item's mask (dataset.Item.Mask, defect above 127) is resized
// to the input like its image, augmented with it, and reduced to h×w by each cell's
// maximum. A good image has target 0 and weight 1; a defect with a mask gets the mask and
// Weights(target); a defect without one trains the decision only (weight 0). Gradient
// flow from the decision into the segmentation part is the network's business (autodiff
// differentiates what the graph computes). Augmenter is the per-sample hook (seeded per
// run, epoch and image); SurfaceAugment flips, shifts (edges repeated) and scales
// brightness on the normalised tensor as the camera would.
package fullnet
