package segdec

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/atomicfile"
	pb "github.com/diagd/diagd/internal/onnx/onnxpb"
)

// Architecture is model.json's architecture for this network.
const Architecture = "segdec"

// Input normalisation: x/255 centred on mid-grey. The network trains from scratch, so
// nothing ties it to ImageNet's statistics; BatchNorm after the first convolution makes
// the exact scale unimportant.
var (
	Mean = [3]float32{0.5, 0.5, 0.5}
	Std  = [3]float32{0.25, 0.25, 0.25}
)

// Metadata is model.json for a segdec network of these options: detect's interface
// (input, logit, features) plus the segmentation output.
func Metadata(version string, o Options) detect.Metadata {
	return detect.Metadata{
		SchemaVersion: detect.SchemaVersion,
		ModelVersion:  version,
		Architecture:  Architecture,
		Input: detect.InputSpec{Name: InputName, Height: o.Height, Width: o.Width, ChannelOrder: "RGB",
			Mean: Mean, Std: Std},
		Outputs:   detect.OutputSpec{Logit: LogitName, Features: FeaturesName, Segmentation: SegmentationName},
		Threshold: 0.5,
		CreatedAt: time.Now().UTC().Truncate(time.Second),
	}
}

// WriteModel writes dir/model.onnx (the network m, e.g. from Options.Model or a trained
// write-back) and dir/model.json, each atomically.
func WriteModel(dir string, m *pb.ModelProto, meta detect.Metadata) error {
	if err := meta.Validate(); err != nil {
		return fmt.Errorf("segdec: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := writeProto(filepath.Join(dir, detect.ModelFile), m); err != nil {
		return err
	}
	return detect.WriteMetadata(dir, meta)
}

// Trainable lists the parameters of the parts named by prefixes (SegPrefix, DecPrefix;
// none means both): every float initializer but BatchNorm's running statistics, which
// the training graph updates itself.
func Trainable(m *pb.ModelProto, prefixes ...string) []string {
	if len(prefixes) == 0 {
		prefixes = []string{SegPrefix, DecPrefix}
	}
	var out []string
	for _, t := range m.GetGraph().GetInitializer() {
		n := t.GetName()
		if strings.Contains(n, ".running_") {
			continue
		}
		for _, p := range prefixes {
			if strings.HasPrefix(n, p) {
				out = append(out, n)
				break
			}
		}
	}
	return out
}

func writeProto(path string, m *pb.ModelProto) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return fmt.Errorf("segdec: %s: %w", path, err)
	}
	return atomicfile.WriteFile(path, b, 0o644)
}
