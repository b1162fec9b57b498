package autodiff

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/diagd/diagd/internal/onnx/build"
	pb "github.com/diagd/diagd/internal/onnx/onnxpb"
)

// stopGraph is a two-part network: h = x·W1 is a per-pixel logit; the image logit reads h
// only through the Identity "h.dec" (the place a segmentation + decision network stops
// the decision loss's gradient).
func stopGraph(t *testing.T) *pb.ModelProto {
	t.Helper()
	g := build.New("stop")
	rng := rand.New(rand.NewPCG(1, 2))
	w := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	x := g.Input("x", build.Float, 4, 3)
	h := g.Identity(g.Op("MatMul", []string{x, g.Init("W1", []int64{3, 3}, w(9))}), "pix")
	d := g.Identity(h, "h.dec")
	g.Identity(g.Op("MatMul", []string{d, g.Init("W2", []int64{3, 1}, w(3))}), "logit")
	g.Output("pix", build.Float, 4, 3)
	g.Output("logit", build.Float, 4, 1)
	m, err := g.Model()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// With "h.dec" stopped, W1's gradient is the pixel loss's alone whatever weight the image
// loss gets; without the stop the image loss reaches W1 too. W2 trains either way.
func TestStopGradientKeepsTheImageLossOffTheFirstPart(t *testing.T) {
	m := stopGraph(t)
	feeds := func(imageW float64) map[string][]float64 {
		return map[string][]float64{
			"x":               {0.5, -1, 2, 1, 0, -0.5, -2, 1.5, 0.3, 0.7, -0.2, 1},
			"W1":              {0.3, -0.8, 0.5, 1.1, 0.2, -0.4, -0.6, 0.9, 0.1},
			"W2":              {0.7, -1.2, 0.4},
			InputLabels:       {1, 0, 1, 0},
			InputPixelTargets: {1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0},
			InputPixelWeights: {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
			InputLossScale:    {1}, InputPixelLossW: {1}, InputImageLossW: {imageW},
		}
	}
	grad := func(stop []string, imageW float64) (w1, w2 []float64) {
		prog, err := BuildGradient(m, Config{Trainable: []string{"W1", "W2"}, Batch: 4,
			Loss: Loss{Logit: "logit", PixelLogit: "pix"}, StopGradient: stop})
		if err != nil {
			t.Fatal(err)
		}
		out := openProgram(t, prog).run(feeds(imageW))
		return out["W1"+SuffixGrad+SuffixNext], out["W2"+SuffixGrad+SuffixNext]
	}
	stopped1, stopped2 := grad([]string{"h.dec"}, 1)
	pixelOnly, _ := grad([]string{"h.dec"}, 0)
	flowing, flowing2 := grad(nil, 1)
	if d := sliceDiff(stopped1, pixelOnly); d > 1e-6 {
		t.Errorf("stopped: W1's gradient changes by %g with the image loss on; want the pixel loss's alone", d)
	}
	if d := sliceDiff(stopped1, flowing); d < 1e-3 {
		t.Errorf("without the stop W1's gradient should include the image loss's (difference %g)", d)
	}
	if d := sliceDiff(stopped2, flowing2); d > 1e-6 || maxAbs(stopped2) == 0 {
		t.Errorf("W2 (after the stop) must train the same either way: %v vs %v", stopped2, flowing2)
	}
}

// A stop-gradient name that no node makes is refused, naming it.
func TestStopGradientUnknownValueRefused(t *testing.T) {
	_, err := BuildGradient(stopGraph(t), Config{Trainable: []string{"W1", "W2"}, Batch: 4,
		Loss: Loss{Logit: "logit"}, StopGradient: []string{"nowhere"}})
	if err == nil || !strings.Contains(err.Error(), `"nowhere"`) {
		t.Fatalf("got %v, want a refusal naming the value", err)
	}
}

func sliceDiff(a, b []float64) float64 {
	d := math.Inf(1)
	if len(a) == len(b) {
		d = 0
		for i := range a {
			d = max(d, math.Abs(a[i]-b[i]))
		}
	}
	return d
}

func maxAbs(a []float64) float64 {
	m := 0.0
	for _, v := range a {
		m = max(m, math.Abs(v))
	}
	return m
}
