package imageio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gocv.io/x/gocv"
	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"

	"github.com/diagd/diagd/internal/testenv"
)

// noisy is a w×h BGR image with texture (so JPEG scans are long and cuts show).
func noisy(w, h int) gocv.Mat {
	m := gocv.NewMatWithSize(h, w, gocv.MatTypeCV8UC3)
	gocv.RandU(&m, gocv.NewScalar(0, 0, 0, 0), gocv.NewScalar(255, 255, 255, 0))
	gocv.GaussianBlur(m, &m, image.Pt(3, 3), 0, 0, gocv.BorderDefault)
	return m
}

func encodeCV(t *testing.T, ext gocv.FileExt, m gocv.Mat, params ...int) []byte {
	t.Helper()
	var b *gocv.NativeByteBuffer
	var err error
	if len(params) > 0 {
		b, err = gocv.IMEncodeWithParams(ext, m, params)
	} else {
		b, err = gocv.IMEncode(ext, m)
	}
	if err != nil {
		t.Fatalf("encode %s: %v", ext, err)
	}
	defer b.Close()
	return bytes.Clone(b.GetBytes())
}

// goImage is a w×h RGBA image for Go's own encoders (a second writer of each format).
func goImage(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = uint8(i*31 + i/7)
	}
	return img
}

// encodings of one 37×23 image by OpenCV and by Go's encoders, in every format diagd
// reads: the sizes are odd so that row padding and rounding show.
func encodings(t *testing.T) map[string][]byte {
	const w, h = 37, 23
	m := noisy(w, h)
	defer m.Close()
	grey := gocv.NewMat()
	defer grey.Close()
	gocv.CvtColor(m, &grey, gocv.ColorBGRToGray)
	out := map[string][]byte{}
	for _, ext := range []gocv.FileExt{".jpg", ".png", ".bmp", ".tiff", ".webp", ".ppm"} {
		out["opencv"+string(ext)] = encodeCV(t, ext, m)
	}
	out["opencv.pgm"] = encodeCV(t, ".pgm", grey)
	out["opencv-progressive.jpg"] = encodeCV(t, ".jpg", m, gocv.IMWriteJpegProgressive, 1)
	out["opencv-lossless.webp"] = encodeCV(t, ".webp", m, gocv.IMWriteWebpQuality, 101)
	out["opencv-16bit.png"] = func() []byte {
		m16 := gocv.NewMat()
		defer m16.Close()
		m.ConvertToWithParams(&m16, gocv.MatTypeCV16UC3, 257, 0)
		return encodeCV(t, ".png", m16)
	}()
	var buf bytes.Buffer
	for name, enc := range map[string]func() error{
		"go.png":  func() error { return png.Encode(&buf, goImage(w, h)) },
		"go.jpg":  func() error { return jpeg.Encode(&buf, goImage(w, h), nil) },
		"go.bmp":  func() error { return bmp.Encode(&buf, goImage(w, h)) },
		"go.tiff": func() error { return tiff.Encode(&buf, goImage(w, h), nil) },
		"go-deflate.tiff": func() error {
			return tiff.Encode(&buf, goImage(w, h), &tiff.Options{Compression: tiff.Deflate})
		},
	} {
		buf.Reset()
		if err := enc(); err != nil {
			t.Fatal(err)
		}
		out[name] = bytes.Clone(buf.Bytes())
	}
	out["hand.pbm"] = append([]byte("P4\n# a comment\n37 23\n"), make([]byte, 5*23)...)
	return out
}

// Probe reads the size every writer put in the header, and every file cut short (inside
// the header or the data) is incomplete, not corrupt: a writer may still be at work.
func TestProbeEveryFormatAndTruncation(t *testing.T) {
	for name, b := range encodings(t) {
		h, err := Probe(bytes.NewReader(b), int64(len(b)))
		if err != nil || h.Width != 37 || h.Height != 23 {
			t.Errorf("%s: %+v, %v; want 37×23", name, h, err)
			continue
		}
		if m, err := Decode(name, b); err != nil {
			t.Errorf("%s: Decode: %v", name, err)
		} else {
			m.Close()
		}
		for _, cut := range []int{1, 9, 20, 40, len(b) / 2, len(b) * 3 / 4, len(b) - 1} {
			if cut >= len(b) {
				continue
			}
			_, err := Probe(bytes.NewReader(b[:cut]), int64(cut))
			if !errors.Is(err, ErrIncomplete) {
				t.Errorf("%s cut to %d of %d bytes: %v, want ErrIncomplete", name, cut, len(b), err)
			}
			if m, err := Decode(name, b[:cut]); err == nil || !errors.Is(err, ErrBadFrame) {
				t.Errorf("%s cut to %d: Decode gave %v", name, cut, err)
				m.Close()
			}
		}
	}
}

