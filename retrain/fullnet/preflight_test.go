package fullnet

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/onnx/zoo"
)

// A float16 export is refused before any work, naming a float16 value; its float32
// twin passes.
func TestPreflightRefusesAFloat16Export(t *testing.T) {
	for _, fp16 := range []bool{false, true} {
		dir := filepath.Join(t.TempDir(), "m")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		cfg := zoo.SmallResNet(32, 32, 3)
		cfg.FP16 = fp16
		if err := zoo.WriteResNet(cfg, filepath.Join(dir, detect.ModelFile)); err != nil {
			t.Fatal(err)
		}
		err := Trainer{}.Preflight(dir, detect.DefaultMetadata("base"))
		if fp16 && (err == nil || !strings.Contains(err.Error(), "is float16")) {
			t.Errorf("fp16 export: %v, want a float16 refusal", err)
		}
		if !fp16 && err != nil {
			t.Errorf("fp32 export: %v", err)
		}
	}
}
