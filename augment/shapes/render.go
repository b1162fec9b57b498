package shapes

import (
	"fmt"
	"image"
	"math"
	"math/rand/v2"
)

// Shape is one drawn defect: how much each pixel belongs to it, how deep, and the
// label mask. All fields are image-sized and start at the origin.
type Shape struct {
	W, H int
	// Alpha is the coverage in [0,1]: soft edges, tapered ends, anti-aliased strokes.
	Alpha []float32
	// Profile multiplies the contrast per pixel (a pit is deepest in the middle); nil
	// means 1 everywhere.
	Profile []float32
	// Shade is extra signed contrast, in units of the fill's |contrast| (a pit's wall
	// facing the light is brighter, the other darker); nil means none.
	Shade []float32
	// Mask is the label: 255 where Alpha ≥ 0.5 inside the region, else 0. Never empty.
	Mask *image.Gray
	Info Info
}

// Info is what was drawn, for the sidecar and for checking that parameters are honoured.
type Info struct {
	Type     Kind    `json:"type"`
	Length   float64 `json:"length_px,omitempty"` // end to end
	Width    float64 `json:"width_px,omitempty"`
	Angle    float64 `json:"angle_deg"` // strokes: of the end-to-end line; blobs: of the long axis
	Branches int     `json:"branches,omitempty"`
	Radius   float64 `json:"radius_px,omitempty"`
	Aspect   float64 `json:"aspect,omitempty"`
	Shading  float64 `json:"shading,omitempty"`
	Pixels   int     `json:"pixels"` // label pixels
}

// placeTries bounds the redraws of a shape that does not fit its region.
const placeTries = 10

// Render draws one shape of spec inside region (a mask of the image's size; > 0 where
// the defect may be). Unset parameters take Defaults. Same rng state, same shape.
func Render(spec Spec, region *image.Gray, rng *rand.Rand) (*Shape, error) {
	return RenderAt(spec, region, nil, rng)
}

// RenderAt is Render with the shape's centre drawn from anchors (> 0 where a centre
// may be; nil: anywhere in the region): a chip placed near the border reaches into
// the image instead of being cut to a strip along it. The shape is still clipped to
// the region.
func RenderAt(spec Spec, region, anchors *image.Gray, rng *rand.Rand) (*Shape, error) {
	region = ZeroOrigin(region)
	if anchors == nil {
		anchors = region
	}
	pts := newSampler(ZeroOrigin(anchors))
	if pts.n == 0 {
		return nil, ErrEmptyRegion
	}
	spec = spec.WithDefaults()
	for range placeTries {
		var sh *Shape
		switch spec.Kind {
		case Crack, Scratch:
			sh = drawStroke(spec, region, pts, rng)
		case Pit, Stain, Ellipse:
			sh = drawOutline(spec, region, pts, rng)
		case Blob, "":
			sh = drawPerlin(spec, region, pts, rng)
		default:
			return nil, fmt.Errorf("unknown shape %q (want one of %v)", spec.Kind, Kinds)
		}
		if sh.finish(region) > 0 {
			return sh, nil
		}
	}
	return nil, fmt.Errorf("no %s with these parameters leaves a label pixel inside the region in %d tries (too thin or too small?)", spec.Kind, placeTries)
}

// FromMask makes a shape of a mask file's defect, its edge faded over feather px.
func FromMask(mask *image.Gray, feather float64) *Shape {
	mask = ZeroOrigin(mask)
	w, h := mask.Rect.Dx(), mask.Rect.Dy()
	sh := newShape(w, h, File)
	for y := range h {
		for x, v := range mask.Pix[y*mask.Stride : y*mask.Stride+w] {
			if v > 0 {
				sh.Alpha[y*w+x] = 1
			}
		}
	}
	if feather > 0 {
		blurField(sh.Alpha, w, h, feather)
	}
	full := image.NewGray(image.Rect(0, 0, w, h))
	for i := range full.Pix {
		full.Pix[i] = 255
	}
	sh.finish(full)
	return sh
}

func newShape(w, h int, k Kind) *Shape {
	return &Shape{W: w, H: h, Alpha: make([]float32, w*h), Info: Info{Type: k}}
}

// finish clips the shape to the region and derives the label; it returns the label's
// pixel count.
func (sh *Shape) finish(region *image.Gray) int {
	sh.Mask = image.NewGray(image.Rect(0, 0, sh.W, sh.H))
	n := 0
	for y := range sh.H {
		rr := region.Pix[y*region.Stride : y*region.Stride+sh.W]
		for x := range sh.W {
			i := y*sh.W + x
			if rr[x] == 0 {
				sh.Alpha[i] = 0
				continue
			}
			if sh.Alpha[i] >= 0.5 {
				sh.Mask.Pix[y*sh.Mask.Stride+x] = 255
				n++
			}
		}
	}
	sh.Info.Pixels = n
	return n
}

