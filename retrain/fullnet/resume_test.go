package fullnet

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/internal/testenv"
	"github.com/diagd/diagd/retrain"
	"github.com/diagd/diagd/retrain/autodiff"
	"github.com/diagd/diagd/retrain/dataset"
	"github.com/diagd/diagd/retrain/head"
)

// childEnv makes the test binary a training child (see TestMain): its value is the
// JSON of a childSpec.
const childEnv = "DIAGD_FULLNET_TRAIN_CHILD"

type childSpec struct {
	Base   string
	Items  []dataset.Item
	RunDir string
	// HangAt stops the child inside this epoch (1-based) after this many steps, as if
	// it were killed there: the parent SIGKILLs it.
	HangEpoch, HangStep int
}

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(trainChild(spec))
	}
	os.Exit(m.Run())
}

// resumeConfig is the recipe of the resume tests: the paper's BatchNorm regime (train,
// then frozen: the mode and running statistics must come back), micro-batches and
// seeded augmentation (its draws must not depend on where the run started).
func resumeConfig() Config {
	return Config{Epochs: 3, LR: 3e-3, Batch: 16, MicroBatch: 8, Seed: 9,
		Augment: SurfaceAugment{FlipH: true, FlipV: true, MaxShift: 2, Brightness: 0.1}}
}

// trainChild trains as the spec says, printing "STEP epoch step" after every step.
func trainChild(spec string) int {
	var s childSpec
	if err := json.Unmarshal([]byte(spec), &s); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if _, err := ortenv.Init(log); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	meta, err := detect.ReadMetadata(s.Base)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	progress := func(p retrain.Progress) {
		if p.Stage != "train" || p.Epoch == 0 {
			return
		}
		step := p.Done - (p.Epoch-1)*(p.Total/p.Epochs)
		fmt.Printf("STEP %d %d\n", p.Epoch, step)
		if p.Epoch == s.HangEpoch && step == s.HangStep {
			time.Sleep(time.Hour) // mid-epoch, the state in memory ahead of the checkpoint
		}
	}
	tr := Trainer{Config: resumeConfig(), Log: log, Session: oneThread}
	ds := retrain.TrainSet{Items: s.Items, BaseDir: s.Base, BaseMeta: meta, RunDir: s.RunDir, Resume: true}
	if _, err := tr.Train(context.Background(), ds, progress); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// startChild runs the test binary as a training child and returns it with its stdout.
func startChild(t *testing.T, s childSpec) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(b))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, bufio.NewScanner(out)
}

// initializers returns a model file's float initializers (with side files resolved).
func initializers(t *testing.T, path string) map[string][]float32 {
	t.Helper()
	m, err := head.LoadModel(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]float32{}
	for _, init := range m.Graph.Initializer {
		if v, err := autodiff.FloatValues(init); err == nil {
			out[init.GetName()] = v
		}
	}
	return out
}

// A run SIGKILLed in the middle of its second epoch and resumed from its checkpoint ends
// with bit-identical weights and BatchNorm statistics to a run that was never
// interrupted: ORT on one CPU thread is deterministic for these graphs, the order and
// augmentation are seeded, and the checkpoint holds the parameters, Adam's moments and
// step, the running statistics, the BatchNorm mode and the shuffling state.
func TestResumeAfterKillMatchesUninterrupted(t *testing.T) {
	testenv.ORT(t)
	dir := t.TempDir()
	base, meta := baseModel(t, filepath.Join(dir, "base"), 16, 4)
	items := scratchSet(t, filepath.Join(dir, "img"), 96, 16, 3, false)

	ref := train(t, resumeConfig(), base, meta, items, filepath.Join(dir, "ref-run"), true)
	refPath := filepath.Join(dir, "ref", "model.onnx")
	os.MkdirAll(filepath.Dir(refPath), 0o755)
	if err := ref.WriteModel(refPath); err != nil {
		t.Fatal(err)
	}

	runDir := filepath.Join(dir, "run")
	cmd, out := startChild(t, childSpec{Base: base, Items: items, RunDir: runDir, HangEpoch: 2, HangStep: 3})
	killed := false
	for out.Scan() {
		if out.Text() == "STEP 2 3" {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true
			break
		}
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if !killed || !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the child was not killed mid-epoch (%v)", err)
	}
	h, err := readCheckpointHeader(filepath.Join(runDir, CheckpointFile))
	if err != nil || h.Epoch != 1 {
		t.Fatalf("checkpoint after the kill: %+v, %v; want epoch 1", h, err)
	}

	cand := train(t, resumeConfig(), base, meta, items, runDir, true)
	if got := cand.Training["resumed_after_epoch"]; got != 1 {
		t.Errorf("resumed_after_epoch %v, want 1", got)
	}
	path := filepath.Join(dir, "resumed", "model.onnx")
	os.MkdirAll(filepath.Dir(path), 0o755)
	if err := cand.WriteModel(path); err != nil {
		t.Fatal(err)
	}
	want, got := initializers(t, refPath), initializers(t, path)
	differ := 0
	for name, w := range want {
		for i := range w {
			if math.Float32bits(w[i]) != math.Float32bits(got[name][i]) {
				differ++
				if differ < 4 {
					t.Errorf("%s[%d]: resumed %v, uninterrupted %v", name, i, got[name][i], w[i])
				}
			}
		}
	}
	if differ > 0 {
		t.Errorf("%d values differ between the resumed and the uninterrupted run", differ)
	}
}

