package augment

import (
	"errors"
	"fmt"
	"image"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/diagd/diagd/augment/catalogue"
	"github.com/diagd/diagd/augment/shapes"
)

// ListNegatives returns the image files directly in dir whose base name matches glob
// ("" = all), sorted so that a seed picks the same files on every machine (DIAG used
// os.listdir order, which is not reproducible).
func ListNegatives(dir, glob string) ([]string, error) {
	if glob == "" {
		glob = "*"
	}
	if _, err := filepath.Match(glob, "x"); err != nil {
		return nil, fmt.Errorf("negatives pattern %q: %w", glob, err)
	}
	// Absolute paths, so sidecars name their source wherever they are read.
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("negatives folder: %w", err)
	}
	var out []string
	for _, e := range ents {
		if !e.Type().IsRegular() || !catalogue.IsImage(e.Name()) {
			continue
		}
		if ok, _ := filepath.Match(glob, e.Name()); ok {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("negatives folder %s holds no image matching %q (%s)", dir, glob, strings.Join(catalogue.ImageExts, ", "))
	}
	slices.Sort(out)
	return out, nil
}

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

// maskAttempts bounds the redraws when a mask turns out empty.
const maskAttempts = 3

// Plan draws job index of a batch: a negative, a kind by weight, a prompt and a mask.
// A mask that cannot be used (unreadable, empty) is redrawn up to maskAttempts times;
// each failure is returned in skips. It fails with ErrNoNegatives when no negative is
// left, or an error listing the mask failures when every attempt failed.
func (p *Planner) Plan(index int, batchSeed uint64, cat *catalogue.Catalogue) (job Job, skips []Skip, err error) {
	seed := ImageSeed(batchSeed, index)
	rng := jobRand(seed)
	job = Job{Index: index, Seed: seed, Settings: cat.Generation, MemSeg: cat.MemSeg}
	job.Settings.Seed = seed
	for job.Image == nil {
		if len(p.pool) == 0 {
			return Job{}, skips, ErrNoNegatives
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
	job.Textures = cat.MemSeg.Textures
	if len(job.Textures) == 0 {
		job.Textures = slices.Clone(p.pool) // the pool shrinks in place when a negative fails
	}
	size := job.Image.Rect.Size()
	var reasons []string
	for range maskAttempts {
		kind := cat.Pick(rng.Float64())
		job.Kind = kind
		job.Prompt = kind.Prompts[rng.IntN(len(kind.Prompts))]
		job.NegativePrompt = kind.NegativePrompt
		n := len(kind.Masks) + len(kind.Regions)
		j := rng.IntN(n)
		var warn string
		if j < len(kind.Masks) {
			mf := kind.Masks[j]
			job.MaskSource = MaskSource{Type: "shape", File: mf.Path, Line: mf.Line}
			job.Mask, warn, err = ReadMask(mf.Path, size)
			if err == nil && shapes.Count(job.Mask) == 0 {
				err = fmt.Errorf("defect mask %s (catalogue line %d) is empty at the image's size", mf.Path, mf.Line)
			}
		} else {
			rf := kind.Regions[j-len(kind.Masks)]
			job.MaskSource = MaskSource{Type: "region", File: rf.Path, Line: rf.Line, Shape: string(kind.Shape)}
			var region *image.Gray
			region, warn, err = ReadMask(rf.Path, size)
			if err == nil {
				job.Mask, err = shapes.Draw(kind.Shape, region, rng)
				if err != nil {
					err = fmt.Errorf("region mask %s (catalogue line %d): %w", rf.Path, rf.Line, err)
				}
			}
		}
		if err == nil {
			if warn != "" {
				job.Warnings = append(job.Warnings, warn)
			}
			return job, skips, nil
		}
		reasons = append(reasons, err.Error())
		skips = append(skips, Skip{Index: index, What: SkipMask, File: job.MaskSource.File, Reason: err.Error()})
	}
	return Job{}, skips, fmt.Errorf("image %d: no usable mask after %d draws: %s", index, maskAttempts, strings.Join(reasons, "; "))
}
