// Package metrics scores a detector on labelled data the way the DIAG paper does
// (train_ResNet50.py, spec §1.7): sklearn's average_precision_score, precision and
// recall at the max-F1 point of precision_recall_curve, AUROC, F1-max and the
// confusion counts at that point. Everything follows scikit-learn 1.5 semantics so
// numbers are comparable with the paper's.
//
// Scores are any monotone detector output; diagd evaluates sigmoid scores because that
// is what the deployed rule (score >= model.json threshold) compares. DIAG used raw
// logits; the two give identical metrics unless float64 sigmoid saturates (logit above
// about 36.7 becomes score 1.0, turning distinct logits into ties).
package metrics

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
)

// Report is a detector's quality on one labelled set.
type Report struct {
	N, Positives     int
	AP, AUROC, F1Max float64
	// Precision and Recall at the max-F1 point of the PR curve (first maximum of
	// F1 = 2PR/(P+R+1e-10), as DIAG computes it).
	Precision, Recall float64
	// Threshold reproduces that point with the rule score >= Threshold. It is DIAG's
	// midpoint between the curve's threshold and the next lower distinct score, so a new
	// sample scoring slightly below the weakest detected defect is still flagged; when
	// the point is the lowest score itself (DIAG's ix == 0) it is that score. See
	// OperatingThreshold.
	Threshold      float64
	TP, FP, TN, FN int // at Threshold
}

// ErrSingleClass is returned by Evaluate when the labels hold only one class: AUROC is
// undefined there (sklearn's roc_auc_score raises) and a max-F1 threshold is meaningless.
var ErrSingleClass = errors.New("labels hold a single class")

// Check reports why scores and labels cannot be evaluated: length mismatch, empty
// input, or a score that is NaN or infinite (sklearn rejects both), naming the index.
func Check(scores []float64, labels []bool) error {
	if len(scores) != len(labels) {
		return fmt.Errorf("metrics: %d scores but %d labels", len(scores), len(labels))
	}
	if len(scores) == 0 {
		return errors.New("metrics: no samples")
	}
	for i, s := range scores {
		if math.IsNaN(s) || math.IsInf(s, 0) {
			return fmt.Errorf("metrics: score[%d] is %v; scores must be finite", i, s)
		}
	}
	return nil
}

// NonFinite counts the scores that are NaN or infinite and gives the index of the
// first (−1 when there is none).
func NonFinite(scores []float64) (n, first int) {
	first = -1
	for i, x := range scores {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			if first < 0 {
				first = i
			}
			n++
		}
	}
	return n, first
}

// Evaluate computes the full report. It fails on invalid input (see Check) and, with
// ErrSingleClass, when all labels are equal; AveragePrecision alone still follows
// sklearn there.
func Evaluate(scores []float64, labels []bool) (Report, error) {
	if err := Check(scores, labels); err != nil {
		return Report{}, err
	}
	c := newCurve(scores, labels)
	r := Report{N: len(scores), Positives: c.positives()}
	if r.Positives == 0 || r.Positives == r.N {
		return r, fmt.Errorf("metrics: %w: %d samples, %d positive; AUROC and a max-F1 threshold need both defects and good parts",
			ErrSingleClass, r.N, r.Positives)
	}
	p, rec, thr := c.pr()
	r.AP = averagePrecision(p, rec)
	r.AUROC = c.auroc()
	ix := maxF1Index(p, rec)
	r.Precision, r.Recall = p[ix], rec[ix]
	r.F1Max = f1(r.Precision, r.Recall)
	r.Threshold = OperatingThreshold(thr, ix)
	r.TP, r.FP, r.TN, r.FN = Confusion(scores, labels, r.Threshold)
	return r, nil
}

// f1 is DIAG's F1: the 1e-10 keeps 0/0 at zero.
func f1(p, r float64) float64 { return 2 * p * r / (p + r + 1e-10) }

// maxF1Index is np.argmax(f1): the first maximum, over all points including the final
// (P=1, R=0) one.
func maxF1Index(p, r []float64) int {
	best, ix := math.Inf(-1), 0
	for i := range p {
		if f := f1(p[i], r[i]); f > best {
			best, ix = f, i
		}
	}
	return ix
}

