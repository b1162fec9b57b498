package main

import (
	"flag"
	"fmt"
	"log/slog"
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
	sizes, err := batchSizes(*batches)
	if err != nil {
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
	if err := generateDetectModel(dir); err != nil {
		return err
	}
	rssStart := rss("VmRSS:")
	maxB := slices.Max(sizes)
	db, err := openDetectBench(log, dir, maxB)
	if err != nil {
		return err
	}
	defer db.close()
	frames, err := cameraFrames(maxB, *frameW, *frameH)
	if err != nil {
		return err
	}
	defer closeMats(frames)

	fmt.Printf("frames %dx%d → %dx%d, %d CPU cores, GOMAXPROCS %d, %d rounds\n\n", *frameW, *frameH, db.meta.Input.Width, db.meta.Input.Height,
		runtime.NumCPU(), runtime.GOMAXPROCS(0), *rounds)
	fmt.Printf("%-6s %16s %16s %8s %14s\n", "batch", "bare ORT ms/frm", "detect ms/frm", "ratio", "preproc ms/frm")
	for _, n := range sizes {
		row, err := db.measure(frames[:n], *rounds)
		if err != nil {
			return err
		}
		bm, om := slices.Min(row.bare), slices.Min(row.detect)
		fmt.Printf("%-6d %16.1f %16.1f %8.3f %14.2f   (rounds: bare %s, detect %s)\n", n, bm/1e6, om/1e6, om/bm,
			row.preproc/1e6, msList(row.bare), msList(row.detect))
	}
	fmt.Printf("\nRSS: %s at start, %s after loading detect's model, peak %s (with the bare session too; ResNet-50 weights are 90 MiB)\n",
		rssStart, db.rssModel, rss("VmHWM:"))
	return nil
}

// batchSizes parses --batches: a comma-separated list of sizes of at least 1.
func batchSizes(list string) ([]int, error) {
	var sizes []int
	for _, s := range strings.Split(list, ",") {
		var n int
		if _, err := fmt.Sscan(s, &n); err != nil || n < 1 {
			return nil, fmt.Errorf("--batches: bad size %q", s)
		}
		sizes = append(sizes, n)
	}
	return sizes, nil
}

// generateDetectModel writes a full-size ResNet-50 into dir, in a child process so that
// building the protobuf does not count in this process's peak RSS.
func generateDetectModel(dir string) error {
	fmt.Println("generating ResNet-50 704x256 (random weights) ...")
	gen := exec.Command(os.Args[0], "detect-gen-model", filepath.Join(dir, detect.ModelFile))
	gen.Stdout, gen.Stderr = os.Stderr, os.Stderr
	if err := gen.Run(); err != nil {
		return fmt.Errorf("generating the model: %w", err)
	}
	return nil
}

// detectBench holds the two sides: detect's model, and a bare ORT session of its own on
// the same file with the same options.
type detectBench struct {
	meta  detect.Metadata
	model *detect.Model
	bare  *ort.DynamicAdvancedSession
	pre   *detect.Preprocessor

	rssModel string // VmRSS after loading detect's model, before the bare session
}

// openDetectBench writes the model's metadata into dir and opens both sides for batches
// up to maxB.
func openDetectBench(log *slog.Logger, dir string, maxB int) (*detectBench, error) {
	db := &detectBench{meta: detect.DefaultMetadata("bench")}
	if err := detect.WriteMetadata(dir, db.meta); err != nil {
		return nil, err
	}
	sessOpts := ortenv.Options{Provider: ortenv.CPU}
	model, err := detect.LoadModel(log, dir, detect.Options{Session: sessOpts, MaxBatch: maxB, Workers: 1})
	if err != nil {
		return nil, err
	}
	db.rssModel = rss("VmRSS:")
	so, err := ortenv.SessionOptions(ortenv.CPU, sessOpts)
	if err != nil {
		model.Close()
		return nil, err
	}
	bare, err := ort.NewDynamicAdvancedSession(filepath.Join(dir, detect.ModelFile), []string{"input"}, []string{"logit"}, so)
	so.Destroy()
	if err != nil {
		model.Close()
		return nil, err
	}
	db.model, db.bare, db.pre = model, bare, detect.NewPreprocessor(db.meta.Input)
	return db, nil
}

func (db *detectBench) close() {
	db.pre.Close()
	db.bare.Destroy()
	db.model.Close()
}

// cameraFrames makes n camera-like frames: smooth gradients plus noise, decoded 8-bit BGR.
func cameraFrames(n, w, h int) ([]gocv.Mat, error) {
	r := rand.New(rand.NewPCG(1, 2))
	frames := make([]gocv.Mat, 0, n)
	for range n {
		b := make([]byte, h*w*3)
		for p := range b {
			b[p] = byte((p/3)%w/5 + r.IntN(40))
		}
		m, err := gocv.NewMatFromBytes(h, w, gocv.MatTypeCV8UC3, b)
		if err != nil {
			closeMats(frames)
			return nil, err
		}
		frames = append(frames, m)
	}
	return frames, nil
}

func closeMats(ms []gocv.Mat) {
	for _, m := range ms {
		m.Close()
	}
}

// detectRow is one batch size's figures, in ns per frame: each round's bare ORT Run and
// detect's Logits, and preprocessing one frame.
type detectRow struct {
	bare, detect []float64
	preproc      float64
}

// measure times one batch of frames: rounds alternate a bare Run on a tensor prepared
// once with detect's Logits on the frames, so drift hits both alike.
func (db *detectBench) measure(frames []gocv.Mat, rounds int) (detectRow, error) {
	n, in := len(frames), db.meta.Input
	data := make([]float32, n*db.pre.Size())
	for i := range n {
		if err := db.pre.Into(frames[i], data[i*db.pre.Size():(i+1)*db.pre.Size()]); err != nil {
			return detectRow{}, err
		}
	}
	inT, err := ort.NewTensor(ort.NewShape(int64(n), 3, int64(in.Height), int64(in.Width)), data)
	if err != nil {
		return detectRow{}, err
	}
	defer inT.Destroy()
	outT, err := ort.NewEmptyTensor[float32](ort.NewShape(int64(n), 1))
	if err != nil {
		return detectRow{}, err
	}
	defer outT.Destroy()
	logits := make([]float32, n)
	errs := make([]error, n)
	var row detectRow
	var runErr error
	for range rounds {
		b := testing.Benchmark(func(b *testing.B) {
			for b.Loop() {
				if err := db.bare.Run([]ort.Value{inT}, []ort.Value{outT}); err != nil {
					runErr = err
				}
			}
		})
		o := testing.Benchmark(func(b *testing.B) {
			for b.Loop() {
				if err := db.model.Logits(frames, logits, errs); err != nil {
					runErr = err
				}
			}
		})
		row.bare = append(row.bare, float64(b.NsPerOp())/float64(n))
		row.detect = append(row.detect, float64(o.NsPerOp())/float64(n))
	}
	pb := testing.Benchmark(func(b *testing.B) {
		for b.Loop() {
			db.pre.Into(frames[0], data[:db.pre.Size()])
		}
	})
	row.preproc = float64(pb.NsPerOp())
	return row, runErr
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
