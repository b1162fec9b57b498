package segdec

import (
	"math"
	"math/rand/v2"
	"testing"
)

func near(a, b float32) bool { return math.Abs(float64(a-b)) < 1e-6 }

func mapOf(w, h int, on ...[2]int) []float32 {
	m := make([]float32, w*h)
	for _, p := range on {
		m[p[1]*w+p[0]] = 1
	}
	return m
}

// One defect pixel in a 4×4 mask: at 2×2 it makes its cell a defect cell (max-pool) or
// a quarter of one (area); a soft value at or below 0.5 is no defect.
func TestDownsampleMaskByHand(t *testing.T) {
	m := mapOf(4, 4, [2]int{1, 2}) // x 1, y 2: cell (row 1, column 0)
	m[3] = 0.5                     // soft, not a defect
	for _, c := range []struct {
		mode Downsample
		want []float32
	}{{MaxPool, []float32{0, 0, 1, 0}}, {Area, []float32{0, 0, 0.25, 0}}} {
		got, err := DownsampleMask(m, 4, 4, 2, 2, c.mode)
		if err != nil {
			t.Fatal(err)
		}
		for i := range got {
			if !near(got[i], c.want[i]) {
				t.Errorf("mode %d: %v, want %v", c.mode, got, c.want)
				break
			}
		}
	}
	// 5×3 to 2×2: columns [0,3) and [2,5), rows [0,2) and [1,3) (cells cover the pixels
	// their share of the image touches), so the middle column and row count twice.
	got, err := DownsampleMask(mapOf(5, 3, [2]int{2, 1}), 5, 3, 2, 2, Area)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range got {
		if !near(v, 1.0/6) {
			t.Errorf("cell %d: %v, want 1/6 (one pixel of a 3×2 block)", i, v)
		}
	}
	if _, err := DownsampleMask(make([]float32, 10), 4, 4, 2, 2, MaxPool); err == nil {
		t.Error("a mask of the wrong length was taken")
	}
	if _, err := DownsampleMask(make([]float32, 16), 4, 4, 8, 2, MaxPool); err == nil {
		t.Error("upsampling was taken")
	}
}

// A 5×5 square defect in a 9×9 image: distances to the background are 1 on its edge,
// 2 inside and 3 at the centre (Dmax), so with Max 3 and P 2 the weights are 1/3, 4/3
// and 3; a lone pixel elsewhere is its own region with Dmax 1: weight 3; background 1.
func TestDistanceWeightsByHand(t *testing.T) {
	w, h := 11, 9
	var on [][2]int
	for y := 2; y < 7; y++ {
		for x := 2; x < 7; x++ {
			on = append(on, [2]int{x, y})
		}
	}
	on = append(on, [2]int{9, 7})
	wt, err := DistanceWeights(mapOf(w, h, on...), w, h, PaperWeighting())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		x, y int
		want float32
	}{{4, 4, 3}, {2, 2, 1.0 / 3}, {6, 4, 1.0 / 3}, {3, 3, 4.0 / 3}, {5, 4, 4.0 / 3}, {9, 7, 3}, {0, 0, 1}, {8, 4, 1}} {
		if got := wt[c.y*w+c.x]; !near(got, c.want) {
			t.Errorf("weight at (%d,%d) = %v, want %v", c.x, c.y, got, c.want)
		}
	}
	all := make([]float32, 6)
	for i := range all {
		all[i] = 1
	}
	wt, err = DistanceWeights(all, 3, 2, Weighting{Max: 2, P: 1})
	if err != nil || wt[0] != 2 || wt[5] != 2 {
		t.Errorf("all-defect mask: %v %v, want Max everywhere", wt, err)
	}
	if _, err := DistanceWeights(all, 3, 2, Weighting{Max: 0, P: 1}); err == nil {
		t.Error("Max 0 was taken")
	}
}

// The distance transform equals the brute-force nearest-background distance.
func TestDistanceTransformMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := range 20 {
		w, h := 1+rng.IntN(17), 1+rng.IntN(13)
		m := make([]float32, w*h)
		density := rng.Float64()
		for i := range m {
			if rng.Float64() < density {
				m[i] = 1
			}
		}
		got := distanceToBackground(m, w, h)
		for i := range m {
			want := math.Inf(1)
			if m[i] <= 0.5 {
				want = 0
			}
			for j := range m {
				if m[j] <= 0.5 {
					dx, dy := float64(i%w-j%w), float64(i/w-j/w)
					want = math.Min(want, math.Hypot(dx, dy))
				}
			}
			if got[i] != want && math.Abs(got[i]-want) > 1e-9 {
				t.Fatalf("trial %d (%dx%d): pixel %d: %v, want %v", trial, w, h, i, got[i], want)
			}
		}
	}
}

// Targets of a mask at the segmentation size: the max-pooled mask, and the weights
// averaged over each cell; a good image weighs 1 everywhere, an image without pixel
// labels 0.
func TestMaskTargets(t *testing.T) {
	w, h := 16, 8
	m := mapOf(w, h, [2]int{9, 1}) // one pixel, in cell 2 of the 4×2 cells of 4×4 pixels
	tg, err := MaskTargets(m, w, h, 4, 2, MaxPool, PaperWeighting())
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range tg.Targets {
		want := float32(0)
		if i == 2 {
			want = 1
		}
		if v != want {
			t.Errorf("target %d = %v, want %v", i, v, want)
		}
	}
	// The defect pixel weighs 3 (its own region, Dmax 1): the cell weighs what its defect
	// pixels do (MaxPool), or the mean with its 15 background pixels (Area).
	if tg.Weights[2] != 3 || tg.Weights[0] != 1 {
		t.Errorf("max-pool weights %v, want 3 in cell 2 and 1 elsewhere", tg.Weights)
	}
	area, err := MaskTargets(m, w, h, 4, 2, Area, PaperWeighting())
	if err != nil {
		t.Fatal(err)
	}
	if want := float32(15+3) / 16; !near(area.Weights[2], want) || !near(area.Targets[2], 1.0/16) {
		t.Errorf("area targets %v weights %v, want 1/16 and %v in cell 2", area.Targets, area.Weights, want)
	}
	good, err := MaskTargets(make([]float32, w*h), w, h, 4, 2, MaxPool, PaperWeighting())
	if err != nil {
		t.Fatal(err)
	}
	weak := NoPixelLabels(4, 2)
	for i := range 8 {
		if good.Targets[i] != 0 || good.Weights[i] != 1 || weak.Weights[i] != 0 {
			t.Fatalf("good %+v, weak %+v", good, weak)
		}
	}
}
