package augment

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/diagd/diagd/internal/imageio"
)

// A mask file over the byte limit is refused before it is read: reading a 256 MiB file
// (the default limit) only to refuse it costs its size in memory. The file is sparse,
// so it costs no disk.
func TestReadMaskRefusesALargeFileUnread(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mask.png")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(imageio.DefaultMaxBytes + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _, err = ReadMask(path, image.Pt(64, 64))
	runtime.ReadMemStats(&after)
	if !errors.Is(err, imageio.ErrTooLarge) {
		t.Fatalf("a %d-byte mask: %v, want ErrTooLarge", imageio.DefaultMaxBytes+1, err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Fatalf("refusing the mask allocated %d bytes: it was read", alloc)
	}
}

// A mask whose header claims more pixels than the limit is refused undecoded, as a
// frame is (a small PNG can ask for gigabytes).
func TestReadMaskRefusesTooManyPixels(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mask.png")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	// A real 1×1 grey PNG whose IHDR is rewritten to 20000×20000 (400 megapixels), with
	// the chunk's CRC fixed so the header itself is valid.
	if err := png.Encode(f, image.NewGray(image.Rect(0, 0, 1, 1))); err != nil {
		t.Fatal(err)
	}
	f.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ihdr := b[12 : 12+4+13] // type and data
	binary.BigEndian.PutUint32(ihdr[4:], 20000)
	binary.BigEndian.PutUint32(ihdr[8:], 20000)
	binary.BigEndian.PutUint32(b[12+4+13:], crc32.ChecksumIEEE(ihdr))
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ReadMask(path, image.Pt(64, 64)); !errors.Is(err, imageio.ErrTooLarge) {
		t.Fatalf("a 20000×20000 mask: %v, want ErrTooLarge", err)
	}
}
