package console

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/diagd/diagd/retrain/dataset"
)

// pendingBatch writes a pending batch as the daemon's augment job leaves it: numbered
// images with masks and sidecars, a contact sheet and a summary.
func pendingBatch(t *testing.T, data, batch string, n int, source string) {
	t.Helper()
	dir := filepath.Join(data, PendingDir, batch)
	for i := range n {
		stem := filepath.Join(dir, fmtIndex(i))
		writeFile(t, stem+".png", maskPNG(t, 8, 8, rect(0, 0, 4, 4)))
		writeFile(t, stem+"_mask.png", maskPNG(t, 8, 8, rect(0, 0, 2, 2)))
		sc, _ := json.Marshal(sidecar{DefectKind: "stain", Prompt: "dark stain", SourceNegative: source})
		writeFile(t, stem+".json", sc)
	}
	writeFile(t, filepath.Join(dir, "contact-sheet_00000-00002.png"), maskPNG(t, 8, 8, rect(0, 0, 1, 1)))
	writeFile(t, filepath.Join(dir, "summary_00000-00002.json"), []byte("{}\n"))
}

// reviewSetup is a data folder with two pending batches: b1 (3 images painted on a
// pooled frame) and b2 (1 image whose source lies outside DATA_DIR).
func reviewSetup(t *testing.T) (string, *Review) {
	t.Helper()
	data := t.TempDir()
	src := filepath.Join(data, "negatives", "cam", "good.png")
	writeFile(t, src, maskPNG(t, 8, 8, rect(0, 0, 1, 1)))
	outside := filepath.Join(t.TempDir(), "elsewhere.png")
	writeFile(t, outside, maskPNG(t, 8, 8, rect(0, 0, 1, 1)))
	pendingBatch(t, data, "b1", 3, src)
	pendingBatch(t, data, "b2", 1, outside)
	r, err := OpenReview(data)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return data, r
}

func TestReviewListsAndServesOnlyInsideDataDir(t *testing.T) {
	_, r := reviewSetup(t)
	bs, err := r.PendingBatches()
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 2 || len(bs[0].Images) != 3 || !bs[0].Images[0].HasSource || !bs[0].Images[0].HasMask || bs[0].Images[0].Kind != "stain" {
		t.Fatalf("batches %+v", bs)
	}
	if bs[1].Images[0].HasSource {
		t.Error("a source outside DATA_DIR is offered")
	}
	if _, err := r.ReviewFile("b2", "00000", "source"); !errors.Is(err, ErrNotFound) {
		t.Errorf("source outside DATA_DIR: %v, want ErrNotFound", err)
	}
	f, err := r.ReviewFile("b1", "00000", "source")
	if err != nil {
		t.Fatal(err)
	}
	f.Content.Close()
	for _, c := range [][3]string{{"../x", "00000", "image"}, {"b1", "../../etc", "image"}, {"b1", "00000", "../x"}, {".hidden", "00000", "image"}} {
		if _, err := r.ReviewFile(c[0], c[1], c[2]); !errors.Is(err, ErrBadID) {
			t.Errorf("ReviewFile%v: %v, want ErrBadID", c, err)
		}
	}
	if _, err := r.Decide("../pending", nil, true); !errors.Is(err, ErrBadID) {
		t.Errorf("Decide(../pending): %v", err)
	}
}

func TestReviewMovesFilesWhereHandsWould(t *testing.T) {
	data, r := reviewSetup(t)
	d, err := r.Decide("b1", []string{"00000"}, true)
	if err != nil || len(d.Accepted) != 1 {
		t.Fatalf("accept: %+v %v", d, err)
	}
	if d, err = r.Decide("b1", []string{"00001"}, false); err != nil || len(d.Rejected) != 1 {
		t.Fatalf("reject: %+v %v", d, err)
	}
	acc := filepath.Join(data, "synthetic", "accepted", "b1")
	rej := filepath.Join(data, "synthetic", "rejected", "b1")
	for _, p := range []string{"00000.png", "00000_mask.png", "00000.json"} {
		if !exists(filepath.Join(acc, p)) || exists(filepath.Join(data, PendingDir, "b1", p)) {
			t.Errorf("accepted: %s not moved to accepted/b1", p)
		}
	}
	for _, p := range []string{"00001.png", "00001_mask.png", "00001.json"} {
		if !exists(filepath.Join(rej, p)) {
			t.Errorf("rejected: %s missing", p)
		}
	}
	// Retraining reads exactly the accepted image.
	_, syn, err := dataset.DataDir(data, dataset.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if syn == nil || len(syn.Items) != 1 || syn.Items[0].Path != filepath.Join(acc, "00000.png") || syn.Items[0].Mask == "" {
		t.Fatalf("synthetic set after review: %+v", syn)
	}
	// Accepting the last image finishes the batch: the sheet and summary follow and
	// pending/b1 is gone, exactly as if the folder had been moved by hand.
	if _, err := r.Decide("b1", nil, true); err != nil {
		t.Fatal(err)
	}
	if exists(filepath.Join(data, PendingDir, "b1")) {
		t.Error("pending/b1 is still there")
	}
	for _, p := range []string{"00002.png", "contact-sheet_00000-00002.png", "summary_00000-00002.json"} {
		if !exists(filepath.Join(acc, p)) {
			t.Errorf("%s not in accepted/b1", p)
		}
	}
	// Rejecting a whole batch: nothing of it reaches accepted/.
	if _, err := r.Decide("b2", nil, false); err != nil {
		t.Fatal(err)
	}
	if exists(filepath.Join(data, "synthetic", "accepted", "b2")) || !exists(filepath.Join(data, "synthetic", "rejected", "b2", "00000.png")) {
		t.Error("a rejected batch went to the wrong place")
	}
}

func TestReviewRefusesToOverwrite(t *testing.T) {
	data := t.TempDir()
	pendingBatch(t, data, "b1", 1, "")
	writeFile(t, filepath.Join(data, "synthetic", "accepted", "b1", "00000.png"), []byte("x"))
	r, err := OpenReview(data)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	d, err := r.Decide("b1", nil, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Failed) != 1 || len(d.Accepted) != 0 {
		t.Errorf("decision %+v: want the image refused", d)
	}
	if b, _ := os.ReadFile(filepath.Join(data, "synthetic", "accepted", "b1", "00000.png")); string(b) != "x" {
		t.Error("an accepted file was overwritten")
	}
	if !exists(filepath.Join(data, PendingDir, "b1", "00000.png")) {
		t.Error("the refused image left pending")
	}
}

func TestReviewListsTheFirstImagesOfABigBatch(t *testing.T) {
	data := t.TempDir()
	dir := filepath.Join(data, PendingDir, "big")
	png := maskPNG(t, 4, 4, rect(0, 0, 2, 2))
	for i := range maxListed + 5 {
		writeFile(t, filepath.Join(dir, fmtIndex(i)+".png"), png)
	}
	r, err := OpenReview(data)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	bs, err := r.PendingBatches()
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 1 || bs[0].Total != maxListed+5 || len(bs[0].Images) != maxListed || bs[0].Images[0].ID != "00000" {
		t.Fatalf("batch: total %d, listed %d", bs[0].Total, len(bs[0].Images))
	}
	// Accepting the whole batch covers the images not listed too.
	d, err := r.Decide("big", nil, true)
	if err != nil || len(d.Accepted) != maxListed+5 {
		t.Fatalf("accepted %d, err %v", len(d.Accepted), err)
	}
	if exists(dir) {
		t.Error("the batch is still pending")
	}
}
