package detect

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/diagd/diagd/internal/atomicfile"
)

// A model folder holds these two files. The metadata travels with the weights because
// a model without its input size, normalisation and threshold cannot be served safely.
const (
	ModelFile    = "model.onnx"
	MetadataFile = "model.json"
)

// SchemaVersion is the metadata schema this build reads and writes.
const SchemaVersion = 1

// Metadata describes a detector: how to feed it, how to read it, and where it came from.
type Metadata struct {
	SchemaVersion int    `json:"schema_version"`
	ModelVersion  string `json:"model_version"`
	Architecture  string `json:"architecture,omitempty"`

	Input   InputSpec  `json:"input"`
	Outputs OutputSpec `json:"outputs"`

	// Threshold applies to score = sigmoid(logit): score >= Threshold is a fail (defect).
	Threshold     float64 `json:"threshold"`
	ThresholdRule string  `json:"threshold_rule,omitempty"` // how it was chosen, e.g. "max-f1"
	// SegmentationThreshold applies to the segmentation output's probabilities: a pixel
	// at or above it is a defect pixel. 0 means DefaultSegmentationThreshold.
	SegmentationThreshold float64 `json:"segmentation_threshold,omitempty"`

	TrainingDataDigest string            `json:"training_data_digest,omitempty"`
	Validation         *ValidationScores `json:"validation,omitempty"`
	// Training records how the model was trained (method, epochs, imbalance handling...).
	Training  map[string]any `json:"training,omitempty"`
	CreatedAt time.Time      `json:"created_at"`
}

// InputSpec is the training protocol's preprocessing, which serving must repeat exactly.
type InputSpec struct {
	Name         string     `json:"name"`
	Height       int        `json:"height"`
	Width        int        `json:"width"`
	ChannelOrder string     `json:"channel_order"` // "RGB" (torchvision) or "BGR"
	Mean         [3]float32 `json:"mean"`          // per channel, after /255, in ChannelOrder
	Std          [3]float32 `json:"std"`
}

// OutputSpec names the model's outputs.
type OutputSpec struct {
	Logit    string `json:"logit"`              // [batch,1] float32
	Features string `json:"features,omitempty"` // [batch,F] pooled backbone features, for head training
	// Segmentation is an optional per-pixel defect logit, [batch,1,h,w] at a fraction of
	// the input size (segdec: 1/8). detect serves it as probabilities (sigmoid) and, for a
	// fail, the defect regions where they reach SegmentationThreshold.
	Segmentation string `json:"segmentation,omitempty"`
}

// ValidationScores are the numbers the model earned on labelled validation data.
type ValidationScores struct {
	Dataset   string  `json:"dataset,omitempty"`
	Images    int     `json:"images"`
	Positives int     `json:"positives"`
	AP        float64 `json:"ap"`
	AUROC     float64 `json:"auroc"`
	F1Max     float64 `json:"f1_max"`
	Precision float64 `json:"precision"`
	Recall    float64 `json:"recall"`
}

// DefaultSegmentationThreshold is the per-pixel probability from which a pixel counts as
// a defect when model.json does not say.
const DefaultSegmentationThreshold = 0.5

// SegThreshold is the segmentation threshold in force.
func (m *Metadata) SegThreshold() float64 {
	if m.SegmentationThreshold == 0 {
		return DefaultSegmentationThreshold
	}
	return m.SegmentationThreshold
}

// ImageNet normalisation, which torchvision's pretrained ResNet-50 expects.
var (
	ImageNetMean = [3]float32{0.485, 0.456, 0.406}
	ImageNetStd  = [3]float32{0.229, 0.224, 0.225}
)

// DefaultMetadata is the paper's detector: ResNet-50, 704×256 (H×W), RGB, ImageNet
// normalisation, threshold 0.5.
func DefaultMetadata(version string) Metadata {
	return Metadata{
		SchemaVersion: SchemaVersion,
		ModelVersion:  version,
		Architecture:  "resnet50",
		Input: InputSpec{Name: "input", Height: 704, Width: 256, ChannelOrder: "RGB",
			Mean: ImageNetMean, Std: ImageNetStd},
		Outputs:   OutputSpec{Logit: "logit", Features: "features"},
		Threshold: 0.5,
		CreatedAt: time.Now().UTC().Truncate(time.Second),
	}
}

// Validate checks the metadata on its own (not against the model).
func (m *Metadata) Validate() error {
	var errs []string
	bad := func(f string, a ...any) { errs = append(errs, fmt.Sprintf(f, a...)) }
	if m.SchemaVersion != SchemaVersion {
		bad("schema_version is %d; this diagd reads %d", m.SchemaVersion, SchemaVersion)
	}
	if err := CheckVersion(m.ModelVersion); err != nil {
		bad("%v", err)
	}
	if m.Input.Name == "" {
		bad("input.name is empty")
	}
	if m.Input.Height <= 0 || m.Input.Width <= 0 {
		bad("input size %dx%d (HxW) must be positive", m.Input.Height, m.Input.Width)
	}
	if m.Input.ChannelOrder != "RGB" && m.Input.ChannelOrder != "BGR" {
		bad("input.channel_order is %q; want RGB or BGR", m.Input.ChannelOrder)
	}
	for i, s := range m.Input.Std {
		if !(s > 0) {
			bad("input.std[%d] is %v; must be > 0", i, s)
		}
	}
	if m.Outputs.Logit == "" {
		bad("outputs.logit is empty")
	}
	if !(m.SegmentationThreshold >= 0 && m.SegmentationThreshold <= 1) {
		bad("segmentation_threshold is %v; it applies to per-pixel probabilities, so it must be within [0, 1]", m.SegmentationThreshold)
	}
	if !(m.Threshold >= 0 && m.Threshold <= 1) {
		bad("threshold is %v; it applies to sigmoid scores, so it must be within [0, 1]", m.Threshold)
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// versionRE is what a model version may look like. Versions name files and folders
// (the registry's, the negatives pool's) and travel in every verdict, so they are
// plain: letters, digits, '.', '_', '+', '-', starting with a letter or digit.
var versionRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$`)

// CheckVersion reports whether v is a usable model version: a model.json can come from
// anywhere, and a version like "x/../../escape" would reach outside the folders it
// names.
func CheckVersion(v string) error {
	if !versionRE.MatchString(v) || strings.Contains(v, "..") {
		return fmt.Errorf("model_version %q: use 1 to 128 letters, digits, '.', '_', '+' and '-', starting with a letter or digit, without \"..\"", clipText(v, 80))
	}
	return nil
}

func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// ReadMetadata reads and validates dir/model.json. Unknown fields are rejected so that a
// typo in a hand-edited file is found rather than silently ignored.
func ReadMetadata(dir string) (Metadata, error) {
	path := filepath.Join(dir, MetadataFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return Metadata{}, fmt.Errorf("model metadata: %w", err)
	}
	var m Metadata
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Metadata{}, fmt.Errorf("model metadata %s: %w", path, err)
	}
	if err := m.Validate(); err != nil {
		return Metadata{}, fmt.Errorf("model metadata %s: %w", path, err)
	}
	return m, nil
}

// WriteMetadata validates m and writes dir/model.json atomically.
func WriteMetadata(dir string, m Metadata) error {
	if err := m.Validate(); err != nil {
		return fmt.Errorf("model metadata for %s: %w", dir, err)
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, MetadataFile), append(b, '\n'), 0o644)
}
