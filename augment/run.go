package augment

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
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
	// SheetMax caps the contact sheet's defects (default 100); larger batches are
	// sampled evenly.
	SheetMax int
	// LabelRule overrides the catalogue's checks.label_rule ("any-pixel" or "paper").
	LabelRule string
	// RealDefects, when set, is a folder of real defect images with masks whose crops
	// the contact sheet shows beside the synthetic ones (see ListRealDefects).
	RealDefects string
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
	Generator   string `json:"generator"`
	ModelDigest string `json:"model_digest,omitempty"`
	Catalogue   string `json:"catalogue"`
	Negatives   string `json:"negatives"`
	BatchSeed   uint64 `json:"batch_seed"`
	Requested   int    `json:"requested"`
	Written     int    `json:"written"`
	First, Last int    `json:"-"`
	Range       string `json:"range"` // "00000-00099"
	Skipped     []Skip `json:"skipped,omitempty"`
	Warnings    int    `json:"warnings"`
	// WarningCounts groups the warnings: each distinct message (numbers aside) once,
	// with how often it came.
	WarningCounts []WarningCount `json:"warning_counts,omitempty"`
	Surface       Surface        `json:"surface"`
	MinContrast   float64        `json:"min_contrast"` // visibility threshold used
	LabelRule     string         `json:"label_rule"`
	// Redrawn counts the draws rejected before an image was written, by reason
	// (SkipInvisible, SkipLabelRule, SkipMask).
	Redrawn      map[string]int `json:"redrawn,omitempty"`
	ContactSheet string         `json:"contact_sheet,omitempty"`
	Elapsed      time.Duration  `json:"elapsed_ns"`
	Stopped      string         `json:"stopped,omitempty"` // why the batch ended early
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
	Visibility      *Visibility          `json:"visibility,omitempty"`
	LabelRule       string               `json:"label_rule"`
	Attempt         int                  `json:"attempt"` // redraws before this one
	Warnings        []string             `json:"warnings,omitempty"`
	CreatedAt       time.Time            `json:"created_at"`
}

