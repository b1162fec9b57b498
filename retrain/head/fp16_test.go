package head

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/diagd/diagd/internal/onnx/zoo"
)

// Writable takes a float32 export's head and refuses a float16 export's by name, as
// WriteBack does, without writing anything.
func TestWritableRefusesAFloat16Head(t *testing.T) {
	dir := t.TempDir()
	for _, fp16 := range []bool{false, true} {
		cfg := zoo.SmallResNet(32, 32, 3)
		cfg.FP16 = fp16
		path := filepath.Join(dir, map[bool]string{false: "fp32.onnx", true: "fp16.onnx"}[fp16])
		if err := zoo.WriteResNet(cfg, path); err != nil {
			t.Fatal(err)
		}
		err := Writable(path, zoo.DetectorLogit, zoo.DetectorFeatures)
		if fp16 != errors.Is(err, ErrFloat16Head) || (!fp16 && err != nil) {
			t.Errorf("fp16 %v: %v", fp16, err)
		}
		wb := WriteBack(path, filepath.Join(dir, "out.onnx"), zoo.DetectorLogit, zoo.DetectorFeatures, &Head{W: make([]float32, cfg.FeatureDim())})
		if fp16 != errors.Is(wb, ErrFloat16Head) || (!fp16 && wb != nil) {
			t.Errorf("fp16 %v: WriteBack: %v", fp16, wb)
		}
	}
}
