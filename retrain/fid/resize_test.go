package fid

import (
	"image"
	"math"
	"math/rand/v2"
	"testing"

	"gocv.io/x/gocv"
)

// Hand values of F.interpolate([[0,1],[2,3]], size=(4,4), mode="bilinear",
// align_corners=False): scale 0.5, source positions max(0.5·(d+0.5)−0.5, 0) =
// 0, .25, .75, 1.25 (the last clamps to index 1), so a row [0,1] becomes
// [0, .25, .75, 1] and row k blends the two rows with weights .75/.25 for k = 1, 2.
// Downscaling 4→2 samples positions 0.5 and 2.5: the mean of each pixel pair, no
// antialiasing beyond that.
func TestResizeBilinearHandValues(t *testing.T) {
	dst := make([]float32, 16)
	if err := ResizeBilinear(dst, []float32{0, 1, 2, 3}, 1, 2, 2, 4, 4); err != nil {
		t.Fatal(err)
	}
	want := []float32{
		0, 0.25, 0.75, 1,
		0.5, 0.75, 1.25, 1.5,
		1.5, 1.75, 2.25, 2.5,
		2, 2.25, 2.75, 3,
	}
	for i := range want {
		if dst[i] != want[i] {
			t.Fatalf("upsample: %v, want %v", dst, want)
		}
	}
	down := make([]float32, 2)
	if err := ResizeBilinear(down, []float32{0, 10, 20, 30}, 1, 1, 4, 1, 2); err != nil {
		t.Fatal(err)
	}
	if down[0] != 5 || down[1] != 25 {
		t.Errorf("downsample: %v, want [5 25]", down)
	}
	if err := ResizeBilinear(down, []float32{0, 1}, 1, 2, 2, 1, 2); err == nil {
		t.Error("wrong source length accepted")
	}
}

// OpenCV's INTER_LINEAR on float images uses the same half-pixel mapping with float
// weights, so on a CV_32F image it must agree with ours up to rounding, for both
// enlarging and shrinking to 299×299 (the 8-bit path would not: fixed-point weights).
// The rounding is not only the last bit of the blend: OpenCV computes source positions
// in double, PyTorch (and we) in float32, whose position error grows with the
// coordinate, up to about 3·in·2⁻²⁴ pixels. On random values in [0,1] neighbours differ
// by at most 1, so values may differ by that much; a wrong pixel-centre convention
// would be off by up to ~0.5.
func TestResizeBilinearMatchesOpenCVFloat(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	for _, sz := range [][2]int{{37, 53}, {480, 640}, {299, 299}, {1, 7}} {
		h, w := sz[0], sz[1]
		planar := make([]float32, 3*h*w)
		inter := make([]float32, 3*h*w)
		for y := range h {
			for x := range w {
				for c := range 3 {
					v := rng.Float32()
					planar[c*h*w+y*w+x] = v
					inter[(y*w+x)*3+c] = v
				}
			}
		}
		src, err := gocv.NewMatFromBytes(h, w, gocv.MatTypeCV32FC3, float32Bytes(inter))
		if err != nil {
			t.Fatal(err)
		}
		ref := gocv.NewMat()
		gocv.Resize(src, &ref, image.Pt(299, 299), 0, 0, gocv.InterpolationLinear)
		got := make([]float32, 3*299*299)
		if err := ResizeBilinear(got, planar, 3, h, w, 299, 299); err != nil {
			t.Fatal(err)
		}
		refPx, err := ref.DataPtrFloat32()
		if err != nil {
			t.Fatal(err)
		}
		worst := 0.0
		for y := range 299 {
			for x := range 299 {
				for c := range 3 {
					worst = max(worst, math.Abs(float64(got[c*299*299+y*299+x]-refPx[(y*299+x)*3+c])))
				}
			}
		}
		src.Close()
		ref.Close()
		if tol := 2e-6 + 4*float64(max(h, w))*0x1p-24; worst > tol {
			t.Errorf("%dx%d: largest difference from OpenCV INTER_LINEAR (float) %g > %g", h, w, worst, tol)
		}
	}
}

func float32Bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		u := math.Float32bits(f)
		b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
	}
	return b
}

// Into maps BGR bytes to RGB planes in [-1,1]: a 299×299 image needs no resize, so the
// values are exactly 2·v/255 − 1 with the channels swapped; a grey image fills all three.
func TestPreprocessorInto(t *testing.T) {
	p := NewPreprocessor(299)
	m := gocv.NewMatWithSize(299, 299, gocv.MatTypeCV8UC3)
	defer m.Close()
	m.SetTo(gocv.NewScalar(0, 51, 255, 0)) // B, G, R
	dst := make([]float32, p.Size())
	if err := p.Into(m, dst); err != nil {
		t.Fatal(err)
	}
	n := 299 * 299
	if dst[0] != 1 || dst[n] != 2*float32(51)/255-1 || dst[2*n] != -1 {
		t.Errorf("RGB = %v %v %v; want 1, %v, -1", dst[0], dst[n], dst[2*n], 2*float32(51)/255-1)
	}
	g := gocv.NewMatWithSize(10, 10, gocv.MatTypeCV8U)
	defer g.Close()
	g.SetTo(gocv.NewScalar(255, 0, 0, 0))
	if err := p.Into(g, dst); err != nil {
		t.Fatal(err)
	}
	if dst[0] != 1 || dst[n] != 1 || dst[2*n+n-1] != 1 {
		t.Errorf("grey 255 -> %v %v %v; want 1", dst[0], dst[n], dst[2*n+n-1])
	}
	empty := gocv.NewMat()
	defer empty.Close()
	if err := p.Into(empty, dst); err == nil {
		t.Error("empty Mat accepted")
	}
}
