package retrain

import (
	"errors"
	"fmt"

	"github.com/diagd/diagd/retrain/dataset"
	"github.com/diagd/diagd/retrain/registry"
)

// This file holds the steps both `diagd train` and the daemon's retraining job take
// around Run, so the two assemble a run the same way.

// EnsureBase makes an empty registry serve base: when the registry has no current
// version and base is a model folder, base is imported, promoted and the decision
// logged. It returns the imported version, or "" when the registry already serves one
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
	v, err := reg.Import(base)
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
