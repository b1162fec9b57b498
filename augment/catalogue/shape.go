package catalogue

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/diagd/diagd/augment/shapes"
)

// Fill is how a MemSeg defect differs from the surface it lands on. Unset ranges take
// defaults measured from the negatives (contrast) or the shape's (texture).
type Fill struct {
	// Contrast is added to the surface under the mask, in grey levels (0–255):
	// negative is darker, positive lighter. The range may not contain 0.
	Contrast shapes.Range `json:"contrast"`
	// Texture is the share of a foreign texture (another negative or a texture file,
	// converted to grey on grey images) mixed in, MemSeg's δ; 0 keeps the surface's own.
	Texture shapes.Range `json:"texture"`
	// Grain is the standard deviation of noise added inside the defect, grey levels.
	Grain shapes.Range `json:"grain"`
	// Smooth is the share of a blurred surface replacing the surface: worn, coated or
	// frayed areas lose the fine texture around them.
	Smooth shapes.Range `json:"smooth"`
}

// Place narrows where a kind's shapes may appear, on top of its regions.
type Place struct {
	// Box is the allowed rectangle as fractions of width and height: x0, y0, x1, y1.
	Box *[4]float64 `json:"box,omitempty"`
	// Edge keeps shapes within this distance of the image border (chips, breaks);
	// px, or % of the shorter side. Unset: anywhere.
	Edge shapes.Range `json:"edge"`
}

// Checks are applied to every generated image before it is written.
type Checks struct {
	// MinContrast is the least contrast, in grey levels, between a defect and a ring of
	// surface around it; fainter defects are redrawn. nil: measured from the negatives.
	MinContrast *float64 `json:"min_contrast,omitempty"`
	Ring        int      `json:"ring"`    // ring width, px
	Retries     int      `json:"retries"` // redraws of an image before it is skipped
	// LabelRule is the rule training will label masks by: "any-pixel" or "paper" (a
	// pixel must stay 255 after the paper's resize to 704×256, spec §1.5). Defects the
	// rule would call "ok" are redrawn.
	LabelRule string `json:"label_rule"`
}

// DefaultChecks are the checks when the catalogue sets none.
func DefaultChecks() Checks { return Checks{Ring: 4, Retries: 8, LabelRule: "any-pixel"} }

// ParseLabelRule accepts the label rule names train and eval accept.
func ParseLabelRule(s string) (string, error) {
	switch s {
	case "any-pixel", "any", "":
		return "any-pixel", nil
	case "paper":
		return "paper", nil
	}
	return "", fmt.Errorf("unknown label rule %q (want any-pixel or paper)", s)
}

// shape reads a kind's shape: a family name, or a mapping with type: and the family's
// parameters.
func (p *parser) shape(v *yaml.Node) shapes.Spec {
	if v.Kind == yaml.ScalarNode {
		s, err := shapes.ParseKind(p.text(v, "shape", true))
		if err != nil {
			p.addf(v, "shape: %v", err)
		}
		return shapes.Spec{Kind: s}
	}
	var spec shapes.Spec
	var typeNode *yaml.Node
	for i := 0; i+1 < len(v.Content) && v.Kind == yaml.MappingNode; i += 2 {
		if v.Content[i].Value == "type" {
			typeNode = v.Content[i+1]
		}
	}
	if v.Kind == yaml.MappingNode && typeNode == nil {
		p.addf(v, "shape needs a type: (one of %v)", shapes.Kinds)
		return spec
	}
	if typeNode != nil {
		k, err := shapes.ParseKind(p.text(typeNode, "shape.type", true))
		if err != nil {
			p.addf(typeNode, "shape.type: %v", err)
			return spec
		}
		spec.Kind = k
	}
	known := []string{"type"}
	byName := map[string]shapes.Param{}
	for _, pr := range shapes.Params(spec.Kind) {
		known = append(known, pr.Name)
		byName[pr.Name] = pr
	}
	p.mapping(v, "shape", func(key string, k, val *yaml.Node) bool {
		if key == "type" {
			return true
		}
		pr, ok := byName[key]
		if !ok {
			return false
		}
		*pr.Field(&spec) = p.rangeOf(val, "shape."+key, pr)
		return true
	}, known...)
	if spec.Kind == shapes.Crack && spec.Length.Set && spec.Width.Set && !spec.Length.Percent && !spec.Width.Percent && spec.Width.Max > spec.Length.Min {
		p.addf(v, "shape: a crack wider (%g px) than long (%g px)", spec.Width.Max, spec.Length.Min)
	}
	return spec
}

// rangeOf reads a number or a [min, max] list within the parameter's limits; "N%"
// values are percentages of the image's shorter side where the parameter allows them.
func (p *parser) rangeOf(v *yaml.Node, key string, pr shapes.Param) shapes.Range {
	items := []*yaml.Node{v}
	if v.Kind == yaml.SequenceNode {
		items = v.Content
		if len(items) != 2 {
			p.addf(v, "%s must be a number or a list of two [min, max], got %d values", key, len(items))
			return shapes.Range{}
		}
	} else if v.Kind != yaml.ScalarNode {
		p.addf(v, "%s must be a number or [min, max], got %s", key, describe(v))
		return shapes.Range{}
	}
	var vals [2]float64
	var pct [2]bool
	for i, it := range items {
		vals[i], pct[i] = p.quantity(it, key, pr)
	}
	if len(items) == 1 {
		vals[1], pct[1] = vals[0], pct[0]
	}
	r := shapes.Range{Min: vals[0], Max: vals[1], Percent: pct[0], Set: true}
	switch {
	case pct[0] != pct[1]:
		p.addf(v, "%s: give both ends in px or both in %%", key)
	case vals[0] > vals[1]:
		p.addf(v, "%s: min %g is above max %g", key, vals[0], vals[1])
	}
	return r
}

