package fullnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"time"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/retrain"
)

// Auto picks what to train once the data is known (a retrain.Chooser):
//
//   - a fixed Trainable (head, last, all) is used as it is;
//   - an interrupted run being resumed keeps the setting its checkpoint was made with;
//   - with a Budget, every setting's time on this data is estimated from real steps
//     timed on the first training images (see Estimate), and the most complete setting
//     that fits is chosen: all, else last, else head (the cheapest, also when nothing
//     fits, which is said);
//   - without a Budget: all when a GPU provider is active, else head.
//
// Head is the frozen-feature trainer (retrain.HeadTrainer, its own recipe); last and all
// are Trainer with Config.
type Auto struct {
	Trainable Setting // "" chooses
	Budget    time.Duration
	Config    Config // the recipe of last and all (its Trainable is set by the choice)
	Head      retrain.HeadTrainer
	Log       *slog.Logger
	Session   ortenv.Options
	// Report, when set, sees the choice and the estimates before training starts.
	Report func(Choice)
	// GPU says whether a GPU provider is active (nil: ask ONNX Runtime).
	GPU func() bool
	// measure times one setting (nil: real steps, see measure); tests inject timings.
	measure func(ctx context.Context, ds retrain.TrainSet, s Setting) (Estimate, error)
}

// Estimate is one setting's expected time on the data.
type Estimate struct {
	Setting Setting
	Total   time.Duration
	// Unit is the measured time of one unit of work: an optimizer step of Batch images
	// (last, all), or a forward pass of one image (head: its feature pass).
	Unit  time.Duration
	Units int
	Basis string // what was measured, for people
}

// Choice is what Auto chose and why.
type Choice struct {
	Setting   Setting
	Why       string
	Budget    time.Duration
	Estimates []Estimate // empty when nothing was measured
}

// Name implements retrain.Trainer.
func (a Auto) Name() string { return "auto" }

// Train implements retrain.Trainer; Auto trains only through what it chooses.
func (a Auto) Train(ctx context.Context, ds retrain.TrainSet, progress func(retrain.Progress)) (*retrain.Candidate, error) {
	t, err := a.Choose(ctx, ds, progress)
	if err != nil {
		return nil, err
	}
	return t.Train(ctx, ds, progress)
}

// Choose implements retrain.Chooser.
func (a Auto) Choose(ctx context.Context, ds retrain.TrainSet, progress func(retrain.Progress)) (retrain.Trainer, error) {
	c, err := a.choose(ctx, ds, progress)
	if err != nil {
		return nil, err
	}
	if a.Log != nil {
		a.Log.Info("training setting chosen", "trainable", string(c.Setting), "why", c.Why)
	}
	if a.Report != nil {
		a.Report(c)
	}
	return a.trainer(c), nil
}

func (a Auto) trainer(ch Choice) retrain.Trainer {
	if ch.Setting == Head {
		return chosenHead{HeadTrainer: a.Head, choice: ch.record()}
	}
	c := a.Config
	c.Trainable = ch.Setting
	rec := ch.record()
	return Trainer{Config: c, Log: a.Log, Session: a.Session, choice: &rec}
}

// choiceRecord is how model.json's training map records the choice.
type choiceRecord struct {
	Setting   Setting          `json:"setting"`
	Why       string           `json:"why"`
	BudgetS   float64          `json:"budget_s,omitempty"`
	Estimates []estimateRecord `json:"estimates,omitempty"`
}

type estimateRecord struct {
	Setting Setting `json:"setting"`
	TotalS  float64 `json:"total_s"`
	Basis   string  `json:"basis"`
}

func (c Choice) record() choiceRecord {
	r := choiceRecord{Setting: c.Setting, Why: c.Why, BudgetS: c.Budget.Seconds()}
	for _, e := range c.Estimates {
		r.Estimates = append(r.Estimates, estimateRecord{Setting: e.Setting, TotalS: e.Total.Seconds(), Basis: e.Basis})
	}
	return r
}

// chosenHead is the head trainer, recording the choice in model.json.
type chosenHead struct {
	retrain.HeadTrainer
	choice choiceRecord
}

