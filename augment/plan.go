package augment

import (
	"errors"
	"fmt"
	"image"
	"math"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/diagd/diagd/augment/catalogue"
	"github.com/diagd/diagd/augment/shapes"
	"github.com/diagd/diagd/retrain/dataset"
)

// Skip is something left out, and why.
type Skip struct {
	Index  int    `json:"index"` // output index, -1 when not tied to one
	What   string `json:"what"`  // SkipNegative, SkipMask, SkipImage
	File   string `json:"file,omitempty"`
	Reason string `json:"reason"`
}

// What a Skip left out.
const (
	SkipNegative = "negative" // a negative image that would not decode, dropped from the pool
	SkipMask     = "mask"     // a mask draw that was unusable; the image was redrawn
	SkipImage    = "image"    // an output index that was not produced
	// SkipLabelRule is a mask the label rule would have turned into "ok"; redrawn.
	SkipLabelRule = "label-rule"
	// SkipInvisible is a generated defect fainter than the visibility threshold; redrawn.
	SkipInvisible = "invisible"
)

// Planner draws jobs from a pool of negatives. Negatives that fail to decode are
// dropped from the pool once and reported; planning goes on with the rest.
type Planner struct {
	pool []string
	bad  []Skip
}

// NewPlanner takes the negatives (e.g. from ListNegatives).
func NewPlanner(negatives []string) *Planner {
	return &Planner{pool: slices.Clone(negatives)}
}

// BadNegatives lists the negatives dropped so far.
func (p *Planner) BadNegatives() []Skip { return slices.Clone(p.bad) }

// Pool is the negatives still in use.
func (p *Planner) Pool() []string { return slices.Clone(p.pool) }

// ErrNoNegatives says every negative failed to decode.
var ErrNoNegatives = errors.New("no usable negative image left")

// maskAttempts bounds the redraws when a mask turns out empty or unreadable; masks
// the label rule would turn into "ok" are redrawn up to the catalogue's retries.
const maskAttempts = 5

// PlanOptions are what a batch knows beyond the catalogue.
type PlanOptions struct {
	// Surface supplies the contrast defaults for kinds that set none.
	Surface Surface
	// LabelRule overrides the catalogue's checks.label_rule when set.
	LabelRule string
	// Attempt numbers the draws of one output index: 0 first, then each redraw of an
	// image that failed a check, with a seed of its own (AttemptSeed).
	Attempt int
}

// AttemptSeed is the seed of draw attempt of an image whose first seed is seed.
func AttemptSeed(seed uint64, attempt int) uint64 {
	if attempt == 0 {
		return seed
	}
	return ImageSeed(seed^0x7265647261770000, attempt) // "redraw"
}

// Plan draws job index of a batch: a negative, a kind by weight, a prompt and a mask.
// A mask that cannot be used (unreadable, empty) is redrawn up to maskAttempts times;
// each failure is returned in skips. It fails with ErrNoNegatives when no negative is
// left, or an error listing the mask failures when every attempt failed.
func (p *Planner) Plan(index int, batchSeed uint64, cat *catalogue.Catalogue) (job Job, skips []Skip, err error) {
	return p.PlanWith(index, batchSeed, cat, PlanOptions{})
}