// quantity reads one number of a parameter and checks its limits.
func (p *parser) quantity(n *yaml.Node, key string, pr shapes.Param) (float64, bool) {
	s := strings.TrimSpace(n.Value)
	pct := strings.HasSuffix(s, "%")
	if pct {
		s = strings.TrimSpace(strings.TrimSuffix(s, "%"))
	}
	x, err := strconv.ParseFloat(s, 64)
	switch {
	case n.Kind != yaml.ScalarNode || err != nil || math.IsNaN(x) || math.IsInf(x, 0):
		p.addf(n, "%s must be a number, got %s", key, describe(n))
	case pct && !pr.Percent:
		p.addf(n, "%s cannot be a percentage", key)
	case pct && !(x > 0 && x <= 1000):
		p.addf(n, "%s must be in (0%%, 1000%%], got %s", key, n.Value)
	case !pct && (x < pr.Lo || x > pr.Hi):
		p.addf(n, "%s must be in [%g, %g], got %s", key, pr.Lo, pr.Hi, n.Value)
	case pr.Int && x != math.Trunc(x):
		p.addf(n, "%s must be a whole number, got %s", key, n.Value)
	}
	return x, pct
}

var (
	contrastParam = shapes.Param{Name: "contrast", Lo: -255, Hi: 255}
	textureParam  = shapes.Param{Name: "texture", Lo: 0, Hi: 1} // also smooth
	grainParam    = shapes.Param{Name: "grain", Lo: 0, Hi: 64}
	edgeParam     = shapes.Param{Name: "edge", Lo: 1, Hi: 10000, Percent: true}
	fracParam     = shapes.Param{Name: "box", Lo: 0, Hi: 1}
)

func (p *parser) fill(v *yaml.Node) Fill {
	var f Fill
	p.mapping(v, "fill", func(key string, k, val *yaml.Node) bool {
		switch key {
		case "contrast":
			f.Contrast = p.rangeOf(val, "fill.contrast", contrastParam)
			if f.Contrast.Min <= 0 && f.Contrast.Max >= 0 {
				p.addf(val, "fill.contrast %s contains 0 (an invisible defect): give a darker [-a, -b] or a lighter [a, b] range; for both, define two kinds", f.Contrast)
			}
		case "texture":
			f.Texture = p.rangeOf(val, "fill.texture", textureParam)
		case "grain":
			f.Grain = p.rangeOf(val, "fill.grain", grainParam)
		case "smooth":
			f.Smooth = p.rangeOf(val, "fill.smooth", textureParam)
		default:
			return false
		}
		return true
	}, "contrast", "texture", "grain", "smooth")
	return f
}

func (p *parser) place(v *yaml.Node) Place {
	var pl Place
	p.mapping(v, "place", func(key string, k, val *yaml.Node) bool {
		switch key {
		case "box":
			if val.Kind != yaml.SequenceNode || len(val.Content) != 4 {
				p.addf(val, "place.box must be [x0, y0, x1, y1] as fractions of width and height, got %s", describe(val))
				break
			}
			var b [4]float64
			for i, it := range val.Content {
				b[i], _ = p.quantity(it, "place.box", fracParam)
			}
			if b[0] >= b[2] || b[1] >= b[3] {
				p.addf(val, "place.box [%g, %g, %g, %g] is empty: want x0 < x1 and y0 < y1", b[0], b[1], b[2], b[3])
			}
			pl.Box = &b
		case "edge":
			if val.Kind != yaml.ScalarNode {
				p.addf(val, "place.edge must be one distance (px or %%), got %s", describe(val))
				break
			}
			pl.Edge = p.rangeOf(val, "place.edge", edgeParam)
		default:
			return false
		}
		return true
	}, "box", "edge")
	return pl
}

func (p *parser) checks(v *yaml.Node, c *Checks) {
	p.mapping(v, "checks", func(key string, k, val *yaml.Node) bool {
		switch key {
		case "min_contrast":
			if val.Kind == yaml.ScalarNode && val.Value == "auto" {
				c.MinContrast = nil
				break
			}
			x := p.number(val, "checks.min_contrast", 0, 255, false)
			c.MinContrast = &x
		case "ring":
			c.Ring = int(p.integer(val, "checks.ring", 1, 64))
		case "retries":
			c.Retries = int(p.integer(val, "checks.retries", 0, 100))
		case "label_rule":
			r, err := ParseLabelRule(p.text(val, "checks.label_rule", true))
			if err != nil {
				p.addf(val, "checks.label_rule: %v", err)
			}
			c.LabelRule = r
		default:
			return false
		}
		return true
	}, "min_contrast", "ring", "retries", "label_rule")
}
