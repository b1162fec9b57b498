package augment

import (
	"fmt"
	"image"
	"math"
	"slices"

	"github.com/diagd/diagd/augment/catalogue"
	"github.com/diagd/diagd/augment/shapes"
)

// Surface describes the negatives, measured on a sample of them, so that a catalogue
// that leaves contrast settings out still gets defects that stand out from this
// surface by about as much as its own texture varies.
type Surface struct {
	Images int     `json:"images"` // negatives measured
	Grey   bool    `json:"grey"`   // every one of them grey (R = G = B, JPEG noise aside)
	Mean   float64 `json:"mean"`   // mean grey level
	Noise  float64 `json:"noise"`  // robust standard deviation of fine texture, grey levels
	Source string  `json:"source"` // "measured", or "assumed" when no negative decoded
}

// surfaceSample is how many negatives are measured.
const surfaceSample = 12

// MeasureSurface measures up to surfaceSample negatives spread over the list;
// undecodable ones are passed over (the planner reports them).
func MeasureSurface(negatives []string) Surface {
	s := Surface{Grey: true}
	var means, noises []float64
	step := max(1, len(negatives)/surfaceSample)
	for i := 0; i < len(negatives) && len(means) < surfaceSample; i += step {
		img, err := ReadRGB(negatives[i])
		if err != nil {
			continue
		}
		s.Grey = s.Grey && IsGrey(img)
		m, n := lumaStats(img)
		means, noises = append(means, m), append(noises, n)
	}
	if len(means) == 0 {
		return Surface{Grey: false, Mean: 128, Noise: 4, Source: "assumed"}
	}
	s.Images, s.Source = len(means), "measured"
	s.Mean, s.Noise = median(means), median(noises)
	return s
}

func median(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	return v[len(v)/2]
}

// IsGrey says whether an image is grey: every pixel's channels within 2 levels of each
// other (a grey JPEG decoded through YCbCr can be off by one).
func IsGrey(img *image.RGBA) bool {
	for i := 0; i+3 < len(img.Pix); i += 4 {
		r, g, b := int(img.Pix[i]), int(img.Pix[i+1]), int(img.Pix[i+2])
		if max(r, g, b)-min(r, g, b) > 2 {
			return false
		}
	}
	return true
}

// lumaStats returns an image's mean grey level and the robust standard deviation of its
// fine texture: 1.4826 × the median absolute difference between a pixel and the mean
// of its 3×3 neighbourhood, scaled by √(9/8) (for white noise that difference has
// 8/9 of the pixel variance).
func lumaStats(img *image.RGBA) (mean, noise float64) {
	w, h := img.Rect.Dx(), img.Rect.Dy()
	l := make([]float64, w*h)
	for y := range h {
		for x := range w {
			o := y*img.Stride + 4*x
			l[y*w+x] = 0.299*float64(img.Pix[o]) + 0.587*float64(img.Pix[o+1]) + 0.114*float64(img.Pix[o+2])
			mean += l[y*w+x]
		}
	}
	mean /= float64(max(w*h, 1))
	// Every other pixel is plenty for a median.
	var dev []float64
	for y := 1; y < h-1; y += 2 {
		for x := 1; x < w-1; x += 2 {
			s := 0.0
			for dy := -1; dy <= 1; dy++ {
				for dx := -1; dx <= 1; dx++ {
					s += l[(y+dy)*w+x+dx]
				}
			}
			dev = append(dev, math.Abs(l[y*w+x]-s/9))
		}
	}
	if len(dev) == 0 {
		return mean, 0
	}
	return mean, 1.4826 * median(dev) * math.Sqrt(9.0/8)
}

// MinContrast is the visibility threshold: the catalogue's, else twice the surface's
// fine-texture noise, kept within [6, 40] grey levels.
func (s Surface) MinContrast(c catalogue.Checks) float64 {
	if c.MinContrast != nil {
		return *c.MinContrast
	}
	return math.Round(min(max(2*s.Noise, 6), 40))
}

// DefaultContrast is the fill contrast for a kind that sets none: darker than the
// surface (lighter on dark surfaces) by 2.5 to 5 times the visibility threshold,
// kept inside the grey range. Stains and blobs are broad, so they get 2 to 3.5 times.
func (s Surface) DefaultContrast(t float64, k shapes.Kind) shapes.Range {
	lo, hi := 2.5*t, 5*t
	if k == shapes.Stain || k == shapes.Blob {
		lo, hi = 2*t, 3.5*t
	}
	room := s.Mean - 5
	sign := -1.0
	if s.Mean < 90 {
		room, sign = 250-s.Mean, 1
	}
	hi = min(hi, max(room, t))
	lo = min(lo, hi/2)
	if sign < 0 {
		return shapes.Between(math.Round(-hi), math.Round(-lo))
	}
	return shapes.Between(math.Round(lo), math.Round(hi))
}

func (s Surface) String() string {
	kind := "colour"
	if s.Grey {
		kind = "grey"
	}
	return fmt.Sprintf("%s, mean level %.0f, fine-texture noise %.1f (%s from %d negatives)", kind, s.Mean, s.Noise, s.Source, s.Images)
}
