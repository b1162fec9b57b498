package fullnet

import (
	"context"
	"fmt"
	"image"
	"image/color"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/onnx/zoo"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/internal/testenv"
	"github.com/diagd/diagd/retrain"
	"github.com/diagd/diagd/retrain/dataset"
	"github.com/diagd/diagd/retrain/metrics"
	"github.com/diagd/diagd/retrain/rtest"
)

// scratchImage draws a size×size surface of smooth random texture (per-image brightness,
// contrast and grain) and, for a defect, a thin bright scratch of 5 pixels at a random
// place and orientation: 5 of size² pixels, which pooled random features barely see.
func scratchImage(rng *rand.Rand, size int, defect bool) (*image.RGBA, *image.Gray) {
	noise := make([]float64, size*size)
	for i := range noise {
		noise[i] = rng.NormFloat64()
	}
	base, contrast := rng.Float64()-0.5, 0.3+0.7*rng.Float64()
	val := make([]float64, size*size)
	for y := range size {
		for x := range size {
			var s float64
			for dy := -1; dy <= 1; dy++ {
				for dx := -1; dx <= 1; dx++ {
					s += noise[((y+dy+size)%size)*size+(x+dx+size)%size]
				}
			}
			val[y*size+x] = base + contrast*s/3
		}
	}
	var mask *image.Gray
	if defect {
		mask = image.NewGray(image.Rect(0, 0, size, size))
		x0, y0 := 2+rng.IntN(size-8), 2+rng.IntN(size-8)
		vertical := rng.IntN(2) == 0
		for k := range 5 {
			x, y := x0+k, y0
			if vertical {
				x, y = x0, y0+k
			}
			val[y*size+x] += 1.5 + contrast
			mask.SetGray(x, y, color.Gray{Y: 255})
		}
	}
	img := image.NewRGBA(image.Rect(0, 0, size, size))
	for i, v := range val {
		b := uint8(min(255, max(0, 128+35*v)))
		img.SetRGBA(i%size, i/size, color.RGBA{b, b, b, 255})
	}
	return img, mask
}

// scratchSet writes n images (alternating ok and defect) and returns them as items.
func scratchSet(t testing.TB, dir string, n, size int, seed uint64, masks bool) []dataset.Item {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 77))
	items := make([]dataset.Item, n)
	for i := range n {
		img, mask := scratchImage(rng, size, i%2 == 1)
		p := filepath.Join(dir, fmt.Sprintf("%05d.png", i))
		rtest.WritePNG(t, p, img)
		items[i] = dataset.Item{Path: p, Label: i%2 == 1, Source: "real:test"}
		if masks && mask != nil {
			items[i].Mask = filepath.Join(dir, fmt.Sprintf("%05d_mask.png", i))
			rtest.WritePNG(t, items[i].Mask, mask)
		}
	}
	return items
}

// baseModel writes a SmallResNet detector folder for size×size images.
func baseModel(t testing.TB, dir string, size int, seed uint64) (string, detect.Metadata) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := zoo.SmallResNet(size, size, seed)
	if err := zoo.WriteResNet(cfg, filepath.Join(dir, detect.ModelFile)); err != nil {
		t.Fatal(err)
	}
	m := detect.DefaultMetadata("base")
	m.Architecture = cfg.Name
	m.Input.Height, m.Input.Width = size, size
	if err := detect.WriteMetadata(dir, m); err != nil {
		t.Fatal(err)
	}
	return dir, m
}

// oneThread runs ORT on one CPU thread: deterministic for these graphs.
var oneThread = ortenv.Options{Provider: ortenv.CPU, Threads: 1}

// train runs the trainer on items with a base model folder.
func train(t testing.TB, c Config, base string, meta detect.Metadata, items []dataset.Item, runDir string, resume bool) *retrain.Candidate {
	t.Helper()
	tr := Trainer{Config: c, Log: testenv.Logger(t), Session: oneThread}
	cand, err := tr.Train(context.Background(), retrain.TrainSet{Items: items, BaseDir: base, BaseMeta: meta, RunDir: runDir, Resume: resume}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cand
}

// served writes a candidate into a model folder and scores image files through detect,
// the serving path.
func served(t testing.TB, cand *retrain.Candidate, meta detect.Metadata, dir string, items []dataset.Item) []float64 {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := cand.WriteModel(filepath.Join(dir, detect.ModelFile)); err != nil {
		t.Fatal(err)
	}
	meta.ModelVersion = "trained"
	if err := detect.WriteMetadata(dir, meta); err != nil {
		t.Fatal(err)
	}
	m, err := detect.LoadModel(testenv.Logger(t), dir, detect.Options{Session: oneThread, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	res, err := m.ScoreFiles(context.Background(), paths(items), nil)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float64, len(res))
	for i, r := range res {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		out[i] = float64(r.Logit)
	}
	return out
}

func paths(items []dataset.Item) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.Path
	}
	return out
}

func ap(t testing.TB, scores []float64, items []dataset.Item) float64 {
	t.Helper()
	y := make([]bool, len(items))
	for i, it := range items {
		y[i] = it.Label
	}
	rep, err := metrics.Evaluate(scores, y)
	if err != nil {
		t.Fatal(err)
	}
	return rep.AP
}

// preprocessed decodes and preprocesses image files as detect serves them, [N,3,H,W].
func preprocessed(t testing.TB, in detect.InputSpec, items []dataset.Item) []float32 {
	t.Helper()
	pre := detect.NewPreprocessor(in)
	defer pre.Close()
	x := make([]float32, len(items)*pre.Size())
	for i, it := range items {
		if err := decodeInto(pre, it.Path, x[i*pre.Size():(i+1)*pre.Size()]); err != nil {
			t.Fatal(err)
		}
	}
	return x
}
