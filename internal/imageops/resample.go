// Package imageops holds the pixel operations of the SDXL inpainting pipeline, done the
// way Pillow and diffusers do them so Go output matches DIAG's bit for bit where it can:
// Pillow's fixed-point separable resampling (Resample.c), diffusers' get_crop_region,
// mask binarisation, nearest ×8 mask downsampling and the apply_overlay paste-back.
package imageops

import (
	"fmt"
	"image"
	"image/color"
	"math"
	"runtime"
	"sync"
)

// Image is an 8-bit interleaved image with C channels (1 = L, 3 = RGB), row-major.
type Image struct {
	W, H, C int
	Pix     []uint8
}

// New allocates a zeroed image.
func New(w, h, c int) *Image { return &Image{W: w, H: h, C: c, Pix: make([]uint8, w*h*c)} }

// FromImage converts any image to RGB as PIL's convert("RGB") does for opaque images
// (alpha is dropped, not composited).
func FromImage(src image.Image) *Image {
	b := src.Bounds()
	out := New(b.Dx(), b.Dy(), 3)
	switch s := src.(type) {
	case *image.RGBA:
		copyRGB(out, s.Pix, s.Stride, s.Rect, b)
	case *image.NRGBA:
		copyRGB(out, s.Pix, s.Stride, s.Rect, b)
	default:
		for y := 0; y < out.H; y++ {
			for x := 0; x < out.W; x++ {
				c := color.NRGBAModel.Convert(src.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA)
				i := 3 * (y*out.W + x)
				out.Pix[i], out.Pix[i+1], out.Pix[i+2] = c.R, c.G, c.B
			}
		}
	}
	return out
}

// copyRGB copies into out the R, G and B of the 4-byte pixels (RGBA or NRGBA, alpha
// dropped) inside b of pix, whose rows are stride bytes apart from rect.Min.
func copyRGB(out *Image, pix []uint8, stride int, rect, b image.Rectangle) {
	for y := 0; y < out.H; y++ {
		row := pix[(y+b.Min.Y-rect.Min.Y)*stride+(b.Min.X-rect.Min.X)*4:]
		o := out.Pix[y*out.W*3:]
		for x := 0; x < out.W; x++ {
			o[3*x], o[3*x+1], o[3*x+2] = row[4*x], row[4*x+1], row[4*x+2]
		}
	}
}

// FromGray copies a grey image into a 1-channel Image.
func FromGray(g *image.Gray) *Image {
	b := g.Bounds()
	out := New(b.Dx(), b.Dy(), 1)
	for y := 0; y < out.H; y++ {
		copy(out.Pix[y*out.W:(y+1)*out.W], g.Pix[(y+b.Min.Y-g.Rect.Min.Y)*g.Stride+b.Min.X-g.Rect.Min.X:])
	}
	return out
}

// RGBA converts a 3-channel image to an opaque *image.RGBA.
func (m *Image) RGBA() *image.RGBA {
	out := image.NewRGBA(image.Rect(0, 0, m.W, m.H))
	if m.C == 1 {
		for i, v := range m.Pix {
			out.Pix[4*i], out.Pix[4*i+1], out.Pix[4*i+2], out.Pix[4*i+3] = v, v, v, 255
		}
		return out
	}
	for i := 0; i < m.W*m.H; i++ {
		out.Pix[4*i], out.Pix[4*i+1], out.Pix[4*i+2], out.Pix[4*i+3] = m.Pix[3*i], m.Pix[3*i+1], m.Pix[3*i+2], 255
	}
	return out
}

// Filter is a Pillow resampling filter.
type Filter int

// The filters the pipeline uses: PIL's BILINEAR, BICUBIC (a = -0.5) and LANCZOS (a = 3).
const (
	Bilinear Filter = iota
	Bicubic
	Lanczos
)

func (f Filter) support() float64 {
	switch f {
	case Bilinear:
		return 1
	case Bicubic:
		return 2
	}
	return 3
}

func (f Filter) eval(x float64) float64 {
	switch f {
	case Bilinear:
		x = math.Abs(x)
		if x < 1 {
			return 1 - x
		}
		return 0
	case Bicubic:
		const a = -0.5
		x = math.Abs(x)
		if x < 1 {
			return ((a+2)*x-(a+3))*x*x + 1
		}
		if x < 2 {
			return (((x-5)*x+8)*x - 4) * a
		}
		return 0
	}
	if -3 <= x && x < 3 {
		return sinc(x) * sinc(x/3)
	}
	return 0
}

func sinc(x float64) float64 {
	if x == 0 {
		return 1
	}
	x *= math.Pi
	return math.Sin(x) / x
}

