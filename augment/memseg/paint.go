package memseg

import (
	"errors"
	"image"
	"math"
	"math/rand/v2"

	"github.com/diagd/diagd/augment/shapes"
)

// Look is one drawn appearance of a defect.
type Look struct {
	// Contrast is added to the surface at full coverage, in grey levels: negative
	// darker. It is measured from the surface under the shape: with texture, the
	// texture is re-centred on the surface's mean there first.
	Contrast float64
	// Texture is the share of the texture mixed in (MemSeg's δ); 0 keeps the surface.
	Texture float64
	// Grain is the standard deviation of noise added inside the shape.
	Grain float64
	// Smooth is the share of a blurred surface (radius SmoothRadius) in place of the
	// surface itself: worn or coated areas lose the surface's fine texture.
	Smooth float64
}

// SmoothRadius is the blur radius of Look.Smooth, px.
const SmoothRadius = 4

// Paint draws a shape into img with the look; texture may be nil when Look.Texture is
// 0. With grey set, every changed pixel is written grey (R = G = B) from the luma, so
// grey images get grey defects whatever the texture's colours. Pixels outside the
// shape's coverage are copied unchanged. Noise comes from rng.
func Paint(img *image.RGBA, sh *shapes.Shape, texture *image.RGBA, look Look, grey bool, rng *rand.Rand) (*image.RGBA, error) {
	src := toRGBA(img)
	w, h := src.Rect.Dx(), src.Rect.Dy()
	if sh.W != w || sh.H != h {
		return nil, errors.New("memseg: shape and image differ in size")
	}
	var tex *image.RGBA
	if look.Texture > 0 {
		if texture == nil || texture.Bounds().Empty() {
			return nil, errors.New("memseg: a texture share > 0 needs a texture image")
		}
		tex = tileCrop(toRGBA(texture), image.Pt(w, h), rng)
		if !grey {
			jitter(tex, rng)
		}
	}
	ms, mt := means(src, tex, sh.Alpha, grey)
	var blurred *image.RGBA
	if look.Smooth > 0 {
		blurred = blurAround(src, sh.Alpha, SmoothRadius)
	}
	out := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		copy(out.Pix[y*out.Stride:y*out.Stride+4*w], src.Pix[y*src.Stride:])
	}
	p := painter{src: src, out: out, tex: tex, blurred: blurred, ms: ms, mt: mt, look: look, grey: grey}
	for i, a := range sh.Alpha {
		if a == 0 {
			continue
		}
		shift := look.Contrast
		if sh.Profile != nil {
			shift *= float64(sh.Profile[i])
		}
		if sh.Shade != nil {
			shift += float64(sh.Shade[i]) * math.Abs(look.Contrast)
		}
		if look.Grain > 0 {
			shift += look.Grain * rng.NormFloat64()
		}
		p.pixel(i%w, i/w, float64(a), shift)
	}
	return out, nil
}

// painter holds what every painted pixel needs.
type painter struct {
	src, out, tex, blurred *image.RGBA
	ms, mt                 [3]float64
	look                   Look
	grey                   bool
}

// pixel writes out = s + a·(d − s) with d the target: the surface (partly blurred, partly
// replaced by re-centred texture) shifted by the contrast; grey pixels from the luma.
func (p *painter) pixel(x, y int, a, shift float64) {
	chans := 3
	if p.grey {
		chans = 1
	}
	var v [3]float64
	for c := range chans {
		s := pixel(p.src, x, y, c, p.grey)
		base := s
		if p.blurred != nil {
			base = (1-p.look.Smooth)*s + p.look.Smooth*pixel(p.blurred, x, y, c, p.grey)
		}
		if p.tex != nil {
			base = (1-p.look.Texture)*base + p.look.Texture*(pixel(p.tex, x, y, c, p.grey)-p.mt[c]+p.ms[c])
		}
		v[c] = s + a*(base+shift-s)
	}
	if p.grey {
		v[1], v[2] = v[0], v[0]
	}
	o := y*p.out.Stride + 4*x
	for c := range 3 {
		p.out.Pix[o+c] = uint8(math.Round(min(max(v[c], 0), 255)))
	}
	p.out.Pix[o+3] = 255
}

// means are the coverage-weighted means of the surface and the texture under the
// shape, per channel (channel 0 holds the luma when grey).
func means(src, tex *image.RGBA, alpha []float32, grey bool) (ms, mt [3]float64) {
	w := src.Rect.Dx()
	var wsum float64
	for i, a := range alpha {
		if a == 0 {
			continue
		}
		x, y := i%w, i/w
		wsum += float64(a)
		for c := range 3 {
			ms[c] += float64(a) * pixel(src, x, y, c, grey)
			if tex != nil {
				mt[c] += float64(a) * pixel(tex, x, y, c, grey)
			}
		}
	}
	for c := range 3 {
		ms[c] /= max(wsum, 1e-9)
		mt[c] /= max(wsum, 1e-9)
	}
	return ms, mt
}

func pixel(m *image.RGBA, x, y, c int, grey bool) float64 {
	o := y*m.Stride + 4*x
	if grey {
		return luma(m.Pix[o : o+3])
	}
	return float64(m.Pix[o+c])
}

// blurAround box-blurs img twice (about a Gaussian of radius r) inside the bounding
// box of the shape's coverage, grown by 2r; elsewhere the copy is left black.
func blurAround(img *image.RGBA, alpha []float32, r int) *image.RGBA {
	w, h := img.Rect.Dx(), img.Rect.Dy()
	box := image.Rectangle{}
	for i, a := range alpha {
		if a > 0 {
			box = box.Union(image.Rect(i%w, i/w, i%w+1, i/w+1))
		}
	}
	box = box.Inset(-2 * r).Intersect(image.Rect(0, 0, w, h))
	out := image.NewRGBA(img.Rect)
	tmp := image.NewRGBA(img.Rect)
	copy(out.Pix, img.Pix)
	for range 2 {
		boxBlur(tmp, out, box, r, 1, 0)
		boxBlur(out, tmp, box, r, 0, 1)
	}
	return out
}

// boxBlur averages src over 2r+1 pixels along (dx, dy) inside box, clamping at its
// edges, into dst.
func boxBlur(dst, src *image.RGBA, box image.Rectangle, r, dx, dy int) {
	for y := box.Min.Y; y < box.Max.Y; y++ {
		for x := box.Min.X; x < box.Max.X; x++ {
			var sum [3]int
			for k := -r; k <= r; k++ {
				sx := min(max(x+k*dx, box.Min.X), box.Max.X-1)
				sy := min(max(y+k*dy, box.Min.Y), box.Max.Y-1)
				o := sy*src.Stride + 4*sx
				sum[0] += int(src.Pix[o])
				sum[1] += int(src.Pix[o+1])
				sum[2] += int(src.Pix[o+2])
			}
			o := y*dst.Stride + 4*x
			for c := range 3 {
				dst.Pix[o+c] = uint8((sum[c] + r) / (2*r + 1))
			}
			dst.Pix[o+3] = 255
		}
	}
}