// point is a stroke's centre line sample with its half-width.
type point struct{ x, y, hw float64 }

// drawStroke draws a crack or scratch centred on a region pixel, trying a few centres
// so that most of it lies inside the region.
func drawStroke(spec Spec, region *image.Gray, pts *sampler, rng *rand.Rand) *Shape {
	w, h := region.Rect.Dx(), region.Rect.Dy()
	short := float64(min(w, h))
	length := max(spec.Length.Draw(rng, short), 1)
	width := max(spec.Width.Draw(rng, short), 0.5)
	angle := spec.Angle.Draw(rng, short)
	taper := spec.Taper.Draw(rng, short)
	var paths [][]point
	var nBranches int
	if spec.Kind == Crack {
		paths, nBranches = crackPaths(spec, rng, length, width/2, angle*math.Pi/180, taper, short)
	} else {
		paths = [][]point{scratchPath(rng, length, width/2, angle*math.Pi/180, taper, spec.Bend.Draw(rng, short))}
	}
	best, bestIn := image.Point{}, -1.0
	for range placeTries {
		c := pts.draw(rng)
		if in := inside(paths[0], c, region); in > bestIn {
			best, bestIn = c, in
		}
		if bestIn >= 0.95 {
			break
		}
	}
	sh := newShape(w, h, spec.Kind)
	for _, p := range paths {
		strokeAlpha(sh.Alpha, w, h, p, float64(best.X), float64(best.Y))
	}
	sh.Info.Length, sh.Info.Width, sh.Info.Angle, sh.Info.Branches = length, width, angle, nBranches
	return sh
}

// inside is the share of a path's samples that land on region pixels when centred at c.
func inside(path []point, c image.Point, region *image.Gray) float64 {
	n := 0
	w, h := region.Rect.Dx(), region.Rect.Dy()
	for _, p := range path {
		x, y := int(math.Round(p.x))+c.X, int(math.Round(p.y))+c.Y
		if x >= 0 && y >= 0 && x < w && y < h && region.Pix[y*region.Stride+x] > 0 {
			n++
		}
	}
	return float64(n) / float64(len(path))
}

// taperWidth is the half-width at position t in [0,1] along a stroke: full in the
// middle, (1-taper) of it at the ends.
func taperWidth(hw, taper, t float64) float64 {
	return hw * ((1 - taper) + taper*math.Sin(math.Pi*t))
}

// crackPaths draws a crack as a random walk whose heading wanders around the base
// angle (a mean-reverting deviation), rotated and scaled so its ends are exactly
// length apart at angle; then side branches that leave it at branch_angle.
func crackPaths(spec Spec, rng *rand.Rand, length, hw, angle, taper, short float64) ([][]point, int) {
	wiggle := spec.Wiggle.Draw(rng, short) * math.Pi / 180
	main := walk(rng, length, 0, wiggle)
	straighten(main, length, angle)
	for i := range main {
		main[i].hw = taperWidth(hw, taper, float64(i)/float64(len(main)-1))
	}
	paths := [][]point{main}
	nb := spec.Branches.DrawInt(rng)
	for range nb {
		j := int(float64(len(main)-1) * (0.15 + 0.7*rng.Float64()))
		a, b := main[max(j-2, 0)], main[min(j+2, len(main)-1)]
		heading := math.Atan2(-(b.y - a.y), b.x-a.x)
		side := 1.0
		if rng.IntN(2) == 0 {
			side = -1
		}
		heading += side * spec.BranchAngle.Draw(rng, short) * math.Pi / 180
		bl := max(spec.BranchLength.Draw(rng, short)*length, 2)
		br := walk(rng, bl, heading, wiggle)
		for i := range br {
			br[i].x += main[j].x
			br[i].y += main[j].y
			br[i].hw = 0.7 * main[j].hw * (1 - float64(i)/float64(len(br)-1))
		}
		paths = append(paths, br)
	}
	return paths, nb
}

// walk is a random walk of unit steps, about length long, from the origin at heading
// (radians, counter-clockwise as seen, so y goes up the image when sin > 0).
func walk(rng *rand.Rand, length, heading, wiggle float64) []point {
	n := max(2, int(math.Ceil(length)))
	pts := make([]point, n+1)
	dev := 0.0
	for i := 1; i <= n; i++ {
		// AR(1): the deviation wanders but is pulled back, so the walk keeps its heading.
		dev = 0.85*dev + wiggle*rng.NormFloat64()
		a := heading + dev
		pts[i] = point{x: pts[i-1].x + math.Cos(a)*length/float64(n), y: pts[i-1].y - math.Sin(a)*length/float64(n)}
	}
	return pts
}

