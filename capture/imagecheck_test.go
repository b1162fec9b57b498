package capture

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/internal/testenv"
)

func TestCheckComplete(t *testing.T) {
	for _, ext := range []gocv.FileExt{gocv.JPEGFileExt, gocv.PNGFileExt, ".bmp", ".webp", ".tiff"} {
		full := encodeImage(t, ext, 77)
		if err := checkComplete(full); err != nil {
			t.Errorf("%s: complete file reported %v", ext, err)
		}
		// Check the on-disk variant (head and tail only) agrees.
		p := filepath.Join(t.TempDir(), "x"+string(ext))
		writeFile(t, p, full)
		if err := checkFileComplete(p, int64(len(full))); err != nil {
			t.Errorf("%s on disk: %v", ext, err)
		}
		cut := full[:len(full)*3/4]
		err := checkComplete(cut)
		switch ext {
		case ".tiff": // left to the decoder
			if err != nil {
				t.Errorf("tiff: %v", err)
			}
		default:
			if !errors.Is(err, errIncomplete) {
				t.Errorf("%s cut to 3/4: %v, want incomplete", ext, err)
			}
		}
	}
	jpg := encodeImage(t, gocv.JPEGFileExt, 5)
	// Zero padding after EOI (some cameras write whole sectors) is complete ...
	if err := checkComplete(append(append([]byte(nil), jpg...), make([]byte, 100)...)); err != nil {
		t.Errorf("zero-padded JPEG: %v", err)
	}
	// ... a preallocated file not yet filled is not.
	pre := append(append([]byte(nil), jpg[:len(jpg)/2]...), make([]byte, len(jpg)/2)...)
	if err := checkComplete(pre); !errors.Is(err, errIncomplete) {
		t.Errorf("half-filled preallocated JPEG: %v", err)
	}
	if err := checkComplete(make([]byte, 4096)); !errors.Is(err, errIncomplete) {
		t.Errorf("all zeros: %v", err)
	}
	if err := checkComplete(nil); !errors.Is(err, errIncomplete) {
		t.Errorf("empty: %v", err)
	}
	if err := checkComplete([]byte("plain text")); err != nil {
		t.Errorf("unknown format must be left to the decoder, got %v", err)
	}
}

func TestJournalCompactsAndSurvivesTornLine(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(dir, "kept.png"), []byte("a"))
	writeFile(t, filepath.Join(dir, "gone.png"), []byte("b"))
	jp := filepath.Join(state, "line.journal")
	j, err := openJournal(testenv.Logger(t), jp, "line", dir)
	if err != nil {
		t.Fatal(err)
	}
	key := func(name string) string {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return fileKey("line", name, fi.Size(), fi.ModTime())
	}
	kk, kg := key("kept.png"), key("gone.png")
	for _, e := range []struct{ k, n string }{{kk, "kept.png"}, {kg, "gone.png"}} {
		if err := j.add(e.k, "judged", e.n); err != nil {
			t.Fatal(err)
		}
	}
	os.Remove(filepath.Join(dir, "gone.png"))
	// A crash in the middle of an append leaves a torn last line.
	f, _ := os.OpenFile(jp, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("deadbeef 17")
	f.Close()

	j2, err := openJournal(testenv.Logger(t), jp, "line", dir)
	if err != nil {
		t.Fatal(err)
	}
	if !j2.has(kk) || j2.has(kg) || len(j2.keys) != 1 {
		t.Errorf("reopened journal keys %v; want only kept.png's", j2.keys)
	}
	b, _ := os.ReadFile(jp)
	if strings.Count(string(b), "\n") != 1 || !strings.Contains(string(b), `"kept.png"`) {
		t.Errorf("compacted journal:\n%s", b)
	}
	// A file rewritten under the same name is a new file.
	later := time.Now().Add(time.Minute)
	os.Chtimes(filepath.Join(dir, "kept.png"), later, later)
	if j3, _ := openJournal(testenv.Logger(t), jp, "line", dir); j3.has(kk) || j3.has(key("kept.png")) {
		t.Error("changed file still journaled")
	}
}

// after=move across file systems (tmpfs /dev/shm vs the test's temp folder) copies,
// fsyncs and removes instead of renaming.
func TestMoveAcrossFileSystems(t *testing.T) {
	shm, err := os.MkdirTemp("/dev/shm", "diagd-capture-")
	if err != nil {
		t.Skipf("no /dev/shm to test a cross-file-system move: %v", err)
	}
	defer os.RemoveAll(shm)
	src := t.TempDir()
	var a, b syscall.Stat_t
	if syscall.Stat(shm, &a) != nil || syscall.Stat(src, &b) != nil || a.Dev == b.Dev {
		t.Skip("/dev/shm and the temp folder are on the same file system here")
	}
	data := encodeImage(t, gocv.PNGFileExt, 3)
	writeFile(t, filepath.Join(src, "p.png"), data)
	writeFile(t, filepath.Join(shm, "p.png"), []byte("older file of the same name"))
	dst, err := moveFile(filepath.Join(src, "p.png"), shm, strings.Repeat("ab", 16))
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(dst) != "p-abababababab.png" {
		t.Errorf("name clash resolved as %s", dst)
	}
	got, _ := os.ReadFile(dst)
	if string(got) != string(data) {
		t.Error("moved file differs")
	}
	if _, err := os.Stat(filepath.Join(src, "p.png")); !os.IsNotExist(err) {
		t.Errorf("original still there: %v", err)
	}
}