func TestProbeRefusals(t *testing.T) {
	jpg := encodings(t)["opencv.jpg"]
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrIncomplete},
		{"zeros", make([]byte, 4096), ErrIncomplete},
		{"gif", []byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;"), ErrUnsupported},
		{"text", []byte("not an image at all\n"), ErrUnsupported},
		{"jpeg, garbage after SOI", []byte("\xff\xd8\xff not really a jpeg"), ErrCorrupt},
		{"jpeg, scan before frame", append([]byte{0xFF, 0xD8, 0xFF, 0xDA, 0, 2}, jpg[len(jpg)-2:]...), ErrCorrupt},
		{"png, no IHDR", []byte("\x89PNG\r\n\x1a\nthis is not really a png"), ErrCorrupt},
		{"png, 0 wide", pngHeader(0, 10), ErrCorrupt},
		{"png, 2^21 wide", pngHeader(1<<21, 1), ErrTooLarge},
		{"bmp, odd info header", append([]byte("BM\x1a\x00\x00\x00\x00\x00\x00\x00\x1a\x00\x00\x00\x07\x00\x00\x00"), make([]byte, 8)...), ErrCorrupt},
		{"tiff, 0 entries", []byte("II*\x00\x08\x00\x00\x00\x00\x00\x00\x00"), ErrCorrupt},
		{"pnm, maxval 0", []byte("P5 2 2 0\n\x00\x00\x00\x00"), ErrCorrupt},
		{"pnm, text", []byte("P5 two 2 255\n\x00\x00\x00\x00"), ErrCorrupt},
	} {
		_, err := Probe(bytes.NewReader(tc.b), int64(len(tc.b)))
		if !errors.Is(err, tc.want) || !errors.Is(err, ErrBadFrame) {
			t.Errorf("%s: %v, want %v (and ErrBadFrame)", tc.name, err, tc.want)
		}
	}
}

// pngHeader is a complete, valid PNG of w×h grey pixels whose data stream is empty: what
// matters is the header, which decoders size their buffers by.
func pngHeader(w, h uint32) []byte {
	var b bytes.Buffer
	b.Write(pngSig)
	chunk := func(typ string, data []byte) {
		binary.Write(&b, binary.BigEndian, uint32(len(data)))
		c := append([]byte(typ), data...)
		b.Write(c)
		binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(c))
	}
	ihdr := binary.BigEndian.AppendUint32(nil, w)
	ihdr = binary.BigEndian.AppendUint32(ihdr, h)
	chunk("IHDR", append(ihdr, 8, 0, 0, 0, 0)) // 8-bit grey
	chunk("IDAT", []byte{0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01})
	chunk("IEND", nil)
	return b.Bytes()
}

// Issue 8 item 1: a 3 MB PNG of 32000×32000 made OpenCV allocate 3.1 GB. Its header says
// so; the default limit refuses it before OpenCV sees it. A small limit refuses a small
// real image the same way, and the image decodes once the limit allows it.
func TestPixelLimit(t *testing.T) {
	big := pngHeader(32000, 32000)
	m, err := Decode("huge.png", big)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "32000×32000") {
		t.Fatalf("32000×32000 PNG: %v, want ErrTooLarge naming the size", err)
	}
	if !reflect.ValueOf(m).IsZero() {
		t.Fatal("a Mat came back with the error")
	}
	img := noisy(300, 200)
	defer img.Close()
	b := encodeCV(t, ".png", img)
	if _, err := (Limits{MaxPixels: 300*200 - 1}).Decode("x.png", b); !errors.Is(err, ErrTooLarge) {
		t.Errorf("300×200 under a limit of 59999 pixels: %v", err)
	}
	m, err = Limits{MaxPixels: 300 * 200}.Decode("x.png", b)
	if err != nil {
		t.Fatalf("300×200 at a limit of 60000 pixels: %v", err)
	}
	m.Close()
}

