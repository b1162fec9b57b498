// Package inception is the interface of the FID feature extractor that retrain/fid
// runs, written down once: pytorch-fid's FID Inception-v3 (pt_inception-2015-12-05)
// exported with one output per feature block, each already globally averaged. The
// test stand-in (internal/onnx/zoo) builds to it. A user exports the real one elsewhere
// with (Python, pytorch-fid 0.3.0, torch >= 2.1):
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
package inception

// Input is the input's name and Size its height and width: float32 [batch,3,Size,Size].
const (
	Input = "input"
	Size  = 299
)

// Dims are the feature dimensions, one per block, in pytorch-fid's block order.
func Dims() []int { return []int{64, 192, 768, 2048} }

// Output is the output name of a feature dimension, as pytorch-fid's
// InceptionV3.BLOCK_INDEX_BY_DIM maps dims to blocks 0..3; ok is false for other dims.
func Output(dims int) (name string, ok bool) {
	switch dims {
	case 64:
		return "pool_64", true
	case 192:
		return "pool_192", true
	case 768:
		return "pre_aux_768", true
	case 2048:
		return "pool_2048", true
	}
	return "", false
}