// straighten rotates and scales a path about its middle so that its ends lie exactly
// length apart at angle, centred on the origin.
func straighten(p []point, length, angle float64) {
	first, last := p[0], p[len(p)-1]
	dx, dy := last.x-first.x, -(last.y - first.y)
	d := math.Hypot(dx, dy)
	if d == 0 {
		return
	}
	rot := angle - math.Atan2(dy, dx)
	s := length / d
	cos, sin := math.Cos(rot)*s, math.Sin(rot)*s
	mx, my := (first.x+last.x)/2, (first.y+last.y)/2
	for i := range p {
		x, y := p[i].x-mx, -(p[i].y - my)
		p[i].x = cos*x - sin*y
		p[i].y = -(sin*x + cos*y)
	}
}

// scratchPath is a quadratic Bézier from end to end, bowed by bend×length sideways.
func scratchPath(rng *rand.Rand, length, hw, angle, taper, bend float64) []point {
	ux, uy := math.Cos(angle), -math.Sin(angle)
	side := 1.0
	if rng.IntN(2) == 0 {
		side = -1
	}
	// A quadratic Bézier's control point sits twice as far out as the curve's apex.
	cx, cy := -uy*2*bend*length*side, ux*2*bend*length*side
	n := max(2, int(math.Ceil(length)))
	pts := make([]point, n+1)
	for i := range pts {
		t := float64(i) / float64(n)
		x0, y0 := -ux*length/2, -uy*length/2
		x2, y2 := ux*length/2, uy*length/2
		a, b, c := (1-t)*(1-t), 2*(1-t)*t, t*t
		pts[i] = point{x: a*x0 + b*cx + c*x2, y: a*y0 + b*cy + c*y2, hw: taperWidth(hw, taper, t)}
	}
	return pts
}

// strokeAlpha renders a polyline of varying half-width, anti-aliased: a pixel's
// coverage is how far it lies inside the stroke's edge, clamped to [0,1].
func strokeAlpha(alpha []float32, w, h int, path []point, ox, oy float64) {
	for i := 0; i+1 < len(path); i++ {
		a, b := path[i], path[i+1]
		ax, ay, bx, by := a.x+ox, a.y+oy, b.x+ox, b.y+oy
		r := max(a.hw, b.hw) + 1
		x0, x1 := max(int(math.Floor(min(ax, bx)-r)), 0), min(int(math.Ceil(max(ax, bx)+r)), w-1)
		y0, y1 := max(int(math.Floor(min(ay, by)-r)), 0), min(int(math.Ceil(max(ay, by)+r)), h-1)
		ex, ey := bx-ax, by-ay
		l2 := ex*ex + ey*ey
		for y := y0; y <= y1; y++ {
			for x := x0; x <= x1; x++ {
				px, py := float64(x)-ax, float64(y)-ay
				t := 0.0
				if l2 > 0 {
					t = min(max((px*ex+py*ey)/l2, 0), 1)
				}
				d := math.Hypot(px-t*ex, py-t*ey)
				cov := float32(min(max(a.hw+t*(b.hw-a.hw)+0.5-d, 0), 1))
				if i := y*w + x; cov > alpha[i] {
					alpha[i] = cov
				}
			}
		}
	}
}

