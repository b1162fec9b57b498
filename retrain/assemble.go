package retrain

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/retrain/dataset"
	"github.com/diagd/diagd/retrain/head"
	"github.com/diagd/diagd/retrain/registry"
)

// This file holds the steps both `diagd train` and the daemon's retraining job take
// around Run, so the two assemble a run the same way.

// EnsureBase makes an empty registry serve base: when the registry has no current
// version and base is a model folder, base is imported (see Import), promoted and the
// decision logged. It returns the imported version, or "" when the registry already serves one
// (or base is ""). The caller holds the registry's Lock.
func EnsureBase(reg *registry.Registry, base string) (string, error) {
	_, err := reg.Current()
	switch {
	case err == nil:
		return "", nil
	case !errors.Is(err, registry.ErrNoCurrent):
		return "", err
	case base == "":
		return "", nil
	}
	v, err := Import(reg, base)
	if err != nil {
		return "", err
	}
	if err := reg.Promote(v); err != nil {
		return "", err
	}
	if err := reg.LogDecision(registry.Decision{Action: "manual-promote", Candidate: v,
		Reason: "empty registry: base model " + base + " imported as the serving model"}); err != nil {
		return "", err
	}
	return v, nil
}

// Import adds a model folder to the registry as a new version (not promoted), stored so
// that later versions with the same backbone share it (head.Store). A model whose head
// cannot be located (no features output, not a Gemm) is copied as it is.
func Import(reg *registry.Registry, src string) (string, error) {
	meta, err := detect.ReadMetadata(src)
	if err != nil {
		return reg.Import(src) // the registry words the problem
	}
	model := filepath.Join(src, detect.ModelFile)
	if _, _, err := head.ReadHead(model, meta.Outputs.Logit, meta.Outputs.Features); err != nil {
		return reg.Import(src)
	}
	return reg.ImportFunc(src, func(dst string) error {
		return head.Store(model, filepath.Join(dst, detect.ModelFile), meta.Outputs.Logit, meta.Outputs.Features)
	})
}

// HoldoutValidation is the validation set used when none is given: a seeded share frac
// of the real images of each class held out of train, plus, in zero-shot, every real
// defect (which the protocol keeps out of training); see Holdout. real is the set train
// was composed from; dataName describes it in the validation set's name.
func HoldoutValidation(train, real *dataset.Set, mode dataset.Mode, frac float64, seed uint64, dataName string) (tr, val *dataset.Set, name string) {
	var excluded []dataset.Item
	if mode == dataset.ZeroShot && real != nil {
		for _, it := range real.Items {
			if it.Label && !it.IsSynthetic() {
				excluded = append(excluded, it)
			}
		}
	}
	tr, val = Holdout(train, excluded, frac, seed)
	return tr, val, fmt.Sprintf("holdout %.0f%% of %s (seed %d)", 100*frac, dataName, seed)
}

// Holdout splits validation data off a training set when no validation set is given:
// a stratified share frac of the real images of each class (seeded), plus every real
// defect the protocol kept out of training (zero-shot), so validation has real defects
// whenever any exist. Only when it would still hold no defect is the same share of the
// synthetic defects held out too.
func Holdout(train *dataset.Set, excluded []dataset.Item, frac float64, seed uint64) (tr, val *dataset.Set) {
	rng := rand.New(rand.NewPCG(seed, 0x7a1))
	tr, val = &dataset.Set{Skipped: train.Skipped}, &dataset.Set{}
	val.Items = append(val.Items, excluded...)
	held := make([]bool, len(train.Items))
	take := func(pred func(dataset.Item) bool) {
		var idx []int
		for i, it := range train.Items {
			if pred(it) {
				idx = append(idx, i)
			}
		}
		rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
		n := int(math.Round(frac * float64(len(idx))))
		if n == len(idx) && n > 1 {
			n-- // keep at least one for training
		}
		for _, i := range idx[:n] {
			val.Items = append(val.Items, train.Items[i])
			held[i] = true
		}
	}
	take(func(it dataset.Item) bool { return !it.IsSynthetic() && !it.Label })
	take(func(it dataset.Item) bool { return !it.IsSynthetic() && it.Label })
	if _, pos := val.Counts(); pos == 0 {
		take(func(it dataset.Item) bool { return it.IsSynthetic() && it.Label })
	}
	for i, it := range train.Items {
		if !held[i] {
			tr.Items = append(tr.Items, it)
		}
	}
	return tr, val
}
