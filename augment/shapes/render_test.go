package shapes

import (
	"image"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// axis measures a label mask: the angle of its principal axis (degrees from
// horizontal, counter-clockwise as seen, in (-90, 90]), its extent along that axis and
// its largest distance from it.
func axis(m *image.Gray) (angle, extent, spread float64) {
	var xs, ys []float64
	for y := range m.Rect.Dy() {
		for x := range m.Rect.Dx() {
			if m.Pix[y*m.Stride+x] > 0 {
				xs, ys = append(xs, float64(x)), append(ys, -float64(y))
			}
		}
	}
	var mx, my float64
	for i := range xs {
		mx += xs[i]
		my += ys[i]
	}
	mx /= float64(len(xs))
	my /= float64(len(xs))
	var sxx, syy, sxy float64
	for i := range xs {
		dx, dy := xs[i]-mx, ys[i]-my
		sxx += dx * dx
		syy += dy * dy
		sxy += dx * dy
	}
	th := 0.5 * math.Atan2(2*sxy, sxx-syy)
	lo, hi := math.Inf(1), math.Inf(-1)
	for i := range xs {
		dx, dy := xs[i]-mx, ys[i]-my
		along := dx*math.Cos(th) + dy*math.Sin(th)
		lo, hi = min(lo, along), max(hi, along)
		spread = max(spread, math.Abs(-dx*math.Sin(th)+dy*math.Cos(th)))
	}
	return th * 180 / math.Pi, hi - lo, spread
}

func full(w, h int) *image.Gray { return rectRegion(w, h, image.Rect(0, 0, w, h)) }

// Cracks honour length and angle: measured on the label masks of 200 cracks, the
// angle of each lies in the range and their spread covers it evenly; the end-to-end
// extent equals the drawn length.
func TestCrackAngleAndLength(t *testing.T) {
	spec := Spec{Kind: Crack, Length: Between(60, 100), Width: Between(1.5, 2.5), Angle: Between(10, 30),
		Wiggle: Fixed(2), Branches: Fixed(0), Taper: Fixed(0.5)}
	region := full(200, 200)
	rng := rand.New(rand.NewPCG(1, 2))
	var angles []float64
	for i := range 200 {
		sh, err := Render(spec, region, rng)
		if err != nil {
			t.Fatal(err)
		}
		a, ext, _ := axis(sh.Mask)
		if a < 10-4 || a > 30+4 {
			t.Errorf("crack %d: measured angle %.1f° outside [10, 30] (drawn %.1f°)", i, a, sh.Info.Angle)
		}
		if sh.Info.Length < 60 || sh.Info.Length > 100 {
			t.Errorf("crack %d: length %.1f outside [60, 100]", i, sh.Info.Length)
		}
		// The principal axis of a wandering crack tilts a little off its chord.
		if math.Abs(ext-sh.Info.Length) > max(4, 0.06*sh.Info.Length) {
			t.Errorf("crack %d: measured extent %.1f px, drawn length %.1f", i, ext, sh.Info.Length)
		}
		angles = append(angles, a)
	}
	slices.Sort(angles)
	q1, med, q3 := angles[50], angles[100], angles[150]
	// Uniform on [10, 30]: quartiles 15, 20, 25 (±2.5 is over 4 standard errors at n=200).
	if math.Abs(q1-15) > 2.5 || math.Abs(med-20) > 2.5 || math.Abs(q3-25) > 2.5 {
		t.Errorf("measured angle quartiles %.1f %.1f %.1f, want about 15 20 25", q1, med, q3)
	}
}

// Width and taper: a straight horizontal crack of width 6 with taper 1 is 6 px thick
// in the middle and thin at the ends; with taper 0 it is even.
func TestCrackWidthAndTaper(t *testing.T) {
	for _, taper := range []float64{0, 1} {
		spec := Spec{Kind: Crack, Length: Fixed(120), Width: Fixed(6), Angle: Fixed(0), Wiggle: Fixed(0), Branches: Fixed(0), Taper: Fixed(taper)}
		sh, err := Render(spec, full(200, 60), rand.New(rand.NewPCG(3, 3)))
		if err != nil {
			t.Fatal(err)
		}
		cols := columnCounts(sh.Mask)
		var xs []int
		for x, n := range cols {
			if n > 0 {
				xs = append(xs, x)
			}
		}
		first, last := xs[0], xs[len(xs)-1]
		mid, end := cols[(first+last)/2], cols[first+3]
		switch {
		case mid < 5 || mid > 7:
			t.Errorf("taper %g: %d px thick in the middle, want 6", taper, mid)
		case taper == 1 && end > 2:
			t.Errorf("taper 1: %d px thick near the end, want ≤ 2", end)
		case taper == 0 && end < 5:
			t.Errorf("taper 0: %d px thick near the end, want 6", end)
		}
	}
}

func columnCounts(m *image.Gray) []int {
	cols := make([]int, m.Rect.Dx())
	for y := range m.Rect.Dy() {
		for x := range m.Rect.Dx() {
			if m.Pix[y*m.Stride+x] > 0 {
				cols[x]++
			}
		}
	}
	return cols
}

// Branches leave the crack's line: a straight crack with three branches at 60° spreads
// far from its axis; without branches it stays within its width.
func TestCrackBranches(t *testing.T) {
	for _, nb := range []float64{0, 3} {
		spec := Spec{Kind: Crack, Length: Fixed(150), Width: Fixed(2), Angle: Fixed(0), Wiggle: Fixed(0),
			Branches: Fixed(nb), BranchAngle: Fixed(60), BranchLength: Fixed(0.3)}
		sh, err := Render(spec, full(240, 240), rand.New(rand.NewPCG(4, 4)))
		if err != nil {
			t.Fatal(err)
		}
		_, _, spread := axis(sh.Mask)
		if sh.Info.Branches != int(nb) {
			t.Errorf("%d branches drawn, want %g", sh.Info.Branches, nb)
		}
		// A 45 px branch at 60° reaches 39 px off the line.
		if nb == 0 && spread > 3 || nb == 3 && spread < 25 {
			t.Errorf("%g branches: spread %.1f px off the axis", nb, spread)
		}
	}
}

// Scratches: bend 0 is straight; bend 0.1 bows the middle about 0.1×length sideways.
func TestScratchBend(t *testing.T) {
	for _, bend := range []float64{0, 0.1} {
		spec := Spec{Kind: Scratch, Length: Fixed(100), Width: Fixed(1), Angle: Fixed(-40), Bend: Fixed(bend), Taper: Fixed(0)}
		sh, err := Render(spec, full(200, 200), rand.New(rand.NewPCG(5, 5)))
		if err != nil {
			t.Fatal(err)
		}
		_, _, spread := axis(sh.Mask)
		// The principal axis runs between apex and chord, so the farthest pixel is
		// between half and all of the sagitta off it.
		if bend == 0 && spread > 1.5 || bend == 0.1 && (spread < 4 || spread > 11) {
			t.Errorf("bend %g: %.1f px off the axis", bend, spread)
		}
	}
}

// Pits are shaded hollows of the given radius; stains fade out softly.
func TestPitAndStain(t *testing.T) {
	pit, err := Render(Spec{Kind: Pit, Radius: Fixed(8), Aspect: Fixed(1), Irregularity: Fixed(0), Shading: Fixed(0.8), Softness: Fixed(0.1)},
		full(64, 64), rand.New(rand.NewPCG(6, 6)))
	if err != nil {
		t.Fatal(err)
	}
	if area := math.Pi * 64; math.Abs(float64(pit.Info.Pixels)-area) > 0.15*area {
		t.Errorf("pit of radius 8: %d label pixels, want about %.0f", pit.Info.Pixels, area)
	}
	lo, hi := slices.Min(pit.Shade), slices.Max(pit.Shade)
	if lo > -0.5 || hi < 0.5 {
		t.Errorf("pit shading spans [%.2f, %.2f], want a lit and a shaded wall (±0.8 at the rim)", lo, hi)
	}
	stain, err := Render(Spec{Kind: Stain, Radius: Fixed(20), Softness: Fixed(0.6)}, full(100, 100), rand.New(rand.NewPCG(7, 7)))
	if err != nil {
		t.Fatal(err)
	}
	soft := 0
	for _, a := range stain.Alpha {
		if a > 0.05 && a < 0.95 {
			soft++
		}
	}
	if soft < stain.Info.Pixels/3 {
		t.Errorf("stain with softness 0.6: %d partly covered pixels for %d label pixels", soft, stain.Info.Pixels)
	}
}

// Percent sizes follow the image: a 10% crack is 10% of the shorter side.
func TestPercentSizes(t *testing.T) {
	spec := Spec{Kind: Scratch, Length: Percent(50, 50), Width: Fixed(1), Angle: Fixed(0), Bend: Fixed(0)}
	for _, size := range []image.Point{{100, 300}, {400, 200}} {
		sh, err := Render(spec, full(size.X, size.Y), rand.New(rand.NewPCG(8, 8)))
		if err != nil {
			t.Fatal(err)
		}
		if want := 0.5 * float64(min(size.X, size.Y)); sh.Info.Length != want {
			t.Errorf("%v: length %.1f, want %.1f", size, sh.Info.Length, want)
		}
	}
}
