package main

import (
	"context"
	"flag"
	"fmt"
	"image"
	"image/color"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"time"

	ort "github.com/yalue/onnxruntime_go"
	"gocv.io/x/gocv"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/onnx/zoo"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/retrain/dataset"
	"github.com/diagd/diagd/retrain/features"
	"github.com/diagd/diagd/retrain/head"
	"github.com/diagd/diagd/retrain/metrics"
	"github.com/diagd/diagd/retrain/rtest"
)

func init() { register("train", benchTrain) }

// benchTrain measures head training and feature extraction against outside baselines:
//
//   - head training at the paper's scale (2,200 feature vectors, 2048 wide, ~1 in 22 a
//     defect that shifts a few dozen channels a little): the default recipe against an
//     outside standardised logistic regression fitted by Newton's method with gonum
//     (rtest.LogReg), on the same rows: time ratio, and AP on held-out rows for each and
//     for the paper's Adam recipe;
//   - with --data and --model, the same three on a real labelled set (e.g. the shared
//     magnetic-tile manifest): features of the base model (cached with --cache), the
//     hold-out split `diagd train` makes (stratified --val-fraction of each class,
//     --seed), AP on it;
//   - feature extraction (read, digest, decode, preprocess, ORT) against bare ORT on
//     already-preprocessed tensors: the ratio says how much of the backbone's speed the
//     pipeline keeps (target >= 0.9). The small stand-in network makes it decode-bound;
//     --resnet50 runs the full-size backbone, which is the case the target is about.
func benchTrain(args []string) error {
	fs := flag.NewFlagSet("train", flag.ContinueOnError)
	n := fs.Int("n", 2200, "feature vectors for head training")
	dim := fs.Int("dim", 2048, "feature width")
	baseline := fs.Bool("baseline", true, "also fit the outside Newton baseline (dense d×d Hessian: slow at 2048 wide)")
	data := fs.String("data", "", "labelled set for the AP comparison on real images (manifest .csv or any diagd train layout)")
	model := fs.String("model", "", "base model folder for --data (e.g. from diagd demo-model)")
	cache := fs.String("cache", "", "feature cache folder for --data")
	valFrac := fs.Float64("val-fraction", 0.2, "hold-out share for --data (as diagd train)")
	seed := fs.Uint64("seed", 0, "hold-out seed for --data (as diagd train)")
	images := fs.Int("images", 48, "images for the extraction comparison")
	resnet50 := fs.Bool("resnet50", false, "extract with a full-size ResNet-50 at 704x256 (slow on CPU)")
	skipExtract := fs.Bool("skip-extract", false, "only time head training")
	rounds := fs.Int("rounds", 2, "alternating rounds of pipeline and bare ORT; the best of each counts (the CPUs are shared)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *data != "" {
		return benchTrainData(*data, *model, *cache, *valFrac, *seed)
	}
	X, y := syntheticFeatures(*n, *dim)
	var tr, te []int
	for i := range X {
		if (i/22)%2 == 0 { // blocks of 22 rows, one defect each, alternate
			tr = append(tr, i)
		} else {
			te = append(te, i)
		}
	}
	fmt.Printf("head training, %d training and %d held-out vectors x %d:\n", len(tr), len(te), *dim)
	if err := compareHeads(rows(X, tr), pick(y, tr), rows(X, te), pick(y, te), *baseline); err != nil {
		return err
	}
	if *skipExtract {
		return nil
	}
	return benchExtract(*images, *resnet50, max(*rounds, 1))
}

// syntheticFeatures are ResNet-like features: non-negative (post-ReLU average pools);
// a defect (1 in 22) shifts every 64th channel by half a standard deviation.
func syntheticFeatures(n, dim int) ([][]float32, []bool) {
	rng := rand.New(rand.NewPCG(1, 2))
	X := make([][]float32, n)
	y := make([]bool, n)
	for i := range X {
		y[i] = i%22 == 0
		X[i] = make([]float32, dim)
		for j := range X[i] {
			v := rng.NormFloat64()*0.5 + 0.3
			if y[i] && j%64 == 0 {
				v += 0.25
			}
			X[i][j] = float32(max(v, 0))
		}
	}
	return X, y
}

func rows(X [][]float32, idx []int) [][]float32 {
	out := make([][]float32, len(idx))
	for k, i := range idx {
		out[k] = X[i]
	}
	return out
}

func pick(y []bool, idx []int) []bool {
	out := make([]bool, len(idx))
	for k, i := range idx {
		out[k] = y[i]
	}
	return out
}

