// Package imageio is the ground floor for image files: decoding them with OpenCV the way
// the detector sees them, the error that marks a frame that cannot be judged, the
// interpolation rule every resize follows, and file digests. It runs no model, so the
// packages that only read images (capture, augment, retrain/fid) need no ONNX Runtime.
package imageio

import (
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

// Interpolation is the OpenCV interpolation used to go from a src×src frame to dst:
// area averaging when shrinking on both axes (no aliasing), bilinear otherwise.
func Interpolation(srcW, srcH, dstW, dstH int) gocv.InterpolationFlags {
	if srcW >= dstW && srcH >= dstH {
		return gocv.InterpolationArea
	}
	return gocv.InterpolationLinear
}

// Read decodes an image file as 8-bit BGR, with errors that say what is wrong with the
// file (missing, empty, not an image) rather than OpenCV's silent empty Mat. On error
// the returned Mat is the zero Mat: nothing to close.
func Read(path string) (gocv.Mat, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return gocv.Mat{}, err
	}
	return Decode(path, b)
}

// Decode decodes encoded image bytes as 8-bit BGR; name is used in errors. On error the
// returned Mat is the zero Mat: nothing to close.
func Decode(name string, b []byte) (gocv.Mat, error) {
	return decode(name, b, gocv.IMReadColor)
}

// DecodeGray decodes encoded image bytes as 8-bit grey (masks); name is used in errors.
// On error the returned Mat is the zero Mat: nothing to close.
func DecodeGray(name string, b []byte) (gocv.Mat, error) {
	return decode(name, b, gocv.IMReadGrayScale)
}

func decode(name string, b []byte, flags gocv.IMReadFlag) (gocv.Mat, error) {
	if len(b) == 0 {
		return gocv.Mat{}, fmt.Errorf("%s: %w: file is empty (0 bytes)", name, ErrBadFrame)
	}
	m, err := gocv.IMDecode(b, flags)
	if err != nil || m.Empty() {
		m.Close()
		return gocv.Mat{}, fmt.Errorf("%s: %w: not a decodable image (corrupt, truncated or unsupported format, %d bytes)", name, ErrBadFrame, len(b))
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
