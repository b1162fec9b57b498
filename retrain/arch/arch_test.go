package arch

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/retrain"
	"github.com/diagd/diagd/retrain/fullnet"
	"github.com/diagd/diagd/retrain/registry"
	"github.com/diagd/diagd/retrain/segdec"
)

func TestParse(t *testing.T) {
	for in, want := range map[string]Name{"": Auto, "auto": Auto, "resnet50": ResNet50, "segdec": SegDec} {
		if got, err := Parse(in); err != nil || got != want {
			t.Errorf("Parse(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := Parse("vgg16"); err == nil {
		t.Error("Parse(vgg16) accepted")
	}
}

// resnet50 keeps the caller's trainer and base; nothing is written.
func TestPrepareResNetKeepsTheRun(t *testing.T) {
	reg := filepath.Join(t.TempDir(), "reg")
	o := retrain.DataDirOptions{Registry: reg, BaseModel: "/models/resnet", ImportIfEmpty: "/models/resnet"}
	resnet := fullnet.Auto{Trainable: fullnet.Head}
	got, err := Prepare(&o, Setup{Arch: ResNet50, ResNet: resnet})
	if err != nil || got != ResNet50 {
		t.Fatalf("Prepare = %q, %v", got, err)
	}
	if a, ok := o.Trainer.(fullnet.Auto); !ok || a.Trainable != fullnet.Head || o.BaseModel != "/models/resnet" {
		t.Errorf("options changed: %+v", o)
	}
	if _, err := os.Stat(filepath.Join(reg, FreshDir)); !os.IsNotExist(err) {
		t.Errorf("resnet50 wrote a fresh segdec network: %v", err)
	}
}

// segdec starts from a fresh network under the registry (the same one every time, so a
// run can resume on it), imported into an empty registry, and trains it with the
// recipe: every layer, the masks on the segmentation output, the decision's gradient
// stopped at DecisionInputs, augmentation on; user-set values are kept.
func TestPrepareSegDecFromScratch(t *testing.T) {
	reg := filepath.Join(t.TempDir(), "reg")
	o := retrain.DataDirOptions{Registry: reg, Seed: 3}
	got, err := Prepare(&o, Setup{Arch: SegDec, Config: fullnet.Config{Epochs: 7}})
	if err != nil || got != SegDec {
		t.Fatalf("Prepare = %q, %v", got, err)
	}
	fresh := filepath.Join(reg, FreshDir)
	if o.BaseModel != fresh || o.ImportIfEmpty != fresh {
		t.Errorf("base %q, import %q; want %q", o.BaseModel, o.ImportIfEmpty, fresh)
	}
	meta, err := detect.ReadMetadata(fresh)
	if err != nil || meta.Architecture != segdec.Architecture || meta.Outputs.Segmentation == "" {
		t.Fatalf("fresh model: %+v, %v", meta, err)
	}
	tr, ok := o.Trainer.(fullnet.Trainer)
	if !ok {
		t.Fatalf("trainer %T, want fullnet.Trainer", o.Trainer)
	}
	c := tr.Config
	if c.Trainable != fullnet.All || c.Epochs != 7 || c.LR != SegDecLR || c.BatchNorm != fullnet.BNAlwaysTrain || c.Augment == nil {
		t.Errorf("recipe %+v", c)
	}
	if s := c.Segmentation; s == nil || s.Output != segdec.SegmentationName || !slices.Equal(s.StopGradient, segdec.DecisionInputs[:]) || s.Weights == nil {
		t.Errorf("segmentation %+v", s)
	}
	digest := func() string {
		b, err := os.ReadFile(filepath.Join(fresh, detect.ModelFile))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	first := digest()
	os.Remove(filepath.Join(fresh, detect.ModelFile))
	if _, err := Prepare(&retrain.DataDirOptions{Registry: reg, Seed: 3}, Setup{Arch: SegDec}); err != nil {
		t.Fatal(err)
	}
	if digest() != first {
		t.Error("the fresh network differs between runs of the same seed")
	}
}

// auto trains what the registry serves, else what it would import; resnet50 when
// nothing says.
func TestPrepareAutoFollowsTheServingModel(t *testing.T) {
	dir := t.TempDir()
	seg := filepath.Join(dir, "seg")
	m, err := segdec.CPUOptions().Model()
	if err != nil {
		t.Fatal(err)
	}
	if err := segdec.WriteModel(seg, m, segdec.Metadata("s", segdec.CPUOptions())); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other")
	if err := os.MkdirAll(other, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := detect.WriteMetadata(other, detect.DefaultMetadata("r")); err != nil {
		t.Fatal(err)
	}
	reg := filepath.Join(dir, "reg")
	for _, c := range []struct {
		importing string
		current   string
		want      Name
	}{{"", "", ResNet50}, {seg, "", SegDec}, {other, "", ResNet50}, {other, seg, SegDec}} {
		os.RemoveAll(reg)
		if c.current != "" {
			os.MkdirAll(reg, 0o755)
			if err := os.Symlink(c.current, filepath.Join(reg, registry.CurrentLink)); err != nil {
				t.Fatal(err)
			}
		}
		o := retrain.DataDirOptions{Registry: reg, ImportIfEmpty: c.importing}
		got, err := Prepare(&o, Setup{Arch: Auto, ResNet: fullnet.Auto{}})
		if err != nil || got != c.want {
			t.Errorf("import %q, current %q: %q, %v; want %q", c.importing, c.current, got, err, c.want)
		}
	}
}
