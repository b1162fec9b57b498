package imageops

import (
	"errors"
	"fmt"
)

// Rect is a crop box (x1, y1, x2, y2), half-open, as PIL's crop takes it.
type Rect struct{ X1, Y1, X2, Y2 int }

// Dx is the width.
func (r Rect) Dx() int { return r.X2 - r.X1 }

// Dy is the height.
func (r Rect) Dy() int { return r.Y2 - r.Y1 }

// ErrEmptyMask means the mask has no non-zero pixel, so there is nothing to inpaint.
var ErrEmptyMask = errors.New("mask has no non-zero pixel")

// CropRegion is diffusers' VaeImageProcessor.get_crop_region(mask, width, height, pad):
// the bounding box of non-zero mask pixels, padded, then grown symmetrically on its short
// side to the width:height aspect and shifted back inside the image.
func CropRegion(mask *Image, width, height, pad int) (Rect, error) {
	if mask.C != 1 {
		return Rect{}, fmt.Errorf("imageops: crop region: mask has %d channels, want 1", mask.C)
	}
	w, h := mask.W, mask.H
	colUsed := make([]bool, w)
	rowUsed := make([]bool, h)
	for y := 0; y < h; y++ {
		for x, v := range mask.Pix[y*w : (y+1)*w] {
			if v != 0 {
				colUsed[x] = true
				rowUsed[y] = true
			}
		}
	}
	left, right, top, bottom := leading(colUsed), trailing(colUsed), leading(rowUsed), trailing(rowUsed)
	if left == w {
		return Rect{}, fmt.Errorf("imageops: crop region: %w", ErrEmptyMask)
	}
	x1, y1 := max(left-pad, 0), max(top-pad, 0)
	x2, y2 := min(w-right+pad, w), min(h-bottom+pad, h)
	ratioCrop := float64(x2-x1) / float64(y2-y1)
	ratioProc := float64(width) / float64(height)
	if ratioCrop > ratioProc {
		diff := int(float64(x2-x1)/ratioProc - float64(y2-y1)) // Python int(): toward zero
		y1, y2 = grow(y1, y2, diff, h)
	} else {
		diff := int(float64(y2-y1)*ratioProc - float64(x2-x1))
		x1, x2 = grow(x1, x2, diff, w)
	}
	return Rect{x1, y1, x2, y2}, nil
}

