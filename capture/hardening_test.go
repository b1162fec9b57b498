package capture

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/internal/imageio"
)

// Issue 8 item 1: a file of 2 GiB or more aborted diagd inside OpenCV, and a small PNG
// whose header asks for 32000×32000 pixels cost 3 GB. Both are rejected from their size
// and header, like any bad file, and the source goes on. The big file is sparse.
func TestFolderRejectsOversizedFiles(t *testing.T) {
	dir := t.TempDir()
	huge := filepath.Join(dir, "huge.jpg")
	fh, err := os.Create(huge)
	if err != nil {
		t.Fatal(err)
	}
	const size = 2<<30 + 4096
	if err := fh.Truncate(size); err != nil {
		t.Fatal(err)
	}
	fh.WriteAt([]byte{0xFF, 0xD8, 0xFF, 0xE0}, 0)
	fh.WriteAt([]byte{0xFF, 0xD9}, size-2)
	fh.Close()
	writeFile(t, filepath.Join(dir, "wide.png"), pngOf(32000, 32000))
	small := encodeImage(t, gocv.PNGFileExt, 10) // 64×48
	writeFile(t, filepath.Join(dir, "small.png"), small)
	c := folderConfig(t, dir)
	c.MaxPixels = 64*48 - 1 // the small image too, through the source's own setting
	src, out, _ := startSource(t, c)
	waitFor(t, "3 files rejected", 5*time.Second, func() bool { return src.Status().BadFiles == 3 })
	none(t, out, 200*time.Millisecond)
	for _, n := range []string{"huge.jpg", "wide.png", "small.png"} {
		if _, err := os.Stat(filepath.Join(dir, "rejected", n)); err != nil {
			t.Errorf("%s not in rejected/: %v", n, err)
		}
	}
	if le := src.Status().LastError; !strings.Contains(le, "too large") {
		t.Errorf("last error %q does not say why", le)
	}
}

// pngOf is a complete PNG of w×h grey pixels with an empty data stream (its header is
// what decoders allocate by).
func pngOf(w, h uint32) []byte {
	var b bytes.Buffer
	b.Write([]byte{0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A})
	chunk := func(typ string, data []byte) {
		b.Write([]byte{byte(len(data) >> 24), byte(len(data) >> 16), byte(len(data) >> 8), byte(len(data))})
		c := append([]byte(typ), data...)
		b.Write(c)
		s := crc(c)
		b.Write([]byte{byte(s >> 24), byte(s >> 16), byte(s >> 8), byte(s)})
	}
	chunk("IHDR", []byte{byte(w >> 24), byte(w >> 16), byte(w >> 8), byte(w), byte(h >> 24), byte(h >> 16), byte(h >> 8), byte(h), 8, 0, 0, 0, 0})
	chunk("IDAT", []byte{0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01})
	chunk("IEND", nil)
	return b.Bytes()
}

func crc(b []byte) uint32 {
	c := ^uint32(0)
	for _, x := range b {
		c ^= uint32(x)
		for range 8 {
			c = c>>1 ^ 0xEDB88320&-(c&1)
		}
	}
	return ^c
}

// Issue 8 item 3: a camera without a clock writes fixed-size images under one name; a
// new image with the name, size and mtime of one judged before must be judged, in the
// same run and after a restart. A judged file is still recognised after a restart.
func TestFolderNewImageWithSameNameSizeAndMtime(t *testing.T) {
	dir := t.TempDir()
	c := folderConfig(t, dir) // after=keep: judged files stay, journaled
	p := filepath.Join(dir, "cam.bmp")
	stamp := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	drop := func(seed float64) {
		tmp := filepath.Join(dir, ".cam.bmp.tmp")
		writeFile(t, tmp, encodeImage(t, ".bmp", seed))
		os.Chtimes(tmp, stamp, stamp)
		if err := os.Rename(tmp, p); err != nil {
			t.Fatal(err)
		}
	}
	judge := func(out chan Frame, want float64) Frame {
		t.Helper()
		f := recv(t, out, 5*time.Second)
		if got := seedOf(f.Mat); abs(got-want) > 1 {
			t.Errorf("judged the image with seed %v, want %v", got, want)
		}
		f.Mat.Close()
		f.Done(true)
		return f
	}
	drop(40)
	_, out, stop := startSource(t, c)
	first := judge(out, 40)
	drop(80) // same name, same size (a BMP), same mtime
	second := judge(out, 80)
	if first.Key == second.Key {
		t.Error("two different images share a key (and a message id)")
	}
	stop()
	drop(120)
	_, out, stop = startSource(t, c)
	judge(out, 120)
	stop()
	_, out, _ = startSource(t, c)
	none(t, out, 400*time.Millisecond) // the judged one is not judged again
}

