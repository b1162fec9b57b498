package catalogue

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diagd/diagd/internal/atomicfile"
	"github.com/diagd/diagd/internal/testenv"
)

func startWatch(t *testing.T, path string) (*Watcher, <-chan Event) {
	t.Helper()
	ch := make(chan Event, 16)
	w, err := Watch(t.Context(), path, WatchOptions{Debounce: 50 * time.Millisecond, OnEvent: func(e Event) { ch <- e }, Log: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w, ch
}

func next(t *testing.T, ch <-chan Event) Event {
	t.Helper()
	select {
	case e := <-ch:
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no catalogue event within 5 s")
	}
	return Event{}
}

func TestWatchAppliesRejectsAndKeepsLastGood(t *testing.T) {
	dir := goodTree(t)
	path := filepath.Join(dir, "defects.yaml")
	w, ch := startWatch(t, path)
	first := w.Current()

	// A valid edit saved in place (truncate + write) applies at once.
	writeFile(t, path, strings.Replace(good, "steps: 12", "steps: 25", 1))
	e := next(t, ch)
	if !e.Applied() || e.Catalogue.Generation.Steps != 25 || w.Current().Generation.Steps != 25 {
		t.Fatalf("valid edit: %+v", e)
	}

	// An invalid edit is rejected with file and line; the last good catalogue stays.
	bad := strings.Replace(good, "weight: 3", "weight: lots", 1)
	if err := atomicfile.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	e = next(t, ch)
	probs := Problems(e.Err)
	if e.Applied() || len(probs) != 1 || probs[0].Line != 13 || probs[0].File != path || !strings.Contains(probs[0].Reason, "weight must be a number") {
		t.Fatalf("invalid edit: %+v (%v)", e, e.Err)
	}
	if w.Current().Generation.Steps != 25 || w.Current() == first {
		t.Fatal("the last good catalogue is not in force after a rejected edit")
	}

	// Rename-save, as vim does with backupcopy=no: move the file away, write a new one.
	if err := os.Rename(path, path+"~"); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, strings.Replace(good, "steps: 12", "steps: 7", 1))
	e = next(t, ch)
	if !e.Applied() || w.Current().Generation.Steps != 7 {
		t.Fatalf("rename-save: %+v", e)
	}

	// Another rename-save through a temp file (atomic writers, most IDEs), twice: the
	// watch must survive the inode of the file changing.
	for _, steps := range []string{"8", "9"} {
		if err := atomicfile.WriteFile(path, []byte(strings.Replace(good, "steps: 12", "steps: "+steps, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		e = next(t, ch)
		if !e.Applied() || e.Catalogue.Generation.Steps != int(steps[0]-'0') {
			t.Fatalf("atomic save %s: %+v", steps, e)
		}
	}
	select {
	case e := <-ch:
		t.Fatalf("unexpected extra event %+v", e)
	case <-time.After(200 * time.Millisecond):
	}
}

func TestWatchPicksUpMaskFiles(t *testing.T) {
	dir := goodTree(t)
	path := filepath.Join(dir, "defects.yaml")
	w, ch := startWatch(t, path)
	if n := len(w.Current().Kinds[0].Masks); n != 2 {
		t.Fatalf("%d masks at start", n)
	}
	writeMask(t, filepath.Join(dir, "shapes", "c.png"), 20, 30) // folder entry
	e := next(t, ch)
	if !e.Applied() || len(e.Catalogue.Kinds[0].Masks) != 3 {
		t.Fatalf("mask added to a folder: %+v", e)
	}
	writeMask(t, filepath.Join(dir, "regions", "r2.png"), 20, 30) // glob entry
	e = next(t, ch)
	if !e.Applied() || len(e.Catalogue.Kinds[1].Regions) != 2 {
		t.Fatalf("mask matching a glob: %+v", e)
	}
	// Removing the only file a single-file entry names makes the catalogue invalid.
	if err := os.Remove(filepath.Join(dir, "extra", "one.png")); err != nil {
		t.Fatal(err)
	}
	e = next(t, ch)
	if p := Problems(e.Err); len(p) != 1 || p[0].Line != 22 || !strings.Contains(p[0].Reason, "does not exist") {
		t.Fatalf("mask removed: %+v", e)
	}
	if len(w.Current().Kinds[1].Regions) != 2 {
		t.Fatal("last good catalogue lost")
	}
	// Unrelated files are ignored: no event.
	writeFile(t, filepath.Join(dir, "shapes", "readme.txt"), "x")
	writeFile(t, filepath.Join(dir, "other.log"), "x")
	select {
	case e := <-ch:
		t.Fatalf("event for an unrelated file: %+v", e)
	case <-time.After(300 * time.Millisecond):
	}
}

// TestWatchFixByCreatingFolder: an edit naming a folder that does not exist yet is
// rejected; creating the folder and putting a mask in it fixes it without touching the
// catalogue again.
func TestWatchFixByCreatingFolder(t *testing.T) {
	dir := goodTree(t)
	path := filepath.Join(dir, "defects.yaml")
	w, ch := startWatch(t, path)
	writeFile(t, path, strings.Replace(good, "masks: shapes/ ", "masks: later/ ", 1))
	if e := next(t, ch); e.Applied() || !strings.Contains(e.Err.Error(), `"later/" does not exist`) {
		t.Fatalf("want a rejection, got %+v", e)
	}
	if err := os.Mkdir(filepath.Join(dir, "later"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeMask(t, filepath.Join(dir, "later", "m.png"), 20, 30)
	for {
		e := next(t, ch)
		if e.Applied() {
			if m := e.Catalogue.Kinds[0].Masks; len(m) != 1 || m[0].Path != filepath.Join(dir, "later", "m.png") || w.Current() != e.Catalogue {
				t.Fatalf("applied %+v", e.Catalogue.Kinds[0])
			}
			return
		}
		t.Logf("interim rejection: %v", e.Err) // e.g. the folder exists but is still empty
	}
}