func floorDiv(a, b int) int {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func leading(used []bool) int {
	n := 0
	for _, u := range used {
		if u {
			break
		}
		n++
	}
	return n
}

func trailing(used []bool) int {
	n := 0
	for i := len(used) - 1; i >= 0; i-- {
		if used[i] {
			break
		}
		n++
	}
	return n
}

// Crop is PIL's crop for a box inside the image.
func Crop(src *Image, r Rect) (*Image, error) {
	if r.X1 < 0 || r.Y1 < 0 || r.X2 > src.W || r.Y2 > src.H || r.Dx() <= 0 || r.Dy() <= 0 {
		return nil, fmt.Errorf("imageops: crop %v outside %dx%d image", r, src.W, src.H)
	}
	out := New(r.Dx(), r.Dy(), src.C)
	row := r.Dx() * src.C
	for y := 0; y < r.Dy(); y++ {
		copy(out.Pix[y*row:(y+1)*row], src.Pix[((r.Y1+y)*src.W+r.X1)*src.C:])
	}
	return out, nil
}

// Binarize is the mask processor's pil_to_numpy (/255, float32) followed by do_binarize
// (< 0.5 → 0, ≥ 0.5 → 1): v/255 ≥ 0.5 exactly when v ≥ 128. dst has one value per pixel.
func Binarize(mask *Image, dst []float32) {
	for i, v := range mask.Pix {
		if float32(v)/255 >= 0.5 {
			dst[i] = 1
		} else {
			dst[i] = 0
		}
	}
}

// NearestDown is F.interpolate(mode="nearest") from w×h to (w/f)×(h/f) for an exact
// factor f: output (i, j) takes source (f·i, f·j), the top-left pixel of each block.
func NearestDown(src []float32, w, h, f int, dst []float32) {
	ow, oh := w/f, h/f
	for i := 0; i < oh; i++ {
		for j := 0; j < ow; j++ {
			dst[i*ow+j] = src[(f*i)*w+f*j]
		}
	}
}

// div255 is Pillow's DIV255: (a + 128 + ((a + 128) >> 8)) >> 8, exact rounding of a/255.
func div255(a uint32) uint32 {
	t := a + 128
	return ((t >> 8) + t) >> 8
}

// Overlay is diffusers' apply_overlay(mask, init, gen, crop) with Pillow's integer
// arithmetic: init becomes RGBa pasted through alpha = 255 - mask (Paste.c BLEND onto a
// zero canvas), is unpremultiplied back to RGBA (Convert.c), gen — already resized to the
// crop's size — is pasted at the crop on a black canvas, and init is alpha-composited
// over it (AlphaComposite.c, 7 precision bits). Where mask is 0 the result is init exactly.
func Overlay(init, mask, gen *Image, r Rect) (*Image, error) {
	if init.C != 3 || gen.C != 3 || mask.C != 1 {
		return nil, fmt.Errorf("imageops: overlay wants RGB init and gen and an L mask, got %d, %d, %d channels", init.C, gen.C, mask.C)
	}
	if mask.W != init.W || mask.H != init.H {
		return nil, fmt.Errorf("imageops: overlay: mask %dx%d, image %dx%d", mask.W, mask.H, init.W, init.H)
	}
	if gen.W != r.Dx() || gen.H != r.Dy() || r.X1 < 0 || r.Y1 < 0 || r.X2 > init.W || r.Y2 > init.H {
		return nil, fmt.Errorf("imageops: overlay: generated %dx%d does not fit crop %v in %dx%d", gen.W, gen.H, r, init.W, init.H)
	}
	out := New(init.W, init.H, 3)
	for y := 0; y < init.H; y++ {
		for x := 0; x < init.W; x++ {
			i := y*init.W + x
			if mask.Pix[i] == 0 {
				// Alpha 255: Pillow's arithmetic returns init exactly (see the tests).
				copy(out.Pix[3*i:3*i+3], init.Pix[3*i:3*i+3])
				continue
			}
			// Background: the generated crop, black outside it, alpha 255.
			var dst [3]uint32
			if x >= r.X1 && x < r.X2 && y >= r.Y1 && y < r.Y2 {
				g := ((y-r.Y1)*gen.W + (x - r.X1)) * 3
				dst = [3]uint32{uint32(gen.Pix[g]), uint32(gen.Pix[g+1]), uint32(gen.Pix[g+2])}
			}
			// Source: init premultiplied (alpha 255 → unchanged), pasted with mask a = 255 - m.
			a := 255 - uint32(mask.Pix[i])
			var src [3]uint32
			sa := div255(255 * a)
			for c := 0; c < 3; c++ {
				p := div255(uint32(init.Pix[3*i+c]) * a)
				// RGBa → RGBA: unpremultiply unless alpha is 0 or 255.
				if sa != 0 && sa != 255 {
					p = min(255*p/sa, 255)
				}
				src[c] = p
			}
			o := out.Pix[3*i : 3*i+3]
			if sa == 0 {
				o[0], o[1], o[2] = uint8(dst[0]), uint8(dst[1]), uint8(dst[2])
				continue
			}
			const pb = 7
			const da = 255 // background alpha
			blend := da * (255 - sa)
			outa255 := sa*255 + blend
			coef1 := sa * 255 * 255 * (1 << pb) / outa255
			coef2 := 255*(1<<pb) - coef1
			for c := 0; c < 3; c++ {
				t := src[c]*coef1 + dst[c]*coef2 + (0x80 << pb)
				o[c] = uint8((((t >> 8) + t) >> 8) >> pb)
			}
		}
	}
	return out, nil
}

// grow widens [lo,hi) by diff, floor(diff/2) before and the rest after, then shifts it
// back inside [0,limit), as diffusers' get_crop_region does on either axis.
func grow(lo, hi, diff, limit int) (int, int) {
	lo -= floorDiv(diff, 2)
	hi += diff - floorDiv(diff, 2)
	if hi >= limit {
		d := hi - limit
		hi -= d
		lo -= d
	}
	if lo < 0 {
		hi -= lo
		lo = 0
	}
	if hi >= limit {
		hi = limit
	}
	return lo, hi
}