// OperatingThreshold turns PR-curve index ix (into increasing thresholds, as
// PRCurve returns them) into a threshold for the rule score >= t that classifies
// exactly as score >= thresholds[ix]. DIAG uses (thresholds[ix]+thresholds[ix-1])/2 with
// score > t; no score lies strictly between two adjacent distinct thresholds, so both
// rules agree. When the midpoint rounds onto the lower score (adjacent floats)
// thresholds[ix] itself is used. For ix == 0 DIAG keeps thresholds[0] but classifies
// with '>', which drops the lowest-scored samples; here '>=' keeps the curve's point.
func OperatingThreshold(thresholds []float64, ix int) float64 {
	if ix <= 0 {
		return thresholds[0]
	}
	lo, hi := thresholds[ix-1], thresholds[ix]
	mid := (lo + hi) / 2
	if math.IsInf(mid, 0) {
		mid = lo/2 + hi/2
	}
	if !(mid > lo && mid <= hi) {
		mid = hi
	}
	return mid
}

// Confusion counts outcomes of the rule score >= thr (positive = defect).
func Confusion(scores []float64, labels []bool, thr float64) (tp, fp, tn, fn int) {
	for i, s := range scores {
		pred := s >= thr
		switch {
		case pred && labels[i]:
			tp++
		case pred:
			fp++
		case labels[i]:
			fn++
		default:
			tn++
		}
	}
	return
}

// curve is sklearn's _binary_clf_curve: counts at each distinct score, descending.
type curve struct {
	fps, tps   []float64 // cumulative false/true positives at score >= thr[i]
	thresholds []float64 // distinct scores, decreasing
}

func newCurve(scores []float64, labels []bool) curve {
	n := len(scores)
	// np.argsort(kind="mergesort")[::-1]: stable ascending, reversed. Tie order never
	// matters because ties collapse into one threshold.
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return scores[idx[a]] < scores[idx[b]] })
	slices.Reverse(idx)
	var c curve
	tp := 0.0
	for k, i := range idx {
		if labels[i] {
			tp++
		}
		// threshold_idxs = where(diff(score) != 0) ∪ {n-1}
		if k == n-1 || scores[idx[k+1]] != scores[i] {
			c.tps = append(c.tps, tp)
			c.fps = append(c.fps, float64(k+1)-tp)
			c.thresholds = append(c.thresholds, scores[i])
		}
	}
	return c
}

func (c curve) positives() int { return int(c.tps[len(c.tps)-1]) }

// pr is precision_recall_curve: precision and recall of length T+1 and thresholds of
// length T, increasing, ending with the (P=1, R=0) point.
func (c curve) pr() (precision, recall, thresholds []float64) {
	t := len(c.thresholds)
	precision = make([]float64, t+1)
	recall = make([]float64, t+1)
	thresholds = make([]float64, t)
	total := c.tps[t-1]
	for i := range t {
		j := t - 1 - i // reverse: increasing thresholds
		if ps := c.tps[j] + c.fps[j]; ps != 0 {
			precision[i] = c.tps[j] / ps
		}
		if total == 0 {
			recall[i] = 1 // sklearn 1.5: "No positive class found in y_true, recall is set to one"
		} else {
			recall[i] = c.tps[j] / total
		}
		thresholds[i] = c.thresholds[j]
	}
	precision[t], recall[t] = 1, 0
	return
}

// PRCurve is sklearn 1.5's precision_recall_curve (drop_intermediate=False):
// precision[i] and recall[i] are those of the rule score >= thresholds[i]; thresholds
// increase; the last point (P=1, R=0) has no threshold. Invalid input (see Check) gives
// nil slices. With no positive labels recall is 1 everywhere, as in sklearn.
func PRCurve(scores []float64, labels []bool) (precision, recall, thresholds []float64) {
	if Check(scores, labels) != nil {
		return nil, nil, nil
	}
	return newCurve(scores, labels).pr()
}

// AveragePrecision is sklearn's average_precision_score: Σ (R_n − R_{n−1}) P_n over the
// PR curve, no interpolation. Without positive labels it is 0 and without negatives 1,
// as sklearn 1.5 returns (with a warning). Invalid input gives NaN.
func AveragePrecision(scores []float64, labels []bool) float64 {
	if Check(scores, labels) != nil {
		return math.NaN()
	}
	p, r, _ := newCurve(scores, labels).pr()
	return averagePrecision(p, r)
}

