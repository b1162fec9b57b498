package retrain

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/imageio"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/internal/testenv"
	"github.com/diagd/diagd/retrain/dataset"
	"github.com/diagd/diagd/retrain/gate"
	"github.com/diagd/diagd/retrain/registry"
	"github.com/diagd/diagd/retrain/rtest"
)

var cpu = ortenv.Options{Provider: ortenv.CPU}

func openLocked(t *testing.T, o registry.Options) *registry.Registry {
	t.Helper()
	reg, err := registry.Open(testenv.Logger(t), filepath.Join(t.TempDir(), "reg"), o)
	if err != nil {
		t.Fatal(err)
	}
	release, err := reg.Lock()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	return reg
}

// dataDir writes diagd's data folder: defect-free negatives, a few real defects, and
// accepted synthetic defects in the generator's layout (image, mask, sidecar).
func dataDir(t *testing.T, neg, real, syn int) string {
	t.Helper()
	d := t.TempDir()
	rtest.Folder(t, filepath.Join(d, dataset.NegativesDir), neg, false, false, 1)
	rtest.Folder(t, filepath.Join(d, dataset.DefectsDir), real, true, true, 2)
	acc := filepath.Join(d, dataset.AcceptedDir)
	rtest.Folder(t, acc, syn, true, true, 3)
	for i := range syn {
		os.WriteFile(filepath.Join(acc, fmt.Sprintf("%05d.json", i)), []byte(`{"prompt":"white marks on the wall"}`), 0o644)
	}
	return d
}

// zeroShotSplit is the pipeline test's data: 120 good images, 16 real bright-blob
// defects (held out, as zero-shot does) and 40 synthetic ones; a quarter of the good
// images and every real defect validate.
func zeroShotSplit(t *testing.T) (tr, val *dataset.Set) {
	t.Helper()
	real, syn, err := dataset.DataDir(dataDir(t, 120, 16, 40), dataset.Options{})
	if err != nil {
		t.Fatal(err)
	}
	train, err := dataset.Compose(real, syn, dataset.ZeroShot, 0)
	if err != nil {
		t.Fatal(err)
	}
	var excluded []dataset.Item
	for _, it := range real.Items {
		if it.Label {
			excluded = append(excluded, it)
		}
	}
	tr, val = Holdout(train, excluded, 0.25, 1)
	if neg, pos := val.Counts(); neg != 30 || pos != 16 {
		t.Fatalf("validation holds %d ok and %d defects; want 30 (25%% of 120) and the 16 real defects", neg, pos)
	}
	return tr, val
}

