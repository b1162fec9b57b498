package metrics

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
)

// ChanceBand is how high AP reaches by luck on one labelled set: the distribution of
// the AP of the same scores against randomly permuted labels (a permutation test), so
// the set's size, its number of positives and the scores' ties are all accounted for.
// An AP at or below Upper is no better than chance at the band's confidence.
type ChanceBand struct {
	N            int     `json:"images"`
	Positives    int     `json:"positives"`
	Mean         float64 `json:"mean"`  // expected AP of a random ranking (about the prevalence)
	Upper        float64 `json:"upper"` // the Confidence quantile of the null distribution
	Confidence   float64 `json:"confidence"`
	Permutations int     `json:"permutations"`
}

// Contains says whether ap is inside the band: no better than chance.
func (b ChanceBand) Contains(ap float64) bool { return ap <= b.Upper }

// APChanceBand computes the chance band of scores on labels by permutations random
// relabellings (seeded).
func APChanceBand(scores []float64, labels []bool, confidence float64, permutations int, seed uint64) (ChanceBand, error) {
	if err := Check(scores, labels); err != nil {
		return ChanceBand{}, err
	}
	if !(confidence > 0 && confidence < 1) || permutations < 1 {
		return ChanceBand{}, fmt.Errorf("metrics: chance band needs confidence in (0,1) and permutations >= 1 (got %v, %d)", confidence, permutations)
	}
	order, ends := rankGroups(scores)
	lab := make([]bool, len(order))
	for k, i := range order {
		lab[k] = labels[i]
	}
	b := ChanceBand{N: len(scores), Confidence: confidence, Permutations: permutations}
	for _, l := range lab {
		if l {
			b.Positives++
		}
	}
	if b.Positives == 0 {
		return b, fmt.Errorf("metrics: %w: no positives, AP has no chance band", ErrSingleClass)
	}
	rng := rand.New(rand.NewPCG(seed, 0xc4a7ce))
	null := make([]float64, permutations)
	for p := range null {
		rng.Shuffle(len(lab), func(i, j int) { lab[i], lab[j] = lab[j], lab[i] })
		null[p] = rankedAP(ends, lab, b.Positives)
		b.Mean += null[p] / float64(permutations)
	}
	b.Upper = quantile(null, confidence)
	return b, nil
}

// rankGroups orders items by decreasing score and returns, for each run of tied scores,
// the end (exclusive) of the run in that order.
func rankGroups(scores []float64) (order, ends []int) {
	order = make([]int, len(scores))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return scores[order[a]] > scores[order[b]] })
	for k := range order {
		if k == len(order)-1 || scores[order[k+1]] != scores[order[k]] {
			ends = append(ends, k+1)
		}
	}
	return order, ends
}

// rankedAP is sklearn's AP for labels already in decreasing-score order with tie runs
// ending at ends: Σ over thresholds of (new positives / P) · precision there.
func rankedAP(ends []int, lab []bool, positives int) float64 {
	tp, start, ap := 0, 0, 0.0
	for _, e := range ends {
		gained := 0
		for _, l := range lab[start:e] {
			if l {
				gained++
			}
		}
		tp += gained
		if gained > 0 {
			ap += float64(gained) / float64(positives) * float64(tp) / float64(e)
		}
		start = e
	}
	return ap
}

// quantile is the q-quantile of v by linear interpolation between order statistics
// (numpy's default); v is sorted in place.
func quantile(v []float64, q float64) float64 {
	slices.Sort(v)
	pos := q * float64(len(v)-1)
	lo := int(math.Floor(pos))
	if lo >= len(v)-1 {
		return v[len(v)-1]
	}
	return v[lo] + (pos-float64(lo))*(v[lo+1]-v[lo])
}

// PairedDiff is the AP difference of two detectors scored on the same images, with a
// bootstrap interval: Lower and Upper are the 1−Confidence and Confidence quantiles of
// the resampled differences, so Lower is a one-sided lower bound at Confidence (and the
// pair a two-sided interval at 2·Confidence−1).
type PairedDiff struct {
	Diff       float64 `json:"diff"` // AP(a) − AP(b) on the images themselves
	Lower      float64 `json:"lower"`
	Upper      float64 `json:"upper"`
	Confidence float64 `json:"confidence"`
	Replicates int     `json:"replicates"`
	Method     string  `json:"method"`
}

// PairedBootstrapAP resamples the images with replacement (positives and negatives
// separately, so every replicate has the set's class counts and a defined AP), scores
// both detectors on each replicate and returns the distribution of AP(a) − AP(b). The
// pairing (both detectors on the same resampled images) cancels what the images have in
// common, which is most of the noise of a small validation set.
func PairedBootstrapAP(a, b []float64, labels []bool, confidence float64, replicates int, seed uint64) (PairedDiff, error) {
	if err := Check(a, labels); err != nil {
		return PairedDiff{}, err
	}
	if err := Check(b, labels); err != nil {
		return PairedDiff{}, err
	}
	if !(confidence > 0.5 && confidence < 1) || replicates < 1 {
		return PairedDiff{}, fmt.Errorf("metrics: bootstrap needs confidence in (0.5,1) and replicates >= 1 (got %v, %d)", confidence, replicates)
	}
	var pos, neg []int
	for i, l := range labels {
		if l {
			pos = append(pos, i)
		} else {
			neg = append(neg, i)
		}
	}
	if len(pos) == 0 || len(neg) == 0 {
		return PairedDiff{}, fmt.Errorf("metrics: %w: the bootstrap needs both classes", ErrSingleClass)
	}
	d := PairedDiff{Diff: AveragePrecision(a, labels) - AveragePrecision(b, labels), Confidence: confidence,
		Replicates: replicates, Method: "paired stratified bootstrap of AP"}
	rng := rand.New(rand.NewPCG(seed, 0xb007))
	n := len(labels)
	ra, rb, rl := make([]float64, n), make([]float64, n), make([]bool, n)
	var buf apBuffer
	diffs := make([]float64, replicates)
	for r := range diffs {
		k := 0
		for _, class := range [][]int{pos, neg} {
			for range class {
				i := class[rng.IntN(len(class))]
				ra[k], rb[k], rl[k] = a[i], b[i], labels[i]
				k++
			}
		}
		diffs[r] = buf.ap(ra, rl, len(pos)) - buf.ap(rb, rl, len(pos))
	}
	d.Lower = quantile(diffs, 1-confidence)
	d.Upper = quantile(diffs, confidence)
	return d, nil
}

// apBuffer computes AP repeatedly without allocating: the bootstrap's inner loop.
type apBuffer struct {
	order, ends []int
	lab         []bool
}

func (b *apBuffer) ap(scores []float64, labels []bool, positives int) float64 {
	n := len(scores)
	b.order = b.order[:0]
	for i := range n {
		b.order = append(b.order, i)
	}
	// Unstable is fine: tied scores form one run whatever their order.
	slices.SortFunc(b.order, func(x, y int) int { return cmpDesc(scores[x], scores[y]) })
	b.ends, b.lab = b.ends[:0], b.lab[:0]
	for k, i := range b.order {
		b.lab = append(b.lab, labels[i])
		if k == n-1 || scores[b.order[k+1]] != scores[i] {
			b.ends = append(b.ends, k+1)
		}
	}
	return rankedAP(b.ends, b.lab, positives)
}

func cmpDesc(x, y float64) int {
	switch {
	case x > y:
		return -1
	case x < y:
		return 1
	}
	return 0
}
