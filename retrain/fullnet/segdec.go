package fullnet

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/diagd/diagd/detect"
)

// The hooks in this file let a segmentation + decision network (a segmentation output
// supervised by masks, a decision logit on top) train through the same Trainer: per-pixel
// targets from the items' masks, a per-pixel weight map, a per-epoch weighting of pixel
// and image loss, and augmentation applied to image and mask alike.

// Segmentation adds per-pixel supervision: total loss = a·pixel + b·image, where pixel is
// mean(weight·BCE-with-logits) over the segmentation output and image the decision
// logit's BCE (Config.Imbalance applies to it only).
//
// Targets: each item's mask (dataset.Item.Mask; a pixel is a defect above 127, as the
// labels) is resized to the network input like the image, augmented with it, and reduced
// to the output's h×w by taking each cell's maximum, so a defect thinner than a cell
// survives. Weights: a good image (label false) has target 0 and weight 1 everywhere; a
// defect with a mask gets Weights(target) (1 everywhere when Weights is nil); a defect
// without a mask, or whose mask marks nothing, trains the decision only: weight 0 (mixed
// supervision).
type Segmentation struct {
	// Output is the forward output with per-pixel logits, [N,1,h,w] with static h and w.
	Output string
	// Weights maps a defect's target (h·w values in {0,1}, row-major) to its per-pixel
	// loss weights, e.g. the mixed-supervision paper's distance transform. nil: all 1.
	Weights func(target []float32, h, w int) []float32
	// Schedule gives (a, b) for a 0-based epoch of epochs. nil: LinearSchedule.
	Schedule func(epoch, epochs int) (pixel, image float32)
	// Name identifies Weights and Schedule in the recipe: a checkpoint is resumed only by
	// a run with the same name, and model.json records it.
	Name string
	// StopGradient names the values through which the decision part reads the
	// segmentation part (segdec.DecisionInputs); set, the image loss does not train the
	// segmentation part (the papers' gradient-flow switch). nil: it flows.
	StopGradient []string
}

func (s *Segmentation) String() string {
	if len(s.StopGradient) > 0 {
		return fmt.Sprintf("output %s, %s, gradient stopped at %s", s.Output, s.Name, strings.Join(s.StopGradient, ", "))
	}
	return fmt.Sprintf("output %s, %s", s.Output, s.Name)
}

func (s *Segmentation) weights(epoch, epochs int) (float32, float32) {
	if s.Schedule == nil {
		return LinearSchedule(epoch, epochs)
	}
	return s.Schedule(epoch, epochs)
}

// LinearSchedule moves the weight from the pixel loss to the image loss over the run:
// a = 1 − epoch/epochs, b = epoch/epochs (the mixed-supervision paper's λ; the decision
// part starts once segmentation has something to show).
func LinearSchedule(epoch, epochs int) (pixel, image float32) {
	f := float32(epoch) / float32(max(epochs, 1))
	return 1 - f, f
}

// Sample is one training image as an Augmenter sees it.
type Sample struct {
	Image []float32 // [3,H,W], preprocessed as served (detect.Preprocessor)
	// Mask is the defect mask at the input's resolution, [H,W] in {0,1}; nil when the
	// image has none or the run has no segmentation.
	Mask  []float32
	H, W  int
	Input detect.InputSpec // the normalisation, for changes in brightness
}

// Augmenter changes a sample in place. rng is seeded by the run's seed, the epoch and the
// image's index, so a resumed run sees the same samples whatever the batching or timing.
type Augmenter interface {
	Augment(rng *rand.Rand, s *Sample)
	String() string // for the recipe
}

// SurfaceAugment is augmentation for inspected surfaces: mirror images, a small shift
// (edges repeated) and a change of brightness. The zero value changes nothing.
type SurfaceAugment struct {
	FlipH, FlipV bool
	MaxShift     int     // pixels, each axis
	Brightness   float32 // the pixel values are multiplied by a factor within 1 ± Brightness
}

func (a SurfaceAugment) String() string {
	return fmt.Sprintf("surface (flip h %v, flip v %v, shift ±%d px, brightness ±%.0f%%)", a.FlipH, a.FlipV, a.MaxShift, 100*a.Brightness)
}