// The head is trained on a task with a known answer: defects are bright blobs. The
// base model's random head scores at about chance; the retrained head must separate
// the classes almost perfectly on held-out real defects, the written ONNX must give
// the same logits, and the registry must promote it over the base.
func TestRunZeroShotPromotes(t *testing.T) {
	testenv.ORT(t)
	log := testenv.Logger(t)
	base := rtest.Model(t, filepath.Join(t.TempDir(), "base"), "base-1", 7)
	reg := openLocked(t, registry.Options{Keep: 2})
	if v1, err := EnsureBase(reg, base); err != nil || v1 != "v1" {
		t.Fatal(v1, err)
	}
	tr, val := zeroShotSplit(t)
	cache := filepath.Join(t.TempDir(), "cache")
	var events []Progress
	out, err := Run(t.Context(), Config{Log: log, Registry: reg, Train: tr, Val: val, ValName: "holdout",
		CacheDir: cache, Session: cpu, Progress: func(p Progress) { events = append(events, p) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("candidate AP %.4f, serving AP %.4f, decision %s: %s", out.Candidate.AP, out.Serving.AP, out.Decision.Action, out.Decision.Reason)
	if out.Candidate.AP < 0.95 || out.Serving.AP > 0.8 {
		t.Errorf("candidate AP %.4f, serving (random head) AP %.4f; want >= 0.95 and near chance (%.2f)", out.Candidate.AP, out.Serving.AP, 16.0/46)
	}
	if !out.Promoted || out.Version != "v2" || events[len(events)-1].Stage != "done" {
		t.Fatalf("outcome %+v, last event %+v; want v2 promoted, then done", out.Decision, events[len(events)-1])
	}
	checkPromotedVersion(t, reg, out)
	checkServedVerdicts(t, reg, val, out)
	// A second run on the same data hits the feature cache and, with AP equal, the
	// default tolerance 0 still promotes (not lower than serving).
	out2, err := Run(t.Context(), Config{Log: log, Registry: reg, Train: tr, Val: val, ValName: "holdout", CacheDir: cache, Session: cpu})
	if err != nil {
		t.Fatal(err)
	}
	if out2.FeaturesCached != len(tr.Items)+len(val.Items) {
		t.Errorf("second run took %d of %d images from the feature cache", out2.FeaturesCached, len(tr.Items)+len(val.Items))
	}
	// Same head, scored by ORT in float32 instead of Go in float64: equal up to rare swaps.
	if math.Abs(out2.Serving.AP-out.Candidate.AP) > 0.01 {
		t.Errorf("serving v2 re-evaluated at AP %v; it earned %v on the same data", out2.Serving.AP, out.Candidate.AP)
	}
	// Serving v3 (promoted by out2) is compared by running it when the base backbone
	// differs: here a base with other weights, so nothing comes from the cache and the
	// serving model's logits come from ORT through detect.
	other := rtest.Model(t, filepath.Join(t.TempDir(), "other"), "other", 99)
	out3, err := Run(t.Context(), Config{Log: log, Registry: reg, BaseModel: other, Train: tr, Val: val, ValName: "holdout",
		CacheDir: cache, Session: cpu, NoPromote: true})
	if err != nil {
		t.Fatal(err)
	}
	if out3.FeaturesCached != 0 || math.Abs(out3.Serving.AP-out.Candidate.AP) > 0.01 {
		t.Errorf("third run: %d cached, serving AP %v; want 0 and about %v", out3.FeaturesCached, out3.Serving.AP, out.Candidate.AP)
	}
	checkSharedBackbone(t, reg)
}

// checkPromotedVersion checks the promoted version's metadata and files.
func checkPromotedVersion(t *testing.T, reg *registry.Registry, out *Outcome) {
	t.Helper()
	cur, err := reg.Current()
	if err != nil || cur.Name != "v2" {
		t.Fatalf("current %v %v; want v2", cur.Name, err)
	}
	m := cur.Meta
	if m.ModelVersion != "v2" || m.Validation == nil || m.Validation.AP != out.Candidate.AP || m.TrainingDataDigest == "" {
		t.Errorf("metadata %+v", m)
	}
	if m.Training["imbalance"] != "pos-weight" || m.Training["pos_weight"].(float64) != 90.0/40 {
		t.Errorf("training info %v; want pos-weight 90/40 (90 training negatives, 40 synthetic)", m.Training)
	}
	// The threshold is the max-F1 point, stored as a sigmoid score.
	if want := detect.Sigmoid(float32(out.Candidate.Threshold)); m.Threshold != want {
		t.Errorf("threshold %v, want sigmoid(%v) = %v", m.Threshold, out.Candidate.Threshold, want)
	}
	for _, f := range []string{registry.MetricsFile, registry.ManifestFile, PRCurveFile, ScoresFile} {
		b, err := os.ReadFile(filepath.Join(cur.Dir, f))
		if err != nil || (filepath.Ext(f) == ".json" && !json.Valid(b)) {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// checkServedVerdicts loads the promoted model as the daemon does: on the validation
// images the detector fails exactly the report's TP defects and FP good parts (the
// stored max-F1 threshold).
func checkServedVerdicts(t *testing.T, reg *registry.Registry, val *dataset.Set, out *Outcome) {
	t.Helper()
	d := detect.New(testenv.Logger(t), detect.Options{})
	curDir, err := reg.CurrentDir()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.LoadAndSwap(curDir); err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var tp, fp int
	for _, it := range val.Items {
		m, err := imageio.Read(it.Path)
		if err != nil {
			t.Fatal(err)
		}
		res := make([]detect.Result, 1)
		err = d.Judge([]gocv.Mat{m}, res)
		m.Close()
		if err != nil || res[0].Err != nil {
			t.Fatal(err, res[0].Err)
		}
		if res[0].Verdict == detect.Fail && it.Label {
			tp++
		} else if res[0].Verdict == detect.Fail {
			fp++
		}
	}
	if tp != out.Candidate.TP || fp != out.Candidate.FP {
		t.Errorf("served verdicts: %d TP %d FP; the validation report says %d and %d", tp, fp, out.Candidate.TP, out.Candidate.FP)
	}
}

// checkSharedBackbone: every version with the base's backbone stores it once: v1
// (imported), v2 and v3 (retrained heads) hold one side file between them; v4 has
// another backbone.
func checkSharedBackbone(t *testing.T, reg *registry.Registry) {
	t.Helper()
	var blobs []os.FileInfo
	for _, v := range []string{"v1", "v2", "v3", "v4"} {
		b, _ := filepath.Glob(filepath.Join(reg.Dir, registry.ModelsDir, v, "backbone-*.bin"))
		if len(b) != 1 {
			t.Fatalf("%s holds %v; want one backbone side file", v, b)
		}
		st, _ := os.Stat(b[0])
		blobs = append(blobs, st)
	}
	if !os.SameFile(blobs[0], blobs[1]) || !os.SameFile(blobs[0], blobs[2]) || os.SameFile(blobs[0], blobs[3]) {
		t.Error("versions of one backbone do not share its side file (or another backbone does)")
	}
}

// scoreless wraps a trainer and hides its Score, as a trainer that changes the backbone
// would: the pipeline must then score the written model itself.
type scoreless struct{ Trainer }

func (s scoreless) Train(ctx context.Context, ds TrainSet, p func(Progress)) (*Candidate, error) {
	c, err := s.Trainer.Train(ctx, ds, p)
	if c != nil {
		c.Score = nil
	}
	return c, err
}

func TestRunTrainerWithoutScore(t *testing.T) {
	testenv.ORT(t)
	log := testenv.Logger(t)
	data := dataDir(t, 40, 8, 20)
	base := rtest.Model(t, filepath.Join(t.TempDir(), "base"), "base-1", 7)
	reg := openLocked(t, registry.Options{})
	real, syn, err := dataset.DataDir(data, dataset.Options{})
	if err != nil {
		t.Fatal(err)
	}
	train, _ := dataset.Compose(real, syn, dataset.FullShot, 0)
	tr, val := Holdout(train, nil, 0.25, 2)
	// 2 validation defects: below the gate's default minimum, which this test is not about.
	cfg := Config{Log: log, Registry: reg, BaseModel: base, Train: tr, Val: val, Session: cpu, NoPromote: true,
		Trainer: HeadTrainer{}, Gate: gate.Settings{MinDefects: 2}}
	a, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Trainer = scoreless{cfg.Trainer}
	b, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Same seed, same head; scored in Go (a) and by running the written ONNX model (b).
	if math.Abs(a.Candidate.AP-b.Candidate.AP) > 0.01 || b.Candidate.N != len(val.Items) {
		t.Errorf("AP from features %v, from the written model %v (n=%d)", a.Candidate.AP, b.Candidate.AP, b.Candidate.N)
	}
	// No serving model and --no-promote: held, nothing current.
	if a.Promoted || a.Decision.Action != "hold" {
		t.Errorf("decision %+v; want hold", a.Decision)
	}
	if _, err := reg.Current(); err == nil {
		t.Error("a held candidate became current")
	}
}
