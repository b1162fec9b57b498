package augment

import (
	"bytes"
	"fmt"
	"image"
	"image/png"
	"runtime"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/internal/imageio"
)

// ReadRGB decodes an image file with OpenCV, as the detector does (EXIF orientation
// applied, any bit depth and format OpenCV reads), into an opaque RGBA image.
func ReadRGB(path string) (*image.RGBA, error) {
	m, err := imageio.Read(path)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	img, err := m.ToImage()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	rgba, ok := img.(*image.RGBA)
	if !ok {
		return nil, fmt.Errorf("%s: decoded to %T, want RGB", path, img)
	}
	return rgba, nil
}

// MaskThreshold binarises soft masks: a pixel is defect when its grey level is above
// it. Masks resized by bilinear or bicubic filters (KSDD2 after DIAG's preprocessing,
// Magnetic-tile) have soft edges; halfway keeps their shape.
const MaskThreshold = 127

// ReadMask decodes a mask image as grey, scales it to size when it differs (warning
// says so) and binarises it to 0/255 at MaskThreshold. A mask gets the limits a frame
// gets (imageio.Limits' defaults): its size is checked before it is read, its pixels
// from its header before it is decoded.
func ReadMask(path string, size image.Point) (m *image.Gray, warning string, err error) {
	mat, err := imageio.ReadGray(path)
	if err != nil {
		return nil, "", fmt.Errorf("mask %w", err)
	}
	defer mat.Close()
	if got := image.Pt(mat.Cols(), mat.Rows()); got != size {
		warning = fmt.Sprintf("mask %s is %dx%d, the image is %dx%d: mask scaled to fit", path, got.X, got.Y, size.X, size.Y)
		scaled := gocv.NewMat()
		defer scaled.Close()
		gocv.Resize(mat, &scaled, size, 0, 0, imageio.Interpolation(got.X, got.Y, size.X, size.Y))
		mat, scaled = scaled, mat
	}
	bin := gocv.NewMat()
	defer bin.Close()
	gocv.Threshold(mat, &bin, MaskThreshold, 255, gocv.ThresholdBinary)
	img, err := bin.ToImage()
	if err != nil {
		return nil, "", fmt.Errorf("mask %s: %w", path, err)
	}
	return img.(*image.Gray), warning, nil
}

// ScaleMask scales a binary mask to size (bilinear, re-binarised).
func ScaleMask(m *image.Gray, size image.Point) (*image.Gray, error) {
	if m.Rect.Size() == size {
		return m, nil
	}
	src, err := gocv.ImageGrayToMatGray(m)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	dst := gocv.NewMat()
	defer dst.Close()
	gocv.Resize(src, &dst, size, 0, 0, imageio.Interpolation(m.Rect.Dx(), m.Rect.Dy(), size.X, size.Y))
	runtime.KeepAlive(m) // src borrows m.Pix
	gocv.Threshold(dst, &dst, MaskThreshold, 255, gocv.ThresholdBinary)
	img, err := dst.ToImage()
	if err != nil {
		return nil, err
	}
	return img.(*image.Gray), nil
}

// EncodePNG encodes an RGBA or grey image as PNG with OpenCV, several times faster
// than image/png for the full-size outputs (other image types go through image/png).
func EncodePNG(img image.Image) ([]byte, error) {
	var m gocv.Mat
	var err error
	switch im := img.(type) {
	case *image.RGBA:
		m, err = gocv.ImageToMatRGB(im)
	case *image.Gray:
		m, err = gocv.ImageGrayToMatGray(im)
	default:
		var b bytes.Buffer
		err := png.Encode(&b, img)
		return b.Bytes(), err
	}
	if err != nil {
		return nil, err
	}
	defer m.Close()
	buf, err := gocv.IMEncode(gocv.PNGFileExt, m)
	runtime.KeepAlive(img)
	if err != nil {
		return nil, err
	}
	defer buf.Close()
	return bytes.Clone(buf.GetBytes()), nil
}
