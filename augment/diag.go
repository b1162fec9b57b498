package augment

import (
	"context"
	"log/slog"

	"github.com/diagd/diagd/augment/sdxl"
	"github.com/diagd/diagd/internal/ortenv"
)

// DIAG paints defects with SDXL inpainting, as the DIAG paper does: the job's prompt
// and negative prompt, its mask, and the catalogue's generation settings.
type DIAG struct {
	p *sdxl.Pipeline
}

// OpenDIAG loads the SDXL-inpainting ONNX export in dir.
func OpenDIAG(log *slog.Logger, dir string, o ortenv.Options) (Generator, error) {
	p, err := sdxl.Open(log, dir, o)
	if err != nil {
		return nil, err
	}
	return &DIAG{p: p}, nil
}

func (*DIAG) Name() string          { return "diag" }
func (d *DIAG) ModelDigest() string { return d.p.Digest() }
func (d *DIAG) Close()              { d.p.Close() }

// Generate runs one inpainting. The mask saved with the image is the job's mask, the
// label the detector trains on; the pipeline pastes its result back through it.
func (d *DIAG) Generate(ctx context.Context, job Job) (Output, error) {
	s := job.Settings
	res, err := d.p.Inpaint(ctx, sdxl.Request{
		Image: job.Image, Mask: job.Mask,
		Prompt: job.Prompt, NegativePrompt: job.NegativePrompt,
		Steps: s.Steps, Guidance: s.Guidance, Strength: s.Strength,
		Padding: s.Padding, WorkingSize: s.WorkingSize, Seed: job.Seed, RoundTrip: s.RoundTrip,
	}, job.Progress)
	if err != nil {
		return Output{}, err
	}
	return Output{Image: res.Image, Mask: job.Mask, Warnings: res.Warnings,
		Details: map[string]any{"working_crop": res.Crop.String()}}, nil
}