// A checkpoint is continued only by a run of the same data, base model and recipe; any
// other run starts over and says why (in model.json's training map).
func TestResumeStartsOverWhenDataOrRecipeChanged(t *testing.T) {
	testenv.ORT(t)
	dir := t.TempDir()
	base, meta := baseModel(t, filepath.Join(dir, "base"), 16, 4)
	items := scratchSet(t, filepath.Join(dir, "img"), 48, 16, 3, false)
	runDir := filepath.Join(dir, "run")
	interrupt := func() {
		// a run cancelled in its second epoch: the checkpoint holds epoch 1
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		tr := Trainer{Config: resumeConfig(), Log: testenv.Logger(t), Session: oneThread}
		_, err := tr.Train(ctx, retrain.TrainSet{Items: items, BaseDir: base, BaseMeta: meta, RunDir: runDir}, func(p retrain.Progress) {
			if p.Epoch == 2 {
				cancel()
			}
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled run: %v", err)
		}
	}
	fewer := append([]dataset.Item(nil), items[:40]...)
	relabelled := append([]dataset.Item(nil), items...)
	relabelled[0].Label = !relabelled[0].Label
	longer := resumeConfig()
	longer.Epochs = 4
	for _, c := range []struct {
		name  string
		cfg   Config
		items []dataset.Item
		want  string
	}{
		{"fewer images", resumeConfig(), fewer, "the training data changed (48 images, now 40)"},
		{"a label", resumeConfig(), relabelled, "the training data changed (48 images as before, but other files or labels)"},
		{"epochs", longer, items, "the recipe changed: epochs 3 → 4"},
	} {
		interrupt()
		cand := train(t, c.cfg, base, meta, c.items, runDir, true)
		if got, _ := cand.Training["started_over"].(string); got != c.want {
			t.Errorf("%s: started_over %q, want %q", c.name, got, c.want)
		}
		if _, ok := cand.Training["resumed_after_epoch"]; ok {
			t.Errorf("%s: resumed a checkpoint of other data", c.name)
		}
	}
	interrupt()
	cand := train(t, resumeConfig(), base, meta, items, runDir, true)
	if cand.Training["resumed_after_epoch"] != 1 || cand.Training["started_over"] != nil {
		t.Errorf("same data and recipe: %v, %v", cand.Training["resumed_after_epoch"], cand.Training["started_over"])
	}
}

// A damaged checkpoint is refused with the reason, never loaded.
func TestCheckpointDamageIsRefused(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, CheckpointFile)
	sn := autodiff.Snapshot{Steps: 7, Tensors: map[string][]float32{"a": {1, 2, 3}, "b": {4}}}
	if err := writeCheckpoint(path, ckHeader{Epoch: 2, Order: []int{1, 0}}, sn); err != nil {
		t.Fatal(err)
	}
	sizes := map[string]int{"a": 3, "b": 1}
	h, got, err := readCheckpoint(path, sizes)
	if err != nil || h.Epoch != 2 || got.Steps != 7 || got.Tensors["a"][2] != 3 || got.Tensors["b"][0] != 4 {
		t.Fatalf("round trip: %+v %+v %v", h, got, err)
	}
	if _, _, err := readCheckpoint(path, map[string]int{"a": 3, "c": 1}); err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Errorf("other tensors: %v", err)
	}
	b, _ := os.ReadFile(path)
	b[len(b)-40] ^= 1 // a bit of tensor b
	os.WriteFile(path, b, 0o644)
	if _, _, err := readCheckpoint(path, sizes); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("flipped bit: %v", err)
	}
	os.WriteFile(path, b[:len(b)-50], 0o644)
	if _, _, err := readCheckpoint(path, sizes); err == nil {
		t.Error("truncated file read without error")
	}
}
