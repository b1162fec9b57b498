// Package imageio is the ground floor for image files: decoding them with OpenCV the way
// the detector sees them, the error that marks a frame that cannot be judged, the
// interpolation rule every resize follows, and file digests. It runs no model, so the
// packages that only read images (capture, augment, retrain/fid) need no ONNX Runtime.
//
// Every decode first reads the file's header (Probe) and refuses, before OpenCV sees a
// byte, what would hurt the process: more bytes or pixels than the Limits allow (a
// 2 GiB file aborts OpenCV; a 3 MB PNG of 32000×32000 asks for 3 GB), a format other
// than JPEG, PNG, BMP, TIFF, WebP and binary PNM (OpenCV's lesser decoders are where its
// security bugs were), a file shorter than its header says, and a JPEG whose data
// libjpeg only warns about (see checkJPEGData).
package imageio

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"gocv.io/x/gocv"
)

// ErrBadFrame marks images that cannot be judged (empty, undecodable, wrong pixel type).
var ErrBadFrame = errors.New("bad frame")

// Limits bound what one image file may cost. A zero field takes its default.
type Limits struct {
	MaxBytes  int64 // larger files are refused without being read
	MaxPixels int64 // images whose header says more (width × height) are refused undecoded
}

// Defaults: 100 megapixels (about 300 MB decoded as BGR) is above any line camera we
// know of; 256 MiB covers an uncompressed 16-bit TIFF of 80 megapixels.
const (
	DefaultMaxBytes  = 256 << 20
	DefaultMaxPixels = 100_000_000
)

// Ceilings no Limits can lift: gocv hands OpenCV the byte count as a C int (2 GiB and
// more aborts the process), and OpenCV refuses more than 2^30 pixels itself.
const (
	ceilingBytes  = 1 << 30
	ceilingPixels = 1 << 30
)

func (l Limits) orDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxPixels <= 0 {
		l.MaxPixels = DefaultMaxPixels
	}
	l.MaxBytes, l.MaxPixels = min(l.MaxBytes, ceilingBytes), min(l.MaxPixels, ceilingPixels)
	return l
}

// CheckSize refuses a file larger than MaxBytes.
func (l Limits) CheckSize(size int64) error {
	if l = l.orDefaults(); size > l.MaxBytes {
		return fmt.Errorf("%w: %d bytes, over the limit of %d", ErrTooLarge, size, l.MaxBytes)
	}
	return nil
}

// Check refuses a file whose size or header exceeds the limits.
func (l Limits) Check(size int64, h Header) error {
	if err := l.CheckSize(size); err != nil {
		return err
	}
	if l = l.orDefaults(); h.Pixels() > l.MaxPixels {
		return fmt.Errorf("%w: %s of %d×%d pixels (%.1f megapixels), over the limit of %.1f",
			ErrTooLarge, h.Format, h.Width, h.Height, float64(h.Pixels())/1e6, float64(l.MaxPixels)/1e6)
	}
	return nil
}

// Interpolation is the OpenCV interpolation used to go from a src×src frame to dst:
// area averaging when shrinking on both axes (no aliasing), bilinear otherwise.
func Interpolation(srcW, srcH, dstW, dstH int) gocv.InterpolationFlags {
	if srcW >= dstW && srcH >= dstH {
		return gocv.InterpolationArea
	}
	return gocv.InterpolationLinear
}

// Read decodes an image file as 8-bit BGR within the default limits, with errors that
// say what is wrong with the file (missing, empty, too large, not an image) rather than
// OpenCV's silent empty Mat. On error the returned Mat is the zero Mat: nothing to close.
func Read(path string) (gocv.Mat, error) { return Limits{}.Read(path) }

// Decode decodes encoded image bytes as 8-bit BGR within the default limits; name is
// used in errors. On error the returned Mat is the zero Mat: nothing to close.
func Decode(name string, b []byte) (gocv.Mat, error) { return Limits{}.Decode(name, b) }

// DecodeGray decodes encoded image bytes as 8-bit grey (masks) within the default
// limits; name is used in errors. On error the returned Mat is the zero Mat.
func DecodeGray(name string, b []byte) (gocv.Mat, error) { return Limits{}.DecodeGray(name, b) }

// ReadGray decodes an image file as 8-bit grey (masks) within the default limits. On
// error the returned Mat is the zero Mat.
func ReadGray(path string) (gocv.Mat, error) { return Limits{}.ReadGray(path) }

// Read is Read within l: the file's size is checked before a byte is read.
func (l Limits) Read(path string) (gocv.Mat, error) {
	b, err := l.readFile(path)
	if err != nil {
		return gocv.Mat{}, err
	}
	return l.Decode(path, b)
}

// ReadGray is ReadGray within l.
func (l Limits) ReadGray(path string) (gocv.Mat, error) {
	b, err := l.readFile(path)
	if err != nil {
		return gocv.Mat{}, err
	}
	return l.DecodeGray(path, b)
}

// readFile reads a regular file of at most MaxBytes, checked before reading.
func (l Limits) readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	if err := l.CheckSize(fi.Size()); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	b := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// Decode is Decode within l.
func (l Limits) Decode(name string, b []byte) (gocv.Mat, error) {
	return l.decode(name, b, gocv.IMReadColor)
}

// DecodeGray is DecodeGray within l.
func (l Limits) DecodeGray(name string, b []byte) (gocv.Mat, error) {
	return l.decode(name, b, gocv.IMReadGrayScale)
}

func (l Limits) decode(name string, b []byte, flags gocv.IMReadFlag) (gocv.Mat, error) {
	if len(b) == 0 {
		return gocv.Mat{}, fmt.Errorf("%s: %w: file is empty (0 bytes)", name, ErrBadFrame)
	}
	if err := l.CheckSize(int64(len(b))); err != nil {
		return gocv.Mat{}, fmt.Errorf("%s: %w", name, err)
	}
	h, err := Probe(bytes.NewReader(b), int64(len(b)))
	if err == nil {
		err = l.Check(int64(len(b)), h)
	}
	if err == nil && h.Format == JPEG {
		var m gocv.Mat
		var done bool
		if m, done, err = decodeJPEG(b, h, flags == gocv.IMReadGrayScale); done && err == nil {
			return m, nil
		}
		if !done && err == nil {
			err = checkJPEGData(b)
		}
	}
	if err != nil {
		return gocv.Mat{}, fmt.Errorf("%s: %w", name, err)
	}
	m, err := gocv.IMDecode(b, flags)
	if err != nil || m.Empty() {
		m.Close()
		return gocv.Mat{}, fmt.Errorf("%s: %w: OpenCV could not decode this %s (%d bytes)", name, ErrCorrupt, h.Format, len(b))
	}
	return m, nil
}

// FileDigest is the hex sha256 of a file.
func FileDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