// Train implements retrain.Trainer.
func (h chosenHead) Train(ctx context.Context, ds retrain.TrainSet, progress func(retrain.Progress)) (*retrain.Candidate, error) {
	c, err := h.HeadTrainer.Train(ctx, ds, progress)
	if c != nil && c.Training != nil {
		c.Training["trainable"], c.Training["trainable_choice"] = string(Head), h.choice
	}
	return c, err
}

func (a Auto) choose(ctx context.Context, ds retrain.TrainSet, progress func(retrain.Progress)) (Choice, error) {
	c := Choice{Budget: a.Budget}
	if s := a.resumedSetting(ds); s != "" {
		c.Setting, c.Why = s, fmt.Sprintf("continuing the interrupted %s run", s)
		return c, nil
	}
	if a.Budget > 0 {
		est, err := a.estimates(ctx, ds, progress)
		if err != nil {
			return c, err
		}
		c.Estimates = est
	}
	if a.Trainable != "" {
		c.Setting, c.Why = a.Trainable, "as asked"
		if e := find(c.Estimates, a.Trainable); e != nil && a.Budget > 0 && e.Total > a.Budget {
			c.Why = fmt.Sprintf("as asked, although its estimate %s exceeds the budget %s", Approx(e.Total), a.Budget)
		}
		return c, nil
	}
	if a.Budget > 0 {
		c.Setting, c.Why = Decide(c.Estimates, a.Budget)
		return c, nil
	}
	if a.gpu() {
		c.Setting, c.Why = All, "a GPU provider is active"
		return c, nil
	}
	c.Setting, c.Why = Head, "CPU only and no time budget (set one to let full training be considered)"
	return c, nil
}

// Decide picks the most complete setting whose estimate fits the budget; when none
// does, head, the cheapest.
func Decide(est []Estimate, budget time.Duration) (Setting, string) {
	for _, s := range []Setting{All, Last, Head} {
		if e := find(est, s); e != nil && e.Total <= budget {
			return s, fmt.Sprintf("the most complete setting whose estimate (%s) fits the budget %s", Approx(e.Total), budget)
		}
	}
	return Head, fmt.Sprintf("no setting fits the budget %s; head is the cheapest", budget)
}

func find(est []Estimate, s Setting) *Estimate {
	i := slices.IndexFunc(est, func(e Estimate) bool { return e.Setting == s })
	if i < 0 {
		return nil
	}
	return &est[i]
}

// Approx keeps two or three significant figures of a duration, for people.
func Approx(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Minute:
		return d.Round(time.Minute)
	case d >= 10*time.Second:
		return d.Round(time.Second)
	case d >= time.Second:
		return d.Round(100 * time.Millisecond)
	case d >= 10*time.Millisecond:
		return d.Round(time.Millisecond)
	}
	return d.Round(time.Microsecond)
}

// resumedSetting is the setting of a checkpoint this run would continue ("" none).
func (a Auto) resumedSetting(ds retrain.TrainSet) Setting {
	if !ds.Resume || ds.RunDir == "" {
		return ""
	}
	h, err := readCheckpointHeader(filepath.Join(ds.RunDir, CheckpointFile))
	if err != nil {
		return ""
	}
	c := a.Config
	c.Trainable = h.Recipe.Trainable
	if c.WithDefaults().recipe() != h.Recipe {
		return "" // another recipe: the trainer would start over anyway
	}
	return h.Recipe.Trainable
}

// OnGPU says whether training would run on a GPU provider (Auto's test, for callers
// that size a network by it).
func (a Auto) OnGPU() bool { return a.gpu() }

func (a Auto) gpu() bool {
	if a.GPU != nil {
		return a.GPU()
	}
	switch a.Session.Provider {
	case ortenv.CUDA, ortenv.TensorRT:
		return true
	case ortenv.CPU:
		return false
	}
	st, err := ortenv.ProbeProviders(a.Log)
	if err != nil {
		return false
	}
	return slices.ContainsFunc(st, func(p ortenv.ProviderStatus) bool { return p.Provider == ortenv.CUDA && p.OK })
}

