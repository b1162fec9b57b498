// Package shapes draws random defect shapes inside a region mask, with parameters a
// technician sets in the catalogue: cracks (wandering, tapered, branching strokes),
// scratches (straight or gently bent strokes), pits (small shaded hollows), stains
// (soft-edged blobs), ellipses and Perlin-noise blobs (as in DRAEM and MemSeg). Both
// generators use it when a defect kind gives "defects appear somewhere in here"
// regions instead of exact shapes.
package shapes

import (
	"errors"
	"fmt"
	"image"
	"math"
	"math/rand/v2"
)

// Kind names a shape family.
type Kind string

const (
	Blob    Kind = "blob"    // thresholded Perlin noise, MemSeg/DRAEM style
	Ellipse Kind = "ellipse" // one filled, rotated ellipse
	Scratch Kind = "scratch" // a thin, straight or gently bent stroke
	Crack   Kind = "crack"   // a thin, wandering, tapered stroke with side branches
	Pit     Kind = "pit"     // a small hollow: darker inside, one wall lit
	Stain   Kind = "stain"   // a soft-edged, irregular blob
	// File is the shape of a defect-shape mask file (catalogue masks:), not a name a
	// catalogue's shape: may use.
	File Kind = "file"
)

// Kinds lists the kinds a catalogue may name, for validation messages.
var Kinds = []Kind{Blob, Ellipse, Scratch, Crack, Pit, Stain}

// ParseKind accepts a kind name; "" means Blob.
func ParseKind(s string) (Kind, error) {
	if s == "" {
		return Blob, nil
	}
	for _, k := range Kinds {
		if string(k) == s {
			return k, nil
		}
	}
	return "", fmt.Errorf("unknown shape %q (want one of %v)", s, Kinds)
}

// ErrEmptyRegion says the region mask has no pixel where a defect may go.
var ErrEmptyRegion = errors.New("region mask is empty (no pixel > 0)")

// PerlinThreshold is DRAEM's and MemSeg's binarisation level of the noise.
const PerlinThreshold = 0.5

// Draw returns a binary mask (0 or 255) of the region's size holding one random shape
// of the given kind with default parameters, clipped to the region and never empty.
// Same rng state, same shape.
func Draw(kind Kind, region *image.Gray, rng *rand.Rand) (*image.Gray, error) {
	sh, err := Render(Spec{Kind: kind}, region, rng)
	if err != nil {
		return nil, err
	}
	return sh.Mask, nil
}

func regionPixels(region *image.Gray) []image.Point {
	var pts []image.Point
	b := region.Bounds()
	for y := range b.Dy() {
		row := region.Pix[y*region.Stride:]
		for x := range b.Dx() {
			if row[x] > 0 {
				pts = append(pts, image.Pt(x, y))
			}
		}
	}
	return pts
}

// clip zeroes m outside region and returns the pixels left. Both are the same size.
func clip(m, region *image.Gray) int {
	n := 0
	w, h := m.Rect.Dx(), m.Rect.Dy()
	for y := range h {
		mr := m.Pix[y*m.Stride : y*m.Stride+w]
		rr := region.Pix[y*region.Stride : y*region.Stride+w]
		for x := range w {
			if rr[x] == 0 {
				mr[x] = 0
			} else if mr[x] > 0 {
				n++
			}
		}
	}
	return n
}

// PerlinMask thresholds a rotated 2-D Perlin noise field, as DRAEM's anomaly source
// does: lattice periods 2^U{0..5} per axis, a random rotation, threshold on the noise.
func PerlinMask(w, h int, rng *rand.Rand, threshold float64) *image.Gray {
	return perlinMask(w, h, rng, threshold, Between(0, 5))
}

// perlinMask is PerlinMask with the lattice exponents drawn from scale.
func perlinMask(w, h int, rng *rand.Rand, threshold float64, scale Range) *image.Gray {
	sx := 1 << scale.DrawInt(rng)
	sy := 1 << scale.DrawInt(rng)
	angle := (rng.Float64()*2 - 1) * math.Pi / 2
	n := NewPerlin(sx, sy, rng)
	m := image.NewGray(image.Rect(0, 0, w, h))
	cos, sin := math.Cos(angle), math.Sin(angle)
	cx, cy := float64(w)/2, float64(h)/2
	for y := range h {
		for x := range w {
			// Rotate about the centre, then map to lattice coordinates; the noise is
			// periodic so rotated coordinates outside the frame wrap around.
			dx, dy := float64(x)-cx, float64(y)-cy
			u := (cos*dx - sin*dy + cx) / float64(w) * float64(sx)
			v := (sin*dx + cos*dy + cy) / float64(h) * float64(sy)
			if n.At(u, v) > threshold {
				m.Pix[y*m.Stride+x] = 255
			}
		}
	}
	return m
}

