package zoo

import "github.com/diagd/diagd/internal/onnx/build"

// WriteMeanSqrtDetector writes a stand-in detector with the real detector's interface
// (input [batch,3,h,w], outputs logit [batch,1] and features [batch,3]) whose logit is
// sqrt(mean(x) − offset), x the preprocessed input: NaN for frames whose mean is below
// offset. With metadata mean 0 and std 1 (x = pixel/255), an offset of 0.25 makes frames
// darker than pixel value 64 yield NaN while mid-grey gives a finite score, and an
// offset above 1 makes every frame yield NaN. Tests use it for models that produce
// non-finite scores, which real exports do when their weights overflow.
func WriteMeanSqrtDetector(h, w int, offset float32, path string) error {
	g := build.New("mean-sqrt-detector")
	x := g.Input(DetectorInput, build.Float, "batch", 3, h, w)
	feat := g.Identity(g.Flatten(g.GlobalAveragePool(x), 1), DetectorFeatures)
	wt := g.Init("fc.weight", []int64{1, 3}, []float32{1.0 / 3, 1.0 / 3, 1.0 / 3})
	b := g.Init("fc.bias", []int64{1}, []float32{-offset})
	g.Identity(g.Op("Sqrt", []string{g.Gemm(feat, wt, b)}), DetectorLogit)
	g.Output(DetectorLogit, build.Float, "batch", 1)
	g.Output(DetectorFeatures, build.Float, "batch", 3)
	if err := g.Err(); err != nil {
		return err
	}
	return g.Save(path)
}
