package gate

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/diagd/diagd/retrain/metrics"
)

// valSet is the issue's validation set: 18 defects among 135 images.
func valSet(pos, n int) []bool {
	l := make([]bool, n)
	for i := range pos {
		l[i] = true
	}
	return l
}

// scores draws logits with defects shifted by signal (0: a detector at chance).
func scores(rng *rand.Rand, labels []bool, signal float64) []float64 {
	s := make([]float64, len(labels))
	for i, l := range labels {
		s[i] = rng.NormFloat64()
		if l {
			s[i] += signal
		}
	}
	return s
}

// A threshold that fails few goods: the 95th percentile of the good parts' scores.
func goodThreshold(s []float64, labels []bool) float64 {
	var g []float64
	for i, l := range labels {
		if !l {
			g = append(g, s[i])
		}
	}
	slices.Sort(g)
	return g[len(g)*95/100]
}

func TestChanceLevelCandidateRefusedAt18Defects(t *testing.T) {
	labels := valSet(18, 135)
	rng := rand.New(rand.NewPCG(1, 1))
	refused := 0
	for trial := range 20 {
		cand, serving := scores(rng, labels, 0), scores(rng, labels, 0)
		r := Settings{}.Decide(Input{Candidate: cand, Serving: serving, Labels: labels, Threshold: goodThreshold(cand, labels), ServingName: "v1"})
		if r.Action == Promote {
			t.Logf("trial %d promoted: %s", trial, r.Reason)
			continue
		}
		refused++
		if r.Action != Reject || r.Chance == nil {
			t.Errorf("trial %d: %+v", trial, r)
		}
	}
	// Each random candidate passes the chance band with probability 5% and then must
	// also beat the (random) serving model's AP with 95% confidence.
	if refused < 19 {
		t.Errorf("%d of 20 chance-level candidates refused; want at least 19", refused)
	}
}

// The issue's case: a candidate at AP ~0.22 against a serving model at ~0.13, on 18
// defects. Both are chance-level rankings; the old rule promoted it.
func TestIssueCaseRefused(t *testing.T) {
	labels := valSet(18, 135)
	rng := rand.New(rand.NewPCG(2, 2))
	for {
		cand, serving := scores(rng, labels, 0), scores(rng, labels, 0)
		ca, sa := ap(cand, labels), ap(serving, labels)
		if math.Abs(ca-0.217) > 0.01 || math.Abs(sa-0.133) > 0.01 {
			continue
		}
		r := Settings{}.Decide(Input{Candidate: cand, Serving: serving, Labels: labels, Threshold: goodThreshold(cand, labels)})
		t.Logf("AP %.3f vs %.3f: %s %s", ca, sa, r.Action, r.Reason)
		if r.Action != Reject || !slices.Contains(r.Flags, FlagChance) {
			t.Errorf("%+v; want rejected as chance-level", r)
		}
		return
	}
}

func TestClearlyBetterPromoted(t *testing.T) {
	labels := valSet(18, 135)
	rng := rand.New(rand.NewPCG(3, 3))
	cand, serving := scores(rng, labels, 3), scores(rng, labels, 0.5)
	r := Settings{}.Decide(Input{Candidate: cand, Serving: serving, Labels: labels, Threshold: goodThreshold(cand, labels), ServingName: "v1"})
	if r.Action != Promote || r.Diff == nil || r.Diff.Lower <= 0 || len(r.Flags) != 0 {
		t.Fatalf("%+v", r)
	}
	if !strings.Contains(r.Reason, "lower bound") || r.Diff.Replicates != 2000 || r.Diff.Confidence != 0.95 {
		t.Errorf("reason %q, interval %+v", r.Reason, r.Diff)
	}
	// The same candidate as the serving model: difference 0 in every replicate, which is
	// "not worse" with tolerance 0.
	r = Settings{}.Decide(Input{Candidate: cand, Serving: cand, Labels: labels, Threshold: goodThreshold(cand, labels)})
	if r.Action != Promote {
		t.Errorf("identical model: %+v", r)
	}
	// Nothing serving: a healthy candidate is promoted.
	r = Settings{}.Decide(Input{Candidate: cand, Labels: labels, Threshold: goodThreshold(cand, labels)})
	if r.Action != Promote || !strings.Contains(r.Reason, "no serving model") {
		t.Errorf("no serving: %+v", r)
	}
	// Pairing: a candidate that is the serving model with every defect scored a little
	// higher can only gain AP on any resample, so even a small gain is shown.
	slight := slices.Clone(serving)
	for i := range slight {
		if labels[i] {
			slight[i] += 0.3
		}
	}
	r = Settings{}.Decide(Input{Candidate: slight, Serving: serving, Labels: labels, Threshold: goodThreshold(slight, labels)})
	if r.Action != Promote || r.Diff.Lower < 0 {
		t.Errorf("slightly better on every image: %+v", r)
	}
}

