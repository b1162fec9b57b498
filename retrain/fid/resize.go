package fid

import (
	"fmt"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/internal/imageio"
)

// axisTaps are the two source indices and weights of each output index on one axis.
type axisTaps struct {
	i0, i1 []int
	l0, l1 []float32
}

// bilinearTaps reproduces PyTorch's CPU upsample_bilinear2d with align_corners=False
// and no antialiasing (what F.interpolate(mode="bilinear") does and pytorch-fid calls),
// in float32 as PyTorch computes it for float tensors:
//
//	scale = in/out;  src = max(scale·(dst+0.5) − 0.5, 0)
//	i0 = min(floor(src), in−1);  λ1 = clamp(src − i0, 0, 1);  λ0 = 1 − λ1
//	i1 = i0 + (i0 < in−1 ? 1 : 0)
//
// This is the half-pixel convention OpenCV's INTER_LINEAR also uses; OpenCV differs in
// clamping the weight at the far edge (same value, since i1 = i0 there) and, for 8-bit
// images, in 11-bit fixed-point weights, which is why the resize is done here on float
// values rather than by OpenCV on bytes.
func bilinearTaps(in, out int) axisTaps {
	t := axisTaps{i0: make([]int, out), i1: make([]int, out), l0: make([]float32, out), l1: make([]float32, out)}
	scale := float32(in) / float32(out)
	for d := range out {
		src := scale*(float32(d)+0.5) - 0.5
		if src < 0 {
			src = 0
		}
		i0 := min(int(src), in-1)
		l1 := min(max(src-float32(i0), 0), 1)
		t.i0[d], t.l0[d], t.l1[d] = i0, 1-l1, l1
		t.i1[d] = i0
		if i0 < in-1 {
			t.i1[d] = i0 + 1
		}
	}
	return t
}

// ResizeBilinear resizes c planes of h×w float32 values (CHW) to oh×ow into dst (length
// c·oh·ow), with F.interpolate(bilinear, align_corners=False) semantics.
func ResizeBilinear(dst, src []float32, c, h, w, oh, ow int) error {
	if len(src) != c*h*w || len(dst) != c*oh*ow || h <= 0 || w <= 0 || oh <= 0 || ow <= 0 {
		return fmt.Errorf("fid: resize %d×%d×%d (%d values) to %d×%d (%d values): bad sizes", c, h, w, len(src), oh, ow, len(dst))
	}
	ty, tx := bilinearTaps(h, oh), bilinearTaps(w, ow)
	for ch := range c {
		s := src[ch*h*w : (ch+1)*h*w]
		d := dst[ch*oh*ow : (ch+1)*oh*ow]
		for y := range oh {
			r0, r1 := s[ty.i0[y]*w:], s[ty.i1[y]*w:]
			h0, h1 := ty.l0[y], ty.l1[y]
			row := d[y*ow : (y+1)*ow]
			for x := range ow {
				a, b := tx.i0[x], tx.i1[x]
				w0, w1 := tx.l0[x], tx.l1[x]
				// PyTorch's order: rows first within, then blend the two rows.
				row[x] = h0*(w0*r0[a]+w1*r0[b]) + h1*(w0*r1[a]+w1*r1[b])
			}
		}
	}
	return nil
}

// Preprocessor turns decoded images into the Inception input: RGB in [0,1] as
// torchvision's ToTensor gives, resized to 299×299, then 2x−1 (pytorch-fid's
// normalize_input). It keeps its scratch buffer; not safe for concurrent use.
type Preprocessor struct {
	size    int
	scratch []float32
}

// NewPreprocessor prepares for size×size outputs (299 for Inception).
func NewPreprocessor(size int) *Preprocessor { return &Preprocessor{size: size} }

// Size is the number of values one image fills: 3·size·size.
func (p *Preprocessor) Size() int { return 3 * p.size * p.size }

// Into writes the tensor of an 8-bit BGR, BGRA or grey Mat (as imageio.Read decodes)
// into dst.
func (p *Preprocessor) Into(m gocv.Mat, dst []float32) error {
	if m.Empty() {
		return fmt.Errorf("%w: empty image", imageio.ErrBadFrame)
	}
	ch := m.Channels()
	if m.Type()&7 != gocv.MatTypeCV8U || (ch != 1 && ch != 3 && ch != 4) {
		return fmt.Errorf("%w: pixel type %v; want 8-bit grey, BGR or BGRA", imageio.ErrBadFrame, m.Type())
	}
	if !m.IsContinuous() {
		c := m.Clone()
		defer c.Close()
		m = c
	}
	px, err := m.DataPtrUint8()
	if err != nil {
		return fmt.Errorf("%w: %v", imageio.ErrBadFrame, err)
	}
	h, w := m.Rows(), m.Cols()
	n := h * w
	if cap(p.scratch) < 3*n {
		p.scratch = make([]float32, 3*n)
	}
	s := p.scratch[:3*n]
	r, g, b := s[:n], s[n:2*n], s[2*n:]
	for i := range n {
		if ch == 1 {
			v := float32(px[i]) / 255
			r[i], g[i], b[i] = v, v, v
			continue
		}
		q := px[i*ch:]
		r[i], g[i], b[i] = float32(q[2])/255, float32(q[1])/255, float32(q[0])/255
	}
	if err := ResizeBilinear(dst, s, 3, h, w, p.size, p.size); err != nil {
		return err
	}
	for i, v := range dst {
		dst[i] = 2*v - 1
	}
	return nil
}
