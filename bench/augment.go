package main

import (
	"context"
	"flag"
	"fmt"
	"image"
	"math"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/diagd/diagd/augment/sdxl"
	"github.com/diagd/diagd/internal/onnx/zoo"
	"github.com/diagd/diagd/internal/ortenv"
)

func init() { register("augment", benchAugment) }

// benchAugment measures the Go side of SDXL inpainting — preprocessing, posterior
// sampling, building the UNet input, CFG, Euler steps, decoding to pixels, paste-back —
// at DIAG's real sizes (224×632 source, 1024² working size, 128² latents, CFG batch 2,
// 30 steps of which 29 run) on stand-in models, excluding ONNX Runtime's Run calls. The
// budget ratio uses CPU time, since wall time on a shared machine includes waiting for a
// CPU. Per-step figures are a 29-step image minus a 5-step one, so per-image buffers do
// not count.
func benchAugment(args []string) error {
	fs := flag.NewFlagSet("augment", flag.ContinueOnError)
	size := fs.Int("size", sdxl.DefaultWorkingSize, "working size")
	images := fs.Int("images", 3, "timed images")
	budget := fs.Duration("budget", 300*time.Millisecond, "Go-side budget per image")
	prof := fs.String("cpuprofile", "", "write a CPU profile of the timed images")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := quietLog()
	if err := initORT(log); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "bench-augment-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg := zoo.SDXLConfig{Export: zoo.OptimumNew, Seed: 1}
	if _, err := os.Stat("../shared/data/clip-tokenizer/vocab.json"); err == nil {
		cfg.TokenizerDir = "../shared/data/clip-tokenizer"
	}
	if err := zoo.WriteSDXLInpaint(dir, cfg); err != nil {
		return err
	}
	// One ORT thread: Run executes on the calling thread and no idle worker spins
	// against the Go side between calls.
	p, err := sdxl.Open(log, dir, ortenv.Options{Provider: ortenv.CPU, Threads: 1})
	if err != nil {
		return err
	}
	defer p.Close()

	img, mask := benchSource(224, 632)
	req := sdxl.Request{Image: img, Mask: mask, Prompt: "white marks on the wall",
		NegativePrompt: "smooth, plain, black, dark, shadow", Steps: 30, Guidance: 20, Strength: 0.99,
		Padding: 2, WorkingSize: *size}
	ctx := context.Background()
	type sample struct{ t sdxl.Timing }
	run := func(steps int, seed uint64) (sample, error) {
		r := req
		r.Steps, r.Seed = steps, seed
		runtime.GC()
		res, err := p.Inpaint(ctx, r, nil)
		return sample{res.Timing}, err
	}
	if _, err := run(30, 0); err != nil { // warm-up: buffers, prompt cache
		return err
	}
	if *prof != "" {
		f, err := os.Create(*prof)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
	}
	var sum sdxl.Timing
	for i := 0; i < *images; i++ {
		s, err := run(30, uint64(i+1))
		if err != nil {
			return err
		}
		if s.t.Steps != 29 {
			return fmt.Errorf("ran %d steps, want 29", s.t.Steps)
		}
		sum.Total += s.t.Total
		sum.Runs += s.t.Runs
		sum.CPU += s.t.CPU
		sum.RunsCPU += s.t.RunsCPU
	}
	if *prof != "" {
		pprof.StopCPUProfile()
	}
	n := time.Duration(*images)
	// A 6-step request runs int(6·0.99) = 5 steps.
	long, err := run(30, 100)
	if err != nil {
		return err
	}
	short, err := run(6, 101)
	if err != nil {
		return err
	}
	if short.t.Steps != 5 {
		return fmt.Errorf("short run has %d steps, want 5", short.t.Steps)
	}
	perStepCPU := (float64(long.t.LoopCPU) - float64(short.t.LoopCPU)) / float64(long.t.Steps-short.t.Steps)
	// Allocations between the progress callbacks of steps 1 and 29: exactly 28 steps.
	var b1, l1, b29, l29 uint64
	r := req
	r.Seed = 102
	if _, err := p.Inpaint(ctx, r, func(step, total int) {
		switch step {
		case 1:
			b1, l1 = allocStats()
		case total:
			b29, l29 = allocStats()
		}
	}); err != nil {
		return err
	}
	perStepBytes := float64(b29-b1) / 28
	perStepLarge := float64(l29-l1) / 28
	goCPU := sum.GoCPU() / n
	goWall := sum.GoSide() / n

	fmt.Printf("augment: SDXL inpainting, Go side, %d² working size, latents %d², CFG batch 2, 29 of 30 steps, %d CPUs (load %s)\n",
		*size, *size/8, runtime.NumCPU(), loadAvg())
	fmt.Printf("  per image: wall %v (ORT Run %v on stand-in models, Go %v); CPU: ORT %v, Go %v\n",
		(sum.Total / n).Round(time.Millisecond), (sum.Runs / n).Round(time.Millisecond), goWall.Round(time.Millisecond),
		(sum.RunsCPU / n).Round(time.Millisecond), goCPU.Round(time.Millisecond))
	fmt.Printf("  Go side / budget %v: CPU %.2f×, wall %.2f× (wall includes waiting for a CPU on a shared machine)\n",
		*budget, float64(goCPU)/float64(*budget), float64(goWall)/float64(*budget))
	fmt.Printf("  per denoising step: Go CPU %.2f ms (denoising loop, 29-step minus 5-step image), %.0f B allocated, %.2f allocations ≥ 32 KiB\n",
		perStepCPU/1e6, perStepBytes, perStepLarge)
	fmt.Printf("  29 steps' Go CPU / whole image's Go CPU: %.2f (the rest: resampling, VAE posterior, decode, paste-back)\n",
		perStepCPU*29/float64(goCPU))
	return nil
}

// allocStats reads cumulative heap bytes allocated (ReadMemStats flushes the per-P
// caches, so it is exact) and the number of allocations of 32 KiB or more (tensor-sized
// ones) from runtime/metrics.
func allocStats() (bytes, large uint64) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	bytes = ms.TotalAlloc
	s := []metrics.Sample{{Name: "/gc/heap/allocs-by-size:bytes"}}
	metrics.Read(s)
	h := s[0].Value.Float64Histogram()
	for i, c := range h.Counts {
		if h.Buckets[i] >= 32<<10 {
			large += c
		}
	}
	return bytes, large
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "unknown"
}

// benchSource is a 224×632 textured negative with an elongated defect, like KSDD2's.
func benchSource(w, h int) (*image.RGBA, *image.Gray) {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	mask := image.NewGray(img.Rect)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			i := 4 * (y*w + x)
			v := uint8(110 + 30*math.Sin(float64(x*y%97)/9))
			img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = v, v, v, 255
			if d := math.Hypot(float64(x-110)/6, float64(y-300)/60); d < 1 {
				mask.Pix[y*w+x] = 255
			}
		}
	}
	return img, mask
}