func TestTooFewDefectsNoDecision(t *testing.T) {
	labels := valSet(5, 100)
	rng := rand.New(rand.NewPCG(4, 4))
	cand, serving := scores(rng, labels, 4), scores(rng, labels, 0)
	r := Settings{}.Decide(Input{Candidate: cand, Serving: serving, Labels: labels, Threshold: goodThreshold(cand, labels), ServingName: "v3"})
	if r.Action != NoDecision || !strings.Contains(r.Reason, "validation has 5 defects; at least 10") || !strings.Contains(r.Reason, "keeping v3") {
		t.Errorf("%+v", r)
	}
	r = Settings{MinDefects: 5}.Decide(Input{Candidate: cand, Serving: serving, Labels: labels, Threshold: goodThreshold(cand, labels)})
	if r.Action == NoDecision {
		t.Errorf("min 5 with 5 defects: %+v", r)
	}
}

// Issue 8: a candidate with NaN or infinite scores is refused with the reason.
func TestNonFiniteRefused(t *testing.T) {
	labels := valSet(20, 100)
	rng := rand.New(rand.NewPCG(5, 5))
	cand := scores(rng, labels, 4)
	cand[7], cand[9] = math.NaN(), math.Inf(1)
	r := Settings{}.Decide(Input{Candidate: cand, Labels: labels, Threshold: 0})
	if r.Action != Reject || r.NonFinite != 2 || !slices.Equal(r.Flags, []string{FlagNonFinite}) ||
		!strings.Contains(r.Reason, "non-finite scores on 2 of 100") || !strings.Contains(r.Reason, "image 7") {
		t.Errorf("%+v", r)
	}
}

func TestThresholdFailingGoodsRefused(t *testing.T) {
	labels := valSet(20, 100)
	rng := rand.New(rand.NewPCG(6, 6))
	cand := scores(rng, labels, 4)
	r := Settings{}.Decide(Input{Candidate: cand, Labels: labels, Threshold: -10}) // fails every part
	if r.Action != Reject || !slices.Contains(r.Flags, FlagGoodFail) || r.GoodFail != 1 || !strings.Contains(r.Reason, "fails 80 of 80") {
		t.Errorf("%+v", r)
	}
	r = Settings{MaxGoodFail: 1}.Decide(Input{Candidate: cand, Labels: labels, Threshold: -10})
	if r.Action != Promote {
		t.Errorf("max share 1: %+v", r)
	}
}

func TestValidate(t *testing.T) {
	if err := (Settings{}).WithDefaults().Validate(); err != nil {
		t.Error(err)
	}
	err := Settings{Confidence: 0.4, MinDefects: -1, MaxGoodFail: 2, Tolerance: -1, Replicates: 5, Permutations: 5}.Validate()
	for _, want := range []string{"confidence 0.4", "defects -1", "good parts 2", "tolerance -1", "replicates 5"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v; want %q", err, want)
		}
	}
}

func ap(s []float64, l []bool) float64 { return metrics.AveragePrecision(s, l) }
