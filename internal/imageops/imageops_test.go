package imageops

import (
	"image"
	"math/rand/v2"
	"slices"
	"testing"
)

func maskWith(w, h int, set func(x, y int) bool) *Image {
	m := New(w, h, 1)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			if set(x, y) {
				m.Pix[y*w+x] = 255
			}
		}
	}
	return m
}

// The three vectors of spec §2.4 (1024² mask, 1:1 processing ratio, pad 2).
func TestCropRegionVectors(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(x, y int) bool
		want Rect
	}{
		{"tall bar", func(x, y int) bool { return x >= 500 && x <= 519 && y >= 100 && y <= 899 }, Rect{108, 98, 912, 902}},
		{"right edge", func(x, y int) bool { return x >= 1000 && y >= 10 && y <= 20 }, Rect{998, 3, 1024, 29}},
		{"one pixel", func(x, y int) bool { return x == 100 && y == 200 }, Rect{98, 198, 103, 203}},
	} {
		got, err := CropRegion(maskWith(1024, 1024, tc.set), 1024, 1024, 2)
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	if _, err := CropRegion(New(8, 8, 1), 8, 8, 2); err == nil {
		t.Error("empty mask accepted")
	}
}

func TestResizeConstant(t *testing.T) {
	src := New(37, 23, 3)
	for i := range src.Pix {
		src.Pix[i] = []uint8{7, 128, 250}[i%3]
	}
	for _, f := range []Filter{Bilinear, Bicubic, Lanczos} {
		for _, sz := range [][2]int{{100, 64}, {11, 5}, {37, 64}, {200, 23}, {1, 1}} {
			out, err := Resize(src, sz[0], sz[1], f)
			if err != nil {
				t.Fatal(err)
			}
			for i, v := range out.Pix {
				if v != src.Pix[i%3] {
					t.Fatalf("filter %d %v: pixel %d = %d, want %d (weights must sum to one)", f, sz, i, v, src.Pix[i%3])
				}
			}
		}
	}
}

func TestResizeIdentity(t *testing.T) {
	src := New(9, 6, 3)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range src.Pix {
		src.Pix[i] = uint8(r.IntN(256))
	}
	out, err := Resize(src, 9, 6, Lanczos)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(out.Pix, src.Pix) || &out.Pix[0] == &src.Pix[0] {
		t.Fatal("same-size resize must be an exact copy")
	}
}

// TestResizeHand checks a case computed by hand from Resample.c: bilinear 4 → 2 pixels.
// scale = filterscale = 2, support = 2. Output 0: center 1, span [0,3), filter((x-0.5)/2)
// = 0.75, 0.75, 0.25 → 3/7, 3/7, 1/7; on [0,70,140,210] that is 30+20 = 50. Output 1:
// center 3, span [1,4), weights 1/7, 3/7, 3/7 → 10+60+90 = 160. The 22-bit fixed point
// (1797559, 599186) gives the same after the +2^21 rounding.
func TestResizeHand(t *testing.T) {
	src := &Image{W: 4, H: 1, C: 1, Pix: []uint8{0, 70, 140, 210}}
	out, err := Resize(src, 2, 1, Bilinear)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(out.Pix, []uint8{50, 160}) {
		t.Fatalf("got %v, want [50 160]", out.Pix)
	}
	// The same along the vertical axis (vertical pass only).
	src.W, src.H = 1, 4
	out, err = Resize(src, 1, 2, Bilinear)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(out.Pix, []uint8{50, 160}) {
		t.Fatalf("vertical: got %v, want [50 160]", out.Pix)
	}
}

func TestBinarizeAndNearest(t *testing.T) {
	m := &Image{W: 4, H: 1, C: 1, Pix: []uint8{0, 127, 128, 255}}
	dst := make([]float32, 4)
	Binarize(m, dst)
	if !slices.Equal(dst, []float32{0, 0, 1, 1}) {
		t.Fatalf("binarize %v", dst)
	}
	src := make([]float32, 16*16)
	for i := range src {
		src[i] = float32(i)
	}
	out := make([]float32, 4)
	NearestDown(src, 16, 16, 8, out)
	if !slices.Equal(out, []float32{0, 8, 128, 136}) {
		t.Fatalf("nearest %v, want top-left of each 8×8 block", out)
	}
}

