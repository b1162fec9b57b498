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
	p, closeAll, err := openAugmentBench()
	if err != nil {
		return err
	}
	defer closeAll()
	img, mask := benchSource(224, 632)
	ab := augmentBench{p: p, ctx: context.Background(), req: sdxl.Request{Image: img, Mask: mask, Prompt: "white marks on the wall",
		NegativePrompt: "smooth, plain, black, dark, shadow", Steps: 30, Guidance: 20, Strength: 0.99,
		Padding: 2, WorkingSize: *size}}
	if _, err := ab.run(30, 0); err != nil { // warm-up: buffers, prompt cache
		return err
	}
	sum, err := ab.timeImages(*images, *prof)
	if err != nil {
		return err
	}
	step, err := ab.perStep()
	if err != nil {
		return err
	}
	reportAugment(*size, *budget, *images, sum, step)
	return nil
}

// openAugmentBench writes the SDXL inpainting stand-in models to a temp folder and opens
// them; closeAll closes the pipeline and removes the folder.
func openAugmentBench() (p *sdxl.Pipeline, closeAll func(), err error) {
	log := quietLog()
	if err := initORT(log); err != nil {
		return nil, nil, err
	}
	dir, err := os.MkdirTemp("", "bench-augment-")
	if err != nil {
		return nil, nil, err
	}
	cfg := zoo.SDXLConfig{Export: zoo.OptimumNew, Seed: 1}
	if _, err := os.Stat("../shared/data/clip-tokenizer/vocab.json"); err == nil {
		cfg.TokenizerDir = "../shared/data/clip-tokenizer"
	}
	if err := zoo.WriteSDXLInpaint(dir, cfg); err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	// One ORT thread: Run executes on the calling thread and no idle worker spins
	// against the Go side between calls.
	p, err = sdxl.Open(log, dir, ortenv.Options{Provider: ortenv.CPU, Threads: 1})
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	return p, func() { p.Close(); os.RemoveAll(dir) }, nil
}

// augmentBench runs one request's inpainting with other step counts and seeds.
type augmentBench struct {
	p   *sdxl.Pipeline
	ctx context.Context
	req sdxl.Request
}

// run inpaints the request with steps and seed, after a GC so that one image's garbage
// is not collected during the next.
func (ab augmentBench) run(steps int, seed uint64) (sdxl.Timing, error) {
	r := ab.req
	r.Steps, r.Seed = steps, seed
	runtime.GC()
	res, err := ab.p.Inpaint(ab.ctx, r, nil)
	return res.Timing, err
}

// timeImages sums the timings of n 30-step images (29 steps run), under a CPU profile
// written to prof when it is set.
func (ab augmentBench) timeImages(n int, prof string) (sdxl.Timing, error) {
	var sum sdxl.Timing
	if prof != "" {
		f, err := os.Create(prof)
		if err != nil {
			return sum, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return sum, err
		}
		defer pprof.StopCPUProfile()
	}
	for i := 0; i < n; i++ {
		t, err := ab.run(30, uint64(i+1))
		if err != nil {
			return sum, err
		}
		if t.Steps != 29 {
			return sum, fmt.Errorf("ran %d steps, want 29", t.Steps)
		}
		sum.Total += t.Total
		sum.Runs += t.Runs
		sum.CPU += t.CPU
		sum.RunsCPU += t.RunsCPU
	}
	return sum, nil
}

// augmentStep is one denoising step's Go-side cost.
type augmentStep struct {
	cpu   float64 // ns of CPU
	bytes float64 // bytes allocated
	large float64 // allocations of 32 KiB or more
}

// perStep measures one denoising step: its CPU as a 29-step image minus a 5-step one
// (so per-image work cancels), its allocations between the progress callbacks of steps
// 1 and 29 (exactly 28 steps).
func (ab augmentBench) perStep() (augmentStep, error) {
	// A 6-step request runs int(6·0.99) = 5 steps.
	long, err := ab.run(30, 100)
	if err != nil {
		return augmentStep{}, err
	}
	short, err := ab.run(6, 101)
	if err != nil {
		return augmentStep{}, err
	}
	if short.Steps != 5 {
		return augmentStep{}, fmt.Errorf("short run has %d steps, want 5", short.Steps)
	}
	perStepCPU := (float64(long.LoopCPU) - float64(short.LoopCPU)) / float64(long.Steps-short.Steps)
	var b1, l1, b29, l29 uint64
	r := ab.req
	r.Seed = 102
	if _, err := ab.p.Inpaint(ab.ctx, r, func(step, total int) {
		switch step {
		case 1:
			b1, l1 = allocStats()
		case total:
			b29, l29 = allocStats()
		}
	}); err != nil {
		return augmentStep{}, err
	}
	return augmentStep{cpu: perStepCPU, bytes: float64(b29-b1) / 28, large: float64(l29-l1) / 28}, nil
}

// reportAugment prints the per-image and per-step figures against the budget.
func reportAugment(size int, budget time.Duration, images int, sum sdxl.Timing, step augmentStep) {
	n := time.Duration(images)
	goCPU := sum.GoCPU() / n
	goWall := sum.GoSide() / n
	fmt.Printf("augment: SDXL inpainting, Go side, %d² working size, latents %d², CFG batch 2, 29 of 30 steps, %d CPUs (load %s)\n",
		size, size/8, runtime.NumCPU(), loadAvg())
	fmt.Printf("  per image: wall %v (ORT Run %v on stand-in models, Go %v); CPU: ORT %v, Go %v\n",
		(sum.Total / n).Round(time.Millisecond), (sum.Runs / n).Round(time.Millisecond), goWall.Round(time.Millisecond),
		(sum.RunsCPU / n).Round(time.Millisecond), goCPU.Round(time.Millisecond))
	fmt.Printf("  Go side / budget %v: CPU %.2f×, wall %.2f× (wall includes waiting for a CPU on a shared machine)\n",
		budget, float64(goCPU)/float64(budget), float64(goWall)/float64(budget))
	fmt.Printf("  per denoising step: Go CPU %.2f ms (denoising loop, 29-step minus 5-step image), %.0f B allocated, %.2f allocations ≥ 32 KiB\n",
		step.cpu/1e6, step.bytes, step.large)
	fmt.Printf("  29 steps' Go CPU / whole image's Go CPU: %.2f (the rest: resampling, VAE posterior, decode, paste-back)\n",
		step.cpu*29/float64(goCPU))
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