// precisionBits is Pillow's PRECISION_BITS for 8-bit images (32 - 8 - 2).
const precisionBits = 22

// Span is the source range [Min, Min+N) one output sample reads.
type Span struct{ Min, N int }

// coeffs is Pillow's precompute_coeffs + normalize_coeffs_8bpc for a full-image resize
// (box = 0..inSize): per output index, the source span and fixed-point weights.
type coeffs struct {
	ksize int
	spans []Span
	k     []int32 // out × ksize
}

func precompute(inSize, outSize int, f Filter) coeffs {
	scale := float64(inSize) / float64(outSize)
	filterscale := max(scale, 1)
	support := f.support() * filterscale
	ksize := int(math.Ceil(support))*2 + 1
	c := coeffs{ksize: ksize, spans: make([]Span, outSize), k: make([]int32, outSize*ksize)}
	w := make([]float64, ksize)
	for xx := 0; xx < outSize; xx++ {
		center := (float64(xx) + 0.5) * scale
		ss := 1 / filterscale
		xmin := int(center - support + 0.5) // C's (int) truncates toward zero
		if xmin < 0 {
			xmin = 0
		}
		xmax := int(center + support + 0.5)
		if xmax > inSize {
			xmax = inSize
		}
		xmax -= xmin
		ww := 0.0
		for x := 0; x < xmax; x++ {
			w[x] = f.eval((float64(x+xmin) - center + 0.5) * ss)
			ww += w[x]
		}
		k := c.k[xx*ksize : (xx+1)*ksize]
		for x := 0; x < xmax; x++ {
			v := w[x]
			if ww != 0 {
				v /= ww
			}
			if v < 0 {
				k[x] = int32(-0.5 + v*(1<<precisionBits))
			} else {
				k[x] = int32(0.5 + v*(1<<precisionBits))
			}
		}
		c.spans[xx] = Span{xmin, xmax}
	}
	return c
}

// Spans returns, for each of outSize output samples, the source range a Pillow resize
// from inSize reads. The pipeline uses it to know which output pixels depend on a region.
func Spans(inSize, outSize int, f Filter) []Span { return precompute(inSize, outSize, f).spans }

func clip8(v int32) uint8 {
	if v >= 1<<precisionBits<<8 {
		return 255
	}
	if v <= 0 {
		return 0
	}
	return uint8(v >> precisionBits)
}

// Resize is PIL Image.resize((w, h), filter) for 8-bit L or RGB images: horizontal pass
// into a uint8 intermediate over only the rows the vertical pass reads, then vertical,
// each with 22-bit fixed-point weights, rounding by adding 2^21 and clipping.
func Resize(src *Image, w, h int, f Filter) (*Image, error) {
	if w == src.W && h == src.H && len(src.Pix) == w*h*src.C {
		out := New(w, h, src.C)
		copy(out.Pix, src.Pix)
		return out, nil
	}
	return ResizeWindow(src, 0, 0, src.W, src.H, w, h, f, Rect{0, 0, w, h})
}

// ResizeWindow computes only the output pixels in out of resizing a fullW×fullH image to
// w×h, reading from win, the part of that image whose top-left corner is at (ox, oy).
// The pixels are exactly those of Resize on the full image (each output sample's weights
// depend only on its index), so a caller that changes a small region can resize just
// what that region reaches. win must hold every source pixel those outputs read.
func ResizeWindow(win *Image, ox, oy, fullW, fullH, w, h int, f Filter, out Rect) (*Image, error) {
	if w <= 0 || h <= 0 || fullW <= 0 || fullH <= 0 {
		return nil, fmt.Errorf("imageops: resize %dx%d -> %dx%d: sizes must be positive", fullW, fullH, w, h)
	}
	if len(win.Pix) != win.W*win.H*win.C {
		return nil, fmt.Errorf("imageops: resize: %d bytes for %dx%dx%d", len(win.Pix), win.W, win.H, win.C)
	}
	if out.X1 < 0 || out.Y1 < 0 || out.X2 > w || out.Y2 > h || out.Dx() <= 0 || out.Dy() <= 0 {
		return nil, fmt.Errorf("imageops: resize: output region %v outside %dx%d", out, w, h)
	}
	ch := axisCoeffs(fullW, w, f, out.X1, out.X2)
	cv := axisCoeffs(fullH, h, f, out.Y1, out.Y2)
	first := cv.spans[0].Min
	last := cv.spans[len(cv.spans)-1].Min + cv.spans[len(cv.spans)-1].N
	cmin := ch.spans[0].Min
	cmax := ch.spans[len(ch.spans)-1].Min + ch.spans[len(ch.spans)-1].N
	if cmin < ox || first < oy || cmax > ox+win.W || last > oy+win.H {
		return nil, fmt.Errorf("imageops: resize: outputs %v read source [%d,%d)×[%d,%d), outside the window at (%d,%d) of %dx%d",
			out, cmin, cmax, first, last, ox, oy, win.W, win.H)
	}
	for i := range ch.spans {
		ch.spans[i].Min -= ox
	}
	for i := range cv.spans {
		cv.spans[i].Min -= first
	}
	tmp := New(out.Dx(), last-first, win.C)
	resampleH(tmp, win, first-oy, ch)
	dst := New(out.Dx(), out.Dy(), win.C)
	resampleV(dst, tmp, cv)
	return dst, nil
}

