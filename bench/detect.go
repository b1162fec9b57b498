package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	ort "github.com/yalue/onnxruntime_go"
	"gocv.io/x/gocv"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/onnx/zoo"
	"github.com/diagd/diagd/internal/ortenv"
)

func init() {
	register("detect", benchDetect)
	register("detect-gen-model", func(args []string) error { return zoo.WriteResNet(zoo.ResNet50(1), args[0]) })
}

// benchDetect: per-frame time through detect (decoded 1280×1024 8-bit frame → score) on a
// full-size ResNet-50 at 704×256, against a bare ORT Run on an already-prepared tensor in
// the same process, at batch 1 and 8. Rounds alternate the two so drift hits both alike.
func benchDetect(args []string) error {
	fs := flag.NewFlagSet("detect", flag.ContinueOnError)
	rounds := fs.Int("rounds", 5, "alternating measurement rounds (the fastest of each side is reported: other load on the machine only ever adds time)")
	frameW := fs.Int("frame-width", 1280, "camera frame width")
	frameH := fs.Int("frame-height", 1024, "camera frame height")
	batches := fs.String("batches", "1,8", "batch sizes")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := quietLog()
	if err := initORT(log); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "diagd-bench-detect-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// Generated in a child process, so that building the protobuf does not count in
	// this process's peak RSS.
	fmt.Println("generating ResNet-50 704x256 (random weights) ...")
	gen := exec.Command(os.Args[0], "detect-gen-model", filepath.Join(dir, detect.ModelFile))
	gen.Stdout, gen.Stderr = os.Stderr, os.Stderr
	if err := gen.Run(); err != nil {
		return fmt.Errorf("generating the model: %w", err)
	}
	rssStart := rss("VmRSS:")
	meta := detect.DefaultMetadata("bench")
	if err := detect.WriteMetadata(dir, meta); err != nil {
		return err
	}
	var sizes []int
	for _, s := range strings.Split(*batches, ",") {
		var n int
		if _, err := fmt.Sscan(s, &n); err != nil || n < 1 {
			return fmt.Errorf("--batches: bad size %q", s)
		}
		sizes = append(sizes, n)
	}
	maxB := 0
	for _, n := range sizes {
		maxB = max(maxB, n)
	}
	sessOpts := ortenv.Options{Provider: ortenv.CPU}
	model, err := detect.LoadModel(log, dir, detect.Options{Session: sessOpts, MaxBatch: maxB, Workers: 1})
	if err != nil {
		return err
	}
	defer model.Close()
	rssModel := rss("VmRSS:")

	// Bare ORT: a session of its own with the same options and a tensor prepared once.
	so, err := ortenv.SessionOptions(ortenv.CPU, sessOpts)
	if err != nil {
		return err
	}
	bare, err := ort.NewDynamicAdvancedSession(filepath.Join(dir, detect.ModelFile), []string{"input"}, []string{"logit"}, so)
	so.Destroy()
	if err != nil {
		return err
	}
	defer bare.Destroy()

	// Camera-like frames: smooth gradients plus noise, decoded 8-bit BGR.
	r := rand.New(rand.NewPCG(1, 2))
	frames := make([]gocv.Mat, maxB)
	for i := range frames {
		b := make([]byte, *frameH**frameW*3)
		for p := range b {
			b[p] = byte((p/3)%*frameW/5 + r.IntN(40))
		}
		if frames[i], err = gocv.NewMatFromBytes(*frameH, *frameW, gocv.MatTypeCV8UC3, b); err != nil {
			return err
		}
		defer frames[i].Close()
	}
	pre := detect.NewPreprocessor(meta.Input)
	defer pre.Close()

	fmt.Printf("frames %dx%d → %dx%d, %d CPU cores, GOMAXPROCS %d, %d rounds\n\n", *frameW, *frameH, meta.Input.Width, meta.Input.Height,
		runtime.NumCPU(), runtime.GOMAXPROCS(0), *rounds)
	fmt.Printf("%-6s %16s %16s %8s %14s\n", "batch", "bare ORT ms/frm", "detect ms/frm", "ratio", "preproc ms/frm")
	for _, n := range sizes {
		data := make([]float32, n*pre.Size())
		for i := range n {
			if err := pre.Into(frames[i], data[i*pre.Size():(i+1)*pre.Size()]); err != nil {
				return err
			}
		}
		in, err := ort.NewTensor(ort.NewShape(int64(n), 3, int64(meta.Input.Height), int64(meta.Input.Width)), data)
		if err != nil {
			return err
		}
		out, err := ort.NewEmptyTensor[float32](ort.NewShape(int64(n), 1))
		if err != nil {
			return err
		}
		logits := make([]float32, n)
		errs := make([]error, n)
		var bareT, oursT []float64
		var runErr error
		for range *rounds {
			b := testing.Benchmark(func(b *testing.B) {
				for b.Loop() {
					if err := bare.Run([]ort.Value{in}, []ort.Value{out}); err != nil {
						runErr = err
					}
				}
			})
			o := testing.Benchmark(func(b *testing.B) {
				for b.Loop() {
					if err := model.Logits(frames[:n], logits, errs); err != nil {
						runErr = err
					}
				}
			})
			bareT = append(bareT, float64(b.NsPerOp())/float64(n))
			oursT = append(oursT, float64(o.NsPerOp())/float64(n))
		}
		pb := testing.Benchmark(func(b *testing.B) {
			for b.Loop() {
				pre.Into(frames[0], data[:pre.Size()])
			}
		})
		in.Destroy()
		out.Destroy()
		if runErr != nil {
			return runErr
		}
		bm, om := slices.Min(bareT), slices.Min(oursT)
		fmt.Printf("%-6d %16.1f %16.1f %8.3f %14.2f   (rounds: bare %s, detect %s)\n", n, bm/1e6, om/1e6, om/bm,
			float64(pb.NsPerOp())/1e6, msList(bareT), msList(oursT))
	}
	fmt.Printf("\nRSS: %s at start, %s after loading detect's model, peak %s (with the bare session too; ResNet-50 weights are 90 MiB)\n",
		rssStart, rssModel, rss("VmHWM:"))
	return nil
}

func msList(v []float64) string {
	var b strings.Builder
	for i, x := range v {
		if i > 0 {
			b.WriteByte('/')
		}
		fmt.Fprintf(&b, "%.0f", x/1e6)
	}
	return b.String()
}

// rss reads a memory line (VmRSS: now, VmHWM: peak) from /proc/self/status.
func rss(key string) string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, key) {
			return strings.TrimSpace(strings.TrimPrefix(l, key))
		}
	}
	return "unknown"
}
