package detect

import (
	"fmt"
	"image"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/internal/imageio"
)

// Preprocessor turns a decoded 8-bit frame into the model's NCHW float32 input, exactly
// as training does (retrain/ calls the same code, so serving cannot drift from it):
//
//  1. resize to the model's H×W with OpenCV: INTER_AREA when both axes shrink (camera
//     frames are larger than 704×256; area averaging is what antialiased resizing does),
//     INTER_LINEAR otherwise;
//  2. reorder channels (OpenCV decodes BGR; torchvision models want RGB);
//  3. x/255, then (x-mean)/std per channel.
//
// Steps 2 and 3 are one table lookup per byte. A Preprocessor owns a scratch Mat and is
// not safe for concurrent use; each detector worker has its own.
type Preprocessor struct {
	h, w    int
	lut     [3][256]float32 // lut[c][v]: normalised value of byte v for output channel c
	src     [3]int          // BGR byte index feeding output channel c
	scratch gocv.Mat
}

// NewPreprocessor builds a preprocessor for a model input.
func NewPreprocessor(in InputSpec) *Preprocessor {
	p := &Preprocessor{h: in.Height, w: in.Width, scratch: gocv.NewMat()}
	p.src = [3]int{0, 1, 2}
	if in.ChannelOrder == "RGB" {
		p.src = [3]int{2, 1, 0}
	}
	for c := range 3 {
		for v := range 256 {
			p.lut[c][v] = (float32(v)/255 - in.Mean[c]) / in.Std[c]
		}
	}
	return p
}

// Close frees the scratch Mat.
func (p *Preprocessor) Close() { p.scratch.Close() }

// Size is the number of float32 values one frame fills: 3·H·W.
func (p *Preprocessor) Size() int { return 3 * p.h * p.w }

// Into writes frame's tensor into dst (length Size()). Accepted frames are 8-bit with
// 1 (grey), 3 (BGR) or 4 (BGRA) channels.
func (p *Preprocessor) Into(frame gocv.Mat, dst []float32) error {
	if len(dst) != p.Size() {
		return fmt.Errorf("preprocess: destination holds %d values, want %d", len(dst), p.Size())
	}
	if frame.Empty() {
		return fmt.Errorf("%w: empty frame", imageio.ErrBadFrame)
	}
	ch := frame.Channels()
	if frame.Type()&7 != gocv.MatTypeCV8U || (ch != 1 && ch != 3 && ch != 4) {
		return fmt.Errorf("%w: pixel type %v; want 8-bit grey, BGR or BGRA", imageio.ErrBadFrame, frame.Type())
	}
	m := frame
	if frame.Cols() != p.w || frame.Rows() != p.h || !frame.IsContinuous() {
		gocv.Resize(frame, &p.scratch, image.Pt(p.w, p.h), 0, 0, imageio.Interpolation(frame.Cols(), frame.Rows(), p.w, p.h))
		m = p.scratch
	}
	px, err := m.DataPtrUint8()
	if err != nil {
		return fmt.Errorf("%w: %v", imageio.ErrBadFrame, err)
	}
	n := p.h * p.w
	r, g, b := dst[:n], dst[n:2*n], dst[2*n:]
	lr, lg, lb := &p.lut[0], &p.lut[1], &p.lut[2]
	if ch == 1 {
		for i, v := range px[:n] {
			r[i], g[i], b[i] = lr[v], lg[v], lb[v]
		}
		return nil
	}
	s0, s1, s2 := p.src[0], p.src[1], p.src[2]
	for i := range n {
		q := px[i*ch : i*ch+3 : i*ch+3]
		r[i], g[i], b[i] = lr[q[s0]], lg[q[s1]], lb[q[s2]]
	}
	return nil
}
