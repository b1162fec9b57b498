// Package gate decides whether a retrained candidate may replace the serving detector,
// from both models' scores on the same validation images. It refuses what the numbers
// cannot support: a candidate with non-finite scores, one no better than chance (its AP
// inside the permutation band for that many defects), one whose threshold fails too
// many good parts, and one not shown to be at least as good as the serving model by a
// paired bootstrap at the configured confidence. With too few validation defects it
// makes no decision at all.
package gate

import (
	"errors"
	"fmt"
	"strings"

	"github.com/diagd/diagd/retrain/metrics"
)

// Actions of a decision.
const (
	Promote    = "promote"
	Reject     = "reject"
	NoDecision = "no-decision"
)

// Flags: health problems of a candidate, each enough to refuse it.
const (
	FlagNonFinite = "non-finite-scores"
	FlagChance    = "chance-level"
	FlagGoodFail  = "fails-good-parts"
)

// Settings of the gate. Zero values take the defaults (see WithDefaults).
type Settings struct {
	// Confidence of the bootstrap's one-sided bound and of the chance band (0.95).
	Confidence float64
	// MinDefects is the fewest validation defects to decide on (10): with fewer, an AP
	// difference is mostly noise, so the serving model stays and nothing is promoted.
	MinDefects int
	// MaxGoodFail is the largest share of validation goods the candidate's threshold
	// may fail (0.2).
	MaxGoodFail float64
	// Tolerance is the AP the candidate may lose to the serving model: promote when the
	// bootstrap's lower bound of AP(candidate) − AP(serving) is at least −Tolerance (0).
	Tolerance float64
	// Replicates of the bootstrap and Permutations of the chance band (2000 each).
	Replicates   int
	Permutations int
	Seed         uint64
}

// Defaults.
const (
	DefaultConfidence  = 0.95
	DefaultMinDefects  = 10
	DefaultMaxGoodFail = 0.2
	DefaultResamples   = 2000
)

// WithDefaults fills unset values.
func (s Settings) WithDefaults() Settings {
	if s.Confidence == 0 {
		s.Confidence = DefaultConfidence
	}
	if s.MinDefects == 0 {
		s.MinDefects = DefaultMinDefects
	}
	if s.MaxGoodFail == 0 {
		s.MaxGoodFail = DefaultMaxGoodFail
	}
	if s.Replicates == 0 {
		s.Replicates = DefaultResamples
	}
	if s.Permutations == 0 {
		s.Permutations = DefaultResamples
	}
	return s
}

// Validate reports settings outside their ranges.
func (s Settings) Validate() error {
	var errs []error
	if !(s.Confidence > 0.5 && s.Confidence < 1) {
		errs = append(errs, fmt.Errorf("confidence %v is outside (0.5, 1)", s.Confidence))
	}
	if s.MinDefects < 1 {
		errs = append(errs, fmt.Errorf("minimum validation defects %d is below 1", s.MinDefects))
	}
	if !(s.MaxGoodFail > 0 && s.MaxGoodFail <= 1) {
		errs = append(errs, fmt.Errorf("largest share of failed good parts %v is outside (0, 1]", s.MaxGoodFail))
	}
	if !(s.Tolerance >= 0 && s.Tolerance <= 1) {
		errs = append(errs, fmt.Errorf("tolerance %v is outside [0, 1] (it is an AP difference)", s.Tolerance))
	}
	if s.Replicates < 100 || s.Permutations < 100 {
		errs = append(errs, fmt.Errorf("replicates %d and permutations %d must be at least 100", s.Replicates, s.Permutations))
	}
	return errors.Join(errs...)
}

// Input is what the gate sees: logits of the candidate and (when one serves and could
// be scored) the serving model on the same validation images.
type Input struct {
	Candidate []float64
	Labels    []bool
	Threshold float64  // the candidate's threshold on its logits (score >= threshold fails)
	Names     []string // optional: the images' names, for reasons
	// Serving is nil when no model serves or its scores are unusable (ServingProblem).
	Serving        []float64
	ServingName    string
	ServingProblem string
}

// Result is the decision with its numbers.
type Result struct {
	Action string
	Reason string
	Flags  []string
	// Chance is the candidate AP's chance band; Diff the bootstrap of AP(candidate) −
	// AP(serving). Either is nil when it could not be computed.
	Chance    *metrics.ChanceBand
	Diff      *metrics.PairedDiff
	GoodFail  float64 // share of validation goods at or above the threshold
	NonFinite int     // candidate scores that are NaN or infinite
	Defects   int
}

