package capture

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/internal/imageio"
)

// Fast folder timings for tests: a file is complete after 2 unchanged polls 40 ms
// apart; truncated files get 400 ms to be completed.
func folderConfig(t *testing.T, dir string) Config {
	return Config{Name: "line", Kind: KindFolder, Target: dir, StateDir: filepath.Join(t.TempDir(), "state"),
		Settle: 40 * time.Millisecond, SettlePolls: 2, Incomplete: 400 * time.Millisecond,
		Rescan: 150 * time.Millisecond, RetryMin: 30 * time.Millisecond, RetryMax: 100 * time.Millisecond}
}

// seedOf reads back the flat block encodeImage painted.
func seedOf(m gocv.Mat) float64 { return float64(m.GetVecbAt(8, 8)[0]) }

func TestFolderPicksUpFilesPresentAtStartInMtimeOrder(t *testing.T) {
	dir := t.TempDir()
	done := filepath.Join(t.TempDir(), "done")
	// Names in the opposite order of their mtimes: mtime decides.
	base := time.Now().Add(-time.Hour)
	for i, name := range []string{"c.png", "b.jpg", "a.png"} {
		ext := gocv.PNGFileExt
		if strings.HasSuffix(name, ".jpg") {
			ext = gocv.JPEGFileExt
		}
		p := filepath.Join(dir, name)
		writeFile(t, p, encodeImage(t, ext, float64(40*(i+1))))
		if err := os.Chtimes(p, base, base.Add(time.Duration(i)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	c := folderConfig(t, dir)
	c.After, c.AfterDir = AfterMove, done
	src, out, _ := startSource(t, c)
	keys := map[string]bool{}
	for i, want := range []string{"c", "b", "a"} {
		f := recv(t, out, 5*time.Second)
		if f.PartID != want || f.Seq != uint64(i+1) || f.File != filepath.Join(dir, want+filepath.Ext(f.File)) {
			t.Errorf("file %d: part %q seq %d file %q; want part %q", i, f.PartID, f.Seq, f.File, want)
		}
		if got, wantSeed := seedOf(f.Mat), float64(40*(i+1)); abs(got-wantSeed) > 6 {
			t.Errorf("file %s decoded with block %v, want ≈%v", f.File, got, wantSeed)
		}
		if f.Key == "" || keys[f.Key] {
			t.Errorf("file %s: key %q empty or repeated", f.File, f.Key)
		}
		keys[f.Key] = true
		f.Mat.Close()
		f.Done(true)
		if _, err := os.Stat(filepath.Join(done, filepath.Base(f.File))); err != nil {
			t.Errorf("judged file not moved to the done folder: %v", err)
		}
	}
	none(t, out, 300*time.Millisecond)
	if s := src.Status(); s.State != StateOnline || s.Emitted != 3 || s.BadFiles != 0 {
		t.Errorf("status %+v", s)
	}
}

// A camera writing a file in bursts with pauses longer than the settle window: the
// format check (JPEG, PNG) or the failed decode with its grace period (TIFF, which has
// no cheap completeness check) holds the file back until it is complete; it is judged
// once, and not rejected.
func TestFolderSlowWriterJudgedOnceWhenComplete(t *testing.T) {
	dir := t.TempDir()
	c := folderConfig(t, dir)
	c.Incomplete = 5 * time.Second
	src, out, _ := startSource(t, c)
	for _, tc := range []struct {
		name string
		ext  gocv.FileExt
	}{{"slow.jpg", gocv.JPEGFileExt}, {"slow.png", gocv.PNGFileExt}, {"slow.tiff", ".tiff"}} {
		data := encodeImage(t, tc.ext, 200)
		fh, err := os.Create(filepath.Join(dir, tc.name))
		if err != nil {
			t.Fatal(err)
		}
		const chunks = 4
		step := len(data)/chunks + 1
		for off := 0; off < len(data); off += step {
			if _, err := fh.Write(data[off:min(off+step, len(data))]); err != nil {
				t.Fatal(err)
			}
			if off+step < len(data) {
				// 3× the settle window (2 polls × 40 ms): size alone would call it done.
				none(t, out, 250*time.Millisecond)
			}
		}
		completed := time.Now()
		fh.Close()
		f := recv(t, out, 5*time.Second)
		if f.PartID != strings.TrimSuffix(tc.name, filepath.Ext(tc.name)) || f.Captured.Before(completed) {
			t.Errorf("%s: part %q captured %v, completed %v", tc.name, f.PartID, f.Captured, completed)
		}
		want, err := imageio.Decode(tc.name, data)
		if err != nil {
			t.Fatal(err)
		}
		diff := gocv.NewMat()
		gocv.AbsDiff(f.Mat, want, &diff)
		if s := diff.Sum(); s.Val1+s.Val2+s.Val3 != 0 {
			t.Errorf("%s: judged image differs from the complete file (sum of |diff| %v)", tc.name, s)
		}
		diff.Close()
		want.Close()
		f.Mat.Close()
		f.Done(true)
	}
	none(t, out, 300*time.Millisecond)
	if n := src.Status().BadFiles; n != 0 {
		t.Errorf("%d files rejected", n)
	}
}

func TestFolderIgnoresTempNamesAndTakesRenamedFiles(t *testing.T) {
	dir := t.TempDir()
	_, out, _ := startSource(t, folderConfig(t, dir))
	img := encodeImage(t, gocv.PNGFileExt, 90)
	for _, n := range []string{".hidden.png", "frame.tmp", "frame.png.part", "~lock.png"} {
		writeFile(t, filepath.Join(dir, n), img)
	}
	none(t, out, 400*time.Millisecond)
	if err := os.Rename(filepath.Join(dir, "frame.tmp"), filepath.Join(dir, "P42.png")); err != nil {
		t.Fatal(err)
	}
	f := recv(t, out, 5*time.Second)
	if f.PartID != "P42" || filepath.Base(f.File) != "P42.png" {
		t.Errorf("renamed file: part %q file %q", f.PartID, f.File)
	}
	f.Mat.Close()
	f.Done(true)
	none(t, out, 300*time.Millisecond)
}

func TestFolderRejectsBadFiles(t *testing.T) {
	dir := t.TempDir()
	var hooked atomic.Int32
	c := folderConfig(t, dir)
	src, err := New(nil, c, Hooks{OnBadFile: func(bf BadFile) {
		if bf.Camera != "line" || filepath.Dir(bf.File) != dir || bf.Reason == "" || bf.MovedTo != filepath.Join(dir, "rejected", filepath.Base(bf.File)) {
			t.Errorf("bad-file report %+v", bf)
		}
		hooked.Add(1)
	}})
	if err != nil {
		t.Fatal(err)
	}
	jpg := encodeImage(t, gocv.JPEGFileExt, 10)
	png := encodeImage(t, gocv.PNGFileExt, 10)
	// Why the format check exists: OpenCV decodes this half JPEG without complaint.
	if m, err := imageio.Decode("half.jpg", jpg[:len(jpg)/2]); err != nil {
		t.Logf("note: this OpenCV rejects truncated JPEGs itself (%v)", err)
	} else {
		m.Close()
	}
	bad := map[string][]byte{
		"half.jpg":    jpg[:len(jpg)/2],
		"half.png":    png[:len(png)*2/3],
		"noise.png":   append(append([]byte(nil), png[:16]...), []byte(strings.Repeat("garbage!", 200))...),
		"notes.txt":   []byte("not an image at all\n"),
		"corrupt.jpg": append(append(append([]byte(nil), jpg[:2]...), make([]byte, 500)...), jpg[len(jpg)-2:]...),
	}
	for n, b := range bad {
		writeFile(t, filepath.Join(dir, n), b)
	}
	writeFile(t, filepath.Join(dir, "good.jpg"), jpg)
	out := runWith(t, src)
	f := recv(t, out, 5*time.Second)
	if f.PartID != "good" {
		t.Errorf("emitted %s", f.File)
	}
	f.Mat.Close()
	f.Done(true)
	waitFor(t, "all bad files rejected", 5*time.Second, func() bool { return src.Status().BadFiles == uint64(len(bad)) })
	none(t, out, 200*time.Millisecond)
	rej, _ := os.ReadDir(filepath.Join(dir, "rejected"))
	var names []string
	for _, e := range rej {
		names = append(names, e.Name())
	}
	for n := range bad {
		if !slices.Contains(names, n) {
			t.Errorf("%s not in rejected/ (%v)", n, names)
		}
		if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
			t.Errorf("%s still in the drop folder", n)
		}
	}
	if int(hooked.Load()) != len(bad) {
		t.Errorf("OnBadFile called %d times, want %d", hooked.Load(), len(bad))
	}
}

// Each after= mode keeps a judged file from being judged again by a restarted source;
// a file whose verdict never became durable (no Done) is judged again, with the same key.
func TestFolderNoDoubleJudgingAcrossRestart(t *testing.T) {
	for _, mode := range []After{AfterKeep, AfterMove, AfterDelete} {
		t.Run(string(mode), func(t *testing.T) {
			dir := t.TempDir()
			c := folderConfig(t, dir)
			c.After = mode
			if mode == AfterMove {
				c.AfterDir = filepath.Join(t.TempDir(), "done")
			}
			writeFile(t, filepath.Join(dir, "a.png"), encodeImage(t, gocv.PNGFileExt, 30))
			writeFile(t, filepath.Join(dir, "b.png"), encodeImage(t, gocv.PNGFileExt, 60))
			_, out, stop := startSource(t, c)
			got := map[string]Frame{}
			for range 2 {
				f := recv(t, out, 5*time.Second)
				f.Mat.Close()
				got[f.PartID] = f
			}
			got["a"].Done(true) // verdict durable
			// b: crash before its verdict was durable: Done never called.
			stop()

			_, out, stop = startSource(t, c)
			f := recv(t, out, 5*time.Second)
			if f.PartID != "b" || f.Key != got["b"].Key {
				t.Errorf("after restart: part %q key %q; want b again with key %q", f.PartID, f.Key, got["b"].Key)
			}
			f.Mat.Close()
			f.Done(true)
			none(t, out, 400*time.Millisecond)
			stop()

			_, out, _ = startSource(t, c)
			none(t, out, 400*time.Millisecond)
			writeFile(t, filepath.Join(dir, "c.png"), encodeImage(t, gocv.PNGFileExt, 90))
			if f := recv(t, out, 5*time.Second); f.PartID != "c" {
				t.Errorf("new file after restart: part %q", f.PartID)
			} else {
				f.Mat.Close()
			}
			left, _ := os.ReadDir(dir)
			var n []string
			for _, e := range left {
				n = append(n, e.Name())
			}
			if mode == AfterKeep && !slices.Contains(n, "a.png") || mode != AfterKeep && slices.Contains(n, "a.png") {
				t.Errorf("after=%s: folder holds %v", mode, n)
			}
		})
	}
}

func TestFolderVanishesAndReturns(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "drop")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var states []State
	var statesMu sync.Mutex
	c := folderConfig(t, dir)
	c.After = AfterDelete
	src, err := New(nil, c, Hooks{OnState: func(s Status) {
		statesMu.Lock()
		states = append(states, s.State)
		statesMu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	out := runWith(t, src)
	waitFor(t, "online", 2*time.Second, func() bool { return src.Status().State == StateOnline })
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "offline", 2*time.Second, func() bool { return src.Status().State == StateOffline })
	if r := src.Status().Reason; r != "folder missing" {
		t.Errorf("offline reason %q", r)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "back.png"), encodeImage(t, gocv.PNGFileExt, 50))
	f := recv(t, out, 5*time.Second)
	if f.PartID != "back" {
		t.Errorf("part %q", f.PartID)
	}
	f.Mat.Close()
	f.Done(true)
	s := src.Status()
	if s.State != StateOnline || s.Reconnects == 0 {
		t.Errorf("status after the folder came back: %+v", s)
	}
	statesMu.Lock()
	seq := slices.Compact(slices.Clone(states))
	statesMu.Unlock()
	if !slices.Equal(seq, []State{StateOnline, StateOffline, StateOnline}) {
		t.Errorf("state changes %v, want online offline online", seq)
	}
}

// Trigger mode on a folder: files wait for triggers and pair with them in order,
// whichever came first.
func TestFolderTrigger(t *testing.T) {
	dir := t.TempDir()
	c := folderConfig(t, dir)
	c.Mode = ModeTrigger
	src, out, _ := startSource(t, c)
	writeFile(t, filepath.Join(dir, "cam_0001.png"), encodeImage(t, gocv.PNGFileExt, 20))
	none(t, out, 400*time.Millisecond) // complete, but no trigger yet
	if err := src.Trigger("PART-7"); err != nil {
		t.Fatal(err)
	}
	f := recv(t, out, 5*time.Second)
	if f.PartID != "PART-7" || filepath.Base(f.File) != "cam_0001.png" {
		t.Errorf("file %s part %q", f.File, f.PartID)
	}
	f.Mat.Close()
	f.Done(true)
	// Trigger first, file later.
	if err := src.Trigger("PART-8"); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "cam_0002.png"), encodeImage(t, gocv.PNGFileExt, 20))
	f = recv(t, out, 5*time.Second)
	if f.PartID != "PART-8" || filepath.Base(f.File) != "cam_0002.png" {
		t.Errorf("file %s part %q", f.File, f.PartID)
	}
	f.Mat.Close()
	f.Done(true)
	if n := src.Status().PendingTriggers; n != 0 {
		t.Errorf("%d triggers left pending", n)
	}
}

// A corrupt file last modified long ago (found at start) is rejected at once; the
// grace for writers that pause only applies to files that changed recently.
func TestFolderRejectsOldCorruptFileWithoutGrace(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "old.jpg")
	writeFile(t, p, []byte("\xff\xd8\xff not really a jpeg, and never finished"))
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
	c := folderConfig(t, dir)
	c.Incomplete = time.Minute
	src, out, _ := startSource(t, c)
	waitFor(t, "old corrupt file rejected", 3*time.Second, func() bool { return src.Status().BadFiles == 1 })
	if _, err := os.Stat(filepath.Join(dir, "rejected", "old.jpg")); err != nil {
		t.Error(err)
	}
	none(t, out, 100*time.Millisecond)
}
