package dataset

import "math"

// The paper's classifier labels an image a defect only if its mask still has a pixel at
// exactly 255 after torchvision's Resize((704,256)) (PIL BILINEAR on the 'L' image) and a
// float→long copy that truncates (spec §1.5). pilResizeBilinear reproduces Pillow's
// uint8 resampler (Resample.c, spec §2.10) so that quirk can be replicated exactly.

const pilPrecisionBits = 32 - 8 - 2

// pilCoeffs are the fixed-point weights of one axis: for output index i, the inputs
// start at bounds[2i] and number bounds[2i+1].
func pilCoeffs(inSize, outSize int) (ksize int, bounds []int, kk []int32) {
	scale := float64(inSize) / float64(outSize)
	filterscale := max(scale, 1)
	support := 1.0 * filterscale // bilinear support is 1
	ksize = int(math.Ceil(support))*2 + 1
	bounds = make([]int, 2*outSize)
	kk = make([]int32, outSize*ksize)
	pre := make([]float64, ksize)
	for xx := range outSize {
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
		for x := range xmax {
			w := 1 - math.Abs((float64(x+xmin)-center+0.5)*ss)
			if w < 0 {
				w = 0
			}
			pre[x] = w
			ww += w
		}
		for x := range xmax {
			if ww != 0 {
				pre[x] /= ww
			}
			v := pre[x] * float64(int64(1)<<pilPrecisionBits)
			if pre[x] < 0 {
				kk[xx*ksize+x] = int32(-0.5 + v)
			} else {
				kk[xx*ksize+x] = int32(0.5 + v)
			}
		}
		bounds[2*xx], bounds[2*xx+1] = xmin, xmax
	}
	return ksize, bounds, kk
}

func pilClip8(v int64) uint8 {
	if v >= 1<<pilPrecisionBits<<8 {
		return 255
	}
	if v <= 0 {
		return 0
	}
	return uint8(v >> pilPrecisionBits)
}

// pilResizeBilinear resizes a w×h 8-bit image to ow×oh: horizontal pass first, then
// vertical, each skipped when that axis keeps its size, with a uint8 intermediate.
func pilResizeBilinear(src []uint8, w, h, ow, oh int) []uint8 {
	cur, cw := src, w
	if ow != w {
		ks, b, kk := pilCoeffs(w, ow)
		tmp := make([]uint8, ow*h)
		for y := range h {
			row := cur[y*cw : (y+1)*cw]
			for xx := range ow {
				acc := int64(1) << (pilPrecisionBits - 1)
				xmin, n := b[2*xx], b[2*xx+1]
				k := kk[xx*ks:]
				for x := range n {
					acc += int64(row[xmin+x]) * int64(k[x])
				}
				tmp[y*ow+xx] = pilClip8(acc)
			}
		}
		cur, cw = tmp, ow
	}
	if oh != h {
		ks, b, kk := pilCoeffs(h, oh)
		tmp := make([]uint8, cw*oh)
		for yy := range oh {
			ymin, n := b[2*yy], b[2*yy+1]
			k := kk[yy*ks:]
			for x := range cw {
				acc := int64(1) << (pilPrecisionBits - 1)
				for y := range n {
					acc += int64(cur[(ymin+y)*cw+x]) * int64(k[y])
				}
				tmp[yy*cw+x] = pilClip8(acc)
			}
		}
		cur = tmp
	}
	return cur
}