// averagePrecision is max(0, -Σ diff(recall)·precision[:-1]).
func averagePrecision(p, r []float64) float64 {
	s := 0.0
	for i := 0; i+1 < len(r); i++ {
		s += (r[i+1] - r[i]) * p[i]
	}
	return max(0, -s)
}

// ROCCurve is sklearn's roc_curve with drop_intermediate=True: false and true positive
// rates from (0,0) up, thresholds decreasing with +Inf first. It returns an error for
// invalid input and ErrSingleClass when a rate is undefined.
func ROCCurve(scores []float64, labels []bool) (fpr, tpr, thresholds []float64, err error) {
	if err := Check(scores, labels); err != nil {
		return nil, nil, nil, err
	}
	c := newCurve(scores, labels)
	t := len(c.thresholds)
	fpsTot, tpsTot := c.fps[t-1], c.tps[t-1]
	if fpsTot == 0 || tpsTot == 0 {
		return nil, nil, nil, fmt.Errorf("metrics: %w: ROC needs both classes (%d samples, %d positive)",
			ErrSingleClass, len(scores), int(tpsTot))
	}
	return rocFromCurve(c)
}

// AUROC is sklearn's auc(roc_curve(...)) (equal to roc_auc_score): the trapezoid area
// under the ROC, so tied scores of both classes count one half.
func AUROC(scores []float64, labels []bool) (float64, error) {
	fpr, tpr, _, err := ROCCurve(scores, labels)
	if err != nil {
		return math.NaN(), err
	}
	return trapezoid(fpr, tpr), nil
}

func (c curve) auroc() float64 {
	fpr, tpr, _, _ := rocFromCurve(c)
	return trapezoid(fpr, tpr)
}

// rocFromCurve keeps the ends and every point where the curve bends (np.diff(x, 2) != 0
// in fps or tps); the caller has checked that both classes exist.
func rocFromCurve(c curve) (fpr, tpr, thr []float64, err error) {
	t := len(c.thresholds)
	fpsTot, tpsTot := c.fps[t-1], c.tps[t-1]
	fpr, tpr, thr = []float64{0}, []float64{0}, []float64{math.Inf(1)}
	for i := range t {
		if i > 0 && i < t-1 &&
			c.fps[i+1]-2*c.fps[i]+c.fps[i-1] == 0 && c.tps[i+1]-2*c.tps[i]+c.tps[i-1] == 0 {
			continue
		}
		fpr = append(fpr, c.fps[i]/fpsTot)
		tpr = append(tpr, c.tps[i]/tpsTot)
		thr = append(thr, c.thresholds[i])
	}
	return fpr, tpr, thr, nil
}

// trapezoid is np.trapz(y, x) = Σ dx·(y[i+1]+y[i])/2.
func trapezoid(x, y []float64) float64 {
	s := 0.0
	for i := 0; i+1 < len(x); i++ {
		s += (x[i+1] - x[i]) * (y[i+1] + y[i]) / 2
	}
	return s
}

// ThresholdForRecall picks the operating point with the highest threshold whose recall
// is at least target (0 < target <= 1), i.e. the best precision PR point that still
// catches that share of defects. thr follows Report.Threshold's convention (rule
// score >= thr, midpoint to the next lower score); p and r are that point's precision
// and recall. Invalid input, no positives, or a target outside (0,1] give NaNs.
func ThresholdForRecall(scores []float64, labels []bool, target float64) (thr float64, p, r float64) {
	nan := math.NaN()
	if Check(scores, labels) != nil || !(target > 0 && target <= 1) {
		return nan, nan, nan
	}
	c := newCurve(scores, labels)
	if c.positives() == 0 {
		return nan, nan, nan
	}
	prec, rec, thresholds := c.pr()
	// Recall falls as the index (threshold) rises; take the last index still >= target.
	ix := 0
	for i := range thresholds {
		if rec[i] >= target {
			ix = i
		}
	}
	return OperatingThreshold(thresholds, ix), prec[ix], rec[ix]
}
