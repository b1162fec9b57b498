package console

import (
	"bytes"
	"fmt"
	"slices"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/internal/imageio"
)

// Limits on images sent from the browser.
const (
	MaxUploadBytes = 8 << 20  // one mask or image upload
	MaxPixels      = 64 << 20 // width × height of a decoded upload
	maxSide        = 16 << 10 // pixels on either side
	minMaskPixels  = 1        // a mask must mark something
	maskThreshold  = 127      // as the data set's rule: a mask pixel > 127 is defect
)

// checkImageHeader reads only the header of an uploaded image (imageio.Probe, which
// every frame goes through too), so a decompression bomb, a truncated file or a file of
// another type is refused before anything is decoded.
func checkImageHeader(b []byte, formats ...imageio.Format) (imageio.Header, error) {
	if len(b) == 0 {
		return imageio.Header{}, fmt.Errorf("%w: the image is empty", ErrBadInput)
	}
	if len(b) > MaxUploadBytes {
		return imageio.Header{}, fmt.Errorf("%w: the image is %d bytes (at most %d)", ErrBadInput, len(b), MaxUploadBytes)
	}
	h, err := imageio.Probe(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return h, fmt.Errorf("%w: not a PNG or JPEG image: %v", ErrBadInput, err)
	}
	if !slices.Contains(formats, h.Format) {
		return h, fmt.Errorf("%w: a %s image; want %v", ErrBadInput, h.Format, formats)
	}
	if h.Width > maxSide || h.Height > maxSide || h.Pixels() > MaxPixels {
		return h, fmt.Errorf("%w: the image is %d×%d pixels (at most %d per side and %d in all)", ErrBadInput, h.Width, h.Height, maxSide, MaxPixels)
	}
	return h, nil
}

// cleanMask checks an uploaded mask (PNG or JPEG), optionally of a required size
// (w, h > 0), and returns it as an 8-bit PNG of 0 and 255 (defect: > 127), refusing a
// mask that marks nothing.
func cleanMask(b []byte, w, h int) ([]byte, error) {
	hd, err := checkImageHeader(b, imageio.PNG, imageio.JPEG)
	if err != nil {
		return nil, err
	}
	if w > 0 && (hd.Width != w || hd.Height != h) {
		return nil, fmt.Errorf("%w: the mask is %d×%d; the frame is %d×%d", ErrBadInput, hd.Width, hd.Height, w, h)
	}
	m, err := imageio.DecodeGray("mask", b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadInput, err)
	}
	defer m.Close()
	bin := gocv.NewMat()
	defer bin.Close()
	gocv.Threshold(m, &bin, maskThreshold, 255, gocv.ThresholdBinary)
	if gocv.CountNonZero(bin) < minMaskPixels {
		return nil, fmt.Errorf("%w: the mask is empty: paint the defect's shape", ErrBadInput)
	}
	out, err := gocv.IMEncode(gocv.PNGFileExt, bin)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	return append([]byte(nil), out.GetBytes()...), nil
}
