package mqtt

import (
	"encoding/json"
	"strings"
	"testing"
)

// A fail from a segmenting detector carries its defects as DeepStream boxes and their
// total area; a verdict without them has neither key, so its JSON is exactly what
// consumers parsed before; more than MaxDefects are cut to the largest; a box that is
// not one is refused.
func TestVerdictDefects(t *testing.T) {
	plain := sample(7) // a fail without a segmentation
	if err := plain.normalize("line1"); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(plain)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "defect") {
		t.Errorf("a verdict without defects: %s", b)
	}

	v := sample(7)
	for i := range MaxDefects + 2 {
		v.Defects = append(v.Defects, Defect{BBox: BBox{TopLeftX: i, TopLeftY: 2, BottomRightX: i + 10, BottomRightY: 12}, Area: 90 - i, Confidence: 0.9})
	}
	v.DefectArea = 600
	if err := v.normalize("line1"); err != nil {
		t.Fatal(err)
	}
	if len(v.Defects) != MaxDefects || v.Defects[0].Area != 90 {
		t.Fatalf("defects %+v, want the first %d", v.Defects, MaxDefects)
	}
	b, err = json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	want := `"defects":[{"bbox":{"topleftx":0,"toplefty":2,"bottomrightx":10,"bottomrighty":12},"area":90,"confidence":0.9},`
	if !strings.Contains(string(b), want) || !strings.Contains(string(b), `"defectArea":600`) {
		t.Errorf("verdict JSON %s lacks %s and defectArea", b, want)
	}

	for _, bad := range []Defect{
		{BBox: BBox{TopLeftX: 5, BottomRightX: 5, BottomRightY: 1}, Confidence: 0.5},    // empty
		{BBox: BBox{TopLeftX: -1, BottomRightX: 5, BottomRightY: 1}, Confidence: 0.5},   // outside
		{BBox: BBox{BottomRightX: 5, BottomRightY: 1}, Confidence: float64(0) / zero()}, // NaN
		{BBox: BBox{BottomRightX: 5, BottomRightY: 1}, Confidence: 1.5},                 // not a probability
		{BBox: BBox{BottomRightX: 5, BottomRightY: 1}, Confidence: 0.5, Area: -3},       // negative area
	} {
		v := sample(7)
		v.Defects = []Defect{bad}
		if err := v.normalize("line1"); err == nil || !strings.Contains(err.Error(), "defect 0") {
			t.Errorf("defect %+v: error %v", bad, err)
		}
	}
}