// Issue 8 items 6 and 9: in trigger mode a bad file takes its trigger (its part gets a
// frame with Err, for an unknown verdict) instead of leaving it for the next part. The
// bad file here is a JPEG with data missing that still ends in EOI, which OpenCV decodes
// without complaint.
func TestFolderTriggerBadFileTakesItsTrigger(t *testing.T) {
	dir := t.TempDir()
	c := folderConfig(t, dir)
	c.Mode = ModeTrigger
	src, out, _ := startSource(t, c)
	img := noisyImage(t, 320, 240)
	cut := append(bytes.Clone(img[:len(img)/2]), img[len(img)/2+len(img)/5:]...)
	if m, err := gocv.IMDecode(cut, gocv.IMReadColor); err != nil || m.Empty() {
		t.Fatalf("OpenCV refuses the damaged JPEG itself (%v): the test shows nothing", err)
	} else {
		m.Close()
	}
	steps := []struct {
		part, file string
		data       []byte
		bad        bool
	}{
		{"P1", "a.jpg", img, false},
		{"P2", "b.jpg", cut, true},
		{"P3", "c.png", encodeImage(t, gocv.PNGFileExt, 30), false},
	}
	for _, s := range steps {
		if err := src.Trigger(s.part); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, s.file), s.data)
		f := recv(t, out, 5*time.Second)
		if f.PartID != s.part || filepath.Base(f.File) != s.file || (f.Err != nil) != s.bad {
			t.Fatalf("part %s: frame for %s with part %q, err %v; want %s", s.part, f.File, f.PartID, f.Err, s.file)
		}
		if s.bad && (!f.Mat.Empty() || f.Done != nil || !strings.Contains(f.Err.Error(), "Corrupt JPEG data")) {
			t.Errorf("bad frame: empty Mat %v, Done %v, err %v", f.Mat.Empty(), f.Done != nil, f.Err)
		}
		f.Mat.Close()
		if f.Done != nil {
			f.Done(true)
		}
	}
	if s := src.Status(); s.BadFiles != 1 || s.PendingTriggers != 0 {
		t.Errorf("status %+v", s)
	}
}

// noisyImage is a w×h JPEG with texture, so a cut in its scan shows.
func noisyImage(t *testing.T, w, h int) []byte {
	m := gocv.NewMatWithSize(h, w, gocv.MatTypeCV8UC3)
	defer m.Close()
	gocv.RandU(&m, gocv.NewScalar(0, 0, 0, 0), gocv.NewScalar(255, 255, 255, 0))
	b, err := gocv.IMEncode(gocv.JPEGFileExt, m)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	return bytes.Clone(b.GetBytes())
}

// Issue 8 item 6: a trigger that finds no file within triggerttl gets a frame with Err
// (its part is told) and is dropped, so the next part's file is not reported under its
// id; a file that waited longer than triggerttl for a trigger is rejected rather than
// paired with a later part's; a trigger sent longer ago than triggerttl is refused.
func TestFolderTriggerExpiry(t *testing.T) {
	dir := t.TempDir()
	c := folderConfig(t, dir)
	c.Mode, c.TriggerTTL = ModeTrigger, 500*time.Millisecond
	src, out, _ := startSource(t, c)
	if err := src.Trigger("LOST"); err != nil {
		t.Fatal(err)
	}
	f := recv(t, out, 3*time.Second)
	if f.PartID != "LOST" || !errors.Is(f.Err, ErrTriggerExpired) || f.File != "" {
		t.Fatalf("expired trigger: part %q err %v file %q", f.PartID, f.Err, f.File)
	}
	f.Mat.Close()
	// The file nobody triggered: rejected once it waited triggerttl.
	writeFile(t, filepath.Join(dir, "orphan.png"), encodeImage(t, gocv.PNGFileExt, 10))
	waitFor(t, "orphan rejected", 3*time.Second, func() bool { return src.Status().BadFiles == 1 })
	if err := src.Trigger("P9"); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "p9.png"), encodeImage(t, gocv.PNGFileExt, 90))
	f = recv(t, out, 3*time.Second)
	if f.PartID != "P9" || filepath.Base(f.File) != "p9.png" || f.Err != nil {
		t.Fatalf("after an expiry: %s with part %q (err %v); want p9.png as P9", f.File, f.PartID, f.Err)
	}
	f.Mat.Close()
	f.Done(true)
	if err := src.TriggerAt("OLD", time.Now().Add(-time.Second)); !errors.Is(err, ErrTriggerExpired) {
		t.Errorf("a trigger sent 1 s ago with triggerttl=500ms: %v", err)
	}
	if err := src.TriggerAt("SKEW", time.Now().Add(time.Hour)); err != nil { // a clock ahead is not an age
		t.Errorf("trigger stamped in the future: %v", err)
	}
	if s := src.Status(); s.ExpiredTriggers != 1 {
		t.Errorf("expired triggers %d, want 1", s.ExpiredTriggers)
	}
}

