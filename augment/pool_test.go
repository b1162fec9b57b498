package augment

import (
	"os"
	"path/filepath"
	"testing"
)

// The pool is the folder and its camera subfolders; hidden folders, non-images and
// deeper folders are left out; a missing pool is empty, not an error.
func TestListNegativePool(t *testing.T) {
	d := t.TempDir()
	for _, f := range []string{"a.png", "cam1/b.png", "cam1/c.jpg", "cam2/d.png", "cam2/notes.txt",
		".tmp/e.png", "cam1/.f.png", "cam1/deeper/g.png"} {
		p := filepath.Join(d, f)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ListNegativePool(d)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a.png", "cam1/b.png", "cam1/c.jpg", "cam2/d.png"}
	if len(got) != len(want) {
		t.Fatalf("pool %v, want %v", got, want)
	}
	for i, w := range want {
		if got[i] != filepath.Join(d, w) {
			t.Fatalf("pool[%d] = %s, want %s", i, got[i], filepath.Join(d, w))
		}
	}
	if got, err := ListNegativePool(filepath.Join(d, "missing")); err != nil || len(got) != 0 {
		t.Fatalf("missing pool: %v %v", got, err)
	}
}
