package segdec

import (
	"math"
	"testing"

	"github.com/diagd/diagd/detect"
)

// Two 4×4 images on 2×2 maps (a cell is a 2×2 block). The defect image's mask has two
// regions: one in cell 0 (p 0.9: hit) and one in cell 3 (p 0.15: missed); the good
// image has no mask. Ranked, the cells are 0.95 (clean), 0.9 (defect), 0.4, 0.3, 0.2
// (clean), 0.15 (defect), 0.1, 0.05 (clean): AP = (1/2 + 2/6)/2 = 5/12, and 1 of 2
// defects is hit at threshold 0.5.
func TestPixelEvalByHand(t *testing.T) {
	e := PixelEval{Threshold: 0.5}
	mask := mapOf(4, 4, [2]int{0, 1}, [2]int{3, 3}) // cells 0 and 3, apart: two regions
	if err := e.Add(detect.SegMap{W: 2, H: 2, P: []float32{0.9, 0.2, 0.3, 0.15}}, mask, 4, 4); err != nil {
		t.Fatal(err)
	}
	if err := e.Add(detect.SegMap{W: 2, H: 2, P: []float32{0.4, 0.05, 0.95, 0.1}}, make([]float32, 16), 4, 4); err != nil {
		t.Fatal(err)
	}
	r, err := e.Report()
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(r.AP-5.0/12) > 1e-12 || r.Defects != 2 || r.DefectsHit != 1 || r.HitShare != 0.5 || r.Cells != 8 || r.DefectCells != 2 || r.Images != 2 {
		t.Errorf("report %+v, want AP 5/12, 1 of 2 defects hit, 2 of 8 cells defect", r)
	}
	// A region on a cell border is hit through either cell it touches: 5×5 pixels on 2×2
	// cells, pixel 2 belongs to both spans [0,3) and [2,5).
	b := PixelEval{Threshold: 0.5}
	if err := b.Add(detect.SegMap{W: 2, H: 2, P: []float32{0, 0, 0, 0.6}}, mapOf(5, 5, [2]int{2, 2}), 5, 5); err != nil {
		t.Fatal(err)
	}
	if r, _ := b.Report(); r.DefectsHit != 1 {
		t.Errorf("border pixel: %+v", r)
	}
	if _, err := (&PixelEval{}).Report(); err == nil {
		t.Error("an empty evaluation gave a pixel AP")
	}
}