// Perlin is periodic 2-D gradient noise on an sx×sy lattice (values roughly in ±0.71).
type Perlin struct {
	sx, sy int
	gx, gy []float64
}

// NewPerlin draws the lattice's unit gradients from rng.
func NewPerlin(sx, sy int, rng *rand.Rand) *Perlin {
	p := &Perlin{sx: sx, sy: sy, gx: make([]float64, sx*sy), gy: make([]float64, sx*sy)}
	for i := range p.gx {
		a := rng.Float64() * 2 * math.Pi
		p.gx[i], p.gy[i] = math.Cos(a), math.Sin(a)
	}
	return p
}

func fade(t float64) float64 { return t * t * t * (t*(t*6-15) + 10) }

func lerp(a, b, t float64) float64 { return a + t*(b-a) }

// At evaluates the noise at lattice coordinates (u, v); it wraps with the lattice.
func (p *Perlin) At(u, v float64) float64 {
	x0f, y0f := math.Floor(u), math.Floor(v)
	fx, fy := u-x0f, v-y0f
	x0 := mod(int(x0f), p.sx)
	y0 := mod(int(y0f), p.sy)
	x1, y1 := (x0+1)%p.sx, (y0+1)%p.sy
	dot := func(ix, iy int, dx, dy float64) float64 {
		i := iy*p.sx + ix
		return p.gx[i]*dx + p.gy[i]*dy
	}
	n00 := dot(x0, y0, fx, fy)
	n10 := dot(x1, y0, fx-1, fy)
	n01 := dot(x0, y1, fx, fy-1)
	n11 := dot(x1, y1, fx-1, fy-1)
	tx, ty := fade(fx), fade(fy)
	return math.Sqrt2 * lerp(lerp(n00, n10, tx), lerp(n01, n11, tx), ty)
}

func mod(a, n int) int {
	a %= n
	if a < 0 {
		a += n
	}
	return a
}

// drawEllipse centres a random ellipse on a region pixel, so it is never empty.
func drawEllipse(region *image.Gray, pts []image.Point, rng *rand.Rand) *image.Gray {
	b := region.Bounds()
	w, h := b.Dx(), b.Dy()
	c := pts[rng.IntN(len(pts))]
	short := float64(min(w, h))
	ra := short * (0.02 + 0.10*rng.Float64())
	rb := ra * (0.3 + 0.7*rng.Float64())
	ra, rb = max(ra, 1.5), max(rb, 1.5)
	angle := rng.Float64() * math.Pi
	cos, sin := math.Cos(angle), math.Sin(angle)
	m := image.NewGray(image.Rect(0, 0, w, h))
	r := int(math.Ceil(ra)) + 1
	for y := max(0, c.Y-r); y < min(h, c.Y+r+1); y++ {
		for x := max(0, c.X-r); x < min(w, c.X+r+1); x++ {
			dx, dy := float64(x-c.X), float64(y-c.Y)
			u := (cos*dx + sin*dy) / ra
			v := (-sin*dx + cos*dy) / rb
			if u*u+v*v <= 1 {
				m.Pix[y*m.Stride+x] = 255
			}
		}
	}
	m.Pix[c.Y*m.Stride+c.X] = 255
	clip(m, region)
	return m
}

// ZeroOrigin returns m itself when its bounds start at (0,0), else a copy that does;
// the code here indexes Pix from the origin.
func ZeroOrigin(m *image.Gray) *image.Gray {
	if m.Rect.Min == (image.Point{}) {
		return m
	}
	c := image.NewGray(image.Rect(0, 0, m.Rect.Dx(), m.Rect.Dy()))
	for y := range m.Rect.Dy() {
		copy(c.Pix[y*c.Stride:y*c.Stride+c.Rect.Dx()], m.Pix[y*m.Stride:])
	}
	return c
}

// Count returns the number of pixels > 0.
func Count(m *image.Gray) int {
	n := 0
	b := m.Rect
	for y := range b.Dy() {
		for _, v := range m.Pix[y*m.Stride : y*m.Stride+b.Dx()] {
			if v > 0 {
				n++
			}
		}
	}
	return n
}
