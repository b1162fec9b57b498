package augment

import (
	"context"
	"fmt"
	"image"
	"math/rand/v2"
	"slices"

	"github.com/diagd/diagd/augment/catalogue"
	"github.com/diagd/diagd/augment/memseg"
	"github.com/diagd/diagd/augment/shapes"
)

// Job is one synthetic image to make. The planner fills everything; a generator reads
// what it needs.
type Job struct {
	Index          int
	Seed           uint64 // this image's seed, derived from the batch seed and Index
	Negative       string // path of the good image
	Image          *image.RGBA
	Kind           *catalogue.Kind
	Prompt         string
	NegativePrompt string
	Mask           *image.Gray // 0/255, same size as Image, never empty
	// Shape is the drawn defect the mask labels: soft coverage, depth and shading.
	Shape      *shapes.Shape
	MaskSource MaskSource
	// Fill is the kind's fill with every range resolved (contrast from the negatives
	// where the catalogue set none).
	Fill catalogue.Fill
	// Grey says the negative is grey: MemSeg then paints grey.
	Grey bool
	// Attempt is 0 for the first draw of this index, then counts redraws.
	Attempt int
	// LabelRule is the rule the mask was checked against.
	LabelRule string
	Settings  catalogue.Generation
	MemSeg    catalogue.MemSeg
	// Textures are candidate fill textures for MemSeg: the catalogue's texture files,
	// else the other negatives.
	Textures []string
	Warnings []string
	// Progress, when set, receives the generator's inner steps (diffusion steps).
	Progress func(step, total int)
}

// MaskSource says where a job's mask came from.
type MaskSource struct {
	Type  string `json:"type"` // "shape": a defect-shape file; "region": a shape drawn inside a region file
	File  string `json:"file"`
	Line  int    `json:"catalogue_line"`
	Shape string `json:"shape,omitempty"` // for "region"
}

// Output is a generator's result.
type Output struct {
	Image    *image.RGBA
	Mask     *image.Gray // the defect mask to train on (0/255, image size)
	Warnings []string
	Details  map[string]any // generator-specific facts for the sidecar
}

// Generator paints a defect into a job's negative image.
type Generator interface {
	Name() string
	// ModelDigest identifies the weights used ("" when there are none).
	ModelDigest() string
	Generate(ctx context.Context, job Job) (Output, error)
	Close()
}

// MemSeg is the weight-free generator: MemSeg's abnormal simulation, steered by the
// catalogue: the job's shape (crack, pit, Perlin blob, ...) is filled with a contrast
// against the surface under it, optionally mixed with a foreign texture; grey images
// get grey defects.
type MemSeg struct{}

// NewMemSeg returns the MemSeg generator.
func NewMemSeg() *MemSeg { return &MemSeg{} }

func (*MemSeg) Name() string        { return "memseg" }
func (*MemSeg) ModelDigest() string { return "" }
func (*MemSeg) Close()              {}

// Generate draws the look from the job's fill, picks a texture when the look mixes
// one in (seeded), and paints the shape.
func (*MemSeg) Generate(ctx context.Context, job Job) (Output, error) {
	if err := ctx.Err(); err != nil {
		return Output{}, err
	}
	if job.Shape == nil {
		job.Shape = shapes.FromMask(job.Mask, 0)
	}
	rng := memseg.Seeded(job.Seed)
	short := float64(min(job.Image.Rect.Dx(), job.Image.Rect.Dy()))
	look := memseg.Look{Contrast: job.Fill.Contrast.Draw(rng, short), Texture: job.Fill.Texture.Draw(rng, short),
		Grain: job.Fill.Grain.Draw(rng, short), Smooth: job.Fill.Smooth.Draw(rng, short)}
	var tex *image.RGBA
	var texPath string
	var warnings []string
	if look.Texture > 0 {
		tex, texPath, warnings = pickTexture(job, rng)
	}
	if job.Progress != nil {
		job.Progress(0, 1)
	}
	img, err := memseg.Paint(job.Image, job.Shape, tex, look, job.Grey, rng)
	if err != nil {
		return Output{}, err
	}
	if job.Progress != nil {
		job.Progress(1, 1)
	}
	return Output{Image: img, Mask: job.Shape.Mask, Warnings: warnings,
		Details: map[string]any{"texture": texPath, "contrast": look.Contrast, "texture_share": look.Texture,
			"grain": look.Grain, "smooth": look.Smooth, "grey": job.Grey, "shape": job.Shape.Info}}, nil
}

// pickTexture draws a texture image other than the negative itself; one that does not
// decode is passed over with a warning.
func pickTexture(job Job, rng *rand.Rand) (*image.RGBA, string, []string) {
	cands := slices.DeleteFunc(slices.Clone(job.Textures), func(p string) bool { return p == job.Negative })
	var warnings []string
	for len(cands) > 0 {
		i := rng.IntN(len(cands))
		t, err := ReadRGB(cands[i])
		if err == nil {
			return t, cands[i], warnings
		}
		warnings = append(warnings, fmt.Sprintf("texture skipped: %v", err))
		cands = slices.Delete(cands, i, i+1)
	}
	// A lone negative can still texture itself: shifted, it differs from the surface
	// it lands on.
	return job.Image, job.Negative, append(warnings, "no other texture image: the negative itself is used as texture")
}

// jobRand is the planner's generator for one image.
func jobRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x6469616764)) } // "diagd"

// ImageSeed derives image index's seed from the batch seed (splitmix64), so any
// image can be regenerated alone from its sidecar.
func ImageSeed(batch uint64, index int) uint64 {
	z := batch + uint64(index+1)*0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}
