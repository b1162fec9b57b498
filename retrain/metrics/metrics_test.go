package metrics

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

const tol = 1e-12

func near(a, b float64) bool { return math.Abs(a-b) <= tol*max(1, math.Abs(b)) }

func nearAll(t *testing.T, what string, got, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
	for i := range got {
		if !(near(got[i], want[i]) || math.IsInf(got[i], 1) && math.IsInf(want[i], 1)) {
			t.Fatalf("%s: got %v, want %v", what, got, want)
		}
	}
}

func labels(ys ...int) []bool {
	out := make([]bool, len(ys))
	for i, y := range ys {
		out[i] = y == 1
	}
	return out
}

// The scikit-learn docstring example of precision_recall_curve, average_precision_score
// and roc_auc_score. By hand: sorted descending the samples are 0.8(+) 0.4(-) 0.35(+)
// 0.1(-), so at each distinct threshold tps=[1,1,2,2] and fps=[0,1,1,2]:
// precision [1, .5, 2/3, .5], recall [.5, .5, 1, 1]. Reversed, with (1, 0) appended, this
// is sklearn's documented output. AP = .5·1 + 0·.5 + .5·(2/3) + 0·.5 = 5/6.
// AUROC: of the 4 (pos, neg) pairs only (0.35, 0.4) is misordered: 3/4.
// F1 per point: .667, .8, .5, .667, 0 -> max at index 1 (threshold 0.35), P=2/3, R=1,
// threshold (0.1+0.35)/2 = 0.225, where 0.4, 0.35 and 0.8 are flagged: TP 2, FP 1, TN 1.
func TestSklearnDocstringExample(t *testing.T) {
	s := []float64{0.1, 0.4, 0.35, 0.8}
	y := labels(0, 0, 1, 1)
	p, r, thr := PRCurve(s, y)
	nearAll(t, "precision", p, []float64{0.5, 2.0 / 3, 0.5, 1, 1})
	nearAll(t, "recall", r, []float64{1, 1, 0.5, 0.5, 0})
	nearAll(t, "thresholds", thr, []float64{0.1, 0.35, 0.4, 0.8})
	if ap := AveragePrecision(s, y); !near(ap, 5.0/6) {
		t.Errorf("AP = %v, want 0.8333…", ap)
	}
	fpr, tpr, rthr, err := ROCCurve(s, y)
	if err != nil {
		t.Fatal(err)
	}
	// sklearn's roc_curve docstring: fpr [0,0,.5,.5,1], tpr [0,.5,.5,1,1], thr [inf,.8,.4,.35,.1].
	nearAll(t, "fpr", fpr, []float64{0, 0, 0.5, 0.5, 1})
	nearAll(t, "tpr", tpr, []float64{0, 0.5, 0.5, 1, 1})
	nearAll(t, "roc thresholds", rthr, []float64{math.Inf(1), 0.8, 0.4, 0.35, 0.1})
	rep, err := Evaluate(s, y)
	if err != nil {
		t.Fatal(err)
	}
	want := Report{N: 4, Positives: 2, AP: 5.0 / 6, AUROC: 0.75, F1Max: f1(2.0/3, 1),
		Precision: 2.0 / 3, Recall: 1, Threshold: 0.225, TP: 2, FP: 1, TN: 1, FN: 0}
	checkReport(t, rep, want)
	if math.Abs(rep.F1Max-0.8) > 1e-9 { // 0.8 less DIAG's 1e-10 guard
		t.Errorf("F1max = %v, want 0.8", rep.F1Max)
	}
}

func checkReport(t *testing.T, got, want Report) {
	t.Helper()
	ok := got.N == want.N && got.Positives == want.Positives &&
		near(got.AP, want.AP) && near(got.AUROC, want.AUROC) && near(got.F1Max, want.F1Max) &&
		near(got.Precision, want.Precision) && near(got.Recall, want.Recall) && near(got.Threshold, want.Threshold) &&
		got.TP == want.TP && got.FP == want.FP && got.TN == want.TN && got.FN == want.FN
	if !ok {
		t.Errorf("report\n got %+v\nwant %+v", got, want)
	}
}

// Ties across classes: 0.9(+), then 0.5 shared by two positives and a negative, then
// 0.1(-). Thresholds collapse ties: tps [1,3,3], fps [0,1,2]; precision [1, .75, .6],
// recall [1/3, 1, 1]. AP = 1/3·1 + 2/3·.75 = 5/6. AUROC by pairs (ties count 1/2):
// 0.9 beats both negatives (2), each 0.5 positive ties 0.5 (.5) and beats 0.1 (1):
// 2 + 2·1.5 = 5 of 6. F1: (.6,1) .75, (.75,1) .857, (1,1/3) .5 -> threshold midpoint
// (0.1+0.5)/2 = 0.3: TP 3, FP 1, TN 1.
func TestTies(t *testing.T) {
	s := []float64{0.5, 0.5, 0.9, 0.1, 0.5}
	y := labels(1, 0, 1, 0, 1)
	p, r, thr := PRCurve(s, y)
	nearAll(t, "precision", p, []float64{0.6, 0.75, 1, 1})
	nearAll(t, "recall", r, []float64{1, 1, 1.0 / 3, 0})
	nearAll(t, "thresholds", thr, []float64{0.1, 0.5, 0.9})
	rep, err := Evaluate(s, y)
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep, Report{N: 5, Positives: 3, AP: 5.0 / 6, AUROC: 5.0 / 6, F1Max: f1(0.75, 1),
		Precision: 0.75, Recall: 1, Threshold: 0.3, TP: 3, FP: 1, TN: 1})
}

