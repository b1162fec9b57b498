package metrics

import (
	"encoding/csv"
	"image"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// The PNG decodes at the plot size, has the curve colour along the top edge where a
// perfect-precision stretch runs (recall 0..0.5 at precision 1 in the docstring
// example), and the max-F1 marker at (R 1, P 2/3).
func TestWritePRCurvePNG(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pr.png")
	s := []float64{0.1, 0.4, 0.35, 0.8}
	y := labels(0, 0, 1, 1)
	if err := WritePRCurvePNG(path, s, y, "docstring example"); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if img.Bounds() != image.Rect(0, 0, plotW, plotH) {
		t.Fatalf("bounds %v", img.Bounds())
	}
	is := func(x, y int, c interface{ RGBA() (r, g, b, a uint32) }) bool {
		r1, g1, b1, _ := img.At(x, y).RGBA()
		r2, g2, b2, _ := c.RGBA()
		return r1 == r2 && g1 == g2 && b1 == b2
	}
	// Precision 1 is the top axis row; the curve runs there from recall 0 to 0.5.
	if !is(marginL+axisW/4, marginT, colCurve) {
		t.Errorf("no curve at recall .25, precision 1")
	}
	// Marker ring: radius 6 around (R=1, P=2/3).
	h := float64(axisH)
	cx, cy := marginL+axisW, marginT+axisH-int(math.Round(h*2/3))
	if !is(cx, cy-6, colMark) {
		t.Errorf("no max-F1 marker above (%d,%d)", cx, cy)
	}
	if err := WritePRCurvePNG(filepath.Join(dir, "bad.png"), s, labels(0, 0, 0, 0), "x"); err == nil {
		t.Error("single-class data plotted without error")
	}
	if _, err := os.Stat(filepath.Join(dir, "bad.png")); !os.IsNotExist(err) {
		t.Errorf("bad.png exists after a failed plot: %v", err)
	}
	if os.Getenv("DIAGD_KEEP_PLOT") != "" { // look at a realistic plot: DIAGD_KEEP_PLOT=/tmp/pr.png
		rng := rand.New(rand.NewPCG(3, 4))
		var ss []float64
		var yy []bool
		for i := range 400 {
			pos := i%5 == 0
			v := rng.NormFloat64()
			if pos {
				v += 2
			}
			ss, yy = append(ss, v), append(yy, pos)
		}
		if err := WritePRCurvePNG(os.Getenv("DIAGD_KEEP_PLOT"), ss, yy, "random: 400 samples, 80 defects"); err != nil {
			t.Fatal(err)
		}
	}
}

func TestWriteScoresCSV(t *testing.T) {
	path := filepath.Join(t.TempDir(), "scores.csv")
	s := []float64{0.1, 0.4, 0.35, 0.8}
	y := labels(0, 0, 1, 1)
	if err := WriteScoresCSV(path, []string{"a.png", "b,c.png", "d.png", "e.png"}, s, y, 0.225); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"name", "score", "label", "predicted", "outcome"},
		{"a.png", "0.1", "0", "0", "TN"},
		{"b,c.png", "0.4", "0", "1", "FP"},
		{"d.png", "0.35", "1", "1", "TP"},
		{"e.png", "0.8", "1", "1", "TP"},
	}
	if len(rows) != len(want) {
		t.Fatalf("rows %v", rows)
	}
	for i := range want {
		for j := range want[i] {
			if rows[i][j] != want[i][j] {
				t.Fatalf("row %d: %v, want %v", i, rows[i], want[i])
			}
		}
	}
	// Scores round-trip exactly.
	if v, _ := strconv.ParseFloat(rows[3][1], 64); v != 0.35 {
		t.Errorf("score %v", v)
	}
	if err := WriteScoresCSV(path, []string{"a"}, s, y, 0.5); err == nil {
		t.Error("length mismatch accepted")
	}
}
