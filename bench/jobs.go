package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/onnx/zoo"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/internal/threadprio"
)

func init() { register("jobs", benchJobs) }

// benchJobs: how much a daemon job slows frame judging. The judge (ORT threads = one
// per core, batch 1) runs alone, then beside a job doing ORT work (one intra-op
// thread, batch 8: what the retraining job's feature extraction does) at normal
// priority, then beside the same job on a thread niced by threadprio.Lower, the call
// the daemon's job runner makes. Rounds alternate the three so drift hits all alike;
// medians are reported with the judge's throughput relative to alone.
func benchJobs(args []string) error {
	fs := flag.NewFlagSet("jobs", flag.ContinueOnError)
	rounds := fs.Int("rounds", 3, "alternating rounds")
	phase := fs.Duration("phase", 2*time.Second, "measuring time per condition and round")
	size := fs.Int("size", 224, "model input height and width (SmallResNet)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := quietLog()
	if err := initORT(log); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "diagd-bench-jobs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := zoo.WriteResNet(zoo.SmallResNet(*size, *size, 1), filepath.Join(dir, detect.ModelFile)); err != nil {
		return err
	}
	meta := detect.DefaultMetadata("bench")
	meta.Input.Height, meta.Input.Width = *size, *size
	if err := detect.WriteMetadata(dir, meta); err != nil {
		return err
	}
	judge, err := detect.LoadModel(log, dir, detect.Options{Session: ortenv.Options{Provider: ortenv.CPU}, MaxBatch: 1, Workers: 1})
	if err != nil {
		return err
	}
	defer judge.Close()
	job, err := detect.LoadModel(log, dir, detect.Options{Session: ortenv.Options{Provider: ortenv.CPU, Threads: 1}, MaxBatch: 8, Workers: 1})
	if err != nil {
		return err
	}
	defer job.Close()
	frame := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(120, 130, 140, 0), *size, *size, gocv.MatTypeCV8UC3)
	defer frame.Close()
	frames8 := slices.Repeat([]gocv.Mat{frame}, 8)

	// run judges for d beside a job (none, normal, niced); it returns judge frames/s and
	// job images/s.
	run := func(d time.Duration, jobMode string) (float64, float64, error) {
		var stop atomic.Bool
		var jobImgs atomic.Int64
		var wg sync.WaitGroup
		var jobErr error
		if jobMode != "none" {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if jobMode == "niced" {
					// The daemon's own call: locks this goroutine to its thread, nice 10.
					if err := threadprio.Lower(); err != nil {
						jobErr = err
						return
					}
				} else {
					runtime.LockOSThread() // as the daemon's job goroutine, at normal priority
				}
				out := make([]float32, 8)
				errs := make([]error, 8)
				for !stop.Load() {
					if err := job.Logits(frames8, out, errs); err != nil {
						jobErr = err
						return
					}
					jobImgs.Add(8)
				}
			}()
			time.Sleep(100 * time.Millisecond) // the job is up to speed
		}
		out := make([]float32, 1)
		errs := make([]error, 1)
		one := []gocv.Mat{frame}
		n := 0
		start := time.Now()
		jobStart := jobImgs.Load()
		for time.Since(start) < d {
			if err := judge.Logits(one, out, errs); err != nil {
				return 0, 0, err
			}
			n++
		}
		el := time.Since(start).Seconds()
		jobDone := jobImgs.Load() - jobStart
		stop.Store(true)
		wg.Wait()
		return float64(n) / el, float64(jobDone) / el, jobErr
	}
	modes := []string{"none", "normal", "niced"}
	judgeFPS := map[string][]float64{}
	jobIPS := map[string][]float64{}
	if _, _, err := run(*phase/4, "none"); err != nil { // warm-up
		return err
	}
	for r := range *rounds {
		for _, m := range modes {
			f, j, err := run(*phase, m)
			if err != nil {
				return err
			}
			judgeFPS[m] = append(judgeFPS[m], f)
			jobIPS[m] = append(jobIPS[m], j)
			fmt.Printf("round %d %-6s judge %7.1f frames/s  job %7.1f images/s\n", r+1, m, f, j)
		}
	}
	med := func(v []float64) float64 { s := slices.Clone(v); slices.Sort(s); return s[len(s)/2] }
	base := med(judgeFPS["none"])
	fmt.Printf("\nSmallResNet %dx%d, %d CPUs, judge batch 1 (ORT threads = CPUs), job batch 8 (1 ORT thread); medians of %d rounds:\n",
		*size, *size, runtime.NumCPU(), *rounds)
	for _, m := range modes {
		fmt.Printf("  job %-6s judge %7.1f frames/s (%.2fx alone)  job %7.1f images/s\n", m, med(judgeFPS[m]), med(judgeFPS[m])/base, med(jobIPS[m]))
	}
	return nil
}