// All scores equal: one threshold, everything flagged. P = prevalence = .5, R = 1,
// AP = 1·.5, AUROC = .5 (a single diagonal segment), threshold = that score (ix 0).
func TestAllEqualScores(t *testing.T) {
	s := []float64{0.3, 0.3, 0.3, 0.3}
	y := labels(1, 0, 0, 1)
	p, r, thr := PRCurve(s, y)
	nearAll(t, "precision", p, []float64{0.5, 1})
	nearAll(t, "recall", r, []float64{1, 0})
	nearAll(t, "thresholds", thr, []float64{0.3})
	rep, err := Evaluate(s, y)
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep, Report{N: 4, Positives: 2, AP: 0.5, AUROC: 0.5, F1Max: f1(0.5, 1),
		Precision: 0.5, Recall: 1, Threshold: 0.3, TP: 2, FP: 2})
}

// One positive ranked second: descending 0.7(-) 0.6(+) 0.2(-) 0.1(-), tps [0,1,1,1],
// fps [1,1,2,3]: precision [0, .5, 1/3, .25], recall [0,1,1,1]. AP = 1·.5.
// AUROC: 0.6 beats 2 of 3 negatives. Max F1 .667 at threshold 0.6 -> midpoint
// (0.2+0.6)/2 = 0.4: 0.7 is a false positive, 0.6 the true positive.
func TestSinglePositive(t *testing.T) {
	s := []float64{0.2, 0.7, 0.6, 0.1}
	y := labels(0, 0, 1, 0)
	rep, err := Evaluate(s, y)
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep, Report{N: 4, Positives: 1, AP: 0.5, AUROC: 2.0 / 3, F1Max: f1(0.5, 1),
		Precision: 0.5, Recall: 1, Threshold: 0.4, TP: 1, FP: 1, TN: 2})
}

