package metrics

import (
	"math"
	"math/rand/v2"
	"testing"
)

// The permutation loop's AP (pre-sorted, tie runs) is sklearn's AP.
func TestRankedAPMatchesAveragePrecision(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for trial := range 200 {
		n := 2 + rng.IntN(40)
		s, l := make([]float64, n), make([]bool, n)
		pos := 0
		for i := range n {
			s[i] = float64(rng.IntN(6)) // many ties
			l[i] = rng.IntN(3) == 0
			if l[i] {
				pos++
			}
		}
		if pos == 0 {
			continue
		}
		order, ends := rankGroups(s)
		lab := make([]bool, n)
		for k, i := range order {
			lab[k] = l[i]
		}
		var buf apBuffer
		want := AveragePrecision(s, l)
		if got := rankedAP(ends, lab, pos); math.Abs(got-want) > 1e-12 {
			t.Fatalf("trial %d: ranked AP %v, AveragePrecision %v", trial, got, want)
		}
		if got := buf.ap(s, l, pos); math.Abs(got-want) > 1e-12 {
			t.Fatalf("trial %d: ranked AP %v, AveragePrecision %v", trial, got, want)
		}
	}
}

// expectedRandomAP is the mean AP of a uniformly random ranking of N items with P
// positives (no ties), from E[prec@k·rel_k] = (P/N)·(1 + (k−1)(P−1)/(N−1))/k:
// E[AP] = (1/N)·Σ_k (1 + (k−1)(P−1)/(N−1))/k.
func expectedRandomAP(n, p int) float64 {
	s := 0.0
	for k := 1; k <= n; k++ {
		s += (1 + float64(k-1)*float64(p-1)/float64(n-1)) / float64(k)
	}
	return s / float64(n)
}

// The band's mean is the closed-form expected AP of a random ranking, and its upper
// end is exceeded by about 1−confidence of random rankings drawn independently.
func TestChanceBandCalibrated(t *testing.T) {
	const n, p = 135, 18 // the case: 18 defects in 135 validation images
	rng := rand.New(rand.NewPCG(2, 2))
	s, l := make([]float64, n), make([]bool, n)
	for i := range n {
		s[i] = rng.Float64()
		l[i] = i < p
	}
	b, err := APChanceBand(s, l, 0.95, 20000, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := expectedRandomAP(n, p)
	t.Logf("band %+v; closed-form mean %.4f", b, want)
	if math.Abs(b.Mean-want) > 0.003 {
		t.Errorf("band mean %.4f; a random ranking's expected AP is %.4f", b.Mean, want)
	}
	exceed := 0
	const trials = 4000
	for range trials {
		rng.Shuffle(n, func(i, j int) { l[i], l[j] = l[j], l[i] })
		if AveragePrecision(s, l) > b.Upper {
			exceed++
		}
	}
	if frac := float64(exceed) / trials; frac < 0.035 || frac > 0.065 {
		t.Errorf("%.3f of random rankings exceed the 95%% band; want about 0.05", frac)
	}
	// The promoted candidate: AP 0.217 at 18 of ~135 defects is inside the band.
	if !b.Contains(0.217) || b.Contains(0.5) {
		t.Errorf("band upper %.4f: 0.217 should be chance, 0.5 not", b.Upper)
	}
	// A detector whose scores are all equal ranks nothing: AP is the prevalence, always.
	flat := make([]float64, n)
	fb, err := APChanceBand(flat, l, 0.95, 100, 1)
	if prev := float64(p) / n; err != nil || math.Abs(fb.Mean-prev) > 1e-12 || math.Abs(fb.Upper-prev) > 1e-12 || !fb.Contains(AveragePrecision(flat, l)) {
		t.Errorf("flat scores: band %+v %v; want the prevalence %v", fb, err, float64(p)/n)
	}
}

func TestPairedBootstrap(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	const n, p = 135, 18
	l := make([]bool, n)
	for i := range p {
		l[i] = true
	}
	noise := func(signal float64) []float64 {
		s := make([]float64, n)
		for i := range s {
			s[i] = rng.NormFloat64()
			if l[i] {
				s[i] += signal
			}
		}
		return s
	}
	// Identical detectors: no difference in any replicate.
	a := noise(1)
	d, err := PairedBootstrapAP(a, a, l, 0.95, 500, 1)
	if err != nil || d.Diff != 0 || d.Lower != 0 || d.Upper != 0 {
		t.Errorf("same scores: %+v %v", d, err)
	}
	// A clearly better detector is better with confidence; a random one is not.
	good, random := noise(3), noise(0)
	d, _ = PairedBootstrapAP(good, random, l, 0.95, 1000, 1)
	if d.Lower <= 0 || d.Diff <= 0 {
		t.Errorf("good vs random: %+v; want a positive lower bound", d)
	}
	d, _ = PairedBootstrapAP(random, good, l, 0.95, 1000, 1)
	if d.Upper >= 0 {
		t.Errorf("random vs good: %+v; want a negative upper bound", d)
	}
	// Calibration: two equally good, independent detectors; the lower bound excludes 0
	// in about 1−confidence of trials (percentile intervals run a little liberal at
	// small n, hence the margin).
	wrong := 0
	const trials = 60
	for range trials {
		x, y := noise(1), noise(1)
		d, _ := PairedBootstrapAP(x, y, l, 0.95, 200, rng.Uint64())
		if d.Lower > 0 {
			wrong++
		}
	}
	t.Logf("%d of %d equal pairs called better", wrong, trials)
	if frac := float64(wrong) / trials; frac > 0.1 {
		t.Errorf("%.3f of equal pairs called better at 95%%; want about 0.05", frac)
	}
	if _, err := PairedBootstrapAP(a, a[:3], l, 0.95, 10, 1); err == nil {
		t.Error("length mismatch accepted")
	}
	if _, err := PairedBootstrapAP(a, a, l, 0.3, 10, 1); err == nil {
		t.Error("confidence 0.3 accepted")
	}
}