// compareHeads fits the default recipe, the paper's Adam recipe and (optionally) the
// outside baseline on the training rows and prints time and held-out AP of each.
func compareHeads(X [][]float32, y []bool, Xv [][]float32, yv []bool, baseline bool) error {
	pos := 0
	for _, l := range y {
		if l {
			pos++
		}
	}
	pw := float64(len(y)-pos) / float64(pos)
	heldOut := func(score func([]float32) float64) float64 {
		s := make([]float64, len(Xv))
		for i, x := range Xv {
			s[i] = score(x)
		}
		return metrics.AveragePrecision(s, yv)
	}
	type result struct {
		name string
		secs float64
		ap   float64
		note string
	}
	var res []result
	for _, c := range []struct {
		name string
		cfg  head.Config
	}{{"default (logreg, CV)", head.Config{}}, {"paper (Adam 1e-4, 30 ep)", head.Config{Solver: head.Adam}}} {
		t0 := time.Now()
		h, err := head.Fit(context.Background(), X, y, nil, c.cfg, nil)
		if err != nil {
			return err
		}
		r := h.Report
		note := fmt.Sprintf("converged %v (%s, |grad| %.2g)", r.Converged, r.Status, r.GradNorm)
		if r.Solver == head.LogReg {
			note = fmt.Sprintf("λ %.3g by %d-fold CV, %s", r.Lambda, r.CVFolds, note)
		}
		res = append(res, result{c.name, time.Since(t0).Seconds(), heldOut(h.Logit), note})
	}
	if baseline {
		t0 := time.Now()
		f, err := rtest.LogReg(X, y, 1/float64(len(X)), pw)
		if err != nil {
			return err
		}
		res = append(res, result{"outside: Newton LR (C=1)", time.Since(t0).Seconds(), heldOut(f), "gonum Cholesky, λ = 1/n"})
	}
	for _, r := range res {
		fmt.Printf("  %-26s %8.2f s  held-out AP %.4f  %s\n", r.name, r.secs, r.ap, r.note)
	}
	if baseline {
		fmt.Printf("  default/outside: time ratio %.3f, AP difference %+.4f (budget: 60 s at this scale)\n",
			res[0].secs/res[2].secs, res[0].ap-res[2].ap)
	}
	return nil
}

// benchTrainData compares the recipes on a real labelled set's features, on the split
// diagd train makes in full-shot mode.
func benchTrainData(data, model, cache string, frac float64, seed uint64) error {
	if model == "" {
		return fmt.Errorf("--data needs --model (a base model folder)")
	}
	log := quietLog()
	if err := initORT(log); err != nil {
		return err
	}
	tr, va, name, err := fullShotSplit(data, frac, seed)
	if err != nil {
		return err
	}
	ex, err := features.Open(log, model, features.Options{Session: ortenv.Options{Provider: ortenv.CPU}, CacheDir: cache})
	if err != nil {
		return err
	}
	defer ex.Close()
	X, y, Xv, yv, err := extractSplit(ex, tr, va)
	if err != nil {
		return err
	}
	fmt.Printf("%s: full-shot, train %d images, validation %s: %d images (%d defects), features %d wide from %s\n",
		data, len(X), name, len(Xv), count(yv), len(X[0]), model)
	return compareHeads(X, y, Xv, yv, true)
}

// extractSplit returns the features and labels of a training and a validation set.
func extractSplit(ex *features.Extractor, tr, va *dataset.Set) (X [][]float32, y []bool, Xv [][]float32, yv []bool, err error) {
	if X, y, err = extractSet(ex, tr); err != nil {
		return
	}
	Xv, yv, err = extractSet(ex, va)
	return
}

// extractSet returns the features and labels of a set's readable images.
func extractSet(ex *features.Extractor, s *dataset.Set) ([][]float32, []bool, error) {
	res, err := ex.Extract(context.Background(), s.Items, nil)
	if err != nil {
		return nil, nil, err
	}
	var X [][]float32
	var y []bool
	for _, i := range res.OK() {
		X, y = append(X, res.Features[i]), append(y, s.Items[i].Label)
	}
	return X, y, nil
}

func count(y []bool) int {
	n := 0
	for _, l := range y {
		if l {
			n++
		}
	}
	return n
}

