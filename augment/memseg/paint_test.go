package memseg

import (
	"image"
	"image/color"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/diagd/diagd/augment/shapes"
)

// noisyGrey is a grey surface (R = G = B) around level with ±spread noise.
func noisyGrey(w, h int, level, spread int, seed uint64) *image.RGBA {
	rng := rand.New(rand.NewPCG(seed, 9))
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			v := uint8(level - spread + rng.IntN(2*spread+1))
			img.SetRGBA(x, y, color.RGBA{v, v, v, 255})
		}
	}
	return img
}

func rectShape(w, h int, r image.Rectangle) *shapes.Shape {
	return shapes.FromMask(rectRegion(w, h, r), 0)
}

// On a grey image every pixel stays grey, even with a red and cyan texture mixed in,
// and the fill sits the set contrast below the surface it replaced.
func TestPaintGreyStaysGrey(t *testing.T) {
	const w, h = 80, 60
	img := noisyGrey(w, h, 120, 10, 1)
	r := image.Rect(20, 10, 60, 50)
	for _, tex := range []float64{0, 0.5, 1} {
		out, err := Paint(img, rectShape(w, h, r), checker(7, 5), Look{Contrast: -40, Texture: tex}, true, rand.New(rand.NewPCG(2, 2)))
		if err != nil {
			t.Fatal(err)
		}
		var sumIn, sumOut float64
		for y := range h {
			for x := range w {
				o, i := out.RGBAAt(x, y), img.RGBAAt(x, y)
				if o.R != o.G || o.G != o.B {
					t.Fatalf("texture %g: pixel (%d,%d) = %v is not grey", tex, x, y, o)
				}
				if !image.Pt(x, y).In(r) && o != i {
					t.Fatalf("texture %g: pixel (%d,%d) outside the shape changed", tex, x, y)
				}
				if image.Pt(x, y).In(r) {
					sumIn += float64(i.R)
					sumOut += float64(o.R)
				}
			}
		}
		n := float64(r.Dx() * r.Dy())
		if d := (sumOut - sumIn) / n; math.Abs(d+40) > 0.6 {
			t.Errorf("texture %g: mean change under the mask %.2f, want -40", tex, d)
		}
	}
}

// On a colour image the contrast shifts each channel alike (the hue is kept) and the
// grain is one noise value per pixel, so the shift stays neutral.
func TestPaintColourShift(t *testing.T) {
	const w, h = 20, 20
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < len(img.Pix); i += 4 {
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = 150, 110, 70, 255
	}
	out, err := Paint(img, rectShape(w, h, image.Rect(5, 5, 15, 15)), nil, Look{Contrast: 25, Grain: 2}, false, rand.New(rand.NewPCG(3, 3)))
	if err != nil {
		t.Fatal(err)
	}
	p := out.RGBAAt(8, 8)
	dr, dg, db := int(p.R)-150, int(p.G)-110, int(p.B)-70
	if dr != dg || dg != db || dr < 15 || dr > 35 {
		t.Fatalf("shifts %d %d %d, want one shift near +25", dr, dg, db)
	}
	if _, err := Paint(img, rectShape(w, h, image.Rect(5, 5, 15, 15)), nil, Look{Contrast: 25, Texture: 0.5}, false, rand.New(rand.NewPCG(3, 3))); err == nil {
		t.Fatal("a texture share without a texture accepted")
	}
}

// Smoothing replaces the surface's fine texture by its blur: the spread of the pixels
// under the shape drops well below the surface's, the mean shift stays the contrast.
func TestPaintSmooth(t *testing.T) {
	const w, h = 80, 60
	img := noisyGrey(w, h, 120, 20, 4)
	r := image.Rect(20, 15, 60, 45)
	out, err := Paint(img, rectShape(w, h, r), nil, Look{Contrast: -20, Smooth: 1}, true, rand.New(rand.NewPCG(1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	inner := r.Inset(SmoothRadius)
	sd := func(m *image.RGBA) (mean, sd float64) {
		var s, ss, n float64
		for y := inner.Min.Y; y < inner.Max.Y; y++ {
			for x := inner.Min.X; x < inner.Max.X; x++ {
				v := float64(m.RGBAAt(x, y).R)
				s, ss, n = s+v, ss+v*v, n+1
			}
		}
		return s / n, math.Sqrt(ss/n - s*s/n/n)
	}
	m0, s0 := sd(img)
	m1, s1 := sd(out)
	// Uniform ±20 noise has sd 11.8; two passes of a 9-wide box average over ~17×17.
	if s1 > s0/4 || math.Abs(m1-m0+20) > 1.5 {
		t.Fatalf("sd %.1f → %.1f, mean %.1f → %.1f; want the sd cut and the mean 20 lower", s0, s1, m0, m1)
	}
}