// axisCoeffs are the coefficients of outputs [lo, hi) of a size in → out resize. An axis
// that keeps its size gets unit weights (1·2²² reproduces every byte exactly), which is
// what Pillow's skipping that pass amounts to.
func axisCoeffs(in, out int, f Filter, lo, hi int) coeffs {
	if in == out {
		c := coeffs{ksize: 1, spans: make([]Span, hi-lo), k: make([]int32, hi-lo)}
		for i := range c.spans {
			c.spans[i] = Span{lo + i, 1}
			c.k[i] = 1 << precisionBits
		}
		return c
	}
	c := precompute(in, out, f)
	c.spans = c.spans[lo:hi]
	c.k = c.k[lo*c.ksize : hi*c.ksize]
	return c
}

// parallel splits n rows into one contiguous chunk per CPU when there is enough work.
func parallel(n, work int, fn func(lo, hi int)) {
	p := runtime.GOMAXPROCS(0)
	if p < 2 || work < 1<<18 || n < 2 {
		fn(0, n)
		return
	}
	p = min(p, n)
	var wg sync.WaitGroup
	for i := 0; i < p; i++ {
		lo, hi := i*n/p, (i+1)*n/p
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}

func resampleH(dst, src *Image, yoff int, c coeffs) {
	parallel(dst.H, dst.W*dst.H*dst.C*c.ksize, func(lo, hi int) { resampleHRows(dst, src, yoff, c, lo, hi) })
}

func resampleHRows(dst, src *Image, yoff int, c coeffs, y0, y1 int) {
	C := src.C
	const half = int32(1 << (precisionBits - 1))
	for y := y0; y < y1; y++ {
		in := src.Pix[(y+yoff)*src.W*C : (y+yoff+1)*src.W*C]
		out := dst.Pix[y*dst.W*C : (y+1)*dst.W*C]
		for xx, sp := range c.spans {
			k := c.k[xx*c.ksize : xx*c.ksize+sp.N]
			switch C {
			case 3: // the common case, one pass over the taps for all channels
				p := in[sp.Min*3 : (sp.Min+len(k))*3]
				a0, a1, a2 := half, half, half
				for j, kv := range k {
					q := p[3*j : 3*j+3 : 3*j+3]
					a0 += int32(q[0]) * kv
					a1 += int32(q[1]) * kv
					a2 += int32(q[2]) * kv
				}
				o := out[3*xx : 3*xx+3 : 3*xx+3]
				o[0], o[1], o[2] = clip8(a0), clip8(a1), clip8(a2)
			default:
				for ch := 0; ch < C; ch++ {
					acc := half
					p := sp.Min*C + ch
					for _, kv := range k {
						acc += int32(in[p]) * kv
						p += C
					}
					out[xx*C+ch] = clip8(acc)
				}
			}
		}
	}
}

// resampleV accumulates whole source rows into an int32 row per output row: the same
// integer sums as Pillow's per-pixel loop (integer addition is exact in any order), but
// sequential in memory.
func resampleV(dst, src *Image, c coeffs) {
	parallel(dst.H, dst.W*dst.H*dst.C*c.ksize, func(lo, hi int) { resampleVRows(dst, src, c, lo, hi) })
}

func resampleVRows(dst, src *Image, c coeffs, y0, y1 int) {
	row := src.W * src.C
	acc := make([]int32, row)
	for yy := y0; yy < y1; yy++ {
		sp := c.spans[yy]
		k := c.k[yy*c.ksize : yy*c.ksize+sp.N]
		for i := range acc {
			acc[i] = 1 << (precisionBits - 1)
		}
		for j, kv := range k {
			in := src.Pix[(sp.Min+j)*row : (sp.Min+j+1)*row]
			in = in[:len(acc)]
			for i, v := range in {
				acc[i] += int32(v) * kv
			}
		}
		out := dst.Pix[yy*row : (yy+1)*row]
		out = out[:len(acc)]
		for i, a := range acc {
			out[i] = clip8(a)
		}
	}
}
