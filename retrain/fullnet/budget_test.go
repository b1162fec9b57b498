package fullnet

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diagd/diagd/internal/testenv"
	"github.com/diagd/diagd/retrain"
	"github.com/diagd/diagd/retrain/autodiff"
)

// fakeTimes measures nothing: each setting takes the given time per unit of work.
func fakeTimes(unit map[Setting]time.Duration) func(context.Context, retrain.TrainSet, Setting) (Estimate, error) {
	return func(_ context.Context, ds retrain.TrainSet, s Setting) (Estimate, error) {
		n := 100 // steps, or images for head
		return Estimate{Setting: s, Unit: unit[s], Units: n, Total: unit[s] * time.Duration(n)}, nil
	}
}

// With a budget the most complete setting whose estimate fits is chosen (all, else
// last, else head, the cheapest, also when none fits); without one, all on a GPU and head
// on the CPU; a setting asked for is kept, with a word when it exceeds the budget.
func TestAutoChoosesByBudget(t *testing.T) {
	times := fakeTimes(map[Setting]time.Duration{Head: 100 * time.Millisecond, Last: time.Second, All: 3 * time.Second})
	cases := []struct {
		name      string
		budget    time.Duration
		trainable Setting
		gpu       bool
		want      Setting
		why       string
	}{
		{"all fits", 6 * time.Minute, "", false, All, "estimate (5m0s) fits the budget 6m0s"},
		{"last fits", 3 * time.Minute, "", false, Last, "estimate (1m40s) fits the budget 3m0s"},
		{"only head fits", time.Minute, "", false, Head, "estimate (10s) fits the budget 1m0s"},
		{"nothing fits", 5 * time.Second, "", false, Head, "no setting fits the budget 5s; head is the cheapest"},
		{"exactly", 100 * time.Second, "", false, Last, "fits the budget 1m40s"},
		{"GPU, no budget", 0, "", true, All, "a GPU provider is active"},
		{"CPU, no budget", 0, "", false, Head, "CPU only and no time budget"},
		{"asked, over budget", time.Minute, All, false, All, "as asked, although its estimate 5m0s exceeds the budget 1m0s"},
		{"asked", 0, Last, false, Last, "as asked"},
	}
	for _, c := range cases {
		var got Choice
		a := Auto{Trainable: c.trainable, Budget: c.budget, GPU: func() bool { return c.gpu }, measure: times,
			Report: func(ch Choice) { got = ch }}
		tr, err := a.Choose(context.Background(), retrain.TrainSet{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got.Setting != c.want || !strings.Contains(got.Why, c.why) {
			t.Errorf("%s: chose %s (%s); want %s (%s)", c.name, got.Setting, got.Why, c.want, c.why)
		}
		if c.budget > 0 && len(got.Estimates) != 3 {
			t.Errorf("%s: %d estimates reported; want all three", c.name, len(got.Estimates))
		}
		switch tt := tr.(type) {
		case chosenHead:
			if c.want != Head {
				t.Errorf("%s: head trainer for %s", c.name, c.want)
			}
		case Trainer:
			if tt.Config.Trainable != c.want {
				t.Errorf("%s: trainer for %s, want %s", c.name, tt.Config.Trainable, c.want)
			}
		}
	}
}

// A resuming run keeps the setting of the checkpoint it continues, whatever the budget
// would say now.
func TestAutoKeepsTheInterruptedSetting(t *testing.T) {
	dir := t.TempDir()
	c := Config{Trainable: Last}.WithDefaults()
	h := ckHeader{Epoch: 3, Recipe: c.recipe()}
	if err := writeCheckpoint(filepath.Join(dir, CheckpointFile), h, autodiff.Snapshot{}); err != nil {
		t.Fatal(err)
	}
	a := Auto{Budget: time.Second, measure: fakeTimes(map[Setting]time.Duration{Head: time.Hour, Last: time.Hour, All: time.Hour})}
	var got Choice
	a.Report = func(ch Choice) { got = ch }
	if _, err := a.Choose(context.Background(), retrain.TrainSet{RunDir: dir, Resume: true}, nil); err != nil {
		t.Fatal(err)
	}
	if got.Setting != Last || !strings.Contains(got.Why, "interrupted") {
		t.Errorf("chose %s (%s); want last, the interrupted run's", got.Setting, got.Why)
	}
	a.Config.Epochs = 5 // another recipe: no resume, so the budget decides again
	if _, err := a.Choose(context.Background(), retrain.TrainSet{RunDir: dir, Resume: true}, nil); err != nil {
		t.Fatal(err)
	}
	if got.Setting != Head {
		t.Errorf("another recipe: chose %s; want head (nothing fits)", got.Setting)
	}
}

// Real estimates come from timed steps on the data: units are the run's steps (epochs ×
// batches) or images, and the total is their product with the measured time.
func TestAutoMeasuresRealSteps(t *testing.T) {
	testenv.ORT(t)
	dir := t.TempDir()
	base, meta := baseModel(t, filepath.Join(dir, "base"), 16, 1)
	items := scratchSet(t, filepath.Join(dir, "img"), 40, 16, 1, false)
	var got Choice
	a := Auto{Budget: time.Hour, Config: Config{Epochs: 3, Batch: 16, MicroBatch: 8}, Log: testenv.Logger(t), Session: oneThread,
		Report: func(c Choice) { got = c }}
	if _, err := a.Choose(context.Background(), retrain.TrainSet{Items: items, BaseDir: base, BaseMeta: meta}, nil); err != nil {
		t.Fatal(err)
	}
	want := map[Setting]int{Head: 40, Last: 9, All: 9} // 3 epochs of 3 batches (16, 16, 8)
	for _, e := range got.Estimates {
		if e.Units != want[e.Setting] || e.Unit <= 0 || e.Total != e.Unit*time.Duration(e.Units) {
			t.Errorf("%s: %+v; want %d units", e.Setting, e, want[e.Setting])
		}
		t.Logf("%s: %s (%s)", e.Setting, e.Total, e.Basis)
	}
	if len(got.Estimates) != 3 || got.Setting != All {
		t.Errorf("estimates %d, chose %s; want 3 and all (an hour is plenty)", len(got.Estimates), got.Setting)
	}
}