func benchExtract(nImages int, resnet50 bool, rounds int) error {
	log := quietLog()
	if err := initORT(log); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "bench-train-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg := zoo.SmallResNet(704, 256, 1)
	if resnet50 {
		cfg = zoo.ResNet50(1)
	}
	mdir, items, err := extractInputs(dir, cfg, nImages)
	if err != nil {
		return err
	}
	so := ortenv.Options{Provider: ortenv.CPU, Threads: runtime.NumCPU()}
	const batch = 8
	pipeOnce, closePipe, err := pipelineRun(log, mdir, items, so, batch)
	if err != nil {
		return err
	}
	defer closePipe()
	bareOnce, closeBare, err := bareRun(log, mdir, (len(items)+batch-1)/batch, so, batch)
	if err != nil {
		return err
	}
	defer closeBare()
	var pipe, bare float64
	for range rounds {
		b, err := bareOnce()
		if err != nil {
			return err
		}
		p, err := pipeOnce()
		if err != nil {
			return err
		}
		bare, pipe = max(bare, b), max(pipe, p)
	}
	fmt.Printf("feature extraction (%s, 704x256, batch %d, %d KSDD2-sized PNGs): pipeline %.1f img/s, bare ORT %.1f img/s, ratio %.3f (target >= 0.9 for ResNet-50)\n",
		cfg.Name, batch, len(items), pipe, bare, pipe/bare)
	return nil
}

// extractInputs writes the model folder and KSDD2-sized frames (224×632) of textured grey.
func extractInputs(dir string, cfg zoo.ResNetConfig, n int) (string, []dataset.Item, error) {
	mdir := filepath.Join(dir, "model")
	os.MkdirAll(mdir, 0o755)
	if err := zoo.WriteResNet(cfg, filepath.Join(mdir, detect.ModelFile)); err != nil {
		return "", nil, err
	}
	meta := detect.DefaultMetadata("bench")
	meta.Architecture = cfg.Name
	if err := detect.WriteMetadata(mdir, meta); err != nil {
		return "", nil, err
	}
	rng := rand.New(rand.NewPCG(3, 4))
	var items []dataset.Item
	for i := range n {
		img := image.NewRGBA(image.Rect(0, 0, 224, 632))
		for p := 0; p < len(img.Pix); p += 4 {
			v := uint8(80 + rng.IntN(60))
			img.Pix[p], img.Pix[p+1], img.Pix[p+2], img.Pix[p+3] = v, v, v, 255
		}
		img.Set(10, 10, color.White)
		m, err := gocv.ImageToMatRGB(img)
		if err != nil {
			return "", nil, err
		}
		p := filepath.Join(dir, fmt.Sprintf("%05d.png", i))
		gocv.IMWrite(p, m)
		m.Close()
		items = append(items, dataset.Item{Path: p})
	}
	return mdir, items, nil
}

// pipelineRun returns a timed run of the feature extractor over items (images/s).
func pipelineRun(log *slog.Logger, mdir string, items []dataset.Item, so ortenv.Options, batch int) (func() (float64, error), func(), error) {
	ex, err := features.Open(log, mdir, features.Options{Session: so, Batch: batch})
	if err != nil {
		return nil, nil, err
	}
	// Warm-up (ORT allocates its arena on the first runs).
	if _, err := ex.Extract(context.Background(), items[:batch], nil); err != nil {
		ex.Close()
		return nil, nil, err
	}
	return func() (float64, error) {
		t0 := time.Now()
		res, err := ex.Extract(context.Background(), items, nil)
		if err != nil {
			return 0, err
		}
		if res.Failed > 0 {
			return 0, fmt.Errorf("%d images failed", res.Failed)
		}
		return float64(len(items)) / time.Since(t0).Seconds(), nil
	}, ex.Close, nil
}

// bareRun returns a timed run of the same model as a bare ORT session on an already
// preprocessed batch, runs times (images/s): the outside baseline.
func bareRun(log *slog.Logger, mdir string, runs int, so ortenv.Options, batch int) (func() (float64, error), func(), error) {
	sess, err := ortenv.OpenSession(log, filepath.Join(mdir, detect.ModelFile), []string{"input"}, []string{"features", "logit"}, so)
	if err != nil {
		return nil, nil, err
	}
	rng := rand.New(rand.NewPCG(5, 6))
	buf := make([]float32, batch*3*704*256)
	for i := range buf {
		buf[i] = float32(rng.NormFloat64())
	}
	in, err := ort.NewTensor(ort.NewShape(int64(batch), 3, 704, 256), buf)
	if err != nil {
		sess.Destroy()
		return nil, nil, err
	}
	closeAll := func() { in.Destroy(); sess.Destroy() }
	runOnce := func() error {
		outs := []ort.Value{nil, nil}
		if err := sess.Run([]ort.Value{in}, outs); err != nil {
			return err
		}
		outs[0].Destroy()
		outs[1].Destroy()
		return nil
	}
	if err := runOnce(); err != nil {
		closeAll()
		return nil, nil, err
	}
	return func() (float64, error) {
		t1 := time.Now()
		for range runs {
			if err := runOnce(); err != nil {
				return 0, err
			}
		}
		return float64(runs*batch) / time.Since(t1).Seconds(), nil
	}, closeAll, nil
}
