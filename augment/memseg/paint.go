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
	for i, a := range sh.Alpha {
		if a == 0 {
			continue
		}
		x, y := i%w, i/w
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
		so := y*src.Stride + 4*x
		oo := y*out.Stride + 4*x
		chans := 3
		if grey {
			chans = 1
		}
		var v [3]float64
		for c := range chans {
			s := float64(src.Pix[so+c])
			if grey {
				s = luma(src.Pix[so : so+3])
			}
			base := s
			if blurred != nil {
				base = (1-look.Smooth)*s + look.Smooth*pixel(blurred, x, y, c, grey)
			}
			d := base + shift
			if tex != nil {
				t := float64(tex.Pix[y*tex.Stride+4*x+c])
				if grey {
					t = luma(tex.Pix[y*tex.Stride+4*x : y*tex.Stride+4*x+3])
				}
				d = (1-look.Texture)*base + look.Texture*(t-mt[c]+ms[c]) + shift
			}
			v[c] = s + float64(a)*(d-s)
		}
		if grey {
			v[1], v[2] = v[0], v[0]
		}
		for c := range 3 {
			out.Pix[oo+c] = uint8(math.Round(min(max(v[c], 0), 255)))
		}
		out.Pix[oo+3] = 255
	}
	return out, nil
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
