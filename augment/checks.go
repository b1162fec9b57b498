package augment

import (
	"fmt"
	"image"
	"math"

	"github.com/diagd/diagd/internal/imageops"
	"github.com/diagd/diagd/retrain/dataset"
)

// Visibility is how much a generated defect stands out, in grey levels.
type Visibility struct {
	// Contrast is the difference between the mean over the defect's label pixels and
	// the mean over a ring of surface around it, largest over the colour channels.
	Contrast float64 `json:"contrast"`
	// Change is the mean absolute change of the label pixels against the negative,
	// largest over the channels: a defect painted onto a dark feature that was already
	// there has contrast but no change.
	Change float64 `json:"change"`
}

// Visible says whether both measures reach the threshold.
func (v Visibility) Visible(threshold float64) bool {
	return v.Contrast >= threshold && v.Change >= threshold
}

// MeasureVisibility compares the output with its ring (pixels within ring px of the
// mask, outside it) and with the negative under the mask. A mask that leaves no ring
// (it covers the image) is judged by its change alone.
func MeasureVisibility(in, out *image.RGBA, mask *image.Gray, ring int) Visibility {
	w, h := mask.Rect.Dx(), mask.Rect.Dy()
	near := dilate(mask, ring)
	var sumM, sumR, sumD [3]float64
	var nM, nR float64
	for y := range h {
		for x := range w {
			o := y*out.Stride + 4*x
			switch {
			case mask.Pix[y*mask.Stride+x] > 0:
				nM++
				for c := range 3 {
					sumM[c] += float64(out.Pix[o+c])
					sumD[c] += math.Abs(float64(out.Pix[o+c]) - float64(in.Pix[y*in.Stride+4*x+c]))
				}
			case near[y*w+x]:
				nR++
				for c := range 3 {
					sumR[c] += float64(out.Pix[o+c])
				}
			}
		}
	}
	var v Visibility
	if nM == 0 {
		return v
	}
	for c := range 3 {
		v.Change = max(v.Change, sumD[c]/nM)
		if nR > 0 {
			v.Contrast = max(v.Contrast, math.Abs(sumM[c]/nM-sumR[c]/nR))
		}
	}
	if nR == 0 {
		v.Contrast = v.Change
	}
	return v
}

// dilate marks the pixels within r px (a square) of the mask.
func dilate(mask *image.Gray, r int) []bool {
	w, h := mask.Rect.Dx(), mask.Rect.Dy()
	rows := make([]bool, w*h)
	for y := range h {
		// Horizontal pass: distance to the nearest mask pixel in the row, both ways.
		last := -1 << 30
		for x := range w {
			if mask.Pix[y*mask.Stride+x] > 0 {
				last = x
			}
			rows[y*w+x] = x-last <= r
		}
		last = 1 << 30
		for x := w - 1; x >= 0; x-- {
			if mask.Pix[y*mask.Stride+x] > 0 {
				last = x
			}
			rows[y*w+x] = rows[y*w+x] || last-x <= r
		}
	}
	out := make([]bool, w*h)
	for x := range w {
		last := -1 << 30
		for y := range h {
			if rows[y*w+x] {
				last = y
			}
			out[y*w+x] = y-last <= r
		}
		last = 1 << 30
		for y := h - 1; y >= 0; y-- {
			if rows[y*w+x] {
				last = y
			}
			out[y*w+x] = out[y*w+x] || last-y <= r
		}
	}
	return out
}

// PaperSurvives applies the paper's label rule (spec §1.5, dataset.MaskLabel with
// PaperRule) to a mask in memory: after a PIL bilinear resize to 256×704, some pixel
// must still be exactly 255, or training under that rule calls the image "ok". Only
// the output pixels that can see the mask's box are computed (they equal the full
// resize's: imageops.ResizeWindow).
func PaperSurvives(mask *image.Gray) (bool, error) {
	w, h := mask.Rect.Dx(), mask.Rect.Dy()
	box := maskBounds(mask)
	if box.Empty() {
		return false, nil
	}
	px := make([]uint8, w*h)
	for y := range h {
		copy(px[y*w:], mask.Pix[y*mask.Stride:y*mask.Stride+w])
	}
	ow, oh := dataset.PaperW, dataset.PaperH
	// An output pixel reads source pixels within one output pixel (shrinking) or one
	// source pixel (enlarging) of its centre.
	mx, my := 2+(ow+w-1)/w, 2+(oh+h-1)/h
	out := imageops.Rect{X1: max(box.Min.X*ow/w-mx, 0), Y1: max(box.Min.Y*oh/h-my, 0),
		X2: min(box.Max.X*ow/w+mx, ow), Y2: min(box.Max.Y*oh/h+my, oh)}
	r, err := imageops.ResizeWindow(&imageops.Image{W: w, H: h, C: 1, Pix: px}, 0, 0, w, h, ow, oh, imageops.Bilinear, out)
	if err != nil {
		return false, fmt.Errorf("paper label rule: %w", err)
	}
	for _, v := range r.Pix {
		if v == 255 {
			return true, nil
		}
	}
	return false, nil
}
