package retrain

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/testenv"
	"github.com/diagd/diagd/retrain/dataset"
	"github.com/diagd/diagd/retrain/gate"
	"github.com/diagd/diagd/retrain/registry"
	"github.com/diagd/diagd/retrain/rtest"
)

// copyTrainer is an ImageTrainer whose "trained" model is the base model itself, and
// whose forward pass is the base model run through detect plus shift: shift 0 is a
// write-back that agrees with training, anything else one that does not.
type copyTrainer struct {
	shift float64
	saw   *TrainSet
	log   *slog.Logger
}

func (copyTrainer) Name() string { return "copy" }
func (copyTrainer) ReadsImages() {}

func (c copyTrainer) Train(_ context.Context, ds TrainSet, _ func(Progress)) (*Candidate, error) {
	*c.saw = ds
	base := filepath.Join(ds.BaseDir, detect.ModelFile)
	return &Candidate{
		WriteModel: func(path string) error {
			b, err := os.ReadFile(base)
			if err != nil {
				return err
			}
			return os.WriteFile(path, b, 0o644)
		},
		Logits: func(ctx context.Context, paths []string) ([]float64, error) {
			items := make([]dataset.Item, len(paths))
			for i, p := range paths {
				items[i].Path = p
			}
			l, err := modelLogits(ctx, c.log, ds.BaseDir, items, cpu)
			for i := range l {
				l[i] += c.shift
			}
			return l, err
		},
	}, nil
}

// chooser picks the trainer it holds.
type chooser struct{ pick Trainer }

func (chooser) Name() string { return "chooser" }
func (chooser) Train(context.Context, TrainSet, func(Progress)) (*Candidate, error) {
	return nil, errors.New("a chooser does not train")
}
func (c chooser) Choose(context.Context, TrainSet, func(Progress)) (Trainer, error) {
	return c.pick, nil
}

// An ImageTrainer gets no features but the images' digests, unreadable images are
// skipped, and the written model enters the registry only when detect's logits on the
// validation images equal the trainer's own forward pass.
func TestRunImageTrainerChecksWriteBack(t *testing.T) {
	testenv.ORT(t)
	log := testenv.Logger(t)
	base := rtest.Model(t, filepath.Join(t.TempDir(), "base"), "base-1", 7)
	data := dataDir(t, 40, 8, 20)
	bad := filepath.Join(data, dataset.NegativesDir, "99999.png")
	os.WriteFile(bad, []byte("\x89PNG\r\n\x1a\n not an image"), 0o644)
	real, syn, err := dataset.DataDir(data, dataset.Options{})
	if err != nil {
		t.Fatal(err)
	}
	train, _ := dataset.Compose(real, syn, dataset.FullShot, 0)
	tr, val := Holdout(train, nil, 0.25, 2)
	reg := openLocked(t, registry.Options{})
	var saw TrainSet
	cfg := Config{Log: log, Registry: reg, BaseModel: base, Train: tr, Val: val, Session: cpu, NoPromote: true,
		Trainer: chooser{copyTrainer{saw: &saw, log: log}}, Gate: gate.Settings{MinDefects: 2}, RunDir: filepath.Join(reg.Dir, RunDirName)}
	out, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if saw.Features != nil || len(saw.Digests) != len(saw.Items) || saw.RunDir != cfg.RunDir {
		t.Errorf("the trainer got features %v, %d digests for %d images, run dir %q", saw.Features != nil, len(saw.Digests), len(saw.Items), saw.RunDir)
	}
	if len(out.Skipped) != 1 || out.Skipped[0].Path != bad {
		t.Errorf("skipped %v; want the corrupt %s", out.Skipped, bad)
	}
	v, err := registry.Check(out.Dir)
	if err != nil || v.Training["trainer"] != "copy" {
		t.Fatalf("stored version: %v %v; want trainer copy (the chooser's pick)", v, err)
	}

	cfg.Trainer = copyTrainer{shift: 0.01, saw: &saw, log: log}
	out, err = Run(t.Context(), cfg)
	if err == nil || !strings.Contains(err.Error(), "write-back is wrong") {
		t.Fatalf("a written model 0.01 off the trainer's forward: %v, %+v", err, out)
	}
	if vs, _, _ := reg.List(); len(vs) != 1 {
		t.Errorf("the registry holds %d versions; the refused candidate must not enter", len(vs))
	}
}

// cancelTrainer stands for a run interrupted while training (a stop, or a crash).
type cancelTrainer struct {
	saw    *TrainSet
	cancel context.CancelFunc
}

func (cancelTrainer) Name() string { return "cancel" }
func (c cancelTrainer) Train(ctx context.Context, ds TrainSet, _ func(Progress)) (*Candidate, error) {
	*c.saw = ds
	c.cancel()
	return nil, ctx.Err()
}

// An interrupted run keeps its folder; a resuming run trains on the data it pinned
// (images added since wait), a run without resume, or one finding a pinned file changed,
// starts over and says why, and a run that decided removes the folder.
func TestRunDataDirResumesPinnedData(t *testing.T) {
	testenv.ORT(t)
	data := dataDir(t, 40, 8, 20)
	base := rtest.Model(t, filepath.Join(t.TempDir(), "base"), "base-1", 7)
	regDir := filepath.Join(t.TempDir(), "reg")
	runDir := filepath.Join(regDir, RunDirName)
	var saw TrainSet
	opts := func(tr Trainer, resume bool) DataDirOptions {
		return DataDirOptions{Log: testenv.Logger(t), Registry: regDir, ImportIfEmpty: base, Data: data, Mode: dataset.FullShot,
			Seed: 3, Trainer: tr, Session: cpu, NoPromote: true, Gate: gate.Settings{MinDefects: 2}, Resume: resume}
	}
	interrupted := func(resume bool) Plan {
		t.Helper()
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		_, plan, err := RunDataDir(ctx, opts(cancelTrainer{&saw, cancel}, resume))
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("interrupted run: %v", err)
		}
		return plan
	}
	interrupted(false)
	if _, ok := InterruptedRun(regDir); !ok {
		t.Fatal("the interrupted run left no run folder")
	}
	first := len(saw.Items)
	rtest.Folder(t, filepath.Join(data, dataset.NegativesDir, "later"), 5, false, false, 9)

	plan := interrupted(true)
	if !plan.Resumed || len(saw.Items) != first || saw.RunDir != runDir || !saw.Resume {
		t.Errorf("resumed %v on %d images (pinned %d), run dir %q resume %v", plan.Resumed, len(saw.Items), first, saw.RunDir, saw.Resume)
	}
	changed := saw.Items[0].Path
	b, _ := os.ReadFile(filepath.Join(data, dataset.NegativesDir, "later", "00000.png"))
	os.WriteFile(changed, b, 0o644)
	plan = interrupted(true)
	if plan.Resumed || !strings.Contains(plan.StartOver, changed+" changed") || len(saw.Items) == first {
		t.Errorf("after %s changed: resumed %v, start over %q, %d images", changed, plan.Resumed, plan.StartOver, len(saw.Items))
	}
	plan = interrupted(false)
	if plan.Resumed || plan.StartOver != "resume was not requested" {
		t.Errorf("without resume: resumed %v, start over %q", plan.Resumed, plan.StartOver)
	}
	if _, _, err := RunDataDir(t.Context(), opts(HeadTrainer{}, true)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(runDir); !os.IsNotExist(err) {
		t.Errorf("the decided run left %s (%v)", runDir, err)
	}
}
