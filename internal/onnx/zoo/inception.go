package zoo

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/diagd/diagd/internal/onnx/build"
)

// InceptionConfig is a stand-in for the FID Inception: a few cheap convolutions per
// block, each block halving the resolution roughly where Inception-v3's blocks do (73,
// 35, 17 and 8 pixels), filled with seeded random weights, built to the interface the
// caller passes: retrain/fid/inception owns it (the real export's), and the zoo, on
// the ground floor, imports no room.
type InceptionConfig struct {
	Seed uint64
	// Input is the input's name and Size its height and width; Output names the output
	// of each feature dimension (64, 192, 768, 2048), as inception.Output does.
	Input  string
	Size   int
	Output func(dims int) (string, bool)
}

// inceptionDims are the four blocks' feature dimensions.
var inceptionDims = []int{64, 192, 768, 2048}

// Build returns the graph: input [batch,3,Size,Size] float32 → one [batch,d] output per
// feature dimension d of 64, 192, 768 and 2048.
func (c InceptionConfig) Build() (*build.Graph, error) {
	if c.Input == "" || c.Size < 75 || c.Output == nil {
		return nil, fmt.Errorf("zoo: inception stand-in needs the interface (Input, Size >= 75, Output); got %q %d", c.Input, c.Size)
	}
	g := build.New("fid-inception-standin")
	g.SetMetadata("diagd.interface", "fid-inception-v3 blocks 0-3, globally averaged")
	rng := rand.New(rand.NewPCG(c.Seed, 0x1ce9))
	conv := func(x, name string, in, out, k, stride, pad int) string {
		fanIn := float64(in * k * k)
		w := make([]float32, out*in*k*k)
		for i := range w {
			w[i] = float32(rng.NormFloat64() * math.Sqrt(2/fanIn))
		}
		b := make([]float32, out)
		for i := range b {
			b[i] = float32(rng.NormFloat64() * 0.05)
		}
		wn := g.Init(name+".weight", []int64{int64(out), int64(in), int64(k), int64(k)}, w)
		bn := g.Init(name+".bias", []int64{int64(out)}, b)
		return g.Relu(g.Conv2D(x, wn, bn, int64(k), int64(stride), int64(pad)))
	}
	out := func(d int) string { name, _ := c.Output(d); return name }
	pooled := func(x, name string) string {
		return g.Identity(g.Flatten(g.GlobalAveragePool(x), 1), name)
	}
	x := g.Input(c.Input, build.Float, "batch", 3, int64(c.Size), int64(c.Size))
	// Block 0: 299 → 149 (conv, stride 2) → 74 (max-pool), 64 channels.
	b0 := g.MaxPool2D(conv(x, "block0.conv", 3, 64, 3, 2, 0), 3, 2, 0)
	pooled(b0, out(64))
	// Block 1: 74 → 36, 192 channels.
	b1 := g.MaxPool2D(conv(b0, "block1.conv", 64, 192, 1, 1, 0), 3, 2, 0)
	pooled(b1, out(192))
	// Block 2: 36 → 17, 768 channels.
	b2 := conv(g.MaxPool2D(b1, 3, 2, 0), "block2.conv", 192, 768, 1, 1, 0)
	pooled(b2, out(768))
	// Block 3: 17 → 8, 2048 channels.
	b3 := conv(g.MaxPool2D(b2, 3, 2, 0), "block3.conv", 768, 2048, 1, 1, 0)
	pooled(b3, out(2048))
	for _, d := range inceptionDims {
		g.Output(out(d), build.Float, "batch", d)
	}
	if err := g.Err(); err != nil {
		return nil, fmt.Errorf("zoo: inception stand-in: %w", err)
	}
	return g, nil
}

// WriteInception builds the stand-in and saves it to path.
func WriteInception(c InceptionConfig, path string) error {
	g, err := c.Build()
	if err != nil {
		return err
	}
	return g.Save(path)
}
