package shapes

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Range is an interval a parameter is drawn from, uniformly; Min == Max fixes it.
// Percent says the bounds are percentages of the image's shorter side (lengths and
// radii that should follow the image size).
type Range struct {
	Min, Max float64
	Percent  bool
	Set      bool // given in the catalogue; unset ranges take the shape's default
}

// Fixed is a range of one value.
func Fixed(v float64) Range { return Range{Min: v, Max: v, Set: true} }

// Between is the range [lo, hi].
func Between(lo, hi float64) Range { return Range{Min: lo, Max: hi, Set: true} }

// Percent is the range [lo, hi] % of the image's shorter side.
func Percent(lo, hi float64) Range { return Range{Min: lo, Max: hi, Percent: true, Set: true} }

// Draw draws a value; short is the image's shorter side, for percentages.
func (r Range) Draw(rng *rand.Rand, short float64) float64 {
	v := r.Min + (r.Max-r.Min)*rng.Float64()
	if r.Percent {
		v *= short / 100
	}
	return v
}

// DrawInt draws a whole number in [Min, Max], each equally likely.
func (r Range) DrawInt(rng *rand.Rand) int {
	lo, hi := int(math.Ceil(r.Min)), int(math.Floor(r.Max))
	if hi <= lo {
		return lo
	}
	return lo + rng.IntN(hi-lo+1)
}

func (r Range) String() string {
	unit := ""
	if r.Percent {
		unit = "%"
	}
	if r.Min == r.Max {
		return fmt.Sprintf("%g%s", r.Min, unit)
	}
	return fmt.Sprintf("[%g%s, %g%s]", r.Min, unit, r.Max, unit)
}

// Spec is a shape family and its parameters. Each family reads only its own
// parameters (Params); unset ones take Defaults.
type Spec struct {
	Kind Kind `json:"type"`
	// Strokes (crack, scratch).
	Length Range `json:"length"` // px, or % of the shorter side
	Width  Range `json:"width"`  // px, or %
	Angle  Range `json:"angle"`  // degrees from horizontal, counter-clockwise as seen
	Taper  Range `json:"taper"`  // 0: even width; 1: pointed ends
	// Cracks.
	Wiggle       Range `json:"wiggle"`        // heading noise, degrees per step
	Branches     Range `json:"branches"`      // number of side branches
	BranchAngle  Range `json:"branch_angle"`  // degrees off the crack's heading
	BranchLength Range `json:"branch_length"` // fraction of the crack's length
	// Scratches.
	Bend Range `json:"bend"` // sagitta as a fraction of the length (0: straight)
	// Blobs with an outline (pit, stain, ellipse).
	Radius       Range `json:"radius"`       // px, or %: the longer semi-axis
	Aspect       Range `json:"aspect"`       // shorter/longer axis
	Irregularity Range `json:"irregularity"` // 0: smooth ellipse; 1: very ragged outline
	Softness     Range `json:"softness"`     // edge fade, fraction of the radius
	Shading      Range `json:"shading"`      // pits: 0 flat, 1 one wall lit, the other in shadow
	// Perlin blobs.
	Scale     Range `json:"scale"`     // lattice periods 2^scale, 0..6 (small: large blobs)
	Threshold Range `json:"threshold"` // noise level above which the blob is
	// Perlin blobs and mask files.
	Feather Range `json:"feather"` // edge fade, px
}

// Param describes one parameter of a family: its catalogue name, limits, and whether
// it may be given in % of the image.
type Param struct {
	Name       string
	Lo, Hi     float64
	Percent    bool // may be written as "N%"
	Int        bool
	Field      func(*Spec) *Range
	Definition string
}