// Decide applies the gate.
func (s Settings) Decide(in Input) Result {
	s = s.WithDefaults()
	r := Result{}
	for _, l := range in.Labels {
		if l {
			r.Defects++
		}
	}
	if bad, first := metrics.NonFinite(in.Candidate); bad > 0 {
		r.NonFinite, r.Flags, r.Action = bad, []string{FlagNonFinite}, Reject
		name := fmt.Sprintf("image %d", first)
		if first < len(in.Names) {
			name = in.Names[first]
		}
		r.Reason = fmt.Sprintf("the candidate yields non-finite scores on %d of %d validation images (first: %s, %v); it cannot be judged or served",
			bad, len(in.Candidate), name, in.Candidate[first])
		return r
	}
	health := s.health(in, &r)
	keep := "nothing is promoted"
	if in.ServingName != "" {
		keep = "keeping " + in.ServingName
	}
	switch {
	case r.Defects < s.MinDefects:
		r.Action = NoDecision
		r.Reason = fmt.Sprintf("validation has %d defects; at least %d are needed to decide (an AP difference on so few is mostly noise): %s", r.Defects, s.MinDefects, keep)
		if len(health) > 0 {
			r.Reason += "; also " + strings.Join(health, "; ")
		}
	case len(health) > 0:
		r.Action, r.Reason = Reject, strings.Join(health, "; ")
	default:
		s.compare(in, &r)
	}
	return r
}

// RefuseNonFinite is the decision for a candidate whose model gave non-finite output
// before it could be scored (detect refuses such a model at load); why says where.
func RefuseNonFinite(why string) Result {
	return Result{Action: Reject, Flags: []string{FlagNonFinite},
		Reason: "the candidate yields non-finite scores (" + why + "); it cannot be judged or served"}
}

// health checks the candidate on its own: better than chance, and a threshold that
// passes most good parts. It returns the problems found, worded for a person.
func (s Settings) health(in Input, r *Result) []string {
	var problems []string
	ap := metrics.AveragePrecision(in.Candidate, in.Labels)
	if b, err := metrics.APChanceBand(in.Candidate, in.Labels, s.Confidence, s.Permutations, s.Seed); err == nil {
		r.Chance = &b
		if b.Contains(ap) {
			r.Flags = append(r.Flags, FlagChance)
			problems = append(problems, fmt.Sprintf("candidate AP %.4f is no better than chance (random rankings of %d defects in %d images reach %.4f at %.0f%%; expected %.4f)",
				ap, b.Positives, b.N, b.Upper, 100*b.Confidence, b.Mean))
		}
	}
	goods, failed := 0, 0
	for i, l := range in.Labels {
		if !l {
			goods++
			if in.Candidate[i] >= in.Threshold {
				failed++
			}
		}
	}
	if goods > 0 {
		r.GoodFail = float64(failed) / float64(goods)
	}
	if r.GoodFail > s.MaxGoodFail {
		r.Flags = append(r.Flags, FlagGoodFail)
		problems = append(problems, fmt.Sprintf("its threshold fails %d of %d validation good parts (%.0f%%; at most %.0f%% allowed)",
			failed, goods, 100*r.GoodFail, 100*s.MaxGoodFail))
	}
	return problems
}

// compare decides a healthy candidate against the serving model, if any.
func (s Settings) compare(in Input, r *Result) {
	ap := metrics.AveragePrecision(in.Candidate, in.Labels)
	if in.Serving == nil {
		r.Action = Promote
		why := "no serving model to compare with"
		if in.ServingProblem != "" {
			why = "the serving model cannot be compared (" + in.ServingProblem + ")"
		}
		r.Reason = fmt.Sprintf("%s; candidate AP %.4f is above chance", why, ap)
		return
	}
	d, err := metrics.PairedBootstrapAP(in.Candidate, in.Serving, in.Labels, s.Confidence, s.Replicates, s.Seed)
	if err != nil {
		r.Action, r.Reason = Reject, "comparison failed: "+err.Error()
		return
	}
	r.Diff = &d
	sap := ap - d.Diff
	nums := fmt.Sprintf("candidate AP %.4f vs serving %.4f: difference %+.4f, %.0f%% lower bound %+.4f (paired bootstrap, %d defects, tolerance %.4f)",
		ap, sap, d.Diff, 100*d.Confidence, d.Lower, r.Defects, s.Tolerance)
	// apRounding absorbs float rounding of AP sums: equal models can differ by 1e-16.
	const apRounding = 1e-12
	if d.Lower >= -s.Tolerance-apRounding {
		r.Action, r.Reason = Promote, nums
		return
	}
	r.Action = Reject
	r.Reason = nums + ": not shown to be at least as good"
}
