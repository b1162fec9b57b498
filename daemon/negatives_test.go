package daemon

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/capture"
	"github.com/diagd/diagd/detect"
)

// The negatives pool keeps every Nth passing frame of each camera as a PNG that decodes
// to the frame, names files so they sort by capture time, keeps at most max per camera
// (the oldest go first, also across a restart), and keeps a hostile model version out
// of the path.
func TestNegativesPool(t *testing.T) {
	dir := t.TempDir()
	p := newNegativePool(dir, 2)
	p.max = 3
	t0 := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	frame := func(cam string, i int) capture.Frame {
		m := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(float64(10*i), 100, 200, 0), 8, 12, gocv.MatTypeCV8UC3)
		return capture.Frame{Source: cam, Seq: uint64(i), Mat: m, Captured: t0.Add(time.Duration(i) * time.Second)}
	}
	pass := detect.Result{Verdict: detect.Pass, Score: 0.1, Threshold: 0.5, ModelVersion: "v1"}
	var keptSeqs []int
	for i := 1; i <= 10; i++ {
		f := frame("cam", i)
		kept, err := p.offer(f, pass)
		f.Mat.Close()
		if err != nil {
			t.Fatal(err)
		}
		if kept {
			keptSeqs = append(keptSeqs, i)
		}
	}
	if !slices.Equal(keptSeqs, []int{2, 4, 6, 8, 10}) {
		t.Fatalf("kept frames %v, want every 2nd", keptSeqs)
	}
	names := pngs(t, filepath.Join(dir, "cam"))
	want := []string{"20260301T080006.000-000006-v1.png", "20260301T080008.000-000008-v1.png", "20260301T080010.000-000010-v1.png"}
	if !slices.Equal(names, want) {
		t.Fatalf("pool %v, want the newest 3: %v", names, want)
	}
	m := gocv.IMRead(filepath.Join(dir, "cam", want[2]), gocv.IMReadColor)
	if m.Rows() != 8 || m.Cols() != 12 || m.GetUCharAt(0, 0) != 100 || m.GetUCharAt(0, 1) != 100 || m.GetUCharAt(0, 2) != 200 {
		t.Fatalf("kept frame decodes to %dx%d %v", m.Rows(), m.Cols(), m.Mean())
	}
	m.Close()

	// A restart reads the pool back and goes on evicting the oldest; a model version
	// with a path in it stays one file name inside the camera's folder.
	p = newNegativePool(dir, 1)
	p.max = 3
	f := frame("cam", 11)
	kept, err := p.offer(f, detect.Result{Verdict: detect.Pass, ModelVersion: "x/../../escape/pwned"})
	f.Mat.Close()
	if err != nil || !kept {
		t.Fatalf("offer after a restart: %v %v", kept, err)
	}
	names = pngs(t, filepath.Join(dir, "cam"))
	if len(names) != 3 || names[0] != want[1] || names[2] != "20260301T080011.000-000011-x_____escape_pwned.png" {
		t.Fatalf("pool after a restart %v", names)
	}
	if _, err := os.Stat(filepath.Join(dir, "..", "escape")); err == nil {
		t.Fatal("a model version wrote outside the pool")
	}
}

func pngs(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	slices.Sort(out)
	return out
}

// Only a confident pass is a good image to keep: never an unknown verdict (no model, a
// bad frame, a non-finite score) nor a fail.
func TestKeepable(t *testing.T) {
	for _, tc := range []struct {
		r    detect.Result
		want bool
	}{
		{detect.Result{Verdict: detect.Pass, Score: 0.2}, true},
		{detect.Result{Verdict: detect.Fail, Score: 0.9}, false},
		{detect.Result{Verdict: detect.Unknown}, false},
		{detect.Result{Verdict: detect.Unknown, Err: detect.ErrNonFinite}, false},
		{detect.Result{Verdict: detect.Pass, Err: detect.ErrNonFinite}, false},
	} {
		if got := keepable(tc.r); got != tc.want {
			t.Errorf("keepable(%+v) = %v", tc.r, got)
		}
	}
}
