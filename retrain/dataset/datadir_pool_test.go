package dataset

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diagd/diagd/retrain/rtest"
)

// The daemon keeps its negatives per camera (negatives/<camera>/) and writes each
// generation batch into its own folder (synthetic/accepted/<batch>/): DataDir reads
// both, alongside images placed directly in those folders, and records a batch folder
// with nothing usable as skipped instead of failing.
func TestDataDirCameraAndBatchFolders(t *testing.T) {
	d := t.TempDir()
	neg := filepath.Join(d, NegativesDir)
	rtest.Folder(t, neg, 2, false, false, 1)
	rtest.Folder(t, filepath.Join(neg, "cam1"), 3, false, false, 2)
	rtest.Folder(t, filepath.Join(neg, "cam2"), 4, false, false, 3)
	rtest.Folder(t, filepath.Join(neg, ".hidden"), 5, false, false, 4) // an interrupted copy: ignored
	acc := filepath.Join(d, AcceptedDir)
	rtest.Folder(t, filepath.Join(acc, "20260101T000000Z-memseg"), 3, true, true, 5)
	rtest.Folder(t, filepath.Join(acc, "20260102T000000Z-diag"), 2, true, true, 6)
	os.MkdirAll(filepath.Join(acc, "empty-batch"), 0o755)
	real, syn, err := DataDir(d, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if n, p := real.Counts(); n != 2+3+4 || p != 0 {
		t.Errorf("real negatives %d defects %d; want 9 and 0", n, p)
	}
	if len(syn.Items) != 5 || !syn.Items[0].IsSynthetic() || syn.Items[0].Mask == "" {
		t.Errorf("synthetic %d items (%+v); want 5 from two batches, with masks", len(syn.Items), syn.Items)
	}
	if len(syn.Skipped) != 1 || !strings.Contains(syn.Skipped[0].Path, "empty-batch") {
		t.Errorf("skipped %+v; want the empty batch", syn.Skipped)
	}
	// No usable batch at all is an error naming the folder.
	d2 := t.TempDir()
	rtest.Folder(t, filepath.Join(d2, NegativesDir), 2, false, false, 1)
	os.MkdirAll(filepath.Join(d2, AcceptedDir, "empty"), 0o755)
	if _, _, err := DataDir(d2, Options{}); err == nil || !strings.Contains(err.Error(), AcceptedDir) {
		t.Errorf("accepted folder with nothing usable: %v", err)
	}
}
