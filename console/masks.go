package console

import (
	"bytes"
	"fmt"
	"image"
	_ "image/jpeg" // DecodeConfig reads JPEG headers
	_ "image/png"  // and PNG headers

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
	maskFormatPNG  = "png"
	maskFormatJPEG = "jpeg"
)

// checkImageHeader reads only the header of an uploaded image, so a decompression bomb
// or a file of another type is refused before anything is decoded.
func checkImageHeader(b []byte, formats ...string) (image.Config, error) {
	if len(b) == 0 {
		return image.Config{}, fmt.Errorf("%w: the image is empty", ErrBadInput)
	}
	if len(b) > MaxUploadBytes {
		return image.Config{}, fmt.Errorf("%w: the image is %d bytes (at most %d)", ErrBadInput, len(b), MaxUploadBytes)
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		return cfg, fmt.Errorf("%w: not a PNG or JPEG image: %v", ErrBadInput, err)
	}
	ok := false
	for _, f := range formats {
		ok = ok || f == format
	}
	if !ok {
		return cfg, fmt.Errorf("%w: a %s image; want %v", ErrBadInput, format, formats)
	}
	if cfg.Width < 1 || cfg.Height < 1 || cfg.Width > maxSide || cfg.Height > maxSide || cfg.Width*cfg.Height > MaxPixels {
		return cfg, fmt.Errorf("%w: the image is %d×%d pixels (at most %d per side and %d in all)", ErrBadInput, cfg.Width, cfg.Height, maxSide, MaxPixels)
	}
	return cfg, nil
}

// cleanMask checks an uploaded mask (PNG or JPEG), optionally of a required size
// (w, h > 0), and returns it as an 8-bit PNG of 0 and 255 (defect: > 127), refusing a
// mask that marks nothing.
func cleanMask(b []byte, w, h int) ([]byte, error) {
	cfg, err := checkImageHeader(b, maskFormatPNG, maskFormatJPEG)
	if err != nil {
		return nil, err
	}
	if w > 0 && (cfg.Width != w || cfg.Height != h) {
		return nil, fmt.Errorf("%w: the mask is %d×%d; the frame is %d×%d", ErrBadInput, cfg.Width, cfg.Height, w, h)
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
