package fullnet

import (
	"context"
	ort "github.com/yalue/onnxruntime_go"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/onnx/build"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/internal/testenv"
	"github.com/diagd/diagd/retrain"
	"github.com/diagd/diagd/retrain/dataset"
	"github.com/diagd/diagd/retrain/metrics"
)

// A cell's target is the maximum over the pixels it covers, so a one-pixel defect
// survives the reduction; uneven divisions cover every pixel.
func TestCellMax(t *testing.T) {
	m := make([]float32, 5*7)
	m[4*7+6] = 1 // bottom-right pixel
	got := cellMax(m, 5, 7, 2, 3)
	want := []float32{0, 0, 0, 0, 0, 1}
	if !slices.Equal(got, want) {
		t.Errorf("cellMax %v, want %v", got, want)
	}
}

// The loader's pixel targets and weights follow mixed supervision: a good image trains
// every pixel towards 0, a defect with a mask towards its mask (weights from the hook),
// a defect without one (or an empty one) trains the decision only.
func TestPixelTargetsAndWeights(t *testing.T) {
	testenv.ORT(t)
	dir := t.TempDir()
	items := scratchSet(t, dir, 4, 16, 1, true) // ok, defect+mask, ok, defect+mask
	items[3].Mask = ""                          // a defect known by its label only
	seg := &Segmentation{Output: "seg", Name: "test", Weights: func(tgt []float32, h, w int) []float32 {
		out := make([]float32, len(tgt))
		for i, v := range tgt {
			out[i] = 1 + 4*v // defect pixels weigh 5
		}
		return out
	}}
	in := detect.DefaultMetadata("x").Input
	in.Height, in.Width = 16, 16
	l := newLoader(items, in, Config{Segmentation: seg}, 4, 4, 4)
	defer l.close()
	b := l.bufs[0]
	if err := l.fill(context.Background(), b, 0, []int{0, 1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	mask, err := readMask(items[1].Mask, 16, 16)
	if err != nil {
		t.Fatal(err)
	}
	want := cellMax(mask, 16, 16, 4, 4)
	tg, wg := b.targets, b.weights
	if !slices.Equal(tg[16:32], want) || slices.Max(want) != 1 {
		t.Errorf("defect with mask: targets %v, want %v", tg[16:32], want)
	}
	for i, v := range want {
		if wg[16+i] != 1+4*v {
			t.Errorf("defect with mask: weight %d is %v, want %v", i, wg[16+i], 1+4*v)
		}
	}
	for _, k := range []int{0, 2} {
		if slices.Max(tg[16*k:16*k+16]) != 0 || slices.Min(wg[16*k:16*k+16]) != 1 {
			t.Errorf("good image %d: targets %v weights %v; want 0 and 1", k, tg[16*k:16*k+16], wg[16*k:16*k+16])
		}
	}
	if slices.Max(wg[48:64]) != 0 {
		t.Errorf("defect without mask: weights %v; want 0 (decision only)", wg[48:64])
	}
	if !slices.Equal(b.labels[:4], []float32{0, 1, 0, 1}) {
		t.Errorf("labels %v", b.labels[:4])
	}
}

// Flips and shifts move the mask with the image; brightness scales the pixel values
// as if the camera saw k times the light, computed on the normalised tensor.
func TestSurfaceAugment(t *testing.T) {
	const h, w = 4, 5
	in := detect.DefaultMetadata("x").Input
	raw := make([]float32, 3*h*w) // pixel values v/255 per channel
	img := make([]float32, 3*h*w)
	mask := make([]float32, h*w)
	for c := range 3 {
		for i := range h * w {
			raw[c*h*w+i] = float32(i%7) / 10
			img[c*h*w+i] = (raw[c*h*w+i] - in.Mean[c]) / in.Std[c]
		}
	}
	mask[1*w+1] = 1
	s := Sample{Image: img, Mask: mask, H: h, W: w, Input: in}
	a := SurfaceAugment{FlipH: true, FlipV: true, MaxShift: 1, Brightness: 0.2}
	rng := func() *rand.Rand { return rand.New(rand.NewPCG(3, 4)) }
	a.Augment(rng(), &s)
	// Replay the draws to know what happened.
	r := rng()
	fh, fv := r.IntN(2) == 1, r.IntN(2) == 1
	dx, dy := r.IntN(3)-1, r.IntN(3)-1
	k := 1 + 0.2*float32(2*r.Float64()-1)
	x, y := 1, 1
	if fh {
		x = w - 1 - x
	}
	if fv {
		y = h - 1 - y
	}
	x, y = x+dx, y+dy
	if mask[y*w+x] != 1 || slices.Max(mask) != 1 {
		t.Errorf("mask pixel (1,1) should be at (%d,%d) after flips %v %v and shift (%d,%d): %v", x, y, fh, fv, dx, dy, mask)
	}
	// The same geometry on the raw values, then brightness k, then normalisation.
	want := append([]float32(nil), raw...)
	ws := Sample{Image: want, H: h, W: w, Input: in}
	SurfaceAugment{FlipH: true, FlipV: true, MaxShift: 1}.Augment(rng(), &ws)
	for c := range 3 {
		for i := range h * w {
			v := (k*want[c*h*w+i] - in.Mean[c]) / in.Std[c]
			if d := math.Abs(float64(v - img[c*h*w+i])); d > 1e-5 {
				t.Fatalf("channel %d pixel %d: %v, want %v", c, i, img[c*h*w+i], v)
			}
		}
	}
}

// tinySegDec writes a small segmentation + decision network: two conv layers (the second
// with stride 2) give features at half resolution, a 1×1 conv the segmentation logits
// [N,1,8,8], and the decision reads global max and average pools of features and
// segmentation.
func tinySegDec(t *testing.T, dir string) detect.Metadata {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	g := build.New("tiny-segdec")
	normal := func(n int, std float64) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64() * std)
		}
		return v
	}
	conv := func(x, name string, in, out, k, stride int) string {
		wt := g.Init(name+".weight", []int64{int64(out), int64(in), int64(k), int64(k)}, normal(out*in*k*k, math.Sqrt(2/float64(in*k*k))))
		b := g.Init(name+".bias", []int64{int64(out)}, make([]float32, out))
		return g.Conv2D(x, wt, b, int64(k), int64(stride), int64(k/2))
	}
	x := g.Input("input", build.Float, "batch", 3, 16, 16)
	f := g.Relu(conv(x, "c1", 3, 8, 3, 1))
	f = g.Relu(conv(f, "c2", 8, 16, 3, 2))
	seg := g.Identity(conv(f, "seg", 16, 1, 1, 1), "segmentation")
	pools := []string{}
	for _, v := range []string{f, seg} {
		pools = append(pools, g.Flatten(g.Op("GlobalMaxPool", []string{v}), 1), g.Flatten(g.GlobalAveragePool(v), 1))
	}
	feat := g.Identity(g.Op("Concat", pools, build.Int("axis", 1)), "features")
	fw := g.Init("fc.weight", []int64{1, 34}, normal(34, 1/math.Sqrt(34)))
	fb := g.Init("fc.bias", []int64{1}, []float32{0})
	g.Identity(g.Gemm(feat, fw, fb), "logit")
	g.Output("logit", build.Float, "batch", 1)
	g.Output("features", build.Float, "batch", 34)
	g.Output("segmentation", build.Float, "batch", 1, 8, 8)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := g.Save(filepath.Join(dir, detect.ModelFile)); err != nil {
		t.Fatal(err)
	}
	m := detect.DefaultMetadata("tiny-segdec")
	m.Input.Height, m.Input.Width = 16, 16
	if err := detect.WriteMetadata(dir, m); err != nil {
		t.Fatal(err)
	}
	return m
}

