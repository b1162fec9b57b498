package detect

import (
	"cmp"
	"slices"
)

// SegMap is a frame's segmentation from a model that has one (model.json
// outputs.segmentation): per-pixel defect probabilities, the sigmoid of the model's
// segmentation logit, H rows of W, row-major. The map covers the whole frame: cell
// (i, j) stands for the share [j/W, (j+1)/W) × [i/H, (i+1)/H) of the image, whatever
// its size (the model saw it resized to its input).
type SegMap struct {
	W, H int
	P    []float32
	// Threshold is the model's segmentation threshold (model.json): a pixel at or above
	// it is a defect pixel.
	Threshold float64
}

// Region is one defect region of a segmentation map in source-image pixels: the
// bounding box of the region's cells (X, Y its top-left corner; a cell covers every
// source pixel its share of the image touches) and its area, the region's share of the
// map times the image's pixels.
type Region struct {
	X    int     `json:"x"`
	Y    int     `json:"y"`
	W    int     `json:"w"`
	H    int     `json:"h"`
	Area int     `json:"area"`
	Peak float32 `json:"peak"` // the highest probability in the region
}

// MaxRegions is how many regions a verdict carries at most (the largest).
const MaxRegions = 5

// Regions returns the 8-connected regions of cells whose probability is at least thr,
// mapped to a srcW×srcH image, largest area first (ties: top-most, then left-most), at
// most maxN.
func (s SegMap) Regions(thr float64, srcW, srcH, maxN int) []Region {
	if s.W < 1 || s.H < 1 || len(s.P) != s.W*s.H || srcW < 1 || srcH < 1 || maxN < 1 {
		return nil
	}
	on := make([]bool, len(s.P))
	for i, p := range s.P {
		on[i] = float64(p) >= thr
	}
	labels, n := Components(on, s.W, s.H)
	if n == 0 {
		return nil
	}
	type acc struct {
		i0, j0, i1, j1, cells int
		peak                  float32
	}
	accs := make([]acc, n)
	for k := range accs {
		accs[k] = acc{i0: s.H, j0: s.W, i1: -1, j1: -1}
	}
	for idx, l := range labels {
		if l == 0 {
			continue
		}
		a := &accs[l-1]
		i, j := idx/s.W, idx%s.W
		a.i0, a.j0, a.i1, a.j1 = min(a.i0, i), min(a.j0, j), max(a.i1, i), max(a.j1, j)
		a.cells++
		a.peak = max(a.peak, s.P[idx])
	}
	cellArea := float64(srcW) * float64(srcH) / float64(s.W*s.H)
	out := make([]Region, n)
	for k, a := range accs {
		x0, _ := CellSpan(a.j0, s.W, srcW)
		_, x1 := CellSpan(a.j1, s.W, srcW)
		y0, _ := CellSpan(a.i0, s.H, srcH)
		_, y1 := CellSpan(a.i1, s.H, srcH)
		out[k] = Region{X: x0, Y: y0, W: x1 - x0, H: y1 - y0, Area: int(float64(a.cells)*cellArea + 0.5), Peak: a.peak}
	}
	slices.SortStableFunc(out, func(a, b Region) int {
		return cmp.Or(cmp.Compare(b.Area, a.Area), cmp.Compare(a.Y, b.Y), cmp.Compare(a.X, b.X))
	})
	return out[:min(n, maxN)]
}

// CellSpan is the source range [lo, hi) that cell i of n covers on an axis of size
// pixels: every pixel its real interval [i·size/n, (i+1)·size/n) touches. Training
// targets are made with the same spans (retrain/segdec), so a region's box covers what
// its cells were trained on.
func CellSpan(i, n, size int) (lo, hi int) {
	lo = i * size / n
	hi = ((i+1)*size + n - 1) / n
	return lo, max(hi, lo+1)
}

// Components labels the 8-connected regions of the cells that are on, 1..n row-major in
// order of their first cell (0: off), and returns n.
func Components(on []bool, w, h int) ([]int32, int) {
	labels := make([]int32, len(on))
	var stack []int
	n := int32(0)
	for start, v := range on {
		if !v || labels[start] != 0 {
			continue
		}
		n++
		labels[start] = n
		stack = append(stack[:0], start)
		for len(stack) > 0 {
			i := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			x, y := i%w, i/w
			for ny := max(y-1, 0); ny <= min(y+1, h-1); ny++ {
				for nx := max(x-1, 0); nx <= min(x+1, w-1); nx++ {
					if j := ny*w + nx; on[j] && labels[j] == 0 {
						labels[j] = n
						stack = append(stack, j)
					}
				}
			}
		}
	}
	return labels, int(n)
}
