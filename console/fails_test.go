package console

import (
	"context"
	"errors"
	"image"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/diagd/diagd/internal/imageio"
	"github.com/diagd/diagd/retrain/dataset"
)

func failVerdict(cam string, at time.Time, score float64) Verdict {
	return Verdict{Camera: cam, Time: at, Verdict: "fail", Score: score, Threshold: 0.5, ModelVersion: "v3", PartID: "P-1", FrameID: "f.png"}
}

// runRing offers frames and waits for the ring to have written want of them.
func runRing(t *testing.T, r *FailRing, offers func(), want int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	offers()
	waitFor(t, "failed frames written", func() bool { return len(r.Fails()) >= want })
	cancel()
	<-done
}

func TestFailRingKeepsTheLastN(t *testing.T) {
	dir := t.TempDir()
	r, err := OpenFailRing(slog.New(slog.DiscardHandler), dir, 3)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	m := testFrame(40, 30, 1)
	defer m.Close()
	runRing(t, r, func() {
		pass := failVerdict("cam", t0, 0.1)
		pass.Verdict = "pass"
		r.Offer(m, pass) // not kept
		for i := range 5 {
			r.Offer(m, failVerdict("cam", t0.Add(time.Duration(i)*time.Second), 0.6+float64(i)/100))
			time.Sleep(20 * time.Millisecond) // the queue holds 8; keep order simple
		}
	}, 3)
	waitFor(t, "ring trimmed", func() bool { return len(r.Fails()) == 3 })
	fs := r.Fails()
	if fs[0].Score != 0.64 || fs[2].Score != 0.62 {
		t.Errorf("kept scores %v %v, want the newest three (0.64 first)", fs[0].Score, fs[2].Score)
	}
	if fs[0].Width != 40 || fs[0].Height != 30 || fs[0].ModelVersion != "v3" || fs[0].PartID != "P-1" {
		t.Errorf("record %+v", fs[0])
	}
	ents, _ := os.ReadDir(filepath.Join(dir, FailsDir))
	if len(ents) != 6 {
		t.Errorf("%d files in the ring folder, want 3 PNG + 3 JSON", len(ents))
	}
	// The kept PNG is the frame, lossless.
	img, err := imageio.Read(filepath.Join(dir, FailsDir, fs[0].ID+".png"))
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if img.Cols() != 40 || img.Rows() != 30 {
		t.Errorf("kept image %dx%d", img.Cols(), img.Rows())
	}
	r.Close()
	// Reopening finds them again, and a smaller ring trims the oldest.
	r2, err := OpenFailRing(slog.New(slog.DiscardHandler), dir, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if got := r2.Fails(); len(got) != 2 || got[0].ID != fs[0].ID || got[1].ID != fs[1].ID {
		t.Errorf("after reopening with 2: %v", got)
	}
}

func TestFailLabelling(t *testing.T) {
	dir := t.TempDir()
	r, err := OpenFailRing(slog.New(slog.DiscardHandler), dir, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	m := testFrame(64, 48, 2)
	defer m.Close()
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	runRing(t, r, func() {
		r.Offer(m, failVerdict("cam", t0, 0.9))
		r.Offer(m, failVerdict("cam2", t0.Add(time.Second), 0.8))
	}, 2)
	fs := r.Fails()
	good, defect := fs[1], fs[0]

	if _, err := r.LabelFail(good.ID, Labelling{Label: LabelGood, By: "ann"}); err != nil {
		t.Fatal(err)
	}
	// Wrong size, empty mask, a mask with "good", an unknown label: refused, nothing filed.
	for name, l := range map[string]Labelling{
		"wrong size":   {Label: LabelDefect, Mask: maskPNG(t, 32, 48, image.Rect(0, 0, 8, 8))},
		"empty mask":   {Label: LabelDefect, Mask: maskPNG(t, 64, 48, image.Rectangle{})},
		"not an image": {Label: LabelDefect, Mask: []byte("GIF89a....")},
		"bad label":    {Label: "maybe"},
	} {
		if _, err := r.LabelFail(defect.ID, l); !errors.Is(err, ErrBadInput) {
			t.Errorf("%s: %v, want ErrBadInput", name, err)
		}
	}
	if exists(filepath.Join(dir, dataset.DefectsDir)) {
		t.Error("a refused labelling filed something")
	}
	f, err := r.LabelFail(defect.ID, Labelling{Label: LabelDefect, Mask: maskPNG(t, 64, 48, image.Rect(10, 10, 30, 20)), By: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if f.Label != LabelDefect || f.LabelledBy != "bob" || len(f.Filed) != 2 {
		t.Errorf("record after labelling: %+v", f)
	}
	// What retraining and validation read: negatives/ for good, defects/ with its mask.
	real, _, err := dataset.DataDir(dir, dataset.Options{})
	if err != nil {
		t.Fatal(err)
	}
	byPath := map[string]dataset.Item{}
	for _, it := range real.Items {
		byPath[filepath.Base(it.Path)] = it
	}
	if it, ok := byPath[good.ID+".png"]; !ok || it.Label {
		t.Errorf("good frame in the data set: %+v (present %v)", it, ok)
	}
	it, ok := byPath[defect.ID+".png"]
	if !ok || !it.Label || filepath.Base(it.Mask) != defect.ID+"_mask.png" {
		t.Fatalf("defect in the data set: %+v (present %v)", it, ok)
	}
	mask, err := os.ReadFile(it.Mask)
	if err != nil {
		t.Fatal(err)
	}
	mm, err := imageio.DecodeGray("mask", mask)
	if err != nil {
		t.Fatal(err)
	}
	defer mm.Close()
	if in, out := mm.GetUCharAt(15, 20), mm.GetUCharAt(40, 40); in != 255 || out != 0 {
		t.Errorf("stored mask: inside %d, outside %d (want 255, 0)", in, out)
	}
	// Relabelling moves it: the defect copy goes, a good copy comes.
	if _, err := r.LabelFail(defect.ID, Labelling{Label: LabelGood}); err != nil {
		t.Fatal(err)
	}
	if exists(filepath.Join(dir, "defects", defect.ID+".png")) || exists(filepath.Join(dir, "defects", defect.ID+"_mask.png")) {
		t.Error("the earlier defect copy stayed after relabelling as good")
	}
	if !exists(filepath.Join(dir, "negatives", defect.ID+".png")) {
		t.Error("no good copy after relabelling")
	}
	for _, id := range []string{"../../etc/passwd", "x", good.ID + "/../x"} {
		if _, err := r.LabelFail(id, Labelling{Label: LabelGood}); !errors.Is(err, ErrBadID) {
			t.Errorf("id %q: %v, want ErrBadID", id, err)
		}
	}
	if _, err := r.LabelFail("20260501T120000.000Z-cam-9999", Labelling{Label: LabelGood}); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown id: %v", err)
	}
}