// A segmentation + decision network trains through the same Trainer with the hooks:
// masks supervise the segmentation output (with half the defects known by label only),
// the schedule is asked once per epoch and fed per step, augmentation runs, and the
// trained segmentation output finds the scratches it was never told the place of.
func TestSegDecTrainsThroughHooks(t *testing.T) {
	testenv.ORT(t)
	dir := t.TempDir()
	base := filepath.Join(dir, "base")
	meta := tinySegDec(t, base)
	items := scratchSet(t, filepath.Join(dir, "train"), 256, 16, 1, true)
	for i := 3; i < len(items); i += 4 {
		items[i].Mask = "" // mixed supervision: these defects are known by label only
	}
	held := scratchSet(t, filepath.Join(dir, "held"), 32, 16, 2, true)
	var mu sync.Mutex
	var asked []int
	seg := &Segmentation{Output: "segmentation", Name: "test schedule", Schedule: func(e, n int) (float32, float32) {
		mu.Lock()
		asked = append(asked, e)
		mu.Unlock()
		return 1, float32(e) / float32(n)
	}}
	c := Config{Epochs: 12, LR: 1e-2, Batch: 16, MicroBatch: 16, Seed: 1, BatchNorm: BNAlwaysTrain,
		Segmentation: seg, Augment: SurfaceAugment{FlipH: true, FlipV: true, MaxShift: 1}}
	tr := Trainer{Config: c, Log: testenv.Logger(t), Session: oneThread}
	cand, err := tr.Train(context.Background(), retrain.TrainSet{Items: items, BaseDir: base, BaseMeta: meta}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(asked, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}) {
		t.Errorf("schedule asked for epochs %v, want 0..11 once each", asked)
	}
	if r := cand.Training["recipe"].(recipe); r.Segmentation != "output segmentation, test schedule" || r.Augment == "" {
		t.Errorf("recipe %+v", r)
	}
	if ap, chance := segPixelAP(t, cand, meta, filepath.Join(dir, "served"), held); ap < 10*chance {
		t.Errorf("segmentation pixel AP on held-out scratches %.3f; want ≥ 10× chance (%.3f)", ap, chance)
	}
}