// A live source's triggers expire too (here: a video source that cannot open).
func TestStreamTriggerExpiry(t *testing.T) {
	c := Config{Name: "gate", Kind: KindVideo, Target: filepath.Join(t.TempDir(), "none.avi"), Mode: ModeTrigger,
		TriggerTTL: 300 * time.Millisecond, RetryMin: 50 * time.Millisecond, RetryMax: 100 * time.Millisecond}
	src, out, _ := startSource(t, c)
	if err := src.Trigger("P1"); err != nil {
		t.Fatal(err)
	}
	f := recv(t, out, 3*time.Second)
	if f.PartID != "P1" || !errors.Is(f.Err, ErrTriggerExpired) || !f.Mat.Empty() {
		t.Fatalf("frame %+v", f)
	}
	f.Mat.Close()
}

// Issue 8 item 15: a symbolic link in the drop folder may point anywhere; it is
// rejected without being opened, unless symlinks=true.
func TestFolderRefusesSymlinks(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	secret := filepath.Join(outside, "secret.png")
	writeFile(t, secret, encodeImage(t, gocv.PNGFileExt, 70))
	if err := os.Symlink(secret, filepath.Join(dir, "link.png")); err != nil {
		t.Fatal(err)
	}
	src, out, stop := startSource(t, folderConfig(t, dir))
	waitFor(t, "link rejected", 3*time.Second, func() bool { return src.Status().BadFiles == 1 })
	none(t, out, 200*time.Millisecond)
	if fi, err := os.Lstat(filepath.Join(dir, "rejected", "link.png")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the link itself should be in rejected/: %v", err)
	}
	if _, err := os.Stat(secret); err != nil {
		t.Errorf("the link's target was touched: %v", err)
	}
	stop()
	os.Rename(filepath.Join(dir, "rejected", "link.png"), filepath.Join(dir, "link.png"))
	c := folderConfig(t, dir)
	c.Symlinks, c.After = true, AfterDelete
	_, out, _ = startSource(t, c)
	f := recv(t, out, 3*time.Second)
	if abs(seedOf(f.Mat)-70) > 1 {
		t.Error("symlinks=true: the link's target was not what got judged")
	}
	f.Mat.Close()
	f.Done(true)
	if _, err := os.Stat(secret); err != nil {
		t.Errorf("after=delete removed the link's target: %v", err)
	}
}

// A FIFO swapped in for a file is refused, not opened for a blocking read.
func TestFolderRefusesSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "pipe.png"), 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	src, out, _ := startSource(t, folderConfig(t, dir))
	writeFile(t, filepath.Join(dir, "good.png"), encodeImage(t, gocv.PNGFileExt, 10))
	// A subfolder made while the source runs is neither judged nor rejected.
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	f := recv(t, out, 3*time.Second)
	f.Mat.Close()
	f.Done(true)
	none(t, out, 300*time.Millisecond)
	waitFor(t, "the FIFO rejected", 2*time.Second, func() bool { return src.Status().BadFiles == 1 })
	time.Sleep(200 * time.Millisecond)
	if s := src.Status(); s.State != StateOnline || s.BadFiles != 1 {
		t.Errorf("status %+v; want online, only the FIFO rejected", s)
	}
	if _, err := os.Stat(filepath.Join(dir, "sub")); err != nil {
		t.Errorf("the subfolder was moved: %v", err)
	}
}

