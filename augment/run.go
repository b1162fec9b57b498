package augment

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/diagd/diagd/augment/catalogue"
	"github.com/diagd/diagd/internal/atomicfile"
)

// Config is one batch.
type Config struct {
	Negatives    []string // negative image files (ListNegatives)
	NegativesDir string   // for the sidecars and summary
	Out          string   // output folder; created if needed
	N            int      // images to make
	// Seed overrides the catalogue's generation.seed when set.
	Seed *uint64
	// Catalogue returns the catalogue in force; it is called for every image, so a
	// Watcher's Current makes live edits apply to the next image.
	Catalogue func() *catalogue.Catalogue
	Generator Generator
	Progress  func(Progress) // optional; called from Run's goroutine
	Log       *slog.Logger
	// SheetMax caps the contact sheet's thumbnails (default 100); larger batches are
	// sampled evenly.
	SheetMax int
}

// Progress is where a batch stands.
type Progress struct {
	Index        int // output index being made
	Done, Total  int // images finished (written or skipped) of Total
	Written      int
	Skipped      int
	Step, Steps  int // inner steps of the current image (diffusion steps)
	Elapsed, ETA time.Duration
	Finished     bool
	Kind         string // defect kind of the current image
	Negative     string // negative being worked on
}

// Fraction is the batch's completion in [0,1], counting the current image's steps.
func (p Progress) Fraction() float64 {
	if p.Total == 0 {
		return 1
	}
	f := float64(p.Done)
	if !p.Finished && p.Steps > 0 {
		f += float64(p.Step) / float64(p.Steps)
	}
	return min(f/float64(p.Total), 1)
}

// Summary is what a batch did; it is also written next to the outputs.
type Summary struct {
	Generator    string        `json:"generator"`
	ModelDigest  string        `json:"model_digest,omitempty"`
	Catalogue    string        `json:"catalogue"`
	Negatives    string        `json:"negatives"`
	BatchSeed    uint64        `json:"batch_seed"`
	Requested    int           `json:"requested"`
	Written      int           `json:"written"`
	First, Last  int           `json:"-"`
	Range        string        `json:"range"` // "00000-00099"
	Skipped      []Skip        `json:"skipped,omitempty"`
	Warnings     int           `json:"warnings"`
	ContactSheet string        `json:"contact_sheet,omitempty"`
	Elapsed      time.Duration `json:"elapsed_ns"`
	Stopped      string        `json:"stopped,omitempty"` // why the batch ended early
}

// Count returns how many skips are of a kind (SkipNegative, SkipMask, SkipImage).
func (s Summary) Count(what string) int {
	n := 0
	for _, k := range s.Skipped {
		if k.What == what {
			n++
		}
	}
	return n
}

// Sidecar is the JSON written next to each output image.
type Sidecar struct {
	Index           int                  `json:"index"`
	Image           string               `json:"image"`
	Mask            string               `json:"mask"`
	SourceNegative  string               `json:"source_negative"`
	DefectKind      string               `json:"defect_kind"`
	Prompt          string               `json:"prompt"`
	NegativePrompt  string               `json:"negative_prompt"`
	Seed            uint64               `json:"seed"`
	BatchSeed       uint64               `json:"batch_seed"`
	Settings        catalogue.Generation `json:"settings"`
	MaskSource      MaskSource           `json:"mask_source"`
	Generator       string               `json:"generator"`
	ModelDigest     string               `json:"model_digest,omitempty"`
	Catalogue       string               `json:"catalogue"`
	CatalogueDigest string               `json:"catalogue_digest"`
	Details         map[string]any       `json:"details,omitempty"`
	Warnings        []string             `json:"warnings,omitempty"`
	CreatedAt       time.Time            `json:"created_at"`
}

var outputName = regexp.MustCompile(`^(\d{5,})(?:_mask)?\.(?:png|json)$`)

// NextIndex is one past the highest output index already in dir (0 when none), so a
// new batch appends instead of overwriting earlier outputs.
func NextIndex(dir string) (int, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	next := 0
	for _, e := range ents {
		if m := outputName.FindStringSubmatch(e.Name()); m != nil {
			if n, err := strconv.Atoi(m[1]); err == nil && n+1 > next {
				next = n + 1
			}
		}
	}
	return next, nil
}