// Pillow's alpha arithmetic returns the source exactly at alpha 255; check every value.
func TestOverlayExactWhereMaskZero(t *testing.T) {
	w, h := 256, 4
	init := New(w, h, 3)
	for i := range init.Pix {
		init.Pix[i] = uint8(i / 3 % 256)
	}
	mask := New(w, h, 1)
	r := Rect{100, 0, 104, 4}
	for y := 0; y < h; y++ {
		for x := r.X1; x < r.X2; x++ {
			mask.Pix[y*w+x] = uint8(60 * (x - r.X1 + 1)) // soft: 60..240
		}
	}
	mask.Pix[1*w+102] = 255
	gen := New(r.Dx(), r.Dy(), 3)
	for i := range gen.Pix {
		gen.Pix[i] = 200
	}
	// Mask 0 but inside the crop: still exactly init.
	mask.Pix[3*w+100] = 0
	out, err := Overlay(init, mask, gen, r)
	if err != nil {
		t.Fatal(err)
	}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			i := y*w + x
			m := mask.Pix[i]
			for c := 0; c < 3; c++ {
				o, s := out.Pix[3*i+c], init.Pix[3*i+c]
				switch {
				case m == 0 && o != s:
					t.Fatalf("(%d,%d) mask 0: %d, want source %d", x, y, o, s)
				case m == 255 && o != 200:
					t.Fatalf("(%d,%d) mask 255: %d, want generated 200", x, y, o)
				case m != 0 && m != 255:
					// Blend o ≈ s·(255-m)/255 + 200·m/255, within Pillow's rounding (≤ 2 levels).
					want := (float64(s)*float64(255-m) + 200*float64(m)) / 255
					if d := float64(o) - want; d > 2 || d < -2 {
						t.Fatalf("(%d,%d) mask %d: %d, want ≈ %.1f", x, y, m, o, want)
					}
				}
			}
		}
	}
}

// A window of the output, computed from a window of the input, equals the same pixels of
// the full resize.
func TestResizeWindow(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	src := New(50, 70, 3)
	for i := range src.Pix {
		src.Pix[i] = uint8(r.IntN(256))
	}
	for _, f := range []Filter{Bicubic, Lanczos} {
		for _, sz := range [][2]int{{128, 128}, {20, 31}, {50, 100}, {17, 70}} {
			full, err := Resize(src, sz[0], sz[1], f)
			if err != nil {
				t.Fatal(err)
			}
			out := Rect{sz[0] / 4, sz[1] / 3, sz[0]/2 + 1, sz[1] - 2}
			// The source window: a margin generous enough for any of these scales.
			win := Rect{max(out.X1*50/sz[0]-12, 0), max(out.Y1*70/sz[1]-12, 0), min(out.X2*50/sz[0]+12, 50), min(out.Y2*70/sz[1]+12, 70)}
			wi, err := Crop(src, win)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ResizeWindow(wi, win.X1, win.Y1, 50, 70, sz[0], sz[1], f, out)
			if err != nil {
				t.Fatalf("%v %v: %v", f, sz, err)
			}
			want, _ := Crop(full, out)
			if !slices.Equal(got.Pix, want.Pix) {
				t.Fatalf("filter %d size %v: window differs from the full resize", f, sz)
			}
		}
	}
	// A window that misses what the outputs read is an error.
	wi, _ := Crop(src, Rect{10, 10, 20, 20})
	if _, err := ResizeWindow(wi, 10, 10, 50, 70, 100, 140, Bicubic, Rect{0, 0, 100, 140}); err == nil {
		t.Fatal("too small a window accepted")
	}
}

// opaqueImage hides an image's concrete type, so FromImage takes its generic path.
type opaqueImage struct{ image.Image }

// FromImage's fast paths for RGBA and NRGBA give what its generic path (colour by colour)
// gives, on sub-images too, where Rect.Min is not the origin and rows are wider.
func TestFromImageFastPaths(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 5))
	rgba := image.NewRGBA(image.Rect(-3, 2, 17, 14))
	nrgba := image.NewNRGBA(rgba.Rect)
	for i := range rgba.Pix {
		nrgba.Pix[i] = uint8(rng.IntN(256))
		rgba.Pix[i] = uint8(rng.IntN(256))
		if i%4 == 3 {
			rgba.Pix[i] = 255 // opaque: the generic path would un-premultiply otherwise
		}
	}
	sub := image.Rect(1, 5, 12, 13)
	for _, src := range []interface {
		image.Image
		SubImage(image.Rectangle) image.Image
	}{rgba, nrgba} {
		for _, img := range []image.Image{src, src.SubImage(sub)} {
			got, want := FromImage(img), FromImage(opaqueImage{img})
			if got.W != img.Bounds().Dx() || got.H != img.Bounds().Dy() || !slices.Equal(got.Pix, want.Pix) {
				t.Errorf("%T %v: fast path differs from the generic one", src, img.Bounds())
			}
		}
	}
}