// segPixelAP writes the candidate, runs its segmentation output on held-out images and
// returns the pixel AP against the masks reduced to the output's cells, and the share of
// defect cells (the AP of a random ranking).
func segPixelAP(t *testing.T, cand *retrain.Candidate, meta detect.Metadata, dir string, held []dataset.Item) (float64, float64) {
	t.Helper()
	served(t, cand, meta, dir, held[:1]) // writes the model
	scores := segOutputs(t, filepath.Join(dir, detect.ModelFile), meta, held)
	var s []float64
	var y []bool
	pos := 0
	for i, it := range held {
		tgt := make([]float32, 64)
		if it.Mask != "" {
			m, err := readMask(it.Mask, 16, 16)
			if err != nil {
				t.Fatal(err)
			}
			tgt = cellMax(m, 16, 16, 8, 8)
		}
		for k := range 64 {
			s = append(s, float64(scores[i*64+k]))
			y = append(y, tgt[k] > 0)
			if tgt[k] > 0 {
				pos++
			}
		}
	}
	ap := metrics.AveragePrecision(s, y)
	t.Logf("segmentation pixel AP %.3f over %d cells, %d of them defect", ap, len(s), pos)
	return ap, float64(pos) / float64(len(s))
}

// segOutputs runs a model file's segmentation output ([N,1,8,8]) on image files.
func segOutputs(t *testing.T, model string, meta detect.Metadata, items []dataset.Item) []float32 {
	t.Helper()
	sess, err := ortenv.OpenSession(testenv.Logger(t), model, []string{meta.Input.Name}, []string{"segmentation"}, oneThread)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Destroy()
	x := preprocessed(t, meta.Input, items)
	xt, err := ort.NewTensor(ort.NewShape(int64(len(items)), 3, 16, 16), x)
	if err != nil {
		t.Fatal(err)
	}
	defer xt.Destroy()
	yt, err := ort.NewEmptyTensor[float32](ort.NewShape(int64(len(items)), 1, 8, 8))
	if err != nil {
		t.Fatal(err)
	}
	defer yt.Destroy()
	if err := sess.Run([]ort.Value{xt}, []ort.Value{yt}); err != nil {
		t.Fatal(err)
	}
	return append([]float32(nil), yt.GetData()...)
}