// WarningCount is one kind of warning and how often it came.
type WarningCount struct {
	Example string `json:"example"`
	Count   int    `json:"count"`
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

// Run makes a batch. Every image passes the checks before it is written: a defect
// fainter than the visibility threshold, or one the label rule would call "ok", is
// redrawn (a new draw of the same index) up to the catalogue's retries, then the index
// is skipped; each rejection is counted. It stops early, with the partial summary,
// when ctx ends or no negative is usable; outputs already written stay valid.
func Run(ctx context.Context, c Config) (Summary, error) {
	b, err := newBatch(c)
	if err != nil {
		return Summary{}, err
	}
	for i := range c.N {
		if err := ctx.Err(); err != nil {
			b.s.Stopped = "cancelled: " + err.Error()
			break
		}
		if err := b.one(ctx, i); err != nil {
			return b.s, err
		}
		if b.s.Stopped != "" {
			break
		}
	}
	return b.finish(ctx)
}

// batch is one Run's state.
type batch struct {
	c         Config
	s         Summary
	batchSeed uint64
	planner   *Planner
	sheet     *sheet
	start     time.Time
	prog      Progress
	nBad      int
	warnings  *warningCounter
}

func newBatch(c Config) (*batch, error) {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.SheetMax <= 0 {
		c.SheetMax = 100
	}
	if c.N <= 0 {
		return nil, fmt.Errorf("augment: number of images must be > 0, got %d", c.N)
	}
	if c.Generator == nil || c.Catalogue == nil {
		return nil, errors.New("augment: a generator and a catalogue are required")
	}
	cat := c.Catalogue()
	if cat == nil {
		return nil, errors.New("augment: no defect catalogue in force")
	}
	if c.LabelRule != "" {
		r, err := catalogue.ParseLabelRule(c.LabelRule)
		if err != nil {
			return nil, fmt.Errorf("augment: %w", err)
		}
		c.LabelRule = r
	}
	if err := os.MkdirAll(c.Out, 0o755); err != nil {
		return nil, fmt.Errorf("augment: output folder: %w", err)
	}
	first, err := NextIndex(c.Out)
	if err != nil {
		return nil, fmt.Errorf("augment: output folder: %w", err)
	}
	b := &batch{c: c, batchSeed: cat.Generation.Seed, planner: NewPlanner(c.Negatives), start: time.Now(),
		prog: Progress{Total: c.N}, warnings: newWarningCounter(c.Log)}
	if c.Seed != nil {
		b.batchSeed = *c.Seed
	}
	b.s = Summary{Generator: c.Generator.Name(), ModelDigest: c.Generator.ModelDigest(), Catalogue: cat.Path,
		Negatives: c.NegativesDir, BatchSeed: b.batchSeed, Requested: c.N, First: first, Last: first + c.N - 1,
		Surface: MeasureSurface(c.Negatives), Redrawn: map[string]int{}}
	b.s.Range = fmt.Sprintf("%05d-%05d", b.s.First, b.s.Last)
	b.s.MinContrast, b.s.LabelRule = b.s.Surface.MinContrast(cat.Checks), b.rule(cat)
	c.Log.Info("augment: negatives measured", "surface", b.s.Surface.String(), "min_contrast", b.s.MinContrast, "label_rule", b.s.LabelRule)
	b.sheet = newSheet(c.SheetMax, c.N)
	return b, nil
}

func (b *batch) rule(cat *catalogue.Catalogue) string {
	if b.c.LabelRule != "" {
		return b.c.LabelRule
	}
	return cat.Checks.LabelRule
}

func (b *batch) report() {
	if b.c.Progress == nil {
		return
	}
	b.prog.Elapsed = time.Since(b.start)
	if f := b.prog.Fraction(); f > 0 {
		b.prog.ETA = time.Duration(float64(b.prog.Elapsed) * (1 - f) / f).Round(time.Second)
	}
	b.c.Progress(b.prog)
}

// skipped ends output index i without an image.
func (b *batch) skipped(k Skip) {
	b.s.Skipped = append(b.s.Skipped, k)
	b.c.Log.Warn("augment: image skipped", "index", k.Index, "reason", k.Reason)
	b.prog.Done++
	b.prog.Skipped++
	b.report()
}

// one makes output i: draws until one passes the checks, or the retries run out. It
// returns an error only when writing fails (a full or read-only disk fails every image
// alike: stop rather than churn).
func (b *batch) one(ctx context.Context, i int) error {
	idx := b.s.First + i
	cat := b.c.Catalogue() // live edits apply from the next image
	minContrast := b.s.Surface.MinContrast(cat.Checks)
	b.prog.Index, b.prog.Step, b.prog.Steps = idx, 0, 0
	var last string
	for attempt := 0; attempt <= cat.Checks.Retries; attempt++ {
		job, out, ok := b.draw(ctx, idx, attempt, cat)
		if !ok {
			return nil
		}
		vis := MeasureVisibility(job.Image, out.Image, out.Mask, cat.Checks.Ring)
		if reason := b.reject(job, out, vis, minContrast); reason != "" {
			last = reason
			continue
		}
		return b.write(i, job, out, vis, cat)
	}
	b.skipped(Skip{Index: idx, What: SkipImage, Reason: fmt.Sprintf("no draw passed the checks in %d tries; last: %s", cat.Checks.Retries+1, last)})
	return nil
}

// draw plans and generates one attempt; ok is false when the index is finished
// (skipped, or the batch stopped).
func (b *batch) draw(ctx context.Context, idx, attempt int, cat *catalogue.Catalogue) (Job, Output, bool) {
	job, skips, err := b.planner.PlanWith(idx, b.batchSeed, cat, PlanOptions{Surface: b.s.Surface, LabelRule: b.rule(cat), Attempt: attempt})
	for _, k := range skips {
		b.s.Redrawn[k.What]++
	}
	b.s.Skipped = append(b.s.Skipped, skips...)
	if bad := b.planner.BadNegatives(); len(bad) > b.nBad {
		for _, k := range bad[b.nBad:] {
			b.c.Log.Warn("augment: negative skipped", "file", k.File, "reason", k.Reason)
		}
		b.s.Skipped = append(b.s.Skipped, bad[b.nBad:]...)
		b.nBad = len(bad)
	}
	if errors.Is(err, ErrNoNegatives) {
		b.s.Stopped = fmt.Sprintf("all %d negatives failed to decode", len(b.c.Negatives))
		return job, Output{}, false
	}
	if err != nil {
		b.skipped(Skip{Index: idx, What: SkipImage, Reason: err.Error()})
		return job, Output{}, false
	}
	b.prog.Kind, b.prog.Negative = job.Kind.Name, job.Negative
	job.Progress = func(step, total int) {
		b.prog.Step, b.prog.Steps = step, total
		b.report()
	}
	out, err := b.c.Generator.Generate(ctx, job)
	if err != nil {
		if ctx.Err() != nil {
			b.s.Stopped = "cancelled: " + ctx.Err().Error()
			return job, out, false
		}
		b.skipped(Skip{Index: idx, What: SkipImage, File: job.Negative, Reason: "generator: " + err.Error()})
		return job, out, false
	}
	if out.Mask == nil {
		out.Mask = job.Mask
	}
	return job, out, true
}

// reject applies the checks to a generated image and records a failure; "" passes.
func (b *batch) reject(job Job, out Output, vis Visibility, minContrast float64) string {
	var k Skip
	switch {
	case !vis.Visible(minContrast):
		k = Skip{Index: job.Index, What: SkipInvisible, File: job.Negative, Reason: fmt.Sprintf("kind %q: contrast %.1f and change %.1f grey levels, below the threshold %.0f",
			job.Kind.Name, vis.Contrast, vis.Change, minContrast)}
	case job.LabelRule == "paper":
		// The planner checked its mask; a generator may return another.
		if ok, err := PaperSurvives(out.Mask); err != nil || !ok {
			k = Skip{Index: job.Index, What: SkipLabelRule, File: job.Negative, Reason: fmt.Sprintf("kind %q: the output mask would be labelled ok by the paper's rule", job.Kind.Name)}
		}
	}
	if k.What == "" {
		return ""
	}
	b.s.Redrawn[k.What]++
	b.s.Skipped = append(b.s.Skipped, k)
	return k.Reason
}

func (b *batch) write(i int, job Job, out Output, vis Visibility, cat *catalogue.Catalogue) error {
	idx := job.Index
	warnings := append(job.Warnings, out.Warnings...)
	sc := Sidecar{Index: idx, Image: fmt.Sprintf("%05d.png", idx), Mask: fmt.Sprintf("%05d_mask.png", idx),
		SourceNegative: job.Negative, DefectKind: job.Kind.Name, Prompt: job.Prompt, NegativePrompt: job.NegativePrompt,
		Seed: job.Seed, BatchSeed: b.batchSeed, Settings: job.Settings, MaskSource: job.MaskSource,
		Generator: b.c.Generator.Name(), ModelDigest: b.c.Generator.ModelDigest(), Catalogue: cat.Path,
		CatalogueDigest: cat.Digest, Details: out.Details, Visibility: &vis, LabelRule: job.LabelRule, Attempt: job.Attempt,
		Warnings: warnings, CreatedAt: time.Now().UTC()}
	if err := writeOutput(b.c.Out, sc, out); err != nil {
		return err
	}
	for _, w := range warnings {
		b.warnings.add(w, idx)
	}
	b.s.Warnings += len(warnings)
	b.s.Written++
	b.sheet.add(i, idx, job, out, vis)
	b.prog.Done++
	b.prog.Written++
	b.prog.Step, b.prog.Steps = 0, 0
	b.report()
	return nil
}

func (b *batch) finish(ctx context.Context) (Summary, error) {
	s := &b.s
	s.Elapsed = time.Since(b.start)
	s.WarningCounts = b.warnings.counts()
	if s.Written > 0 {
		name := filepath.Join(b.c.Out, fmt.Sprintf("contact-sheet_%s.png", s.Range))
		if err := b.sheet.write(name, b.c.RealDefects, b.c.Log); err != nil {
			b.c.Log.Warn("augment: contact sheet not written", "err", err)
		} else {
			s.ContactSheet = name
		}
	}
	sum, _ := json.MarshalIndent(s, "", "  ")
	if err := atomicfile.WriteFile(filepath.Join(b.c.Out, fmt.Sprintf("summary_%s.json", s.Range)), append(sum, '\n'), 0o644); err != nil {
		return *s, err
	}
	b.prog.Finished = true
	b.report()
	if s.Stopped != "" && ctx.Err() != nil {
		return *s, ctx.Err()
	}
	if s.Stopped != "" {
		return *s, fmt.Errorf("augment: stopped early: %s", s.Stopped)
	}
	return *s, nil
}

// warningCounter logs each distinct warning once and counts the rest; warnings that
// differ only in numbers (sizes, file numbers) count as one.
type warningCounter struct {
	log   *slog.Logger
	order []string
	n     map[string]*WarningCount
}

func newWarningCounter(log *slog.Logger) *warningCounter {
	return &warningCounter{log: log, n: map[string]*WarningCount{}}
}

var digits = regexp.MustCompile(`[0-9]+`)

func (w *warningCounter) add(msg string, index int) {
	key := digits.ReplaceAllString(msg, "N")
	if c, ok := w.n[key]; ok {
		c.Count++
		return
	}
	w.n[key] = &WarningCount{Example: msg, Count: 1}
	w.order = append(w.order, key)
	w.log.Warn("augment: warning (similar ones are counted, not repeated)", "index", index, "warning", msg)
}

func (w *warningCounter) counts() []WarningCount {
	out := make([]WarningCount, 0, len(w.order))
	for _, k := range w.order {
		out = append(out, *w.n[k])
	}
	slices.SortStableFunc(out, func(a, b WarningCount) int { return b.Count - a.Count })
	return out
}

// writeOutput writes image, mask, then the sidecar: a sidecar present means its
// images are complete.
func writeOutput(dir string, sc Sidecar, out Output) error {
	for _, f := range []struct {
		name string
		img  image.Image
	}{{sc.Image, out.Image}, {sc.Mask, out.Mask}} {
		b, err := EncodePNG(f.img)
		if err != nil {
			return fmt.Errorf("augment: encode %s: %w", f.name, err)
		}
		if err := atomicfile.WriteFile(filepath.Join(dir, f.name), b, 0o644); err != nil {
			return err
		}
	}
	js, err := json.MarshalIndent(sc, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, fmt.Sprintf("%05d.json", sc.Index)), append(js, '\n'), 0o644)
}