// Issue 8 item 1: a file of 2 GiB or more aborted the process inside OpenCV (gocv passes
// the length as a C int). The size is checked before a byte is read; the file here is
// sparse, a JPEG's first and last bytes around 2 GiB of holes.
func TestByteLimitBeforeReading(t *testing.T) {
	p := filepath.Join(t.TempDir(), "huge.jpg")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	const size = 2<<30 + 4096
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{0xFF, 0xD8, 0xFF, 0xE0}, 0)
	f.WriteAt([]byte{0xFF, 0xD9}, size-2)
	f.Close()
	m, err := Read(p)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), fmt.Sprint(size)) {
		t.Fatalf("2 GiB file: %v, want ErrTooLarge naming its size", err)
	}
	if !reflect.ValueOf(m).IsZero() {
		t.Fatal("a Mat came back with the error")
	}
	// No limit lifts the ceiling below gocv's C int.
	if _, err := (Limits{MaxBytes: 8 << 30}).Read(p); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("2 GiB file under a limit of 8 GiB: %v, want ErrTooLarge", err)
	}
	small := encodings(t)["opencv.jpg"]
	if _, err := (Limits{MaxBytes: int64(len(small)) - 1}).Decode("x.jpg", small); !errors.Is(err, ErrTooLarge) {
		t.Errorf("bytes over a small limit: %v", err)
	}
}

// cutScan removes n bytes from the middle of a JPEG's entropy-coded data, keeping EOI:
// what a camera's dropped packet or a bad sector leaves.
func cutScan(t *testing.T, jpg []byte, n int) []byte {
	t.Helper()
	sos := bytes.Index(jpg, []byte{0xFF, 0xDA})
	if sos < 0 {
		t.Fatal("no SOS marker")
	}
	mid := sos + (len(jpg)-sos)/2
	return append(bytes.Clone(jpg[:mid]), jpg[mid+n:]...)
}

// Issue 8 item 9: a JPEG with data missing that still ends in EOI. OpenCV decodes it
// without an error (libjpeg only warns), into a picture whose lower half is wrong; the
// strict check refuses it, with libjpeg's words.
func TestJPEGWithMissingDataIsCorrupt(t *testing.T) {
	img := noisy(320, 240)
	defer img.Close()
	for _, progressive := range []bool{false, true} {
		params := []int{gocv.IMWriteJpegQuality, 90}
		if progressive {
			params = append(params, gocv.IMWriteJpegProgressive, 1)
		}
		good := encodeCV(t, ".jpg", img, params...)
		if progressive { // and rotated by EXIF: OpenCV decodes it, after the 1/8-scale check
			good = withExif(good, 8)
		}
		bad := cutScan(t, good, len(good)/5)
		if _, err := Probe(bytes.NewReader(bad), int64(len(bad))); err != nil {
			t.Fatalf("progressive=%v: the damaged file passes the structural checks, which is the point: %v", progressive, err)
		}
		cv, err := gocv.IMDecode(bad, gocv.IMReadColor)
		if err != nil || cv.Empty() {
			t.Fatalf("progressive=%v: OpenCV refused the damaged JPEG itself (%v): the test no longer shows the problem", progressive, err)
		}
		cv.Close()
		m, err := Decode("cut.jpg", bad)
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "Corrupt JPEG data") {
			t.Errorf("progressive=%v: damaged JPEG: %v, want ErrCorrupt with libjpeg's warning", progressive, err)
			m.Close()
		}
		m, err = Decode("good.jpg", good)
		if err != nil {
			t.Fatalf("progressive=%v: intact JPEG: %v", progressive, err)
		}
		m.Close()
	}
}

// Real camera JPEGs and PNGs (the magnetic-tile set) all pass the probe and the strict
// check: the checks refuse damage, not the images a line produces.
func TestRealImagesPass(t *testing.T) {
	dir := testenv.Shared(t, "data/magnetic-tile/MT_Blowhole/Imgs")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		m, err := Read(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Errorf("%s: %v", e.Name(), err)
			continue
		}
		m.Close()
		n++
	}
	if n < 100 {
		t.Fatalf("only %d images read", n)
	}
}

