package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/diagd/diagd/augment/sdxl"
	"github.com/diagd/diagd/internal/onnx/zoo"
	"github.com/diagd/diagd/internal/ortenv"
)

func init() { register("sdxlreal", benchSDXLReal) }

// benchSDXLReal times whole SDXL-inpainting images on the real-size stand-in (2.567 B
// UNet, random weights: speed and memory are the real model's, the pictures are not) at
// the paper's settings: 224×632 source, 1024² working size, CFG batch 2, strength 0.99.
// A short warm-up image first pays the one-off costs (CUDA kernel autotuning, a TensorRT
// engine build). The baseline is in the same call: the time inside ONNX Runtime's Run
// calls against the whole image, so "go side" is what diagd adds. It prints one
// "RESULT" line for scripts/device-check.sh.
func benchSDXLReal(args []string) error {
	fs := flag.NewFlagSet("sdxlreal", flag.ContinueOnError)
	provider := fs.String("provider", "cpu", "cpu, cuda or tensorrt")
	fp16 := fs.Bool("fp16", false, "a float16 export (as optimum --dtype fp16)")
	trtFP16 := fs.Bool("trt-fp16", false, "TensorRT float16 kernels")
	size := fs.Int("size", sdxl.DefaultWorkingSize, "working size")
	steps := fs.Int("steps", 30, "scheduler steps (strength 0.99 runs one fewer)")
	warmup := fs.Int("warmup-steps", 2, "steps of the warm-up image (0: none)")
	images := fs.Int("images", 1, "timed images")
	dir := fs.String("dir", "", "folder for the generated export, reused when complete (default: a folder in $TMPDIR per dtype)")
	prepare := fs.Bool("prepare", false, "only write (or find) the export, then stop")
	unetOnly := fs.Bool("unet-only", false, "only time bare UNet Run calls at the working size, CFG batch 2 (float32 export; loads the UNet alone, so it fits where the whole pipeline does not)")
	narrow := fs.Bool("narrow", false, "smoke run: the real UNet and VAE graphs narrowed, small text encoders (seconds, not the real speed)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	prov, err := ortenv.ParseProvider(*provider)
	if err != nil {
		return err
	}
	dtype := map[bool]string{false: "fp32", true: "fp16"}[*fp16]
	if *dir == "" {
		*dir = filepath.Join(os.TempDir(), "diagd-sdxl-real-"+dtype)
	}
	log := quietLog()
	if err := initORT(log); err != nil {
		return err
	}
	start := time.Now()
	reused := false
	if *narrow {
		*dir, err = os.MkdirTemp("", "diagd-sdxl-narrow-")
		if err == nil {
			defer os.RemoveAll(*dir)
			err = zoo.WriteSDXLNarrow(*dir, zoo.SDXLConfig{FP16: *fp16, Seed: 1})
		}
	} else {
		reused, err = zoo.EnsureSDXLReal(*dir, zoo.RealSDXL(), zoo.SDXLConfig{FP16: *fp16, Seed: 1}, progressPrinter())
	}
	if err != nil {
		return err
	}
	fmt.Printf("export %s: %v (reused %v)\n", *dir, time.Since(start).Round(time.Second), reused)
	if *prepare {
		return nil
	}
	if *unetOnly {
		return bareUNetSteps(filepath.Join(*dir, "unet", "model.onnx"), ortenv.Options{Provider: prov, TRTFP16: *trtFP16}, *size, *fp16)
	}
	start = time.Now()
	p, err := sdxl.Open(log, *dir, ortenv.Options{Provider: prov, TRTFP16: *trtFP16})
	if err != nil {
		return err
	}
	defer p.Close()
	opened := time.Since(start)
	fmt.Printf("sessions open on %s: %v\n", prov, opened.Round(time.Millisecond))
	img, mask := benchSource(224, 632)
	req := sdxl.Request{Image: img, Mask: mask, Prompt: "white marks on the wall",
		NegativePrompt: "smooth, plain, black, dark, shadow", Steps: *warmup, Guidance: 20, Strength: 0.99,
		Padding: 2, WorkingSize: *size, Seed: 1}
	ctx := context.Background()
	if *warmup > 0 {
		w := req
		w.Strength = 1 // every one of the warm-up steps runs
		r, err := p.Inpaint(ctx, w, nil)
		if err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
		fmt.Printf("warm-up image (%d steps): %v\n", r.Timing.Steps, r.Timing.Total.Round(time.Millisecond))
	}
	req.Steps = *steps
	var totals, runs, stepTimes []time.Duration
	ran := 0
	for i := range *images {
		req.Seed = uint64(2 + i)
		var at []time.Time
		r, err := p.Inpaint(ctx, req, func(int, int) { at = append(at, time.Now()) })
		if err != nil {
			return err
		}
		totals, runs, ran = append(totals, r.Timing.Total), append(runs, r.Timing.Runs), r.Timing.Steps
		for k := 1; k < len(at); k++ {
			stepTimes = append(stepTimes, at[k].Sub(at[k-1]))
		}
	}
	tot, run, step := median(totals), median(runs), median(stepTimes)
	fmt.Printf("per image: %v (%d steps); inside ONNX Runtime %v; go side %.2f%%; per step %v\n",
		tot.Round(time.Millisecond), ran, run.Round(time.Millisecond), 100*float64(tot-run)/float64(tot), step.Round(time.Millisecond))
	fmt.Printf("RESULT sdxlreal provider=%s dtype=%s size=%d steps=%d s_per_image=%.2f s_per_step=%.3f ort_share=%.3f open_s=%.1f peak_rss=%q\n",
		prov, dtype, *size, ran, tot.Seconds(), step.Seconds(), float64(run)/float64(tot), opened.Seconds(), rss("VmHWM:"))
	return nil
}

// progressPrinter reports export writing every few seconds on stderr.
func progressPrinter() func(part string, done, total int64) {
	last := time.Now()
	return func(part string, done, total int64) {
		if time.Since(last) > 5*time.Second || done == total {
			last = time.Now()
			fmt.Fprintf(os.Stderr, "writing %s: %.2f / %.2f GB\n", part, float64(done)/1e9, float64(total)/1e9)
		}
	}
}

// bareUNetSteps times UNet Run calls on prepared tensors at the working size with the
// CFG batch of 2: one denoising step's network cost with nothing of diagd around it.
func bareUNetSteps(path string, o ortenv.Options, size int, fp16 bool) error {
	if fp16 {
		return fmt.Errorf("-unet-only needs the float32 export (a float16 UNet's rank-0 float16 timestep is fed by augment/sdxl's rewrite)")
	}
	start := time.Now()
	s, err := ortenv.OpenSession(quietLog(), path, []string{"sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids"},
		[]string{"out_sample"}, o)
	if err != nil {
		return err
	}
	defer s.Destroy()
	opened := time.Since(start)
	lat := int64(size / 8)
	fill := func(shape ort.Shape) *ort.Tensor[float32] {
		v := make([]float32, shape.FlattenedSize())
		for i := range v {
			v[i] = float32(i%17)/17 - 0.5
		}
		t, err := ort.NewTensor(shape, v)
		if err != nil {
			panic(err) // shapes are fixed here
		}
		return t
	}
	ts, err := ort.NewScalar(float32(981))
	if err != nil {
		return err
	}
	in := []ort.Value{fill(ort.NewShape(2, 9, lat, lat)), ts, fill(ort.NewShape(2, 77, 2048)), fill(ort.NewShape(2, 1280)), fill(ort.NewShape(2, 6))}
	out := []ort.Value{fill(ort.NewShape(2, 4, lat, lat))}
	defer func() {
		for _, v := range append(in, out...) {
			v.Destroy()
		}
	}()
	var steps, cpu []time.Duration
	for i := range 2 {
		t, c := time.Now(), cpuTime()
		if err := s.Run(in, out); err != nil {
			return err
		}
		steps, cpu = append(steps, time.Since(t)), append(cpu, cpuTime()-c)
		fmt.Printf("UNet step %d (%d², batch 2): %v wall, %v CPU (peak RSS so far %s)\n", i+1, size,
			steps[i].Round(time.Millisecond), cpu[i].Round(time.Millisecond), rss("VmHWM:"))
	}
	fmt.Printf("RESULT sdxlreal-unet provider=%s size=%d open_s=%.1f first_step_s=%.2f step_s=%.2f step_cpu_s=%.2f peak_rss=%q\n",
		s.Provider, size, opened.Seconds(), steps[0].Seconds(), steps[1].Seconds(), cpu[1].Seconds(), rss("VmHWM:"))
	return nil
}