// Perfect ranking: AP 1, AUROC 1, F1 = 2/(2+1e-10), threshold halfway between the best
// negative (0.2) and the worst positive (0.8).
// Inverted ranking: descending 0.9(-) 0.8(-) 0.2(+) 0.1(+): precision [0,0,1/3,.5],
// recall [0,0,.5,1]; AP = .5·1/3 + .5·.5 = 5/12; AUROC 0; the best F1 (.667) flags
// everything, at the lowest score.
func TestPerfectAndInverted(t *testing.T) {
	s := []float64{0.1, 0.2, 0.8, 0.9}
	rep, err := Evaluate(s, labels(0, 0, 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep, Report{N: 4, Positives: 2, AP: 1, AUROC: 1, F1Max: f1(1, 1),
		Precision: 1, Recall: 1, Threshold: 0.5, TP: 2, TN: 2})
	rep, err = Evaluate(s, labels(1, 1, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep, Report{N: 4, Positives: 2, AP: 5.0 / 12, AUROC: 0, F1Max: f1(0.5, 1),
		Precision: 0.5, Recall: 1, Threshold: 0.1, TP: 2, FP: 2})
}

func TestSingleClassAndBadInput(t *testing.T) {
	s := []float64{0.1, 0.5, 0.9}
	if _, err := Evaluate(s, labels(0, 0, 0)); !errors.Is(err, ErrSingleClass) {
		t.Errorf("all negative: err = %v, want ErrSingleClass", err)
	}
	if _, err := Evaluate(s, labels(1, 1, 1)); !errors.Is(err, ErrSingleClass) {
		t.Errorf("all positive: err = %v, want ErrSingleClass", err)
	}
	if _, err := AUROC(s, labels(1, 1, 1)); !errors.Is(err, ErrSingleClass) {
		t.Errorf("AUROC all positive: err = %v", err)
	}
	// sklearn 1.5: no positives -> recall set to 1, precision 0, AP 0; no negatives -> AP 1.
	if ap := AveragePrecision(s, labels(0, 0, 0)); ap != 0 {
		t.Errorf("AP without positives = %v, want 0", ap)
	}
	if ap := AveragePrecision(s, labels(1, 1, 1)); ap != 1 {
		t.Errorf("AP without negatives = %v, want 1", ap)
	}
	_, r, _ := PRCurve(s, labels(0, 0, 0))
	nearAll(t, "recall without positives", r, []float64{1, 1, 1, 0})

	for name, c := range map[string]struct {
		s []float64
		y []bool
	}{
		"mismatch": {s, labels(0, 1)},
		"empty":    {nil, nil},
		"nan":      {[]float64{0.1, math.NaN()}, labels(0, 1)},
		"inf":      {[]float64{0.1, math.Inf(1)}, labels(0, 1)},
	} {
		if _, err := Evaluate(c.s, c.y); err == nil {
			t.Errorf("%s: Evaluate accepted it", name)
		}
		if ap := AveragePrecision(c.s, c.y); !math.IsNaN(ap) {
			t.Errorf("%s: AP = %v, want NaN", name, ap)
		}
		if p, _, _ := PRCurve(c.s, c.y); p != nil {
			t.Errorf("%s: PRCurve returned %v", name, p)
		}
	}
}

// With the docstring example: recall 1 needs threshold 0.35 (midpoint 0.225, P 2/3);
// recall .5 is reached first at 0.8 (midpoint with 0.4 is 0.6, P 1).
func TestThresholdForRecall(t *testing.T) {
	s := []float64{0.1, 0.4, 0.35, 0.8}
	y := labels(0, 0, 1, 1)
	for _, c := range []struct{ target, thr, p, r float64 }{
		{1, 0.225, 2.0 / 3, 1},
		{0.9, 0.225, 2.0 / 3, 1},
		{0.5, 0.6, 1, 0.5},
		{0.01, 0.6, 1, 0.5},
	} {
		thr, p, r := ThresholdForRecall(s, y, c.target)
		if !near(thr, c.thr) || !near(p, c.p) || !near(r, c.r) {
			t.Errorf("target %v: got (%v, %v, %v), want (%v, %v, %v)", c.target, thr, p, r, c.thr, c.p, c.r)
		}
	}
	for _, target := range []float64{0, -1, 1.5, math.NaN()} {
		if thr, _, _ := ThresholdForRecall(s, y, target); !math.IsNaN(thr) {
			t.Errorf("target %v: thr %v, want NaN", target, thr)
		}
	}
}

// When two adjacent distinct scores are neighbouring float64s their midpoint rounds onto
// the lower one, which would flag it too; the threshold must fall back to the upper.
func TestOperatingThresholdAdjacentFloats(t *testing.T) {
	lo := 1.0
	hi := math.Nextafter(lo, 2)
	s := []float64{lo, hi}
	y := labels(0, 1)
	rep, err := Evaluate(s, y)
	if err != nil {
		t.Fatal(err)
	}
	if rep.TP != 1 || rep.FP != 0 || rep.TN != 1 || rep.Threshold != hi {
		t.Errorf("report %+v; want threshold %v with TP 1, TN 1", rep, hi)
	}
}

// Against independent brute force on random scores with many ties: AUROC as the
// Mann-Whitney statistic (pairs, ties 1/2), AP from per-threshold counts without any
// sorting, and the report's precision and recall recomputed from its confusion counts.
func TestRandomAgainstBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 200 {
		n := 2 + rng.IntN(60)
		s := make([]float64, n)
		y := make([]bool, n)
		for i := range s {
			y[i] = rng.IntN(3) == 0
			s[i] = float64(rng.IntN(12)) / 11 // few distinct values: ties everywhere
			if y[i] {
				s[i] += 0.15 // positives tend to score higher
			}
		}
		y[0], y[1] = true, false
		rep, err := Evaluate(s, y)
		if err != nil {
			t.Fatal(err)
		}
		var pairs, wins float64
		for i := range n {
			for j := range n {
				if y[i] && !y[j] {
					pairs++
					switch {
					case s[i] > s[j]:
						wins++
					case s[i] == s[j]:
						wins += 0.5
					}
				}
			}
		}
		if want := wins / pairs; math.Abs(rep.AUROC-want) > 1e-12 {
			t.Fatalf("trial %d: AUROC %v, Mann-Whitney %v", trial, rep.AUROC, want)
		}
		distinct := slices.Clone(s)
		slices.Sort(distinct)
		distinct = slices.Compact(distinct)
		ap, prevR := 0.0, 0.0
		for k := len(distinct) - 1; k >= 0; k-- {
			tp, fp, _, fn := Confusion(s, y, distinct[k])
			r := float64(tp) / float64(tp+fn)
			ap += (r - prevR) * float64(tp) / float64(tp+fp)
			prevR = r
		}
		if math.Abs(rep.AP-ap) > 1e-12 {
			t.Fatalf("trial %d: AP %v, brute force %v", trial, rep.AP, ap)
		}
		if p := float64(rep.TP) / float64(rep.TP+rep.FP); math.Abs(p-rep.Precision) > 1e-12 {
			t.Fatalf("trial %d: precision %v but confusion at threshold gives %v (%+v)", trial, rep.Precision, p, rep)
		}
		if r := float64(rep.TP) / float64(rep.TP+rep.FN); math.Abs(r-rep.Recall) > 1e-12 {
			t.Fatalf("trial %d: recall %v but confusion gives %v", trial, rep.Recall, r)
		}
		// No PR point has a higher F1 than the reported one.
		p, r, _ := PRCurve(s, y)
		for i := range p {
			if f1(p[i], r[i]) > rep.F1Max {
				t.Fatalf("trial %d: point %d has F1 %v > F1max %v", trial, i, f1(p[i], r[i]), rep.F1Max)
			}
		}
	}
}
