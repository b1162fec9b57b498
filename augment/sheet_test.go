package augment

import (
	"image"
	"image/color"
	"math/rand/v2"
	"testing"
)

func noisyRGBA(w, h int) *image.RGBA {
	rng := rand.New(rand.NewPCG(5, 5))
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = uint8(rng.IntN(256))
	}
	return img
}

// Crops are the image's own pixels, not resampled: a small defect enlarged by a whole
// factor (each pixel a k×k block), a long one cut at 1:1 around it; the outlined copy
// differs only on the mask's edge, in red.
func TestContactSheetCrops(t *testing.T) {
	for _, tc := range []struct {
		size, at image.Point
		box      image.Rectangle
		k        int
	}{
		{image.Pt(200, 150), image.Pt(88, 68), image.Rect(100, 80, 105, 84), 4},  // a pit: 29×28 window, ×4
		{image.Pt(400, 300), image.Pt(88, 39), image.Rect(10, 150, 390, 152), 1}, // a crack: 224×224 at 1:1 around (200, 151)
	} {
		img := noisyRGBA(tc.size.X, tc.size.Y)
		m := image.NewGray(img.Rect)
		for y := tc.box.Min.Y; y < tc.box.Max.Y; y++ {
			for x := tc.box.Min.X; x < tc.box.Max.X; x++ {
				m.SetGray(x, y, color.Gray{255})
			}
		}
		e, ok := cropPair(img, m)
		if !ok {
			t.Fatal("no crop")
		}
		if tc.k == 1 && e.plain.Rect.Dx() != sheetCell {
			t.Errorf("long defect: crop %v, want %d wide at 1:1", e.plain.Rect, sheetCell)
		}
		for y := range e.plain.Rect.Dy() {
			for x := range e.plain.Rect.Dx() {
				sx, sy := tc.at.X+x/tc.k, tc.at.Y+y/tc.k
				if e.plain.RGBAAt(x, y) != img.RGBAAt(sx, sy) {
					t.Fatalf("box %v: crop pixel (%d,%d) is not source pixel (%d,%d) at ×%d", tc.box, x, y, sx, sy, tc.k)
				}
				red := e.outlined.RGBAAt(x, y) == color.RGBA{255, 0, 0, 255}
				if red != onEdge(m, sx, sy) || (!red && e.outlined.RGBAAt(x, y) != e.plain.RGBAAt(x, y)) {
					t.Fatalf("box %v: outlined pixel (%d,%d) red=%v, mask edge=%v", tc.box, x, y, red, onEdge(m, sx, sy))
				}
			}
		}
	}
}
