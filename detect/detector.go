package detect

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"

	"gocv.io/x/gocv"
)

// Verdict is the outcome for one frame.
type Verdict string

// Verdicts. Unknown is given when no model is loaded yet, so a new line can run
// (and collect frames) before its first model exists.
const (
	Pass    Verdict = "pass"
	Fail    Verdict = "fail"
	Unknown Verdict = "unknown"
)

// Result is the judgement of one frame.
type Result struct {
	Verdict      Verdict
	Score        float64 // sigmoid(logit), in [0,1]
	Logit        float32
	Threshold    float64
	ModelVersion string
	Err          error // the frame could not be judged (bad pixels); Verdict is Unknown
	// Segmentation is the frame's defect map when the model has one (nil otherwise).
	Segmentation *SegMap
	// Regions are where the defect is, for a fail by a model with a segmentation: its
	// regions at the model's segmentation threshold in the frame's pixels, largest first,
	// at most MaxRegions (none when no pixel reaches the threshold).
	Regions []Region
}

// ErrNoModel is returned while no model has been loaded.
var ErrNoModel = errors.New("no detector model loaded")

// ErrNonFinite marks a frame whose logit is NaN or infinite: the model cannot be
// trusted on it, so its verdict is Unknown (never pass: a NaN compares false with the
// threshold and would otherwise pass a frame nobody judged).
var ErrNonFinite = errors.New("the model's output is not a finite number")

// Detector serves the current model and swaps it for a new one without stopping:
// frames in flight finish on the model they started with, new frames go to the new
// one, none is dropped, and the old model is freed once its last frame is done.
type Detector struct {
	log  *slog.Logger
	opts Options
	cur  atomic.Pointer[slot]
	swap sync.Mutex // one swap at a time
}

// slot guards one model's lifetime: judges hold the read lock while they use it; a swap
// takes the write lock, which waits for them, before freeing the model.
type slot struct {
	mu     sync.RWMutex
	model  *Model
	closed bool
}

// New returns a detector with no model.
func New(log *slog.Logger, o Options) *Detector {
	return &Detector{log: log, opts: o.withDefaults()}
}

// Load opens a model folder with the detector's options. It does not install it.
func (d *Detector) Load(dir string) (*Model, error) { return LoadModel(d.log, dir, d.opts) }

// LoadAndSwap loads a model folder and, only if it loads and checks out, installs it.
func (d *Detector) LoadAndSwap(dir string) error {
	m, err := d.Load(dir)
	if err != nil {
		return err
	}
	d.Swap(m)
	return nil
}

// Swap installs m and frees the previous model after its in-flight frames finish.
// It returns once the previous model is freed.
func (d *Detector) Swap(m *Model) {
	d.swap.Lock()
	defer d.swap.Unlock()
	old := d.cur.Swap(&slot{model: m})
	d.log.Info("detector model installed", "model_version", m.Meta.ModelVersion, "provider", string(m.Provider),
		"dir", m.Dir, "threshold", m.Meta.Threshold)
	if old != nil {
		old.mu.Lock()
		old.closed = true
		old.model.Close()
		old.mu.Unlock()
	}
}

// Close frees the current model.
func (d *Detector) Close() {
	d.swap.Lock()
	defer d.swap.Unlock()
	if old := d.cur.Swap(nil); old != nil {
		old.mu.Lock()
		old.closed = true
		old.model.Close()
		old.mu.Unlock()
	}
}

// acquire returns the current model's slot, read-locked, or nil with no model. A slot
// closed between the load and the lock is skipped: the swap that closed it has already
// installed its successor.
func (d *Detector) acquire() *slot {
	for {
		s := d.cur.Load()
		if s == nil {
			return nil
		}
		s.mu.RLock()
		if !s.closed {
			return s
		}
		s.mu.RUnlock()
	}
}

// Metadata returns the current model's metadata, if any.
func (d *Detector) Metadata() (Metadata, bool) {
	s := d.acquire()
	if s == nil {
		return Metadata{}, false
	}
	defer s.mu.RUnlock()
	return s.model.Meta, true
}

// Judge scores frames on one model (all of them on the same one, even across a swap)
// and fills res, which must have one entry per frame. Frames with bad pixels get
// Err set and Verdict Unknown. With no model it returns ErrNoModel and every entry is
// Unknown.
func (d *Detector) Judge(frames []gocv.Mat, res []Result) error {
	if len(res) != len(frames) {
		return fmt.Errorf("judge: %d results for %d frames", len(res), len(frames))
	}
	s := d.acquire()
	if s == nil {
		for i := range res {
			res[i] = Result{Verdict: Unknown}
		}
		return ErrNoModel
	}
	defer s.mu.RUnlock()
	m := s.model
	// Scratch sized per call: batches are small (≤ a few dozen frames), so these are tiny.
	logits := make([]float32, len(frames))
	errs := make([]error, len(frames))
	var segs []SegMap
	if ok, _, _ := m.Segments(); ok {
		segs = make([]SegMap, len(frames))
	}
	if err := m.Segment(frames, logits, segs, errs); err != nil {
		return err
	}
	for i := range res {
		if errs[i] != nil {
			res[i] = Result{Verdict: Unknown, Threshold: m.Meta.Threshold, ModelVersion: m.Meta.ModelVersion, Err: errs[i]}
			continue
		}
		res[i] = m.Result(logits[i])
		if segs != nil {
			m.Locate(&res[i], &segs[i], frames[i].Cols(), frames[i].Rows())
		}
	}
	return nil
}

// Locate attaches a frame's segmentation map to its result and, for a fail, the
// defect's regions in the frame's srcW×srcH pixels.
func (m *Model) Locate(r *Result, seg *SegMap, srcW, srcH int) {
	r.Segmentation = seg
	if r.Verdict == Fail {
		r.Regions = seg.Regions(m.Meta.SegThreshold(), srcW, srcH, MaxRegions)
	}
}

// Result turns a logit into a verdict with this model's threshold: a score at or above
// the threshold is a fail (a defect).
// A NaN or infinite logit gives an Unknown verdict, score 0, and Err wrapping
// ErrNonFinite.
func (m *Model) Result(logit float32) Result {
	if math.IsNaN(float64(logit)) || math.IsInf(float64(logit), 0) {
		return Result{Verdict: Unknown, Logit: logit, Threshold: m.Meta.Threshold, ModelVersion: m.Meta.ModelVersion,
			Err: fmt.Errorf("%w (logit %v)", ErrNonFinite, logit)}
	}
	r := Result{Logit: logit, Score: Sigmoid(logit), Threshold: m.Meta.Threshold, ModelVersion: m.Meta.ModelVersion, Verdict: Pass}
	if r.Score >= r.Threshold {
		r.Verdict = Fail
	}
	return r
}