// Issue 8 item 19: a file renamed into the folder, or written and closed, is complete:
// it is judged at once, not after the settle window (here 2 × 1.5 s). A file still open
// for writing waits for the window.
func TestFolderJudgesCompleteFilesAtOnce(t *testing.T) {
	dir := t.TempDir()
	c := folderConfig(t, dir)
	c.Settle = 1500 * time.Millisecond
	src, out, _ := startSource(t, c)
	// Files there before the folder is watched wait out the window (no event says how
	// they were written).
	waitFor(t, "online", 2*time.Second, func() bool { return src.Status().State == StateOnline })
	png := encodeImage(t, gocv.PNGFileExt, 40)
	writeFile(t, filepath.Join(dir, ".x.tmp"), png)
	if err := os.Rename(filepath.Join(dir, ".x.tmp"), filepath.Join(dir, "renamed.png")); err != nil {
		t.Fatal(err)
	}
	f := recv(t, out, time.Second)
	f.Mat.Close()
	f.Done(true)
	writeFile(t, filepath.Join(dir, "written.png"), png) // open, write, close
	f = recv(t, out, time.Second)
	if filepath.Base(f.File) != "written.png" {
		t.Errorf("got %s", f.File)
	}
	f.Mat.Close()
	f.Done(true)
	open, err := os.Create(filepath.Join(dir, "open.png"))
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	open.Write(png)
	none(t, out, time.Second) // complete by its format, but its writer may not be done
	open.Close()
	f = recv(t, out, time.Second)
	f.Mat.Close()
	f.Done(true)
}

// Issue 8 item 22: each rejection is logged once; the frame rate after a burst of files
// is the burst's real rate, and falls to 0 when the folder goes quiet (it showed
// thousands of frames per second, for good).
func TestFolderLogsRejectionsOnceAndRateDecays(t *testing.T) {
	dir := t.TempDir()
	var logBuf syncBuffer
	log := slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	const n = 30
	for i := range n {
		writeFile(t, filepath.Join(dir, "f"+string(rune('a'+i%26))+string(rune('a'+i/26))+".png"), encodeImage(t, gocv.PNGFileExt, float64(i)))
	}
	writeFile(t, filepath.Join(dir, "bad.png"), []byte("\x89PNG\r\n\x1a\nthis is not really a png"))
	c := folderConfig(t, dir)
	c.After = AfterDelete
	s, err := New(log, c, Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	s.(*folder).rate.span = 400 * time.Millisecond
	out := runWith(t, s)
	var first, last time.Time
	for i := range n {
		f := recv(t, out, 5*time.Second)
		if i == 0 {
			first = time.Now()
		}
		last = time.Now()
		f.Mat.Close()
		f.Done(true)
	}
	burst := float64(n) / max(last.Sub(first).Seconds(), 0.04)
	if fps := s.Status().FPS; fps > 2*burst || fps <= 0 {
		t.Errorf("fps %.0f right after %d files in %v (%.0f/s)", fps, n, last.Sub(first), burst)
	}
	waitFor(t, "rate back to 0", 2*time.Second, func() bool { return s.Status().FPS == 0 })
	waitFor(t, "bad file rejected", 2*time.Second, func() bool { return s.Status().BadFiles == 1 })
	time.Sleep(300 * time.Millisecond) // polls and rescans go on
	lines := 0
	for l := range strings.Lines(logBuf.String()) {
		if strings.Contains(l, "bad.png") {
			lines++
		}
	}
	if got := lines; got != 1 {
		t.Errorf("the rejected file appears in %d log lines, want 1:\n%s", got, logBuf.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Unknown formats are refused at once (no grace): imageio reads what it can check.
func TestFolderRefusesUnknownFormats(t *testing.T) {
	dir := t.TempDir()
	c := folderConfig(t, dir)
	c.Incomplete = time.Minute
	src, _, _ := startSource(t, c)
	writeFile(t, filepath.Join(dir, "anim.gif"), []byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;"))
	waitFor(t, "gif rejected", 2*time.Second, func() bool { return src.Status().BadFiles == 1 })
	if le := src.Status().LastError; !strings.Contains(le, imageio.ErrUnsupported.Error()) {
		t.Errorf("last error %q", le)
	}
}
