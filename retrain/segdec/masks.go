package segdec

import (
	"fmt"
	"math"

	"github.com/diagd/diagd/detect"
)

// Mask-side helpers for training the segmentation output. Masks are row-major w×h
// float32 maps with values in [0,1] (a defect pixel is > 0.5; soft masks, such as
// magnetic-tile's, are cut there).

// Downsample says how a block of mask pixels becomes one segmentation cell.
type Downsample int

const (
	// MaxPool makes a cell a defect cell when any pixel of its block is one: thin
	// scratches, a pixel or two wide, stay visible at 1/8 (their share of a cell would be
	// an eighth). Regions found on the served map are then up to one cell larger than
	// the defect on each side. The default for targets.
	MaxPool Downsample = iota
	// Area makes a cell the share of its block that is defect (the mean): soft targets
	// whose 0.5 contour follows the defect's outline, but thin defects fall below 0.5.
	Area
)

// DownsampleMask reduces a w×h mask to outW×outH cells, each cell over the source pixels
// it covers (detect.CellSpan), with MaxPool or Area. Values are cut at 0.5 first, so a cell is
// 0 or 1 (MaxPool) or the defect share (Area).
func DownsampleMask(mask []float32, w, h, outW, outH int, mode Downsample) ([]float32, error) {
	if err := checkMap(mask, w, h); err != nil {
		return nil, err
	}
	if outW < 1 || outH < 1 || outW > w || outH > h {
		return nil, fmt.Errorf("segdec: cannot downsample a %dx%d mask to %dx%d", w, h, outW, outH)
	}
	out := make([]float32, outW*outH)
	for i := range outH {
		y0, y1 := detect.CellSpan(i, outH, h)
		for j := range outW {
			x0, x1 := detect.CellSpan(j, outW, w)
			var sum, top float32
			for y := y0; y < y1; y++ {
				for _, v := range mask[y*w+x0 : y*w+x1] {
					if v > 0.5 {
						sum, top = sum+1, 1
					}
				}
			}
			if mode == Area {
				top = sum / float32((y1-y0)*(x1-x0))
			}
			out[i*outW+j] = top
		}
	}
	return out, nil
}

// Weighting is the mixed-supervision paper's loss weight for defect pixels (Božič et
// al. 2021, Sec. 3.2 and its code): a defect pixel weighs Max·(D/Dmax)^P, where D is its
// Euclidean distance to the nearest background pixel and Dmax the largest D in its
// region (8-connected), so the centre of every defect counts most and its uncertain
// edge little; background pixels weigh 1. The paper's KolektorSDD2 runs use Max 3, P 2.
type Weighting struct {
	Max, P float64
}

// PaperWeighting is Max 3, P 2 (the published KolektorSDD2 settings).
func PaperWeighting() Weighting { return Weighting{Max: 3, P: 2} }

// DistanceWeights returns the per-pixel loss weights of a w×h mask (Weighting). A mask
// that is all defect has no background to measure from: every pixel weighs Max.
func DistanceWeights(mask []float32, w, h int, wt Weighting) ([]float32, error) {
	if err := checkMap(mask, w, h); err != nil {
		return nil, err
	}
	if !(wt.Max > 0) || !(wt.P >= 0) || math.IsInf(wt.Max, 0) || math.IsInf(wt.P, 0) {
		return nil, fmt.Errorf("segdec: weighting %+v: Max must be > 0 and P ≥ 0, both finite", wt)
	}
	d := distanceToBackground(mask, w, h)
	on := make([]bool, len(mask))
	for i, v := range mask {
		on[i] = v > 0.5
	}
	labels, n := detect.Components(on, w, h)
	dmax := make([]float64, n+1)
	for i, l := range labels {
		dmax[l] = max(dmax[l], d[i])
	}
	out := make([]float32, w*h)
	for i, l := range labels {
		switch {
		case l == 0:
			out[i] = 1
		case math.IsInf(dmax[l], 1):
			out[i] = float32(wt.Max)
		default:
			out[i] = float32(wt.Max * math.Pow(d[i]/dmax[l], wt.P))
		}
	}
	return out, nil
}

// Targets are one image's pixel targets and weights at the segmentation size.
type Targets struct {
	Targets, Weights []float32
}

