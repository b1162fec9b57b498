// Package memseg synthesises defects the way MemSeg's "abnormal simulation" does
// (Yang et al., 2022): a thresholded Perlin-noise shape, confined to where defects may
// appear, is filled with a foreign texture blended in with a random transparency
// factor δ:
//
//	I' = (1−M)⊙I + (1−δ)(M⊙I) + δ(M⊙T),  δ ~ U[0.15, 1]
//
// It needs no model weights: it is the DIAG paper's comparison baseline and diagd's
// fallback when no diffusion model is installed. Paint is diagd's variant that a
// technician can steer: any shape (cracks, pits, ...), a contrast against the surface
// under the shape, texture re-centred on that surface, grey defects on grey images.
package memseg

import (
	"errors"
	"fmt"
	"image"
	"image/draw"
	"math"
	"math/rand/v2"

	"github.com/diagd/diagd/augment/shapes"
)

// Options tune the simulation. The zero value is not useful; start from Defaults.
type Options struct {
	MinDelta, MaxDelta float64 // range of the transparency factor δ
	Jitter             bool    // colour-jitter the texture (MemSeg augments its DTD textures)
}

// Defaults are MemSeg's values.
func Defaults() Options { return Options{MinDelta: 0.15, MaxDelta: 1, Jitter: true} }

// Validate names the bad field.
func (o Options) Validate() error {
	if !(o.MinDelta >= 0 && o.MinDelta <= o.MaxDelta && o.MaxDelta <= 1) {
		return fmt.Errorf("memseg: transparency range [%g, %g] must satisfy 0 ≤ min ≤ max ≤ 1", o.MinDelta, o.MaxDelta)
	}
	return nil
}

// Result is one synthetic defect.
type Result struct {
	Image *image.RGBA
	Mask  *image.Gray // 0 or 255, the pixels that were changed (where δ>0)
	Delta float64     // the transparency factor used
}

// Seeded returns the generator memseg uses for a seed, so callers that must draw from
// the same stream (a mask, then the blend) can.
func Seeded(seed uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, 0x6d656d736567)) // "memseg"
}

// Synthesize draws a Perlin blob inside region (same size as img) and fills it with
// texture. The same inputs and seed give the same output.
func Synthesize(img image.Image, region *image.Gray, texture image.Image, seed uint64, o Options) (Result, error) {
	if region.Bounds().Size() != img.Bounds().Size() {
		return Result{}, fmt.Errorf("memseg: region mask is %v, image is %v: they must be the same size", region.Bounds().Size(), img.Bounds().Size())
	}
	rng := Seeded(seed)
	m, err := shapes.Draw(shapes.Blob, region, rng)
	if err != nil {
		return Result{}, fmt.Errorf("memseg: %w", err)
	}
	return Apply(img, m, texture, rng, o)
}

// ErrEmptyMask says there is nothing to paint.
var ErrEmptyMask = errors.New("defect mask is empty")

// Apply blends texture into img where mask > 0, drawing δ, the texture placement and
// the jitter from rng.
func Apply(img image.Image, mask *image.Gray, texture image.Image, rng *rand.Rand, o Options) (Result, error) {
	if err := o.Validate(); err != nil {
		return Result{}, err
	}
	size := img.Bounds().Size()
	if mask.Bounds().Size() != size {
		return Result{}, fmt.Errorf("memseg: mask is %v, image is %v: they must be the same size", mask.Bounds().Size(), size)
	}
	if texture == nil || texture.Bounds().Empty() {
		return Result{}, errors.New("memseg: no texture image")
	}
	mask = shapes.ZeroOrigin(mask)
	if shapes.Count(mask) == 0 {
		return Result{}, fmt.Errorf("memseg: %w", ErrEmptyMask)
	}
	src := toRGBA(img)
	tex := tileCrop(toRGBA(texture), size, rng)
	if o.Jitter {
		jitter(tex, rng)
	}
	delta := o.MinDelta + (o.MaxDelta-o.MinDelta)*rng.Float64()
	out := Blend(src, mask, tex, delta)
	bin := image.NewGray(mask.Rect)
	for i, v := range mask.Pix {
		if v > 0 {
			bin.Pix[i] = 255
		}
	}
	return Result{Image: out, Mask: bin, Delta: delta}, nil
}

