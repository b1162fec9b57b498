package retrain

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/atomicfile"
	"github.com/diagd/diagd/retrain/dataset"
	"github.com/diagd/diagd/retrain/gate"
	"github.com/diagd/diagd/retrain/metrics"
	"github.com/diagd/diagd/retrain/registry"
)

// gateRecord is the gate's verdict as model.json and metrics.json keep it, so a model
// flagged as chance-level or failing good parts says so wherever it is looked at.
type gateRecord struct {
	Action        string              `json:"action"`
	Reason        string              `json:"reason"`
	Flags         []string            `json:"flags"`
	Confidence    float64             `json:"confidence"`
	MinDefects    int                 `json:"min_defects"`
	MaxGoodFail   float64             `json:"max_good_fail"`
	Tolerance     float64             `json:"tolerance"`
	GoodFailShare float64             `json:"good_fail_share"`
	ChanceBand    *metrics.ChanceBand `json:"chance_band,omitempty"`
	APDiff        *metrics.PairedDiff `json:"ap_diff_vs_serving,omitempty"`
	NotConverged  string              `json:"not_converged,omitempty"`
}

func (r *run) gateRecord() gateRecord {
	g, s := r.out.Gate, r.c.Gate
	flags := g.Flags
	if flags == nil {
		flags = []string{}
	}
	return gateRecord{Action: g.Action, Reason: g.Reason, Flags: flags, Confidence: s.Confidence, MinDefects: s.MinDefects,
		MaxGoodFail: s.MaxGoodFail, Tolerance: s.Tolerance, GoodFailShare: g.GoodFail, ChanceBand: g.Chance, APDiff: g.Diff,
		NotConverged: r.out.NotConverged}
}

// metricsFile is the version folder's metrics.json.
type metricsFile struct {
	Validation     validationInfo  `json:"validation"`
	Candidate      metrics.Report  `json:"candidate"`
	Serving        *metrics.Report `json:"serving"`
	ServingVersion string          `json:"serving_version"`
	ThresholdLogit float64         `json:"threshold_logit"`
	ThresholdScore float64         `json:"threshold_score"`
	ThresholdRule  string          `json:"threshold_rule"`
	Gate           gateRecord      `json:"gate"`
}

type validationInfo struct {
	Name            string `json:"name"`
	Images          int    `json:"images"`
	RealDefects     int    `json:"real_defects"`
	AlsoInTraining  int    `json:"also_in_training"`
	Scores          string `json:"scores"`
	ServingProblems string `json:"serving_problem,omitempty"`
}

// manifestFile is the version folder's manifest.json: every image it was trained and
// validated on, by content.
type manifestFile struct {
	TrainingDataDigest string         `json:"training_data_digest"`
	Train              []manifestRow  `json:"train"`
	Validation         []manifestRow  `json:"validation"`
	Skipped            []dataset.Skip `json:"skipped"`
}

type manifestRow struct {
	Path   string `json:"path"`
	Label  bool   `json:"label"`
	Source string `json:"source"`
	SHA256 string `json:"sha256"`
}

func manifestRows(p part) []manifestRow {
	rows := make([]manifestRow, len(p.items))
	for i, it := range p.items {
		rows[i] = manifestRow{Path: it.Path, Label: it.Label, Source: it.Source, SHA256: p.dig[i]}
	}
	return rows
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, append(b, '\n'), 0o644)
}

func realDefects(items []dataset.Item) int {
	n := 0
	for _, it := range items {
		if it.Label && !it.IsSynthetic() {
			n++
		}
	}
	return n
}

// countOverlap counts validation images whose bytes are also a training image: their
// scores are optimistic. Real data sets carry duplicates, so this is said, not refused.
func (r *run) countOverlap() {
	inTrain := make(map[string]bool, len(r.tr.dig))
	for _, d := range r.tr.dig {
		inTrain[d] = true
	}
	for i, d := range r.va.dig {
		if inTrain[d] {
			if r.overlap == 0 {
				r.log.Warn("validation image also in the training set (same bytes); its score is optimistic", "path", r.va.items[i].Path)
			}
			r.overlap++
		}
	}
}

// writeRecords writes the pictures and files a person looks at (PR curve, per-image
// scores) and the final model.json, metrics.json and manifest.json into staging.
func (r *run) writeRecords() error {
	r.countOverlap()
	y := r.va.labels()
	names := make([]string, len(r.va.items))
	for i, it := range r.va.items {
		names[i] = it.Path
	}
	if err := metrics.WritePRCurvePNG(filepath.Join(r.staging, PRCurveFile), r.candLogits, y,
		fmt.Sprintf("%s on %s", r.version, r.c.ValName)); err != nil {
		r.log.Warn("PR curve not written", "err", err.Error())
	}
	if err := metrics.WriteScoresCSV(filepath.Join(r.staging, ScoresFile), names, r.candLogits, y, r.thr); err != nil {
		r.log.Warn("validation scores not written", "err", err.Error())
	}
	digest, err := dataset.Digest(r.tr.items, r.tr.dig)
	if err != nil {
		return err
	}
	if err := r.writeMetadata(digest); err != nil {
		return err
	}
	if err := writeJSON(filepath.Join(r.staging, registry.MetricsFile), metricsFile{
		Validation: validationInfo{Name: r.c.ValName, Images: len(r.va.items), RealDefects: realDefects(r.va.items),
			AlsoInTraining: r.overlap, Scores: "logits", ServingProblems: r.servProb},
		Candidate: r.out.Candidate, Serving: r.out.Serving, ServingVersion: r.serving.Name,
		ThresholdLogit: r.thr, ThresholdScore: r.meta.Threshold, ThresholdRule: r.rule, Gate: r.gateRecord(),
	}); err != nil {
		return err
	}
	skipped := r.out.Skipped
	if skipped == nil {
		skipped = []dataset.Skip{}
	}
	return writeJSON(filepath.Join(r.staging, registry.ManifestFile), manifestFile{TrainingDataDigest: digest,
		Train: manifestRows(r.tr), Validation: manifestRows(r.va), Skipped: skipped})
}

