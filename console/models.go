package console

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path"
	"slices"
	"strconv"

	"github.com/diagd/diagd/retrain"
	"github.com/diagd/diagd/retrain/registry"
)

// maxDecisions is how many decision log lines the page shows (the newest).
const maxDecisions = 200

// ModelRegistry is the model registry as the page shows it. Promote and rollback take the
// registry's lock as `diagd models` does and log the decision with who made it; the
// daemon's model watcher swaps the new current model in.
type ModelRegistry struct {
	dir string
	log *slog.Logger
}

// NewModelRegistry reads and changes the registry at dir.
func NewModelRegistry(log *slog.Logger, dir string) *ModelRegistry {
	return &ModelRegistry{dir: dir, log: log}
}

func (m *ModelRegistry) open() (*registry.Registry, error) {
	if _, err := os.Stat(path.Join(m.dir, registry.ModelsDir)); err != nil {
		return nil, fmt.Errorf("%w: no model registry at %s yet", ErrNotFound, m.dir)
	}
	return registry.Open(m.log, m.dir, registry.Options{})
}

// openLocked opens the registry and takes its lock, for a change; release frees it.
func (m *ModelRegistry) openLocked() (reg *registry.Registry, release func(), err error) {
	if reg, err = m.open(); err != nil {
		return nil, nil, err
	}
	if release, err = reg.Lock(); err != nil {
		return nil, nil, err
	}
	return reg, release, nil
}

// Models lists the versions (newest first) and the decision log (newest first).
func (m *ModelRegistry) Models() (ModelList, error) {
	out := ModelList{Registry: m.dir, Versions: []ModelInfo{}, Decisions: []DecisionLog{}}
	reg, err := m.open()
	if err != nil {
		out.Problems = []string{err.Error()}
		return out, nil
	}
	vs, problems, err := reg.List()
	if err != nil {
		return out, err
	}
	out.Problems = problems
	for _, v := range slices.Backward(vs) {
		out.Versions = append(out.Versions, modelInfo(v))
	}
	ds, err := reg.Decisions()
	if err != nil {
		out.Problems = append(out.Problems, "decision log: "+err.Error())
	}
	for i := len(ds) - 1; i >= 0 && len(out.Decisions) < maxDecisions; i-- {
		d := ds[i]
		out.Decisions = append(out.Decisions, DecisionLog{Time: d.Time, Action: d.Action, Candidate: d.Candidate,
			Serving: d.Serving, CandidateAP: d.CandidateAP, ServingAP: d.ServingAP, Reason: d.Reason})
	}
	return out, nil
}

func modelInfo(v registry.Version) ModelInfo {
	mi := ModelInfo{Version: v.Name, Current: v.Current, Previous: v.Previous}
	if v.Problem != nil {
		mi.Problem = v.Problem.Error()
	}
	if _, err := os.Stat(path.Join(v.Dir, retrain.PRCurveFile)); err == nil {
		mi.HasPRCurve = true
	}
	md := v.Meta
	if md == nil {
		return mi
	}
	mi.ModelVersion, mi.Created, mi.Threshold, mi.ThresholdRule = md.ModelVersion, md.CreatedAt, md.Threshold, md.ThresholdRule
	if val := md.Validation; val != nil {
		mi.AP, mi.AUROC, mi.F1, mi.ValImages = &val.AP, &val.AUROC, &val.F1Max, val.Images
	}
	mi.Recipe = recipe(md.Training)
	return mi
}

// recipe flattens model.json's training record into sorted key/value text; long lists
// (loss per epoch) are summarised.
func recipe(t map[string]any) []KeyValue {
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out []KeyValue
	for _, k := range keys {
		out = append(out, KeyValue{Key: k, Value: valueText(t[k])})
	}
	return out
}

func valueText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'g', 6, 64)
	case []any:
		if len(x) > 6 {
			return fmt.Sprintf("%d values, first %s, last %s", len(x), valueText(x[0]), valueText(x[len(x)-1]))
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}

// PRCurve opens a version's PR-curve PNG.
func (m *ModelRegistry) PRCurve(version string) (File, error) {
	if err := checkID(versionRE, "version", version); err != nil {
		return File{}, err
	}
	root, err := os.OpenRoot(m.dir)
	if err != nil {
		return File{}, fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	defer root.Close() // an open file outlives its Root
	return openFile(root, path.Join(registry.ModelsDir, version, retrain.PRCurveFile))
}

// Promote makes version current, logging "manual-promote" with who asked.
func (m *ModelRegistry) Promote(version, by string) error {
	if err := checkID(versionRE, "version", version); err != nil {
		return err
	}
	reg, release, err := m.openLocked()
	if err != nil {
		return err
	}
	defer release()
	old := ""
	if c, err := reg.Current(); err == nil {
		old = c.Name
	}
	if err := reg.Promote(version); err != nil {
		return err
	}
	return reg.LogDecision(registry.Decision{Action: "manual-promote", Candidate: version, Serving: old,
		Reason: "promoted from the console by " + by})
}

// Rollback makes the previous version current again.
func (m *ModelRegistry) Rollback(by string) error {
	reg, release, err := m.openLocked()
	if err != nil {
		return err
	}
	defer release()
	from, to, err := reg.Rollback()
	if err != nil {
		return err
	}
	return reg.LogDecision(registry.Decision{Action: "rollback", Candidate: to, Serving: from,
		Reason: "rolled back from the console by " + by})
}
