package detect

import (
	"fmt"
	"image"
	"image/color"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/internal/imageio"
)

// Probabilities returns the map resized to w×h (bilinear, as the cells' centres lie on
// the image), one float32 per pixel. The caller closes it.
func (s SegMap) Probabilities(w, h int) (gocv.Mat, error) {
	if s.W < 1 || s.H < 1 || len(s.P) != s.W*s.H || w < 1 || h < 1 {
		return gocv.NewMat(), fmt.Errorf("segmentation map %dx%d with %d values, to %dx%d", s.W, s.H, len(s.P), w, h)
	}
	small := gocv.NewMatWithSize(s.H, s.W, gocv.MatTypeCV32F)
	defer small.Close()
	px, err := small.DataPtrFloat32()
	if err != nil {
		return gocv.NewMat(), err
	}
	copy(px, s.P)
	big := gocv.NewMat()
	gocv.Resize(small, &big, image.Pt(w, h), 0, 0, gocv.InterpolationLinear)
	return big, nil
}

// Mask is the map resized to w×h and cut at thr: an 8-bit mask, 255 on defect pixels
// (the form console.Outline traces). The caller closes it.
func (s SegMap) Mask(w, h int, thr float64) (gocv.Mat, error) {
	p, err := s.Probabilities(w, h)
	if err != nil {
		return p, err
	}
	defer p.Close()
	return cutMask(p, thr), nil
}

func cutMask(p gocv.Mat, thr float64) gocv.Mat {
	bin, mask := gocv.NewMat(), gocv.NewMat()
	defer bin.Close()
	// ThresholdBinary keeps values strictly above; the threshold itself counts as defect.
	gocv.Threshold(p, &bin, float32(thr)-1e-7, 255, gocv.ThresholdBinary)
	bin.ConvertTo(&mask, gocv.MatTypeCV8U)
	return mask
}

// Overlay returns the frame (8-bit grey, BGR or BGRA) as BGR with its segmentation
// drawn over it, for a person to look at: the probabilities resized to the frame,
// coloured with OpenCV's JET map and blended in by 0.6·p (a clean surface stays as it
// was), the outline of the pixels at or above thr in white and the regions' boxes in
// yellow. The caller closes the result.
func Overlay(frame gocv.Mat, s SegMap, thr float64, regions []Region) (gocv.Mat, error) {
	out, err := toBGR(frame)
	if err != nil {
		return out, err
	}
	w, h := out.Cols(), out.Rows()
	p, err := s.Probabilities(w, h)
	if err != nil {
		out.Close()
		return gocv.NewMat(), err
	}
	defer p.Close()
	if err := blendHeat(&out, p); err != nil {
		out.Close()
		return gocv.NewMat(), err
	}
	mask := cutMask(p, thr)
	defer mask.Close()
	cs := gocv.FindContours(mask, gocv.RetrievalExternal, gocv.ChainApproxSimple)
	defer cs.Close()
	line := max(1, min(w, h)/200)
	gocv.DrawContours(&out, cs, -1, color.RGBA{255, 255, 255, 0}, line)
	for _, r := range regions {
		gocv.Rectangle(&out, image.Rect(r.X, r.Y, r.X+r.W, r.Y+r.H), color.RGBA{255, 255, 0, 0}, line)
	}
	return out, nil
}

// toBGR copies an 8-bit grey, BGR or BGRA frame as a continuous BGR Mat.
func toBGR(frame gocv.Mat) (gocv.Mat, error) {
	out := gocv.NewMat()
	if frame.Empty() || frame.Type()&7 != gocv.MatTypeCV8U {
		return out, fmt.Errorf("%w: want an 8-bit grey, BGR or BGRA image", imageio.ErrBadFrame)
	}
	switch frame.Channels() {
	case 1:
		gocv.CvtColor(frame, &out, gocv.ColorGrayToBGR)
	case 3:
		frame.CopyTo(&out)
	case 4:
		gocv.CvtColor(frame, &out, gocv.ColorBGRAToBGR)
	default:
		return out, fmt.Errorf("%w: %d channels", imageio.ErrBadFrame, frame.Channels())
	}
	return out, nil
}

// blendHeat mixes the JET colour of p into img (BGR, same size), by 0.6·p per pixel.
func blendHeat(img *gocv.Mat, p gocv.Mat) error {
	u8, heat := gocv.NewMat(), gocv.NewMat()
	defer u8.Close()
	defer heat.Close()
	p.ConvertToWithParams(&u8, gocv.MatTypeCV8U, 255, 0)
	gocv.ApplyColorMap(u8, &heat, gocv.ColormapJet)
	dst, err := img.DataPtrUint8()
	if err != nil {
		return err
	}
	src, err := heat.DataPtrUint8()
	if err != nil {
		return err
	}
	pf, err := p.DataPtrFloat32()
	if err != nil {
		return err
	}
	for i, v := range pf {
		a := 0.6 * min(max(v, 0), 1)
		for c := 3 * i; c < 3*i+3; c++ {
			dst[c] = uint8(float32(dst[c])*(1-a) + float32(src[c])*a + 0.5)
		}
	}
	return nil
}
