package main

import (
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/ortenv"
)

func init() { register("detect-providers", benchDetectProviders) }

// benchDetectProviders: frames/s through detect (decoded 1280×1024 frame → score) on a
// full-size ResNet-50 at 704×256, batch 8, on each execution provider in turn, against
// the CPU provider in the same process; also the largest score difference from CPU on
// the same frames (TensorRT float16 and CUDA's TF32 convolutions round differently) and
// the load time (a TensorRT engine build on the first load; later loads hit the cache).
// Prints one RESULT line per provider for scripts/device-check.sh.
func benchDetectProviders(args []string) error {
	fs := flag.NewFlagSet("detect-providers", flag.ContinueOnError)
	list := fs.String("providers", "cpu,cuda,tensorrt,tensorrt-fp16", "providers in order; tensorrt-fp16 is TensorRT with DIAGD_TRT_FP16")
	batch := fs.Int("batch", 8, "frames per call")
	secs := fs.Duration("time", 5*time.Second, "measuring time per provider")
	cache := fs.String("trt-cache", "", "TensorRT engine cache (default: a temp folder, so engines are built here)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := quietLog()
	if err := initORT(log); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "diagd-bench-detect-gpu-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if *cache == "" {
		*cache = filepath.Join(dir, "trt")
	}
	gen := exec.Command(os.Args[0], "detect-gen-model", filepath.Join(dir, detect.ModelFile))
	gen.Stdout, gen.Stderr = os.Stderr, os.Stderr
	if err := gen.Run(); err != nil {
		return fmt.Errorf("generating the model: %w", err)
	}
	if err := detect.WriteMetadata(dir, detect.DefaultMetadata("bench")); err != nil {
		return err
	}
	frames, err := cameraFrames(*batch, 1280, 1024)
	if err != nil {
		return err
	}
	defer func() {
		for _, f := range frames {
			f.Close()
		}
	}()
	var cpuFPS float64
	var cpuScores []float64
	for _, name := range strings.Split(*list, ",") {
		o := ortenv.Options{TRTCacheDir: *cache}
		p, fp16 := strings.CutSuffix(strings.TrimSpace(name), "-fp16")
		if o.Provider, err = ortenv.ParseProvider(p); err != nil {
			return err
		}
		o.TRTFP16 = fp16
		fps, scores, load, err := detectFPS(dir, o, frames, *secs)
		if err != nil {
			fmt.Printf("RESULT detect provider=%s skipped=%q\n", name, err.Error())
			continue
		}
		if o.Provider == ortenv.CPU {
			cpuFPS, cpuScores = fps, scores
		}
		d := math.NaN()
		if cpuScores != nil {
			d = 0
			for i := range scores {
				d = max(d, math.Abs(scores[i]-cpuScores[i]))
			}
		}
		ratio := math.NaN()
		if cpuFPS > 0 {
			ratio = fps / cpuFPS
		}
		fmt.Printf("RESULT detect provider=%s fps=%.1f vs_cpu=%.2f load_s=%.1f max_dscore_vs_cpu=%.2g batch=%d\n",
			name, fps, ratio, load.Seconds(), d, *batch)
	}
	return nil
}

// detectFPS loads the model on one provider (explicitly: a missing provider is an
// error, not a silent CPU fallback) and judges the frames for about d.
func detectFPS(dir string, o ortenv.Options, frames []gocv.Mat, d time.Duration) (fps float64, scores []float64, load time.Duration, err error) {
	start := time.Now()
	m, err := detect.LoadModel(quietLog(), dir, detect.Options{Session: o, MaxBatch: len(frames), Workers: 1})
	if err != nil {
		return 0, nil, 0, err
	}
	defer m.Close()
	logits, errs := make([]float32, len(frames)), make([]error, len(frames))
	for range 3 { // warm-up: first calls allocate and autotune
		if err := m.Logits(frames, logits, errs); err != nil {
			return 0, nil, 0, err
		}
	}
	load = time.Since(start)
	n := 0
	start = time.Now()
	for time.Since(start) < d {
		if err := m.Logits(frames, logits, errs); err != nil {
			return 0, nil, 0, err
		}
		n += len(frames)
	}
	fps = float64(n) / time.Since(start).Seconds()
	for _, l := range logits {
		scores = append(scores, detect.Sigmoid(l))
	}
	return fps, scores, load, nil
}