// writeMetadata writes the final model.json: threshold, validation scores, how it was
// trained and what the gate found.
func (r *run) writeMetadata(digest string) error {
	rep := r.out.Candidate
	r.meta.Threshold = detect.Sigmoid(float32(r.thr))
	r.meta.ThresholdRule = r.rule
	r.meta.TrainingDataDigest = digest
	r.meta.Validation = &detect.ValidationScores{Dataset: r.c.ValName, Images: rep.N, Positives: rep.Positives,
		AP: rep.AP, AUROC: rep.AUROC, F1Max: rep.F1Max, Precision: rep.Precision, Recall: rep.Recall}
	r.meta.Training = r.cand.Training
	if r.meta.Training == nil {
		r.meta.Training = map[string]any{}
	}
	r.meta.Training["trainer"] = r.c.Trainer.Name()
	r.meta.Training["base_model"] = baseModelInfo{Dir: r.base, ModelVersion: r.baseMeta.ModelVersion, SHA256: r.baseDigest}
	sum := (&dataset.Set{Items: r.tr.items}).Summarize()
	r.meta.Training["dataset"] = datasetInfo{Images: sum.Total, Negatives: sum.Negatives, Positives: sum.Positives,
		BySource: sum.BySource, Skipped: len(r.out.Skipped)}
	r.meta.Training["threshold_logit"] = r.thr
	r.meta.Training["gate"] = r.gateRecord()
	return detect.WriteMetadata(r.staging, r.meta)
}

type baseModelInfo struct {
	Dir          string `json:"dir"`
	ModelVersion string `json:"model_version"`
	SHA256       string `json:"sha256"`
}

type datasetInfo struct {
	Images    int               `json:"images"`
	Negatives int               `json:"negatives"`
	Positives int               `json:"positives"`
	BySource  map[string][2]int `json:"by_source"`
	Skipped   int               `json:"skipped"`
}

// commit renames the staging folder into the registry as the new version.
func (r *run) commit() error {
	dir, err := r.reg.Commit(r.staging, r.version)
	if err != nil {
		return err
	}
	r.staging = "" // nothing left to discard
	r.out.Version, r.out.Dir = r.version, dir
	return nil
}

// finish logs the decision and promotes (and prunes) when it says so. stored is false
// for a candidate the gate refused before it was written into the registry.
func (r *run) finish(stored bool) error {
	d := r.decision(stored)
	d.Time = time.Now().UTC()
	if err := r.reg.LogDecision(d); err != nil {
		return err
	}
	r.out.Decision = d
	if d.Action == gate.Promote {
		if err := r.reg.Promote(r.version); err != nil {
			return err
		}
		r.out.Promoted = true
		if removed, err := r.reg.Prune(); err != nil {
			r.log.Warn("pruning old versions failed", "err", err.Error())
		} else if len(removed) > 0 {
			r.log.Info("pruned old versions", "versions", removed)
		}
	}
	r.emit(Progress{Stage: "done", Message: d.Action + " " + r.version})
	return nil
}

// ActionHold is the decision for a candidate that passed the gate when promotion was
// not requested.
const ActionHold = "hold"

func (r *run) decision(stored bool) registry.Decision {
	g := r.out.Gate
	d := registry.Decision{Action: g.Action, Candidate: r.version, Serving: r.serving.Name, Tolerance: r.c.Gate.Tolerance,
		Validation: r.c.ValName, ValImages: len(r.va.items), ValPositives: g.Defects, RealDefects: realDefects(r.va.items),
		Threshold: r.meta.Threshold, ThresholdRule: r.rule, Confidence: r.c.Gate.Confidence, MinDefects: r.c.Gate.MinDefects,
		Flags: g.Flags, NotConverged: r.out.NotConverged, Reason: g.Reason}
	if !stored {
		d.Candidate, d.Threshold = "", 0
		d.Reason = fmt.Sprintf("candidate %s not stored: %s", r.version, d.Reason)
	} else {
		ap, gf := r.out.Candidate.AP, g.GoodFail
		d.CandidateAP, d.GoodFail = &ap, &gf
	}
	if r.out.Serving != nil {
		sap := r.out.Serving.AP
		d.ServingAP = &sap
	}
	if g.Diff != nil {
		d.APDiff = &registry.Interval{Diff: g.Diff.Diff, Lower: g.Diff.Lower, Upper: g.Diff.Upper,
			Confidence: g.Diff.Confidence, Replicates: g.Diff.Replicates, Method: g.Diff.Method}
	}
	if g.Chance != nil {
		u := g.Chance.Upper
		d.ChanceAPUpper = &u
	}
	if d.RealDefects == 0 {
		d.Reason += "; validation has no real defects (synthetic only)"
	}
	if d.Action == gate.Promote && r.c.NoPromote {
		d.Action = ActionHold
		d.Reason += "; passes, but promotion was not requested"
	}
	return d
}
