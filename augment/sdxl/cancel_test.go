package sdxl

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/diagd/diagd/internal/onnx/build"
	"github.com/diagd/diagd/internal/onnx/zoo"
	"github.com/diagd/diagd/internal/testenv"
)

// slowUNet replaces dir's UNet with one of the same interface (float32, rank-0
// timestep) whose every run takes n matrix products (zoo.Stall); its out_sample is the
// first four sample channels, the scaled latents.
func slowUNet(t *testing.T, dir string, n int) {
	t.Helper()
	g := build.New("unet")
	g.SetOpset(14)
	B := "batch_size"
	sample := g.Input("sample", build.Float, B, zoo.SDXLUNetIn, "height", "width")
	ts := g.Input("timestep", build.Float)
	ehs := g.Input("encoder_hidden_states", build.Float, B, "sequence_length", zoo.SDXLHidden1+zoo.SDXLHidden2)
	te := g.Input("text_embeds", build.Float, B, zoo.SDXLHidden2)
	tid := g.Input("time_ids", build.Float, B, zoo.SDXLTimeIDs)
	w := make([]float32, zoo.SDXLLatentCh*zoo.SDXLUNetIn)
	for o := range zoo.SDXLLatentCh {
		w[o*zoo.SDXLUNetIn+o] = 1
	}
	conv := g.Op("Conv", []string{sample, g.Init("w", []int64{zoo.SDXLLatentCh, zoo.SDXLUNetIn, 1, 1}, w)})
	dep := ts
	for _, x := range []string{sample, ehs, te, tid} {
		dep = g.Add(dep, g.Op("ReduceMean", []string{x}, build.Int("keepdims", 0)))
	}
	g.Identity(g.Add(conv, zoo.Stall(g, dep, n)), "out_sample")
	g.Output("out_sample", build.Float, B, zoo.SDXLLatentCh, "height", "width")
	unet := filepath.Join(dir, "unet")
	if err := os.Remove(filepath.Join(unet, "model.onnx_data")); err != nil {
		t.Fatal(err)
	}
	if err := g.Save(filepath.Join(unet, "model.onnx")); err != nil {
		t.Fatal(err)
	}
}

// A cancelled job does not wait for the UNet step in flight: the run is terminated
// (ONNX Runtime's RunOptions) and Inpaint returns at once with the context's error.
// Waiting at the next step's check, as before, takes a whole step (seconds on a CPU
// for the real UNet).
func TestCancelCutsTheUNetRunShort(t *testing.T) {
	testenv.ORT(t)
	dir := exportDir(t, zoo.SDXLConfig{Seed: 5})
	slowUNet(t, dir, 150)
	p := open(t, dir)
	img, m := source(64, 64, 30, 30, 3)
	req := request(img, m, 1)
	req.Steps = 3 // strength 0.99: two denoising steps

	var at []time.Time
	if _, err := p.Inpaint(t.Context(), req, func(int, int) { at = append(at, time.Now()) }); err != nil {
		t.Fatal(err)
	}
	if len(at) != 2 {
		t.Fatalf("%d steps, want 2", len(at))
	}
	step := at[1].Sub(at[0]) // one UNet run and the Go side of one step
	if step < 100*time.Millisecond {
		t.Fatalf("a step of the slow UNet took %v: too fast to cancel inside", step)
	}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var cancelled time.Time
	steps := 0
	_, err := p.Inpaint(ctx, req, func(s, _ int) {
		steps = s
		if s == 1 { // the second step's UNet run starts now: cancel inside it
			time.AfterFunc(step/10, func() { cancelled = time.Now(); cancel() })
		}
	})
	cut := time.Since(cancelled)
	if !errors.Is(err, context.Canceled) || steps != 1 {
		t.Fatalf("cancelled inside step 2: err %v after %d steps; want context.Canceled after 1", err, steps)
	}
	t.Logf("a step takes %v; cancelled %v into step 2, returned %v later", step, step/10, cut)
	if cut > step/3 {
		t.Fatalf("Inpaint returned %v after the cancel; a whole step takes %v", cut, step)
	}
}
