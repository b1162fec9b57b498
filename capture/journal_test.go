package capture

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/internal/testenv"
)

// idOf stats a file in dir.
func idOf(t *testing.T, dir, name string) fileID {
	t.Helper()
	fi, err := os.Lstat(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return statID(name, fi)
}

func keyOf(t *testing.T, dir, name string) string {
	t.Helper()
	k, err := contentKey("line", filepath.Join(dir, name), idOf(t, dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return k
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
	kk, kg := keyOf(t, dir, "kept.png"), keyOf(t, dir, "gone.png")
	idk := idOf(t, dir, "kept.png")
	for _, n := range []string{"kept.png", "gone.png"} {
		if err := j.add(keyOf(t, dir, n), idOf(t, dir, n), "judged"); err != nil {
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
	if !j2.hasKey(kk) || !j2.hasID(idk) || j2.hasKey(kg) || len(j2.keys) != 1 {
		t.Errorf("reopened journal keys %v; want only kept.png's", j2.keys)
	}
	b, _ := os.ReadFile(jp)
	if strings.Count(string(b), "\n") != 1 || !strings.Contains(string(b), `"kept.png"`) {
		t.Errorf("compacted journal:\n%s", b)
	}
	// A file touched under the same name is a new file.
	later := time.Now().Add(time.Minute)
	os.Chtimes(filepath.Join(dir, "kept.png"), later, later)
	if j3, _ := openJournal(testenv.Logger(t), jp, "line", dir); j3.hasKey(kk) || j3.hasID(idOf(t, dir, "kept.png")) {
		t.Error("changed file still journaled")
	}
}

// Issue 8 item 3: a camera without a clock writes a new image under the name, size and
// mtime of one judged before (a restart in between). The journal must not take it for
// the old one; the same bytes restored by a copy keep their entry.
func TestJournalTellsSameNameSizeMtimeApart(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	p := filepath.Join(dir, "cam.bmp")
	stamp := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC) // the camera's idea of now
	write := func(b []byte) {
		writeFile(t, p, b)
		if err := os.Chtimes(p, stamp, stamp); err != nil {
			t.Fatal(err)
		}
	}
	write([]byte("first image, 24 bytes..."))
	jp := filepath.Join(state, "line.journal")
	j, _ := openJournal(testenv.Logger(t), jp, "line", dir)
	first, id1 := keyOf(t, dir, "cam.bmp"), idOf(t, dir, "cam.bmp")
	if err := j.add(first, id1, "judged"); err != nil {
		t.Fatal(err)
	}
	os.Remove(p)
	write([]byte("other image, 24 bytes..."))
	id2 := idOf(t, dir, "cam.bmp")
	if id2.size != id1.size || id2.mtime != id1.mtime {
		t.Fatalf("the test needs equal size and mtime: %+v %+v", id1, id2)
	}
	j2, _ := openJournal(testenv.Logger(t), jp, "line", dir)
	if j2.hasID(id2) || j2.hasKey(keyOf(t, dir, "cam.bmp")) {
		t.Fatal("a different image with the same name, size and mtime is taken for the judged one")
	}
	// The first image's bytes copied back: the same file, still journaled (hashed once).
	j2.add(first, id1, "judged") // (the reopen dropped it; a real run keeps the entry until the file changes)
	os.Remove(p)
	write([]byte("first image, 24 bytes..."))
	j3, _ := openJournal(testenv.Logger(t), jp, "line", dir)
	if !j3.hasKey(first) || !j3.hasID(idOf(t, dir, "cam.bmp")) {
		t.Error("the judged image, restored byte for byte, is not recognised")
	}
}

// Journals written before keys covered the content are read, checked and rewritten.
func TestJournalMigratesTheOldFormat(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(dir, "a.png"), []byte("aaa"))
	fi, _ := os.Stat(filepath.Join(dir, "a.png"))
	jp := filepath.Join(state, "line.journal")
	old := fileKeyV1("line", "a.png", fi.Size(), fi.ModTime()) + " 1700000000000 judged \"a.png\"\n" +
		fileKeyV1("line", "b.png", 3, fi.ModTime()) + " 1700000000000 judged \"b.png\"\n"
	writeFile(t, jp, []byte(old))
	j, err := openJournal(testenv.Logger(t), jp, "line", dir)
	if err != nil {
		t.Fatal(err)
	}
	if !j.hasID(idOf(t, dir, "a.png")) || !j.hasKey(keyOf(t, dir, "a.png")) || len(j.keys) != 1 {
		t.Errorf("migrated journal: %v", j.keys)
	}
	b, _ := os.ReadFile(jp)
	if l, ok := parseJournalLine(strings.TrimSpace(string(b))); !ok || l.v1 || l.name != "a.png" {
		t.Errorf("journal not rewritten in the new format:\n%s", b)
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
