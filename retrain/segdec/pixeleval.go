package segdec

import (
	"errors"
	"fmt"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/retrain/metrics"
)

// PixelEval scores segmentation maps against masks, image by image, at the maps'
// resolution:
//
//   - pixel AP: the average precision of every cell's probability against the cell's
//     truth, the mask max-pooled to the map (a cell is a defect cell when any pixel it
//     covers is, the training targets' rule), over all images added;
//   - defects hit: a defect is an 8-connected region of a mask's defect pixels; it is
//     hit when at least one cell covering one of its pixels (detect.CellSpan) has a
//     probability at or above Threshold, the cut detect's regions use.
//
// Good images add their cells as negatives (their mask, if any, is empty); images
// labelled defective without a mask have no pixel truth and are not added.
type PixelEval struct {
	Threshold float64
	probs     []float64
	truth     []bool
	images    int
	regions   int
	hit       int
}

// MaxPixelCells bounds the cells one evaluation keeps (16M: 2,000 images of a 640×232
// model's 80×29 map use 4.6M).
const MaxPixelCells = 1 << 24

// Add scores one image's map against its w×h mask (values in [0,1], defect > 0.5).
func (e *PixelEval) Add(seg detect.SegMap, mask []float32, w, h int) error {
	if seg.W < 1 || seg.H < 1 || len(seg.P) != seg.W*seg.H {
		return fmt.Errorf("segdec: segmentation map %dx%d with %d values", seg.W, seg.H, len(seg.P))
	}
	if len(e.probs)+len(seg.P) > MaxPixelCells {
		return errors.New("segdec: too many cells for one pixel evaluation")
	}
	truth, err := DownsampleMask(mask, w, h, seg.W, seg.H, MaxPool)
	if err != nil {
		return err
	}
	for i, p := range seg.P {
		e.probs = append(e.probs, float64(p))
		e.truth = append(e.truth, truth[i] > 0)
	}
	e.images++
	on := make([]bool, len(mask))
	for i, v := range mask {
		on[i] = v > 0.5
	}
	labels, n := detect.Components(on, w, h)
	hit := make([]bool, n+1)
	for idx, l := range labels {
		if l == 0 || hit[l] {
			continue
		}
		x, y := idx%w, idx/w
		// The cells covering pixel (x, y): usually one, two or four at span borders.
		for i := y * seg.H / h; i < seg.H && i <= (y+1)*seg.H/h; i++ {
			for j := x * seg.W / w; j < seg.W && j <= (x+1)*seg.W/w; j++ {
				if covers(i, seg.H, h, y) && covers(j, seg.W, w, x) && float64(seg.P[i*seg.W+j]) >= e.Threshold {
					hit[l] = true
				}
			}
		}
	}
	e.regions += n
	for _, h := range hit[1:] {
		if h {
			e.hit++
		}
	}
	return nil
}

// covers says whether cell i of n covers pixel p of an axis of size pixels.
func covers(i, n, size, p int) bool {
	lo, hi := detect.CellSpan(i, n, size)
	return p >= lo && p < hi
}

// PixelReport is the outcome of a pixel evaluation.
type PixelReport struct {
	Images         int     `json:"images"`
	Cells          int     `json:"cells"`
	DefectCells    int     `json:"defect_cells"`
	AP             float64 `json:"ap"`
	Defects        int     `json:"defects"`
	DefectsHit     int     `json:"defects_hit"`
	HitShare       float64 `json:"hit_share"`
	Threshold      float64 `json:"threshold"`
	DefinitionNote string  `json:"definition"`
}

// Report computes the figures. Pixel AP needs defect cells and clean cells; without
// either it is an error (the hit share is still reported).
func (e *PixelEval) Report() (PixelReport, error) {
	r := PixelReport{Images: e.images, Cells: len(e.probs), Defects: e.regions, DefectsHit: e.hit, Threshold: e.Threshold,
		DefinitionNote: "pixel AP over the segmentation map's cells against the masks max-pooled to it; a defect (8-connected mask region) is hit when a cell covering one of its pixels reaches the threshold"}
	for _, t := range e.truth {
		if t {
			r.DefectCells++
		}
	}
	if e.regions > 0 {
		r.HitShare = float64(e.hit) / float64(e.regions)
	}
	if r.DefectCells == 0 || r.DefectCells == r.Cells {
		return r, errors.New("segdec: pixel AP needs both defect and clean cells")
	}
	r.AP = metrics.AveragePrecision(e.probs, e.truth)
	return r, nil
}