// Augment implements Augmenter. Every draw is made whether or not its change is on, so
// the stream stays the same when one is turned off.
func (a SurfaceAugment) Augment(rng *rand.Rand, s *Sample) {
	fh, fv := rng.IntN(2) == 1, rng.IntN(2) == 1
	dx, dy := rng.IntN(2*a.MaxShift+1)-a.MaxShift, rng.IntN(2*a.MaxShift+1)-a.MaxShift
	k := 1 + a.Brightness*float32(2*rng.Float64()-1)
	planes := s.planes()
	for _, p := range planes {
		if a.FlipH && fh {
			flipH(p, s.H, s.W)
		}
		if a.FlipV && fv {
			flipV(p, s.H, s.W)
		}
		if dx != 0 || dy != 0 {
			shift(p, s.H, s.W, dx, dy)
		}
	}
	if a.Brightness != 0 {
		// x = (v/255 − mean)/std, so v·k gives k·x + (k−1)·mean/std.
		n := s.H * s.W
		for c := range 3 {
			off := (k - 1) * s.Input.Mean[c] / s.Input.Std[c]
			for i, v := range s.Image[c*n : (c+1)*n] {
				s.Image[c*n+i] = k*v + off
			}
		}
	}
}

// planes are the sample's H×W planes: three image channels and the mask.
func (s *Sample) planes() [][]float32 {
	n := s.H * s.W
	p := [][]float32{s.Image[:n], s.Image[n : 2*n], s.Image[2*n : 3*n]}
	if s.Mask != nil {
		p = append(p, s.Mask)
	}
	return p
}

func flipH(p []float32, h, w int) {
	for y := range h {
		r := p[y*w : (y+1)*w]
		for i, j := 0, w-1; i < j; i, j = i+1, j-1 {
			r[i], r[j] = r[j], r[i]
		}
	}
}

func flipV(p []float32, h, w int) {
	for i, j := 0, h-1; i < j; i, j = i+1, j-1 {
		for x := range w {
			p[i*w+x], p[j*w+x] = p[j*w+x], p[i*w+x]
		}
	}
}

// shift moves the plane by (dx, dy), repeating the edge into the gap.
func shift(p []float32, h, w, dx, dy int) {
	src := append([]float32(nil), p...)
	for y := range h {
		sy := min(max(y-dy, 0), h-1)
		for x := range w {
			p[y*w+x] = src[sy*w+min(max(x-dx, 0), w-1)]
		}
	}
}

// cellMax reduces an H×W mask to h×w, each cell the maximum over the pixels it covers.
func cellMax(mask []float32, H, W, h, w int) []float32 {
	out := make([]float32, h*w)
	for i := range h {
		y0, y1 := i*H/h, max((i+1)*H/h, i*H/h+1)
		for j := range w {
			x0, x1 := j*W/w, max((j+1)*W/w, j*W/w+1)
			var m float32
			for y := y0; y < min(y1, H); y++ {
				for _, v := range mask[y*W+x0 : y*W+min(x1, W)] {
					m = max(m, v)
				}
			}
			out[i*w+j] = m
		}
	}
	return out
}

// pixelTargets fills an image's target and weight maps (h·w each) from its label and
// its mask at input resolution (nil without one); see Segmentation.
func (s *Segmentation) pixelTargets(label bool, mask []float32, H, W, h, w int, tgt, wgt []float32) error {
	clear(tgt)
	if !label {
		fill(wgt, 1)
		return nil
	}
	if mask == nil {
		clear(wgt)
		return nil
	}
	t := cellMax(mask, H, W, h, w)
	marked := false
	for _, v := range t {
		marked = marked || v > 0
	}
	if !marked {
		clear(wgt)
		return nil
	}
	copy(tgt, t)
	if s.Weights == nil {
		fill(wgt, 1)
		return nil
	}
	ws := s.Weights(t, h, w)
	if len(ws) != h*w {
		return fmt.Errorf("segmentation weights (%s): %d values for a %d×%d output", s.Name, len(ws), h, w)
	}
	copy(wgt, ws)
	return nil
}

func fill(s []float32, v float32) {
	for i := range s {
		s[i] = v
	}
}
