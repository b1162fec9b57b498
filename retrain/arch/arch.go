// Package arch says which network a retraining run trains, and sets the run up for it:
// resnet50 (the paper's classifier, fine-tuned from the base model's weights, head,
// last stage or every layer: package fullnet's Auto) or segdec (the segmentation +
// decision network of package segdec, trained from random weights, every layer, with the
// masks supervising its segmentation output). `diagd train --arch` and the daemon's
// DIAGD_ARCH share it.
package arch

import (
	"fmt"
	"path/filepath"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/retrain"
	"github.com/diagd/diagd/retrain/fullnet"
	"github.com/diagd/diagd/retrain/registry"
	"github.com/diagd/diagd/retrain/segdec"
)

// Name is an architecture setting.
type Name string

// Settings.
const (
	// Auto trains what serves: segdec when the registry's current model (else the base
	// or imported model) is a segdec network, resnet50 otherwise.
	Auto     Name = "auto"
	ResNet50 Name = "resnet50"
	SegDec   Name = segdec.Architecture
)

// Parse checks a setting from a flag or the environment ("" is Auto).
func Parse(s string) (Name, error) {
	switch n := Name(s); n {
	case "":
		return Auto, nil
	case Auto, ResNet50, SegDec:
		return n, nil
	}
	return "", fmt.Errorf("architecture %q: want auto, resnet50 or segdec", s)
}

// FreshDir is where a registry keeps the untrained segdec network a run starts from
// (regenerated from its seed, so it is the same network every time: an interrupted run
// resumes on it).
const FreshDir = "fresh-segdec"

// Setup is what Prepare needs beyond the run's options.
type Setup struct {
	Arch Name
	// Config is the recipe as the user set it (zero values: the architecture's
	// defaults). For segdec, Config.Trainable is ignored: a network from scratch trains
	// every layer.
	Config fullnet.Config
	// GPU says whether training runs on a GPU provider (asked for segdec only): the
	// published (wide) network is used there instead of the CPU default. nil: CPU.
	GPU func() bool
	// ResNet is the trainer for resnet50 (fullnet.Auto, as configured by the caller).
	ResNet  retrain.Trainer
	Trainer fullnet.Trainer // Log, Session and SessionConfig for segdec's trainer
}

// Prepare resolves Auto and sets o's trainer, and for segdec its base model: a fresh
// network under the registry (FreshDir), also imported as the first version when the
// registry is empty and o imports nothing else. It returns the architecture chosen.
func Prepare(o *retrain.DataDirOptions, s Setup) (Name, error) {
	if a := Resolve(s.Arch, o); a != SegDec {
		o.Trainer = s.ResNet
		return ResNet50, nil
	}
	opts := segdec.CPUOptions()
	if s.GPU != nil && s.GPU() {
		opts = segdec.GPUOptions()
	}
	opts.Seed = o.Seed
	dir := filepath.Join(o.Registry, FreshDir)
	if err := writeFresh(dir, opts); err != nil {
		return "", fmt.Errorf("writing the untrained segdec network: %w", err)
	}
	o.BaseModel = dir
	if o.ImportIfEmpty == "" {
		o.ImportIfEmpty = dir
	}
	t := s.Trainer
	t.Config = Recipe(s.Config, opts)
	if err := t.Config.Validate(); err != nil {
		return "", err
	}
	o.Trainer = t
	return SegDec, nil
}

// Resolve turns Auto into the architecture of the model the run o would start from:
// the registry's current model, else the one it would import (resnet50 when none).
func Resolve(a Name, o *retrain.DataDirOptions) Name {
	if a != Auto && a != "" {
		return a
	}
	return serving(o)
}

func serving(o *retrain.DataDirOptions) Name {
	for _, dir := range []string{filepath.Join(o.Registry, registry.CurrentLink), o.BaseModel, o.ImportIfEmpty} {
		if dir == "" {
			continue
		}
		if m, err := detect.ReadMetadata(dir); err == nil {
			if m.Architecture == segdec.Architecture {
				return SegDec
			}
			return ResNet50
		}
	}
	return ResNet50
}

// writeFresh writes the untrained network of opts to dir (atomically; the same seed
// gives the same file, so a rewrite changes nothing a resumed run relies on).
func writeFresh(dir string, opts segdec.Options) error {
	m, err := opts.Model()
	if err != nil {
		return err
	}
	meta := segdec.Metadata(fmt.Sprintf("segdec-untrained-seed%d", opts.Seed), opts)
	meta.Training = map[string]any{"method": "none", "note": "random initial weights: the starting point of training from scratch"}
	return segdec.WriteModel(dir, m, meta)
}