// Blend computes I' = (1−M)⊙I + (1−δ)(M⊙I) + δ(M⊙T) with M = (mask > 0). All three
// images share the size of img and start at the origin. Pixels outside M are copied
// unchanged.
func Blend(img *image.RGBA, mask *image.Gray, tex *image.RGBA, delta float64) *image.RGBA {
	out := image.NewRGBA(image.Rect(0, 0, img.Rect.Dx(), img.Rect.Dy()))
	w, h := out.Rect.Dx(), out.Rect.Dy()
	for y := range h {
		io := y * img.Stride
		to := y * tex.Stride
		oo := y * out.Stride
		copy(out.Pix[oo:oo+4*w], img.Pix[io:io+4*w])
		mr := mask.Pix[y*mask.Stride : y*mask.Stride+w]
		for x, m := range mr {
			if m == 0 {
				continue
			}
			for c := range 3 {
				v := (1-delta)*float64(img.Pix[io+4*x+c]) + delta*float64(tex.Pix[to+4*x+c])
				out.Pix[oo+4*x+c] = uint8(math.Round(min(max(v, 0), 255)))
			}
			out.Pix[oo+4*x+3] = 255
		}
	}
	return out
}

func toRGBA(img image.Image) *image.RGBA {
	if r, ok := img.(*image.RGBA); ok && r.Rect.Min == (image.Point{}) {
		return r
	}
	b := img.Bounds()
	r := image.NewRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	draw.Draw(r, r.Rect, img, b.Min, draw.Src)
	return r
}

// tileCrop takes a size-sized window of the texture at a random offset, tiling the
// texture when it is smaller; textures repeat naturally, unlike objects, so tiling
// keeps their scale where a resize would stretch it.
func tileCrop(tex *image.RGBA, size image.Point, rng *rand.Rand) *image.RGBA {
	tw, th := tex.Rect.Dx(), tex.Rect.Dy()
	ox, oy := rng.IntN(tw), rng.IntN(th)
	out := image.NewRGBA(image.Rect(0, 0, size.X, size.Y))
	for y := range size.Y {
		sy := (y + oy) % th
		for x := range size.X {
			sx := (x + ox) % tw
			copy(out.Pix[y*out.Stride+4*x:y*out.Stride+4*x+4], tex.Pix[sy*tex.Stride+4*sx:])
		}
	}
	return out
}

// jitter changes brightness, contrast, saturation and per-channel gain in place, so a
// texture taken from another good image does not look like the surface it lands on.
func jitter(img *image.RGBA, rng *rand.Rand) {
	bright := 0.7 + 0.6*rng.Float64()
	contrast := 0.6 + 0.8*rng.Float64()
	sat := 0.5 + 1.0*rng.Float64()
	var gain [3]float64
	for c := range gain {
		gain[c] = 0.8 + 0.4*rng.Float64()
	}
	// Mean luma for the contrast pivot, as torchvision's adjust_contrast does.
	var sum float64
	n := 0
	for i := 0; i+3 < len(img.Pix); i += 4 {
		sum += luma(img.Pix[i:])
		n++
	}
	mean := sum / float64(max(n, 1))
	for i := 0; i+3 < len(img.Pix); i += 4 {
		p := img.Pix[i : i+3 : i+3]
		l := luma(p)
		for c := range 3 {
			v := float64(p[c])
			v = l + sat*(v-l) // saturation around the pixel's grey
			v = mean + contrast*(v-mean)
			v *= bright * gain[c]
			p[c] = uint8(math.Round(min(max(v, 0), 255)))
		}
	}
}

func luma(p []uint8) float64 {
	return 0.299*float64(p[0]) + 0.587*float64(p[1]) + 0.114*float64(p[2])
}
