package memseg

import (
	"bytes"
	"image"
	"image/color"
	"math"
	"math/rand/v2"
	"testing"
)

// surface is a smooth grey gradient, the kind of plain good surface DIAG inpaints on.
func surface(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			v := uint8(80 + 60*x/w + 20*y/h)
			img.SetRGBA(x, y, color.RGBA{v, v, v, 255})
		}
	}
	return img
}

// checker is a high-contrast texture, so any blended pixel visibly differs.
func checker(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			if (x/3+y/3)%2 == 0 {
				img.SetRGBA(x, y, color.RGBA{250, 20, 20, 255})
			} else {
				img.SetRGBA(x, y, color.RGBA{10, 230, 240, 255})
			}
		}
	}
	return img
}

func rectRegion(w, h int, r image.Rectangle) *image.Gray {
	m := image.NewGray(image.Rect(0, 0, w, h))
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			m.Pix[y*m.Stride+x] = 255
		}
	}
	return m
}

func TestSynthesizeStaysInRegionAndIsSeeded(t *testing.T) {
	const w, h = 160, 240
	img, tex := surface(w, h), checker(50, 40)
	allowed := image.Rect(40, 60, 120, 200)
	region := rectRegion(w, h, allowed)
	for seed := range uint64(8) {
		res, err := Synthesize(img, region, tex, seed, Defaults())
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if res.Delta < 0.15 || res.Delta > 1 {
			t.Fatalf("seed %d: δ=%g outside MemSeg's [0.15, 1]", seed, res.Delta)
		}
		inside, changed := 0, 0
		for y := range h {
			for x := range w {
				in := res.Mask.GrayAt(x, y).Y > 0
				if in && !image.Pt(x, y).In(allowed) {
					t.Fatalf("seed %d: mask pixel (%d,%d) outside the region %v", seed, x, y, allowed)
				}
				o, n := img.RGBAAt(x, y), res.Image.RGBAAt(x, y)
				if !in && o != n {
					t.Fatalf("seed %d: pixel (%d,%d) outside the mask changed: %v -> %v", seed, x, y, o, n)
				}
				if in {
					inside++
					if o != n {
						changed++
					}
				}
			}
		}
		if inside == 0 {
			t.Fatalf("seed %d: empty mask", seed)
		}
		// δ ≥ 0.15 against a texture ≥ 60 levels away moves every masked pixel.
		if changed != inside {
			t.Fatalf("seed %d: %d of %d masked pixels unchanged", seed, inside-changed, inside)
		}
		again, err := Synthesize(img, region, tex, seed, Defaults())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again.Image.Pix, res.Image.Pix) || !bytes.Equal(again.Mask.Pix, res.Mask.Pix) || again.Delta != res.Delta {
			t.Fatalf("seed %d: a second run differs", seed)
		}
	}
	a, _ := Synthesize(img, region, tex, 1, Defaults())
	b, _ := Synthesize(img, region, tex, 2, Defaults())
	if bytes.Equal(a.Mask.Pix, b.Mask.Pix) {
		t.Fatal("seeds 1 and 2 gave the same mask")
	}
}

// TestBlendFormula checks pixels against MemSeg's equation evaluated by hand.
func TestBlendFormula(t *testing.T) {
	img, tex := surface(8, 8), checker(8, 8)
	mask := rectRegion(8, 8, image.Rect(2, 2, 5, 5))
	const delta = 0.4
	out := Blend(img, mask, tex, delta)
	for y := range 8 {
		for x := range 8 {
			m := 0.0
			if mask.GrayAt(x, y).Y > 0 {
				m = 1
			}
			i, tx, o := img.RGBAAt(x, y), tex.RGBAAt(x, y), out.RGBAAt(x, y)
			for c, pair := range [][3]uint8{{i.R, tx.R, o.R}, {i.G, tx.G, o.G}, {i.B, tx.B, o.B}} {
				want := (1-m)*float64(pair[0]) + (1-delta)*m*float64(pair[0]) + delta*m*float64(pair[1])
				if math.Abs(float64(pair[2])-want) > 0.5 {
					t.Fatalf("(%d,%d) channel %d: got %d, want %.2f", x, y, c, pair[2], want)
				}
			}
		}
	}
}

func TestEmptyRegionAndBadOptions(t *testing.T) {
	img := surface(32, 32)
	if _, err := Synthesize(img, image.NewGray(image.Rect(0, 0, 32, 32)), checker(4, 4), 0, Defaults()); err == nil {
		t.Fatal("an empty region gave no error")
	}
	if _, err := Synthesize(img, rectRegion(16, 16, image.Rect(0, 0, 8, 8)), checker(4, 4), 0, Defaults()); err == nil {
		t.Fatal("a region of another size gave no error")
	}
	o := Defaults()
	o.MinDelta = 2
	if _, err := Apply(img, rectRegion(32, 32, image.Rect(0, 0, 8, 8)), checker(4, 4), rand.New(rand.NewPCG(1, 1)), o); err == nil {
		t.Fatal("δ range [2,1] accepted")
	}
}