// PlanWith is Plan with the batch's surface, label rule and attempt number.
func (p *Planner) PlanWith(index int, batchSeed uint64, cat *catalogue.Catalogue, o PlanOptions) (job Job, skips []Skip, err error) {
	if o.Surface.Source == "" {
		o.Surface = Surface{Mean: 128, Noise: 4, Source: "assumed"}
	}
	if o.LabelRule == "" {
		o.LabelRule = cat.Checks.LabelRule
	}
	seed := AttemptSeed(ImageSeed(batchSeed, index), o.Attempt)
	rng := jobRand(seed)
	job = Job{Index: index, Seed: seed, Attempt: o.Attempt, Settings: cat.Generation, MemSeg: cat.MemSeg, LabelRule: o.LabelRule}
	job.Settings.Seed = seed
	if err := p.pickNegative(&job, rng); err != nil {
		return Job{}, skips, err
	}
	job.Textures = cat.MemSeg.Textures
	if len(job.Textures) == 0 {
		job.Textures = slices.Clone(p.pool) // the pool shrinks in place when a negative fails
	}
	job.Grey = IsGrey(job.Image)
	var reasons []string
	for bad, ruled := 0, 0; bad < maskAttempts && ruled <= cat.Checks.Retries; {
		what, err := drawMask(&job, cat, o.LabelRule, rng)
		if err == nil {
			job.Fill = resolveFill(job.Kind, cat, o.Surface)
			return job, skips, nil
		}
		if what == SkipLabelRule {
			ruled++
		} else {
			bad++
		}
		reasons = append(reasons, err.Error())
		skips = append(skips, Skip{Index: index, What: what, File: job.MaskSource.File, Reason: err.Error()})
	}
	return Job{}, skips, fmt.Errorf("image %d: no usable mask after %d draws: %s", index, len(reasons), countDistinct(reasons))
}

// countDistinct joins messages, each distinct one once with its count.
func countDistinct(msgs []string) string {
	n := map[string]int{}
	var order []string
	for _, m := range msgs {
		if n[m] == 0 {
			order = append(order, m)
		}
		n[m]++
	}
	for i, m := range order {
		if n[m] > 1 {
			order[i] = fmt.Sprintf("%d× %s", n[m], m)
		}
	}
	return strings.Join(order, "; ")
}

// pickNegative draws a negative that decodes, dropping the ones that do not.
func (p *Planner) pickNegative(job *Job, rng *rand.Rand) error {
	for job.Image == nil {
		if len(p.pool) == 0 {
			return ErrNoNegatives
		}
		i := rng.IntN(len(p.pool))
		img, err := ReadRGB(p.pool[i])
		if err != nil {
			p.bad = append(p.bad, Skip{Index: -1, What: SkipNegative, File: p.pool[i], Reason: err.Error()})
			p.pool = slices.Delete(p.pool, i, i+1)
			continue
		}
		job.Negative, job.Image = p.pool[i], img
	}
	return nil
}

// drawMask draws a kind, its prompt and its shape into job. On failure it says which
// kind of skip the failure is: SkipMask (unusable mask) or SkipLabelRule.
func drawMask(job *Job, cat *catalogue.Catalogue, rule string, rng *rand.Rand) (string, error) {
	kind := cat.Pick(rng.Float64())
	job.Kind = kind
	job.Prompt = kind.Prompts[rng.IntN(len(kind.Prompts))]
	job.NegativePrompt = kind.NegativePrompt
	size := job.Image.Rect.Size()
	spec := kind.Spec
	var warn string
	var err error
	if j := rng.IntN(max(1, len(kind.Masks)+len(kind.Regions))); j < len(kind.Masks) {
		mf := kind.Masks[j]
		job.MaskSource = MaskSource{Type: "shape", File: mf.Path, Line: mf.Line}
		var m *image.Gray
		if m, warn, err = ReadMask(mf.Path, size); err == nil {
			spec.Kind = shapes.File
			job.Shape = shapes.FromMask(m, spec.WithDefaults().Feather.Draw(rng, 0))
			if job.Shape.Info.Pixels == 0 {
				err = fmt.Errorf("defect mask %s (catalogue line %d) is empty at the image's size", mf.Path, mf.Line)
			}
		}
	} else {
		var region *image.Gray
		if j < len(kind.Masks)+len(kind.Regions) {
			rf := kind.Regions[j-len(kind.Masks)]
			job.MaskSource = MaskSource{Type: "region", File: rf.Path, Line: rf.Line, Shape: string(kind.Shape)}
			region, warn, err = ReadMask(rf.Path, size)
		} else {
			job.MaskSource = MaskSource{Type: "region", Line: kind.Line, Shape: string(kind.Shape)}
			region = fullRegion(size)
		}
		if err == nil {
			err = drawInRegion(job, kind, region, rng)
		}
	}
	if err != nil {
		return SkipMask, err
	}
	if warn != "" {
		job.Warnings = append(job.Warnings, warn)
	}
	job.Mask = job.Shape.Mask
	if rule == "paper" {
		ok, err := PaperSurvives(job.Mask)
		if err != nil {
			return SkipMask, err
		}
		if !ok {
			return SkipLabelRule, fmt.Errorf("kind %q: a %s of %d px would be labelled ok by the paper's rule (no pixel stays 255 after resizing %dx%d to %dx%d): make it larger or wider",
				kind.Name, job.Shape.Info.Type, job.Shape.Info.Pixels, size.X, size.Y, dataset.PaperW, dataset.PaperH)
		}
	}
	return "", nil
}

