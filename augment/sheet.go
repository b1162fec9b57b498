package augment

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"runtime"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/internal/atomicfile"
)

// sheetThumbH is the thumbnail height; wide images are capped at twice that in width.
const sheetThumbH = 160

// sheet collects thumbnails for the contact sheet: each output with its defect mask
// outlined, so a person can judge a batch at a glance.
type sheet struct {
	stride int
	thumbs []*image.RGBA
}

func newSheet(maxThumbs, n int) *sheet {
	return &sheet{stride: max(1, int(math.Ceil(float64(n)/float64(maxThumbs))))}
}

// add keeps a thumbnail for every stride-th image of the batch (i counts from 0).
func (s *sheet) add(i, index int, img *image.RGBA, mask *image.Gray) {
	if i%s.stride != 0 {
		return
	}
	if t, err := Thumbnail(img, mask, fmt.Sprintf("%05d", index)); err == nil {
		s.thumbs = append(s.thumbs, t)
	}
}

// Thumbnail scales img to sheetThumbH high, outlines the mask in red and writes the
// label in the corner.
func Thumbnail(img *image.RGBA, mask *image.Gray, label string) (*image.RGBA, error) {
	src, err := gocv.ImageToMatRGB(img)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	w, h := img.Rect.Dx(), img.Rect.Dy()
	th := sheetThumbH
	tw := max(1, min(2*th, int(math.Round(float64(w)*float64(th)/float64(h)))))
	size := image.Pt(tw, th)
	small := gocv.NewMat()
	defer small.Close()
	gocv.Resize(src, &small, size, 0, 0, gocv.InterpolationArea)
	if mask != nil {
		m, err := gocv.ImageGrayToMatGray(mask)
		if err != nil {
			return nil, err
		}
		defer m.Close()
		ms := gocv.NewMat()
		defer ms.Close()
		// Linear then threshold keeps defects thinner than the shrink factor visible.
		gocv.Resize(m, &ms, size, 0, 0, gocv.InterpolationLinear)
		runtime.KeepAlive(mask)
		gocv.Threshold(ms, &ms, 0, 255, gocv.ThresholdBinary)
		contours := gocv.FindContours(ms, gocv.RetrievalExternal, gocv.ChainApproxSimple)
		defer contours.Close()
		gocv.DrawContours(&small, contours, -1, color.RGBA{R: 255, A: 255}, 1) // gocv maps RGBA to the BGR Mat
	}
	gocv.PutText(&small, label, image.Pt(3, 14), gocv.FontHersheyPlain, 1, color.RGBA{255, 255, 0, 255}, 1)
	out, err := small.ToImage()
	if err != nil {
		return nil, err
	}
	return out.(*image.RGBA), nil
}

func (s *sheet) write(path string) error {
	if len(s.thumbs) == 0 {
		return fmt.Errorf("no thumbnails")
	}
	cellW := 0
	for _, t := range s.thumbs {
		cellW = max(cellW, t.Rect.Dx())
	}
	const gap = 4
	cols := max(1, min(len(s.thumbs), int(math.Ceil(math.Sqrt(float64(len(s.thumbs))*float64(sheetThumbH)/float64(cellW))*1.5))))
	rows := (len(s.thumbs) + cols - 1) / cols
	canvas := image.NewRGBA(image.Rect(0, 0, cols*(cellW+gap)+gap, rows*(sheetThumbH+gap)+gap))
	draw.Draw(canvas, canvas.Rect, image.NewUniform(color.RGBA{40, 40, 40, 255}), image.Point{}, draw.Src)
	for i, t := range s.thumbs {
		x := gap + (i%cols)*(cellW+gap)
		y := gap + (i/cols)*(sheetThumbH+gap)
		draw.Draw(canvas, t.Rect.Add(image.Pt(x, y)), t, image.Point{}, draw.Src)
	}
	var b bytes.Buffer
	if err := png.Encode(&b, canvas); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, b.Bytes(), 0o644)
}