var params = map[string]Param{
	"length":        {Name: "length", Lo: 1, Hi: 10000, Percent: true, Field: func(s *Spec) *Range { return &s.Length }, Definition: "px or % of the shorter image side"},
	"width":         {Name: "width", Lo: 0.5, Hi: 500, Percent: true, Field: func(s *Spec) *Range { return &s.Width }, Definition: "px or %"},
	"angle":         {Name: "angle", Lo: -360, Hi: 360, Field: func(s *Spec) *Range { return &s.Angle }, Definition: "degrees from horizontal"},
	"taper":         {Name: "taper", Lo: 0, Hi: 1, Field: func(s *Spec) *Range { return &s.Taper }},
	"wiggle":        {Name: "wiggle", Lo: 0, Hi: 45, Field: func(s *Spec) *Range { return &s.Wiggle }, Definition: "degrees per step"},
	"branches":      {Name: "branches", Lo: 0, Hi: 8, Int: true, Field: func(s *Spec) *Range { return &s.Branches }},
	"branch_angle":  {Name: "branch_angle", Lo: 0, Hi: 90, Field: func(s *Spec) *Range { return &s.BranchAngle }, Definition: "degrees"},
	"branch_length": {Name: "branch_length", Lo: 0.01, Hi: 1, Field: func(s *Spec) *Range { return &s.BranchLength }, Definition: "fraction of the length"},
	"bend":          {Name: "bend", Lo: 0, Hi: 0.5, Field: func(s *Spec) *Range { return &s.Bend }, Definition: "fraction of the length"},
	"radius":        {Name: "radius", Lo: 0.5, Hi: 5000, Percent: true, Field: func(s *Spec) *Range { return &s.Radius }, Definition: "px or %"},
	"aspect":        {Name: "aspect", Lo: 0.05, Hi: 1, Field: func(s *Spec) *Range { return &s.Aspect }},
	"irregularity":  {Name: "irregularity", Lo: 0, Hi: 1, Field: func(s *Spec) *Range { return &s.Irregularity }},
	"softness":      {Name: "softness", Lo: 0, Hi: 1, Field: func(s *Spec) *Range { return &s.Softness }},
	"shading":       {Name: "shading", Lo: 0, Hi: 1, Field: func(s *Spec) *Range { return &s.Shading }},
	"scale":         {Name: "scale", Lo: 0, Hi: 6, Int: true, Field: func(s *Spec) *Range { return &s.Scale }},
	"threshold":     {Name: "threshold", Lo: -0.7, Hi: 0.7, Field: func(s *Spec) *Range { return &s.Threshold }},
	"feather":       {Name: "feather", Lo: 0, Hi: 50, Field: func(s *Spec) *Range { return &s.Feather }, Definition: "px"},
}

// familyParams lists the parameters each family reads.
var familyParams = map[Kind][]string{
	Crack:   {"length", "width", "angle", "taper", "wiggle", "branches", "branch_angle", "branch_length"},
	Scratch: {"length", "width", "angle", "taper", "bend"},
	Pit:     {"radius", "aspect", "irregularity", "softness", "shading"},
	Stain:   {"radius", "aspect", "irregularity", "softness"},
	Ellipse: {"radius", "aspect", "irregularity", "softness"},
	Blob:    {"scale", "threshold", "feather"},
	File:    {"feather"},
}

// Params returns the parameters a family reads, in catalogue order.
func Params(k Kind) []Param {
	var out []Param
	for _, n := range familyParams[k] {
		out = append(out, params[n])
	}
	return out
}

// Defaults are the parameters of a family when the catalogue gives none: sizes relative
// to the image, so a catalogue that names only the family draws plausible shapes.
func Defaults(k Kind) Spec {
	s := Spec{Kind: k}
	switch k {
	case Crack:
		s.Length, s.Width, s.Angle, s.Taper = Percent(15, 45), Between(1, 2.5), Between(-90, 90), Between(0.5, 1)
		s.Wiggle, s.Branches, s.BranchAngle, s.BranchLength = Between(3, 8), Between(0, 2), Between(20, 50), Between(0.15, 0.4)
	case Scratch:
		s.Length, s.Width, s.Angle, s.Taper, s.Bend = Percent(10, 40), Between(0.8, 2), Between(-90, 90), Between(0, 0.3), Between(0, 0.05)
	case Pit:
		s.Radius, s.Aspect, s.Irregularity, s.Softness, s.Shading = Percent(1.5, 4), Between(0.6, 1), Between(0, 0.25), Fixed(0.2), Between(0.3, 0.8)
	case Stain:
		s.Radius, s.Aspect, s.Irregularity, s.Softness = Percent(5, 15), Between(0.5, 1), Between(0.1, 0.4), Between(0.3, 0.7)
	case Ellipse:
		s.Radius, s.Aspect, s.Irregularity, s.Softness = Percent(2, 12), Between(0.3, 1), Fixed(0), Fixed(0)
	case Blob:
		s.Scale, s.Threshold, s.Feather = Between(0, 5), Fixed(PerlinThreshold), Fixed(0)
	case File:
		s.Feather = Fixed(0)
	}
	return s
}

// WithDefaults fills every parameter the catalogue left unset.
func (s Spec) WithDefaults() Spec {
	d := Defaults(s.Kind)
	for _, p := range Params(s.Kind) {
		if f := p.Field(&s); !f.Set {
			*f = *p.Field(&d)
		}
	}
	return s
}