// A grey JPEG takes the check's grey path and decodes as BGR like any frame.
func TestGreyJPEG(t *testing.T) {
	img := image.NewGray(image.Rect(0, 0, 4, 4))
	img.Set(1, 1, color.Gray{200})
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 100}); err != nil {
		t.Fatal(err)
	}
	m, err := Decode("grey.jpg", buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Channels() != 3 {
		t.Errorf("grey JPEG decoded with %d channels, want BGR", m.Channels())
	}
}

// withExif puts an APP1 Exif segment with the given orientation after a JPEG's SOI.
func withExif(jpg []byte, orientation uint16) []byte {
	tiffPart := []byte{'M', 'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, byte(orientation), 0, 0, 0, 0, 0, 0}
	payload := append([]byte("Exif\x00\x00"), tiffPart...)
	l := len(payload) + 2
	seg := append([]byte{0xFF, 0xE1, byte(l >> 8), byte(l)}, payload...)
	return append(append(bytes.Clone(jpg[:2]), seg...), jpg[2:]...)
}

// diagd decodes JPEGs with libjpeg itself (to see its warnings): the pixels must be
// OpenCV's, bit for bit, in colour and grey, for every kind of JPEG a camera writes,
// and an EXIF orientation is applied as OpenCV applies it.
func TestJPEGDecodeMatchesOpenCV(t *testing.T) {
	img := noisy(123, 77)
	defer img.Close()
	grey := gocv.NewMat()
	defer grey.Close()
	gocv.CvtColor(img, &grey, gocv.ColorBGRToGray)
	var goJPG, goGrey bytes.Buffer
	jpeg.Encode(&goJPG, goImage(123, 77), nil)
	jpeg.Encode(&goGrey, image.NewGray(image.Rect(0, 0, 123, 77)), nil)
	cases := map[string][]byte{
		"baseline":    encodeCV(t, ".jpg", img),
		"q100":        encodeCV(t, ".jpg", img, gocv.IMWriteJpegQuality, 100),
		"progressive": encodeCV(t, ".jpg", img, gocv.IMWriteJpegProgressive, 1),
		"restarts":    encodeCV(t, ".jpg", img, gocv.IMWriteJpegRstInterval, 3),
		"optimized":   encodeCV(t, ".jpg", img, gocv.IMWriteJpegOptimize, 1),
		"grey":        encodeCV(t, ".jpg", grey),
		"go":          goJPG.Bytes(),
		"go grey":     goGrey.Bytes(),
		"exif 1":      withExif(encodeCV(t, ".jpg", img), 1),
		"exif 6":      withExif(encodeCV(t, ".jpg", img), 6),
	}
	for name, b := range cases {
		for _, flag := range []gocv.IMReadFlag{gocv.IMReadColor, gocv.IMReadGrayScale} {
			want, err := gocv.IMDecode(b, flag)
			if err != nil || want.Empty() {
				t.Fatalf("%s: OpenCV: %v", name, err)
			}
			got, err := Limits{}.decode(name, b, flag)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if got.Rows() != want.Rows() || got.Cols() != want.Cols() || got.Type() != want.Type() {
				t.Errorf("%s flag %d: %dx%d type %v, OpenCV %dx%d type %v", name, flag, got.Cols(), got.Rows(), got.Type(), want.Cols(), want.Rows(), want.Type())
			} else {
				diff := gocv.NewMat()
				gocv.AbsDiff(got, want, &diff)
				if s := diff.Sum(); s.Val1+s.Val2+s.Val3 != 0 {
					t.Errorf("%s flag %d: pixels differ from OpenCV's (sum |diff| %v)", name, flag, s)
				}
				diff.Close()
			}
			got.Close()
			want.Close()
		}
	}
	if h, _ := Probe(bytes.NewReader(cases["exif 6"]), int64(len(cases["exif 6"]))); h.Orientation != 6 {
		t.Errorf("EXIF orientation read as %d, want 6", h.Orientation)
	}
}
