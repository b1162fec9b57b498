package shapes

import (
	"image"
	"math/rand/v2"
	"testing"
)

func rectRegion(w, h int, r image.Rectangle) *image.Gray {
	m := image.NewGray(image.Rect(0, 0, w, h))
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			m.Pix[y*m.Stride+x] = 255
		}
	}
	return m
}

func TestShapesInsideRegion(t *testing.T) {
	const w, h = 200, 120
	allowed := image.Rect(150, 10, 190, 110) // a narrow strip: Perlin blobs often miss it
	region := rectRegion(w, h, allowed)
	for _, k := range Kinds {
		for seed := range uint64(10) {
			m, err := Draw(k, region, rand.New(rand.NewPCG(seed, 7)))
			if err != nil {
				t.Fatal(err)
			}
			if Count(m) == 0 {
				t.Fatalf("%s seed %d: empty shape", k, seed)
			}
			for y := range h {
				for x := range w {
					if m.GrayAt(x, y).Y > 0 && !image.Pt(x, y).In(allowed) {
						t.Fatalf("%s seed %d: pixel (%d,%d) outside %v", k, seed, x, y, allowed)
					}
				}
			}
		}
	}
}

func TestDrawIsSeededAndOffsetRegions(t *testing.T) {
	region := rectRegion(50, 40, image.Rect(5, 5, 45, 35))
	a, _ := Draw(Blob, region, rand.New(rand.NewPCG(3, 3)))
	b, _ := Draw(Blob, region, rand.New(rand.NewPCG(3, 3)))
	if string(a.Pix) != string(b.Pix) {
		t.Fatal("same seed, different shapes")
	}
	// A sub-image region (bounds not at the origin) is handled like its copy.
	big := rectRegion(60, 60, image.Rect(10, 10, 60, 50))
	sub := big.SubImage(image.Rect(10, 10, 60, 50)).(*image.Gray)
	m, err := Draw(Ellipse, sub, rand.New(rand.NewPCG(1, 1)))
	if err != nil || m.Rect != image.Rect(0, 0, 50, 40) || Count(m) == 0 {
		t.Fatalf("sub-image region: %v %v", err, m.Rect)
	}
	if _, err := Draw(Blob, image.NewGray(image.Rect(0, 0, 8, 8)), rand.New(rand.NewPCG(1, 1))); err != ErrEmptyRegion {
		t.Fatalf("empty region: %v", err)
	}
}
