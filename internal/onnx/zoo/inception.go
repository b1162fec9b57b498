package zoo

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/diagd/diagd/internal/onnx/build"
)

// The FID feature extractor's interface: pytorch-fid's FID Inception-v3
// (pt_inception-2015-12-05) exported with one output per feature block, each already
// globally averaged. A user exports the real one elsewhere with (Python, pytorch-fid
// 0.3.0, torch >= 2.1):
//
//	import torch, torch.nn.functional as F
//	from pytorch_fid.inception import InceptionV3
//	class FIDBlocks(torch.nn.Module):
//	    def __init__(self):
//	        super().__init__()
//	        self.net = InceptionV3([0, 1, 2, 3], resize_input=False, normalize_input=False)
//	    def forward(self, x):  # x: [B,3,299,299] RGB in [-1,1]
//	        outs = self.net(x)
//	        return tuple(F.adaptive_avg_pool2d(o, (1, 1)).flatten(1) for o in outs)
//	m = FIDBlocks().eval()
//	torch.onnx.export(m, torch.zeros(2, 3, 299, 299), "inception.onnx", opset_version=17,
//	    input_names=["input"], output_names=["pool_64", "pool_192", "pre_aux_768", "pool_2048"],
//	    dynamic_axes={n: {0: "batch"} for n in ["input", "pool_64", "pool_192", "pre_aux_768", "pool_2048"]})
//
// resize_input=False and normalize_input=False because diagd does both in Go exactly as
// pytorch-fid does (bilinear 299×299 with align_corners=False, then 2x−1). Block 3
// already ends in adaptive_avg_pool2d, so pooling it again is the identity.
const (
	InceptionInput = "input"
	InceptionSize  = 299
)

// InceptionOutputs maps each FID feature dimension to its output name, as pytorch-fid's
// InceptionV3.BLOCK_INDEX_BY_DIM maps dims to blocks 0..3.
var InceptionOutputs = map[int]string{
	64:   "pool_64",
	192:  "pool_192",
	768:  "pre_aux_768",
	2048: "pool_2048",
}

// InceptionConfig is a stand-in for the FID Inception: the same input and outputs with a
// few cheap convolutions per block, each block halving the resolution roughly where
// Inception-v3's blocks do (73, 35, 17 and 8 pixels), filled with seeded random weights.
type InceptionConfig struct {
	Seed uint64
}

// Build returns the graph: input [batch,3,299,299] float32 → pool_64 [batch,64],
// pool_192 [batch,192], pre_aux_768 [batch,768], pool_2048 [batch,2048].
func (c InceptionConfig) Build() (*build.Graph, error) {
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
	pooled := func(x, name string) string {
		return g.Identity(g.Flatten(g.GlobalAveragePool(x), 1), name)
	}
	x := g.Input(InceptionInput, build.Float, "batch", 3, InceptionSize, InceptionSize)
	// Block 0: 299 → 149 (conv, stride 2) → 74 (max-pool), 64 channels.
	b0 := g.MaxPool2D(conv(x, "block0.conv", 3, 64, 3, 2, 0), 3, 2, 0)
	pooled(b0, InceptionOutputs[64])
	// Block 1: 74 → 36, 192 channels.
	b1 := g.MaxPool2D(conv(b0, "block1.conv", 64, 192, 1, 1, 0), 3, 2, 0)
	pooled(b1, InceptionOutputs[192])
	// Block 2: 36 → 17, 768 channels.
	b2 := conv(g.MaxPool2D(b1, 3, 2, 0), "block2.conv", 192, 768, 1, 1, 0)
	pooled(b2, InceptionOutputs[768])
	// Block 3: 17 → 8, 2048 channels.
	b3 := conv(g.MaxPool2D(b2, 3, 2, 0), "block3.conv", 768, 2048, 1, 1, 0)
	pooled(b3, InceptionOutputs[2048])
	for _, d := range []int{64, 192, 768, 2048} {
		g.Output(InceptionOutputs[d], build.Float, "batch", d)
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
