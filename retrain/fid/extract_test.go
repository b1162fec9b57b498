package fid

import (
	"fmt"
	"image"
	"image/color"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ort "github.com/yalue/onnxruntime_go"
	"gocv.io/x/gocv"

	"github.com/diagd/diagd/internal/imageio"
	"github.com/diagd/diagd/internal/onnx/zoo"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/internal/testenv"
	"github.com/diagd/diagd/retrain/fid/inception"
)

func writePNGs(t *testing.T, dir string, n int, seed uint64, blob bool) []string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 9))
	var paths []string
	for i := range n {
		h, w := 60+rng.IntN(40), 80+rng.IntN(40)
		px := make([]byte, h*w*3)
		for j := range px {
			px[j] = byte(80 + rng.IntN(60))
		}
		m, err := gocv.NewMatFromBytes(h, w, gocv.MatTypeCV8UC3, px)
		if err != nil {
			t.Fatal(err)
		}
		if blob {
			gocv.Circle(&m, image.Pt(10+rng.IntN(w-20), 10+rng.IntN(h-20)), 8, color.RGBA{250, 250, 250, 0}, -1)
		}
		p := filepath.Join(dir, fmt.Sprintf("%03d.png", i))
		if !gocv.IMWrite(p, m) {
			t.Fatalf("cannot write %s", p)
		}
		m.Close()
		paths = append(paths, p)
	}
	return paths
}

// Activations of a batch equal those of the same images run one at a time through a
// session of our own (preprocessed independently of the Extractor's buffers), and an
// undecodable file is skipped by name while the others are kept.
func TestExtractorActivations(t *testing.T) {
	testenv.ORT(t)
	log := testenv.Logger(t)
	model := filepath.Join(t.TempDir(), "inception.onnx")
	if err := zoo.WriteInception(zoo.InceptionConfig{Seed: 2, Input: inception.Input, Size: inception.Size, Output: inception.Output}, model); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	paths := writePNGs(t, dir, 5, 1, false)
	bad := filepath.Join(dir, "002b.png")
	if err := os.WriteFile(bad, []byte("not a png"), 0o644); err != nil {
		t.Fatal(err)
	}
	listed, err := ListImages(dir)
	if err != nil || len(listed) != 6 || listed[3] != bad {
		t.Fatalf("ListImages %v %v", listed, err)
	}
	ex, err := NewExtractor(log, model, 192, Options{Session: ortenv.Options{Provider: ortenv.CPU}, Batch: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer ex.Close()
	acts, used, skipped, err := ex.Activations(t.Context(), listed, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r, c := acts.Dims(); r != 5 || c != 192 || len(used) != 5 || len(skipped) != 1 || skipped[0].Path != bad {
		t.Fatalf("acts %dx%d, used %v, skipped %v", r, c, used, skipped)
	}
	sess, err := ortenv.OpenSession(log, model, []string{"input"}, []string{"pool_192"}, ortenv.Options{Provider: ortenv.CPU})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Destroy()
	pre := NewPreprocessor(299)
	for i, p := range paths {
		m, err := imageio.Read(p)
		if err != nil {
			t.Fatal(err)
		}
		x := make([]float32, pre.Size())
		if err := pre.Into(m, x); err != nil {
			t.Fatal(err)
		}
		m.Close()
		in, _ := ort.NewTensor(ort.NewShape(1, 3, 299, 299), x)
		out := []ort.Value{nil}
		if err := sess.Run([]ort.Value{in}, out); err != nil {
			t.Fatal(err)
		}
		got := out[0].(*ort.Tensor[float32]).GetData()
		for j, v := range got {
			if d := math.Abs(float64(v) - acts.At(i, j)); d > 1e-5*max(1, math.Abs(float64(v))) {
				t.Fatalf("image %d dim %d: batched %v, single %v", i, j, acts.At(i, j), v)
			}
		}
		in.Destroy()
		out[0].Destroy()
	}
}

func TestExtractorRejectsWrongModel(t *testing.T) {
	testenv.ORT(t)
	log := testenv.Logger(t)
	model := filepath.Join(t.TempDir(), "detector.onnx")
	if err := zoo.WriteResNet(zoo.SmallResNet(64, 64, 1), model); err != nil {
		t.Fatal(err)
	}
	_, err := NewExtractor(log, model, 64, Options{})
	if err == nil || !strings.Contains(err.Error(), "299") {
		t.Errorf("detector model accepted as Inception: %v", err)
	}
	if _, err := NewExtractor(log, model, 100, Options{}); err == nil || !strings.Contains(err.Error(), "dims 100") {
		t.Errorf("dims 100: %v", err)
	}
}