// estimates times every setting the model allows (last is left out of a network
// without stages).
func (a Auto) estimates(ctx context.Context, ds retrain.TrainSet, progress func(retrain.Progress)) ([]Estimate, error) {
	m := a.measure
	if m == nil {
		m = a.measureReal
	}
	var out []Estimate
	for _, s := range Settings {
		if progress != nil {
			progress(retrain.Progress{Stage: "choose", Message: "timing " + string(s)})
		}
		e, err := m(ctx, ds, s)
		if s == Last && isNoStages(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("estimating %s: %w", s, err)
		}
		out = append(out, e)
	}
	return out, nil
}

func isNoStages(err error) bool { return errors.Is(err, ErrNoStages) }

// measureReal times real work on the first training images: for last and all, two
// optimizer steps of a full batch with the run's recipe (BatchNorm in train mode, as in
// the first epoch; the second step counts, the first builds lazily made graphs), so the
// run takes epochs × batches of them; for head, a forward pass of the base model (the
// feature pass over the training images; the fit itself takes seconds).
func (a Auto) measureReal(ctx context.Context, ds retrain.TrainSet, s Setting) (Estimate, error) {
	c := a.Config
	c.Trainable = s
	c = c.WithDefaults()
	if s == Head {
		return a.measureForward(ctx, ds, c)
	}
	j, err := Trainer{Config: c, Log: a.Log, Session: a.Session}.open(retrain.TrainSet{Items: ds.Items, BaseDir: ds.BaseDir, BaseMeta: ds.BaseMeta}, nil)
	if err != nil {
		return Estimate{}, err
	}
	defer j.close()
	idx := make([]int, min(c.Batch, len(ds.Items)))
	for i := range idx {
		idx[i] = i
	}
	b := j.ld.bufs[0]
	if err := j.ld.fill(ctx, b, 0, idx); err != nil {
		return Estimate{}, err
	}
	var step time.Duration
	for range 2 {
		t0 := time.Now()
		if _, err := j.st.Step(ctx, j.batch(b, 0, 1)); err != nil {
			return Estimate{}, err
		}
		step = time.Since(t0)
	}
	steps := c.Epochs * ((len(ds.Items) + c.Batch - 1) / c.Batch)
	per := step * time.Duration(c.Batch) / time.Duration(len(idx))
	return Estimate{Setting: s, Unit: per, Units: steps, Total: per * time.Duration(steps),
		Basis: fmt.Sprintf("%s per step of %d images × %d steps (%d epochs)", Approx(per), c.Batch, steps, c.Epochs)}, nil
}

// measureForward times the base model's forward pass on a micro-batch of real images
// (decoding, which overlaps with it in the feature pass, left out).
func (a Auto) measureForward(ctx context.Context, ds retrain.TrainSet, c Config) (Estimate, error) {
	o := a.Session
	if o.Provider == ortenv.Auto || o.Provider == "" {
		o.Provider = ortenv.CPU // what the feature pass of head training uses, but TensorRT
		if a.gpu() {
			o.Provider = ortenv.CUDA
		}
	}
	meta := ds.BaseMeta
	sess, err := ortenv.OpenSession(a.log(), filepath.Join(ds.BaseDir, detect.ModelFile), []string{meta.Input.Name}, []string{meta.Outputs.Logit}, o)
	if err != nil {
		return Estimate{}, err
	}
	defer sess.Destroy()
	pre := detect.NewPreprocessor(meta.Input)
	defer pre.Close()
	n := min(c.MicroBatch, len(ds.Items))
	x := make([]float32, n*pre.Size())
	for i := range n {
		if err := decodeInto(pre, ds.Items[i].Path, x[i*pre.Size():(i+1)*pre.Size()]); err != nil {
			return Estimate{}, err
		}
	}
	var per time.Duration
	for range 2 {
		t0 := time.Now()
		if _, err := runLogits(ctx, sess, x, n, meta.Input); err != nil {
			return Estimate{}, err
		}
		per = time.Since(t0) / time.Duration(n)
	}
	return Estimate{Setting: Head, Unit: per, Units: len(ds.Items), Total: per * time.Duration(len(ds.Items)),
		Basis: fmt.Sprintf("%s per image × %d images (the feature pass; cached features make it shorter)", Approx(per), len(ds.Items))}, nil
}

func (a Auto) log() *slog.Logger {
	if a.Log == nil {
		return slog.Default()
	}
	return a.Log
}

// Auto must stay a retrain.Chooser.
var _ retrain.Chooser = Auto{}
