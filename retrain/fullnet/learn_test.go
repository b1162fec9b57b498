package fullnet

import (
	"path/filepath"
	"testing"

	"github.com/diagd/diagd/internal/testenv"
)

// A small ResNet trained from random weights through the trainer (image files read and
// preprocessed as served, written back, scored by detect) learns a local defect on
// textured backgrounds that a head on its frozen random features cannot.
func TestLearnsLocalDefect(t *testing.T) {
	testenv.ORT(t)
	dir := t.TempDir()
	const size = 32
	base, meta := baseModel(t, filepath.Join(dir, "base"), size, 3)
	trainItems := scratchSet(t, filepath.Join(dir, "train"), 2048, size, 1, false)
	testItems := scratchSet(t, filepath.Join(dir, "test"), 256, size, 2, false)
	c := Config{Epochs: 10, LR: 3e-3, Batch: 32, MicroBatch: 32, Seed: 1}
	results := map[Setting]float64{}
	for _, s := range []Setting{All, Head} {
		c.Trainable = s
		cand := train(t, c, base, meta, trainItems, "", false)
		results[s] = ap(t, served(t, cand, meta, filepath.Join(dir, string(s)), testItems), testItems)
		t.Logf("%s: held-out AP %.3f, loss %v", s, results[s], cand.Training["loss_trace"])
	}
	if results[All] < 0.95 {
		t.Errorf("all layers: held-out AP %.3f, want ≥ 0.95", results[All])
	}
	if results[Head] >= 0.95 {
		t.Errorf("head only: held-out AP %.3f; the task should defeat a frozen random backbone", results[Head])
	}
}
