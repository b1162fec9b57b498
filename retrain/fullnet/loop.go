package fullnet

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/diagd/diagd/retrain"
	"github.com/diagd/diagd/retrain/autodiff"
)

// run trains the remaining epochs, writing a checkpoint after each. The order is
// reshuffled every epoch (cumulatively, from the seeded stream), BatchNorm follows the
// regime, and a cancelled ctx stops between steps or inside one (ORT's terminate flag);
// the state is then the last checkpoint's.
func (j *job) run(ctx context.Context) error {
	for e := j.epoch; e < j.cfg.Epochs; e++ {
		j.st.SetBatchNorm(j.cfg.BatchNorm.mode(e))
		j.rng.Shuffle(len(j.order), func(a, b int) { j.order[a], j.order[b] = j.order[b], j.order[a] })
		loss, err := j.runEpoch(ctx, e)
		if err != nil {
			return err
		}
		j.losses = append(j.losses, loss)
		j.epoch = e + 1
		j.log.Info("epoch done", "epoch", j.epoch, "of", j.cfg.Epochs, "loss", loss, "bn", j.st.BatchNorm().String())
		if err := j.save(); err != nil {
			return err
		}
	}
	return nil
}

// batches cuts the order into batches (the last may be smaller, as PyTorch's
// DataLoader without drop_last).
func batches(order []int, size int) [][]int {
	var out [][]int
	for lo := 0; lo < len(order); lo += size {
		out = append(out, order[lo:min(lo+size, len(order))])
	}
	return out
}

// runEpoch trains one epoch and returns its mean loss per image.
func (j *job) runEpoch(ctx context.Context, e int) (float64, error) {
	bs := batches(j.order, j.cfg.Batch)
	pf := j.ld.start(ctx, e, bs)
	defer pf.stop()
	var a, b float32 = 0, 1
	if s := j.cfg.Segmentation; s != nil {
		a, b = s.weights(e, j.cfg.Epochs)
	}
	sum, seen := 0.0, 0
	for k := range bs {
		bb, ok := <-pf.out
		if !ok {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			return 0, errors.New("fullnet: the image loader stopped early")
		}
		if bb.err != nil {
			return 0, bb.err
		}
		res, err := j.st.Step(ctx, j.batch(bb, a, b))
		pf.release(bb)
		if err != nil {
			return 0, err
		}
		if math.IsNaN(res.Loss) || math.IsInf(res.Loss, 0) {
			return 0, fmt.Errorf("fullnet: %w: loss %v at epoch %d step %d (lower the learning rate)", errDiverged, res.Loss, e+1, k+1)
		}
		sum += res.Loss * float64(bb.n)
		seen += bb.n
		j.stepped++
		j.report(e, k+1, len(bs), sum/float64(seen))
	}
	return sum / float64(seen), nil
}

// batch is the Stepper's view of a loaded batch.
func (j *job) batch(bb *batchBuf, a, b float32) autodiff.Batch {
	n := bb.n
	out := autodiff.Batch{N: n, Inputs: [][]float32{bb.x[:n*j.ld.per()]}, Labels: bb.labels[:n], LR: float32(j.cfg.LR)}
	if j.cfg.Segmentation != nil {
		per := j.ld.segH * j.ld.segW
		out.PixelTargets, out.PixelWeights = bb.targets[:n*per], bb.weights[:n*per]
		out.PixelLossWeight, out.ImageLossWeight = a, b
	}
	return out
}

// report sends a step's progress: epoch, step, the epoch's running loss and the time
// left at this session's pace.
func (j *job) report(e, step, steps int, loss float64) {
	done := e*steps + step
	total := j.cfg.Epochs * steps
	per := time.Since(j.began).Seconds() / float64(j.stepped)
	j.emit(retrain.Progress{Stage: "train", Done: done, Total: total, Loss: loss, Epoch: e + 1, Epochs: j.cfg.Epochs,
		ETA: per * float64(total-done), Message: fmt.Sprintf("epoch %d/%d step %d/%d", e+1, j.cfg.Epochs, step, steps)})
}