// Run makes a batch. It stops early, with the partial summary, when ctx ends or no
// negative is usable; outputs already written stay valid.
func Run(ctx context.Context, c Config) (Summary, error) {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.SheetMax <= 0 {
		c.SheetMax = 100
	}
	if c.N <= 0 {
		return Summary{}, fmt.Errorf("augment: number of images must be > 0, got %d", c.N)
	}
	if c.Generator == nil || c.Catalogue == nil {
		return Summary{}, errors.New("augment: a generator and a catalogue are required")
	}
	cat := c.Catalogue()
	if cat == nil {
		return Summary{}, errors.New("augment: no defect catalogue in force")
	}
	if err := os.MkdirAll(c.Out, 0o755); err != nil {
		return Summary{}, fmt.Errorf("augment: output folder: %w", err)
	}
	first, err := NextIndex(c.Out)
	if err != nil {
		return Summary{}, fmt.Errorf("augment: output folder: %w", err)
	}
	batchSeed := cat.Generation.Seed
	if c.Seed != nil {
		batchSeed = *c.Seed
	}
	s := Summary{Generator: c.Generator.Name(), ModelDigest: c.Generator.ModelDigest(), Catalogue: cat.Path,
		Negatives: c.NegativesDir, BatchSeed: batchSeed, Requested: c.N, First: first, Last: first + c.N - 1}
	s.Range = fmt.Sprintf("%05d-%05d", s.First, s.Last)
	planner := NewPlanner(c.Negatives)
	sheet := newSheet(c.SheetMax, c.N)
	start := time.Now()
	prog := Progress{Total: c.N}
	report := func() {
		if c.Progress == nil {
			return
		}
		prog.Elapsed = time.Since(start)
		if f := prog.Fraction(); f > 0 {
			prog.ETA = time.Duration(float64(prog.Elapsed) * (1 - f) / f).Round(time.Second)
		}
		c.Progress(prog)
	}
	nBad := 0
	for i := range c.N {
		idx := first + i
		if err := ctx.Err(); err != nil {
			s.Stopped = "cancelled: " + err.Error()
			break
		}
		cat = c.Catalogue() // live edits apply from the next image
		prog.Index, prog.Step, prog.Steps = idx, 0, 0
		job, skips, err := planner.Plan(idx, batchSeed, cat)
		s.Skipped = append(s.Skipped, skips...)
		if bad := planner.BadNegatives(); len(bad) > nBad {
			for _, b := range bad[nBad:] {
				c.Log.Warn("augment: negative skipped", "file", b.File, "reason", b.Reason)
			}
			s.Skipped = append(s.Skipped, bad[nBad:]...)
			nBad = len(bad)
		}
		if errors.Is(err, ErrNoNegatives) {
			s.Stopped = fmt.Sprintf("all %d negatives failed to decode", len(c.Negatives))
			break
		}
		if err != nil {
			s.Skipped = append(s.Skipped, Skip{Index: idx, What: SkipImage, Reason: err.Error()})
			c.Log.Warn("augment: image skipped", "index", idx, "reason", err)
			prog.Done++
			prog.Skipped++
			report()
			continue
		}
		prog.Kind, prog.Negative = job.Kind.Name, job.Negative
		job.Progress = func(step, total int) {
			prog.Step, prog.Steps = step, total
			report()
		}
		out, err := c.Generator.Generate(ctx, job)
		if err != nil {
			if ctx.Err() != nil {
				s.Stopped = "cancelled: " + ctx.Err().Error()
				break
			}
			s.Skipped = append(s.Skipped, Skip{Index: idx, What: SkipImage, File: job.Negative, Reason: "generator: " + err.Error()})
			c.Log.Warn("augment: generation failed", "index", idx, "negative", job.Negative, "err", err)
			prog.Done++
			prog.Skipped++
			report()
			continue
		}
		if out.Mask == nil {
			out.Mask = job.Mask
		}
		warnings := append(job.Warnings, out.Warnings...)
		sc := Sidecar{Index: idx, Image: fmt.Sprintf("%05d.png", idx), Mask: fmt.Sprintf("%05d_mask.png", idx),
			SourceNegative: job.Negative, DefectKind: job.Kind.Name, Prompt: job.Prompt, NegativePrompt: job.NegativePrompt,
			Seed: job.Seed, BatchSeed: batchSeed, Settings: job.Settings, MaskSource: job.MaskSource,
			Generator: c.Generator.Name(), ModelDigest: c.Generator.ModelDigest(), Catalogue: cat.Path,
			CatalogueDigest: cat.Digest, Details: out.Details, Warnings: warnings, CreatedAt: time.Now().UTC()}
		if err := writeOutput(c.Out, sc, out); err != nil {
			// A full or read-only disk fails every image alike: stop rather than churn.
			return s, err
		}
		for _, w := range warnings {
			c.Log.Info("augment: warning", "index", idx, "warning", w)
		}
		s.Warnings += len(warnings)
		s.Written++
		sheet.add(i, idx, out.Image, out.Mask)
		prog.Done++
		prog.Written++
		prog.Step, prog.Steps = 0, 0
		report()
	}
	s.Elapsed = time.Since(start)
	if s.Written > 0 {
		name := filepath.Join(c.Out, fmt.Sprintf("contact-sheet_%s.png", s.Range))
		if err := sheet.write(name); err != nil {
			c.Log.Warn("augment: contact sheet not written", "err", err)
		} else {
			s.ContactSheet = name
		}
	}
	sum, _ := json.MarshalIndent(s, "", "  ")
	if err := atomicfile.WriteFile(filepath.Join(c.Out, fmt.Sprintf("summary_%s.json", s.Range)), append(sum, '\n'), 0o644); err != nil {
		return s, err
	}
	prog.Finished = true
	report()
	if s.Stopped != "" && ctx.Err() != nil {
		return s, ctx.Err()
	}
	if s.Stopped != "" {
		return s, fmt.Errorf("augment: stopped early: %s", s.Stopped)
	}
	return s, nil
}

// writeOutput writes image, mask, then the sidecar: a sidecar present means its
// images are complete.
func writeOutput(dir string, sc Sidecar, out Output) error {
	for _, f := range []struct {
		name string
		img  image.Image
	}{{sc.Image, out.Image}, {sc.Mask, out.Mask}} {
		var b bytes.Buffer
		if err := png.Encode(&b, f.img); err != nil {
			return fmt.Errorf("augment: encode %s: %w", f.name, err)
		}
		if err := atomicfile.WriteFile(filepath.Join(dir, f.name), b.Bytes(), 0o644); err != nil {
			return err
		}
	}
	js, err := json.MarshalIndent(sc, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, fmt.Sprintf("%05d.json", sc.Index)), append(js, '\n'), 0o644)
}
