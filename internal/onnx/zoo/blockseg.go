package zoo

import "github.com/diagd/diagd/internal/onnx/build"

// DetectorSegmentation is the optional per-pixel output of a segmenting detector.
const DetectorSegmentation = "segmentation"

// BlockSegmenter is a segmenting detector whose map is known in closed form, for
// checking what is served from it: the segmentation logit of each 8×8 block of the
// input is 20·(the block's mean over pixels and channels) − 10, so with the input
// normalised to [0,1] (mean 0, std 1) a white block is a defect cell (p ≈ 1) and a black
// one is not (p ≈ 5e-5); the image logit is the largest cell logit, and there is no
// features output. h and w must be multiples of 8.
func BlockSegmenter(h, w int) (*build.Graph, error) {
	g := build.New("block-segmenter")
	x := g.Input(DetectorInput, build.Float, "batch", 3, h, w)
	grey := g.Op("ReduceMean", []string{x}, build.Ints("axes", 1), build.Int("keepdims", 1))
	cells := g.Op("AveragePool", []string{grey}, build.Ints("kernel_shape", 8, 8), build.Ints("strides", 8, 8))
	seg := g.Add(g.Mul(cells, g.Const([]int64{1}, []float32{20})), g.Const([]int64{1}, []float32{-10}))
	g.Identity(seg, DetectorSegmentation)
	g.Identity(g.Flatten(g.Op("GlobalMaxPool", []string{seg}), 1), DetectorLogit)
	g.Output(DetectorLogit, build.Float, "batch", 1)
	g.Output(DetectorSegmentation, build.Float, "batch", 1, h/8, w/8)
	return g, g.Err()
}