// drawOutline draws a pit, stain or ellipse: an ellipse whose radius is modulated by
// smooth angular noise (irregularity), faded over softness×radius, centred where it
// fits inside the region when such a place is found.
func drawOutline(spec Spec, region *image.Gray, pts *sampler, rng *rand.Rand) *Shape {
	w, h := region.Rect.Dx(), region.Rect.Dy()
	short := float64(min(w, h))
	r := max(spec.Radius.Draw(rng, short), 1)
	aspect := spec.Aspect.Draw(rng, short)
	irr := spec.Irregularity.Draw(rng, short)
	soft := spec.Softness.Draw(rng, short)
	rot := rng.Float64() * math.Pi
	ring := make([]point, 16)
	for i := range ring {
		a := float64(i) * math.Pi / 8
		ring[i].x, ring[i].y = r*math.Cos(a)*math.Cos(rot)-r*aspect*math.Sin(a)*math.Sin(rot), r*math.Cos(a)*math.Sin(rot)+r*aspect*math.Sin(a)*math.Cos(rot)
	}
	c, best := image.Point{}, -1.0
	for range placeTries {
		p := pts.draw(rng)
		if in := inside(ring, p, region); in > best {
			c, best = p, in
		}
		if best == 1 {
			break
		}
	}
	var amp, phase [4]float64
	sum := 0.0
	for k := range amp {
		amp[k] = rng.Float64() / float64(k+2)
		phase[k] = rng.Float64() * 2 * math.Pi
		sum += amp[k]
	}
	shading, light := 0.0, rng.Float64()*2*math.Pi
	sh := newShape(w, h, spec.Kind)
	if spec.Kind == Pit {
		shading = spec.Shading.Draw(rng, short)
		sh.Profile, sh.Shade = make([]float32, w*h), make([]float32, w*h)
	}
	// The fade is at least a pixel wide in the ellipse's narrow direction.
	edge := max(soft, 1/(r*aspect))
	reach := int(math.Ceil(r*(1+0.5*irr)*(1+edge))) + 2
	cos, sin := math.Cos(rot), math.Sin(rot)
	for y := max(c.Y-reach, 0); y < min(c.Y+reach+1, h); y++ {
		for x := max(c.X-reach, 0); x < min(c.X+reach+1, w); x++ {
			dx, dy := float64(x-c.X), float64(y-c.Y)
			u, v := (cos*dx+sin*dy)/r, (-sin*dx+cos*dy)/(r*aspect)
			phi := math.Atan2(v, u)
			n := 0.0
			for k := range amp {
				n += amp[k] * math.Cos(float64(k+2)*phi+phase[k])
			}
			bound := 1 + 0.5*irr*n/max(sum, 1e-9)
			s := math.Hypot(u, v) / bound
			i := y*w + x
			sh.Alpha[i] = float32(smoothstep(min(max((1-s)/edge+0.5, 0), 1)))
			if sh.Profile != nil {
				sc := min(s, 1)
				sh.Profile[i] = float32(0.55 + 0.45*(1-sc*sc))
				sh.Shade[i] = float32(-shading * sc * math.Cos(math.Atan2(dy, dx)-light))
			}
		}
	}
	sh.Info.Radius, sh.Info.Aspect, sh.Info.Angle, sh.Info.Shading = r, aspect, -rot*180/math.Pi, shading
	return sh
}

func smoothstep(t float64) float64 { return t * t * (3 - 2*t) }

// drawPerlin thresholds Perlin noise (DRAEM's and MemSeg's anomaly shape); a narrow
// region can miss every blob, so after a few tries it falls back to an ellipse seeded
// inside the region.
func drawPerlin(spec Spec, region *image.Gray, pts *sampler, rng *rand.Rand) *Shape {
	w, h := region.Rect.Dx(), region.Rect.Dy()
	minPix := min(max(4, w*h/5000), pts.n)
	var m *image.Gray
	for range 8 {
		try := perlinMask(w, h, rng, spec.Threshold.Draw(rng, 0), spec.Scale)
		if clip(try, region) >= minPix {
			m = try
			break
		}
	}
	if m == nil {
		m = drawEllipse(region, regionPixels(region), rng)
	}
	sh := FromMask(m, spec.Feather.Draw(rng, 0))
	sh.Info.Type = Blob
	return sh
}

// blurField box-blurs an image-sized field three times (close to a Gaussian of about
// r px), in place.
func blurField(f []float32, w, h int, r float64) {
	k := max(1, int(math.Round(r/2)))
	tmp := make([]float32, len(f))
	for range 3 {
		boxPass(tmp, f, w, h, k, 1, w)
		boxPass(f, tmp, h, w, k, w, 1)
	}
}

// boxPass averages src along lines of n samples (step apart; lines start stride
// apart) over a window of 2k+1, clamping at the ends, into dst.
func boxPass(dst, src []float32, n, lines, k, step, stride int) {
	for l := range lines {
		base := l * stride
		for i := range n {
			var s float32
			for j := i - k; j <= i+k; j++ {
				s += src[base+min(max(j, 0), n-1)*step]
			}
			dst[base+i*step] = s / float32(2*k+1)
		}
	}
}

// sampler draws region pixels uniformly without listing them all: a region is usually
// a large part of the image, where a few random probes find a pixel.
type sampler struct {
	region *image.Gray
	n      int // region pixels
}

func newSampler(region *image.Gray) *sampler {
	s := &sampler{region: region}
	w := region.Rect.Dx()
	for y := range region.Rect.Dy() {
		for _, v := range region.Pix[y*region.Stride : y*region.Stride+w] {
			if v > 0 {
				s.n++
			}
		}
	}
	return s
}

func (s *sampler) draw(rng *rand.Rand) image.Point {
	w, h := s.region.Rect.Dx(), s.region.Rect.Dy()
	for range 64 {
		x, y := rng.IntN(w), rng.IntN(h)
		if s.region.Pix[y*s.region.Stride+x] > 0 {
			return image.Pt(x, y)
		}
	}
	k := rng.IntN(s.n) // a sparse region: the k-th pixel
	for y := range h {
		for x, v := range s.region.Pix[y*s.region.Stride : y*s.region.Stride+w] {
			if v > 0 {
				if k == 0 {
					return image.Pt(x, y)
				}
				k--
			}
		}
	}
	return image.Point{}
}