// MaskTargets turns a w×h mask into targets and weights for a segW×segH segmentation
// output: targets by DownsampleMask (mode), weights by DistanceWeights at the mask's
// resolution, as the paper computes them before downsizing, then per cell: with Area
// their mean over the cell (the paper's); with MaxPool, the mean over the cell's
// defect pixels where it has some (a cell the defect's edge barely touches weighs as
// little as that edge), 1 elsewhere. A good image's mask is all zeros: targets 0,
// weights 1.
func MaskTargets(mask []float32, w, h, segW, segH int, mode Downsample, wt Weighting) (Targets, error) {
	t, err := DownsampleMask(mask, w, h, segW, segH, mode)
	if err != nil {
		return Targets{}, err
	}
	dw, err := DistanceWeights(mask, w, h, wt)
	if err != nil {
		return Targets{}, err
	}
	if mode == Area {
		return Targets{Targets: t, Weights: averageCells(dw, w, h, segW, segH, nil)}, nil
	}
	return Targets{Targets: t, Weights: averageCells(dw, w, h, segW, segH, mask)}, nil
}

// NoPixelLabels are the targets of an image labelled only as a whole (a defect without
// a mask, in mixed supervision): weights 0, so the pixel loss ignores it and only the
// decision part learns from it.
func NoPixelLabels(segW, segH int) Targets {
	return Targets{Targets: make([]float32, segW*segH), Weights: make([]float32, segW*segH)}
}

// averageCells is the mean of each cell's block. With a mask, a cell holding defect
// pixels averages those only: a max-pooled defect cell weighs what its defect pixels
// do, so a cell the defect's uncertain edge barely touches weighs little, as the edge
// does (its background pixels would otherwise give it full weight).
func averageCells(v []float32, w, h, outW, outH int, mask []float32) []float32 {
	out := make([]float32, outW*outH)
	for i := range outH {
		y0, y1 := detect.CellSpan(i, outH, h)
		for j := range outW {
			x0, x1 := detect.CellSpan(j, outW, w)
			var all, def float64
			var nDef int
			for y := y0; y < y1; y++ {
				for x := x0; x < x1; x++ {
					all += float64(v[y*w+x])
					if mask != nil && mask[y*w+x] > 0.5 {
						def, nDef = def+float64(v[y*w+x]), nDef+1
					}
				}
			}
			out[i*outW+j] = float32(all / float64((y1-y0)*(x1-x0)))
			if nDef > 0 {
				out[i*outW+j] = float32(def / float64(nDef))
			}
		}
	}
	return out
}

func checkMap(m []float32, w, h int) error {
	if w < 1 || h < 1 || w > 1<<15 || h > 1<<15 || len(m) != w*h {
		return fmt.Errorf("segdec: mask of %d values for %dx%d (sides 1 to %d)", len(m), w, h, 1<<15)
	}
	return nil
}

// distanceToBackground is the exact Euclidean distance transform (Felzenszwalb and
// Huttenlocher's two passes of 1-d lower envelopes): each defect pixel's distance to the
// nearest background pixel (0 on background; +Inf when there is none).
func distanceToBackground(mask []float32, w, h int) []float64 {
	inf := math.Inf(1)
	f := make([]float64, w*h) // squared distances, columns first
	for i, v := range mask {
		if v > 0.5 {
			f[i] = inf
		}
	}
	n := max(w, h)
	buf, out := make([]float64, n), make([]float64, n)
	env := newEnvelope(n)
	for x := range w {
		for y := range h {
			buf[y] = f[y*w+x]
		}
		env.transform(buf[:h], out[:h])
		for y := range h {
			f[y*w+x] = out[y]
		}
	}
	for y := range h {
		env.transform(f[y*w:(y+1)*w], out[:w])
		copy(f[y*w:(y+1)*w], out[:w])
	}
	for i := range f {
		f[i] = math.Sqrt(f[i])
	}
	return f
}

// envelope holds the scratch of the 1-d squared distance transform.
type envelope struct {
	v []int
	z []float64
}

func newEnvelope(n int) *envelope { return &envelope{v: make([]int, n), z: make([]float64, n+1)} }

// transform computes d[q] = min_p (q−p)² + f[p] over the lower envelope of parabolas
// rooted at the finite f[p]; all infinite gives all infinite.
func (e *envelope) transform(f, d []float64) {
	k := -1
	for q, fq := range f {
		if math.IsInf(fq, 1) {
			continue
		}
		for k >= 0 {
			p := e.v[k]
			s := ((fq + float64(q*q)) - (f[p] + float64(p*p))) / float64(2*(q-p))
			if s > e.z[k] {
				break
			}
			k--
		}
		k++
		e.v[k] = q
		if k == 0 {
			e.z[k] = math.Inf(-1)
		} else {
			p := e.v[k-1]
			e.z[k] = ((fq + float64(q*q)) - (f[p] + float64(p*p))) / float64(2*(q-p))
		}
		e.z[k+1] = math.Inf(1)
	}
	if k < 0 {
		for q := range d {
			d[q] = math.Inf(1)
		}
		return
	}
	j := 0
	for q := range d {
		for e.z[j+1] < float64(q) {
			j++
		}
		p := e.v[j]
		d[q] = float64((q-p)*(q-p)) + f[p]
	}
}