// drawInRegion narrows the region by the kind's place and draws its shape there.
func drawInRegion(job *Job, kind *catalogue.Kind, region *image.Gray, rng *rand.Rand) error {
	src := job.MaskSource.File
	if src == "" {
		src = "the whole image"
	}
	anchors := placeRegion(region, kind.Place, rng)
	sh, err := shapes.RenderAt(kind.Spec, region, anchors, rng)
	if errors.Is(err, shapes.ErrEmptyRegion) {
		return fmt.Errorf("kind %q (catalogue line %d): %s narrowed by place leaves no pixel", kind.Name, kind.Line, src)
	}
	if err != nil {
		return fmt.Errorf("kind %q (catalogue line %d), region %s: %w", kind.Name, kind.Line, src, err)
	}
	job.Shape = sh
	return nil
}

func fullRegion(size image.Point) *image.Gray {
	m := image.NewGray(image.Rectangle{Max: size})
	for i := range m.Pix {
		m.Pix[i] = 255
	}
	return m
}

// placeRegion keeps the part of region inside the place's box and within its edge
// distance of the border: where a shape's centre may go.
func placeRegion(region *image.Gray, pl catalogue.Place, rng *rand.Rand) *image.Gray {
	if pl.Box == nil && !pl.Edge.Set {
		return region
	}
	w, h := region.Rect.Dx(), region.Rect.Dy()
	out := image.NewGray(image.Rect(0, 0, w, h))
	box := image.Rect(0, 0, w, h)
	if b := pl.Box; b != nil {
		box = image.Rect(int(b[0]*float64(w)), int(b[1]*float64(h)), int(math.Ceil(b[2]*float64(w))), int(math.Ceil(b[3]*float64(h))))
	}
	edge := math.Inf(1)
	if pl.Edge.Set {
		edge = pl.Edge.Draw(rng, float64(min(w, h)))
	}
	region = shapes.ZeroOrigin(region)
	for y := range h {
		for x := range w {
			d := float64(min(x, y, w-1-x, h-1-y))
			if region.Pix[y*region.Stride+x] > 0 && image.Pt(x, y).In(box) && d < edge {
				out.Pix[y*out.Stride+x] = 255
			}
		}
	}
	return out
}

// resolveFill fills in what the kind's fill left unset: the contrast from the surface,
// the texture share from memseg.transparency for Perlin blobs and mask files (MemSeg's
// own defects) and none for drawn shapes, no grain, no smoothing.
func resolveFill(kind *catalogue.Kind, cat *catalogue.Catalogue, s Surface) catalogue.Fill {
	f := kind.Fill
	if !f.Contrast.Set {
		f.Contrast = s.DefaultContrast(s.MinContrast(cat.Checks), kind.Spec.Kind)
	}
	if !f.Texture.Set {
		f.Texture = shapes.Fixed(0)
		if kind.Spec.Kind == shapes.Blob {
			f.Texture = shapes.Between(cat.MemSeg.MinDelta, cat.MemSeg.MaxDelta)
		}
	}
	if !f.Grain.Set {
		f.Grain = shapes.Fixed(0)
	}
	if !f.Smooth.Set {
		f.Smooth = shapes.Fixed(0)
	}
	return f
}
