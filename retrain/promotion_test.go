package retrain

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/testenv"
	"github.com/diagd/diagd/retrain/dataset"
	"github.com/diagd/diagd/retrain/gate"
	"github.com/diagd/diagd/retrain/head"
	"github.com/diagd/diagd/retrain/registry"
	"github.com/diagd/diagd/retrain/rtest"
)

// noiseFolder writes defect-free surfaces into ok/ and defect/ at random: labels the
// images carry no trace of, so any model is at chance on them.
func noiseFolder(t *testing.T, dir string, n, pos int, seed uint64) *dataset.Set {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 5))
	for i := range n {
		img, _ := rtest.CrackImage(rng, false)
		sub := "ok"
		if i < pos {
			sub = "defect"
		}
		rtest.WritePNG(t, filepath.Join(dir, sub, fmt.Sprintf("%04d.png", i)), img)
	}
	s, err := dataset.Folder(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// servingRegistry is a locked registry serving the base model as v1.
func servingRegistry(t *testing.T, base string) *registry.Registry {
	t.Helper()
	reg := openLocked(t, registry.Options{})
	if _, err := EnsureBase(reg, base); err != nil {
		t.Fatal(err)
	}
	return reg
}

// The case through the whole pipeline: 18 validation defects that the images
// do not show. The candidate is refused as chance-level, the flag is in model.json,
// metrics.json and decisions.jsonl, and v1 keeps serving.
func TestRunRefusesChanceLevelCandidate(t *testing.T) {
	testenv.ORT(t)
	base := rtest.Model(t, filepath.Join(t.TempDir(), "base"), "base", 7)
	reg := servingRegistry(t, base)
	tr := noiseFolder(t, t.TempDir(), 120, 30, 1)
	va := noiseFolder(t, t.TempDir(), 135, 18, 2)
	out, err := Run(t.Context(), Config{Log: testenv.Logger(t), Registry: reg, Train: tr, Val: va, ValName: "noise", Session: cpu})
	if err != nil {
		t.Fatal(err)
	}
	d := out.Decision
	t.Logf("candidate AP %.4f: %s: %s", out.Candidate.AP, d.Action, d.Reason)
	if out.Promoted || d.Action != gate.Reject || !slices.Contains(d.Flags, gate.FlagChance) || d.ChanceAPUpper == nil {
		t.Fatalf("decision %+v; want rejected as chance-level", d)
	}
	if cur, _ := reg.Current(); cur.Name != "v1" {
		t.Errorf("current %s; want v1 to keep serving", cur.Name)
	}
	// Flagged wherever one looks: model.json, metrics.json, decisions.jsonl.
	meta, err := detect.ReadMetadata(out.Dir)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := json.Marshal(meta.Training["gate"])
	if !strings.Contains(string(g), `"chance-level"`) || !strings.Contains(string(g), `"action":"reject"`) {
		t.Errorf("model.json gate %s", g)
	}
	var mf struct {
		Gate struct {
			Flags      []string `json:"flags"`
			ChanceBand *struct {
				Upper float64 `json:"upper"`
			} `json:"chance_band"`
		} `json:"gate"`
	}
	b, _ := os.ReadFile(filepath.Join(out.Dir, registry.MetricsFile))
	if err := json.Unmarshal(b, &mf); err != nil || !slices.Contains(mf.Gate.Flags, gate.FlagChance) || mf.Gate.ChanceBand == nil {
		t.Errorf("metrics.json gate %+v (%v)", mf.Gate, err)
	}
	ds, err := reg.Decisions()
	if err != nil || len(ds) != 2 || !slices.Contains(ds[1].Flags, gate.FlagChance) {
		t.Errorf("decisions %+v %v", ds, err)
	}
}

// Too few validation defects: no decision, said so, and v1 keeps serving; the candidate
// is kept in the registry for a person to look at.
func TestRunNoDecisionWithFewDefects(t *testing.T) {
	testenv.ORT(t)
	base := rtest.Model(t, filepath.Join(t.TempDir(), "base"), "base", 7)
	reg := servingRegistry(t, base)
	tr, va := crackSet(t, 60, 20, 1), crackSet(t, 30, 5, 2)
	out, err := Run(t.Context(), Config{Log: testenv.Logger(t), Registry: reg, Train: tr, Val: va, ValName: "few", Session: cpu})
	if err != nil {
		t.Fatal(err)
	}
	d := out.Decision
	if out.Promoted || d.Action != gate.NoDecision || !strings.Contains(d.Reason, "validation has 5 defects; at least 10 are needed") ||
		!strings.Contains(d.Reason, "keeping v1") || out.Version != "v2" {
		t.Errorf("decision %+v", d)
	}
	if cur, _ := reg.Current(); cur.Name != "v1" {
		t.Errorf("current %s; want v1", cur.Name)
	}
}

// nanTrainer stands for a trainer that changes the backbone and diverged: it writes a
// model whose head weights are NaN and gives no Score, so the pipeline runs the model.
type nanTrainer struct{}

func (nanTrainer) Name() string { return "nan" }

func (nanTrainer) Train(_ context.Context, ds TrainSet, _ func(Progress)) (*Candidate, error) {
	h := &head.Head{W: make([]float32, len(ds.Features[0]))}
	h.W[0] = float32(math.NaN())
	src := filepath.Join(ds.BaseDir, detect.ModelFile)
	return &Candidate{WriteModel: func(path string) error {
		return head.WriteBack(src, path, ds.BaseMeta.Outputs.Logit, ds.BaseMeta.Outputs.Features, h)
	}, Training: map[string]any{"method": "nan"}}, nil
}

// someNaN wraps a trainer whose scores are NaN on every third validation image (the
// i-th call scores validation image i): finite on the probe, non-finite on some data.
type someNaN struct{ Trainer }

func (s someNaN) Train(ctx context.Context, ds TrainSet, p func(Progress)) (*Candidate, error) {
	c, err := s.Trainer.Train(ctx, ds, p)
	if err != nil {
		return nil, err
	}
	score, calls := c.Score, 0
	c.Score = func(f []float32) float64 {
		calls++
		if calls%3 == 1 {
			return math.NaN()
		}
		return score(f)
	}
	return c, nil
}

// Issue 8: a candidate whose validation scores are not finite is refused with the
// reason, not stored, and v1 keeps serving: whether the written model is refused at
// load (detect's probe) or only some validation images score NaN.
func TestRunRefusesNonFiniteCandidate(t *testing.T) {
	testenv.ORT(t)
	for _, c := range []struct {
		name    string
		trainer Trainer
		reason  func(va *dataset.Set) string
	}{
		{"refused-at-load", nanTrainer{}, func(*dataset.Set) string { return "not a finite number on its probe image" }},
		{"some-images", someNaN{HeadTrainer{}}, func(va *dataset.Set) string {
			return "non-finite scores on 10 of 30 validation images (first: " + va.Items[0].Path + ", NaN)"
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			base := rtest.Model(t, filepath.Join(t.TempDir(), "base"), "base", 7)
			reg := servingRegistry(t, base)
			tr := noiseFolder(t, t.TempDir(), 30, 10, 1)
			va := noiseFolder(t, t.TempDir(), 30, 12, 2)
			out, err := Run(t.Context(), Config{Log: testenv.Logger(t), Registry: reg, Train: tr, Val: va, ValName: "nan",
				Trainer: c.trainer, Session: cpu})
			if err != nil {
				t.Fatal(err)
			}
			d := out.Decision
			t.Logf("%s: %s", d.Action, d.Reason)
			if out.Promoted || d.Action != gate.Reject || !slices.Equal(d.Flags, []string{gate.FlagNonFinite}) || out.Version != "" ||
				d.Candidate != "" || !strings.Contains(d.Reason, "not stored") || !strings.Contains(d.Reason, c.reason(va)) {
				t.Fatalf("decision %+v outcome version %q", d, out.Version)
			}
			vs, _, err := reg.List()
			if err != nil || len(vs) != 1 {
				t.Errorf("registry versions %d (%v); the refused candidate must not be stored", len(vs), err)
			}
			if ds, _ := reg.Decisions(); len(ds) != 2 || ds[1].Action != gate.Reject {
				t.Errorf("decisions %+v", ds)
			}
		})
	}
}

// A serving model that yields non-finite scores cannot be compared with: the gate says
// so and judges the candidate on its own.
func TestRunServingNonFinite(t *testing.T) {
	testenv.ORT(t)
	base := rtest.Model(t, filepath.Join(t.TempDir(), "base"), "base", 7)
	broken := filepath.Join(t.TempDir(), "broken")
	os.MkdirAll(broken, 0o755)
	meta, _ := detect.ReadMetadata(base)
	h := &head.Head{W: make([]float32, 16)}
	h.W[3] = float32(math.NaN())
	if err := head.WriteBack(filepath.Join(base, detect.ModelFile), filepath.Join(broken, detect.ModelFile), meta.Outputs.Logit, meta.Outputs.Features, h); err != nil {
		t.Fatal(err)
	}
	detect.WriteMetadata(broken, meta)
	reg := servingRegistry(t, broken) // v1 serves NaN
	tr, va := crackSet(t, 120, 40, 1), crackSet(t, 60, 20, 2)
	out, err := Run(t.Context(), Config{Log: testenv.Logger(t), Registry: reg, BaseModel: base, Train: tr, Val: va, ValName: "cracks", Session: cpu})
	if err != nil {
		t.Fatal(err)
	}
	d := out.Decision
	t.Logf("%s: %s", d.Action, d.Reason)
	if !out.Promoted || out.Serving != nil || !strings.Contains(d.Reason, "the serving model cannot be compared (v1") {
		t.Errorf("decision %+v", d)
	}
}
