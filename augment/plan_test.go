package augment

import (
	"math"
	"testing"

	"github.com/diagd/diagd/augment/catalogue"
)

// TestPlanFollowsWeights: kinds are drawn by weight; the kind whose only mask is empty
// is always redrawn, so the others share its draws in their own proportion.
func TestPlanFollowsWeights(t *testing.T) {
	negDir, catPath := fixture(t)
	cat, err := catalogue.Load(catPath)
	if err != nil {
		t.Fatal(err)
	}
	negs, _ := ListNegatives(negDir, "*.jpg")
	p := NewPlanner(negs)
	const n = 300
	count := map[string]int{}
	maskSkips := 0
	for i := range n {
		job, skips, err := p.Plan(i, 99, cat)
		if err != nil {
			t.Fatal(err)
		}
		count[job.Kind.Name]++
		maskSkips += len(skips)
		if job.Seed != ImageSeed(99, i) || job.Settings.Seed != job.Seed {
			t.Fatalf("job %d seed %d", i, job.Seed)
		}
	}
	// Weights stains 2, dents 1, nothing 0.5: P(stains | drawn) = 2/3. A binomial with
	// n=300 has σ ≈ 8.2; allow 4σ.
	if d := math.Abs(float64(count["stains"]) - n*2.0/3); d > 33 || count["nothing"] != 0 {
		t.Fatalf("counts %v", count)
	}
	// "nothing" is drawn with probability 0.5/3.5 per attempt: about 300/6 redraws.
	if maskSkips < 25 || maskSkips > 80 {
		t.Fatalf("%d mask redraws, want about 50", maskSkips)
	}
	// Planning is a function of (batch seed, index): a fresh planner repeats it.
	a, _, _ := NewPlanner(negs).Plan(7, 99, cat)
	b, _, _ := p.Plan(7, 99, cat)
	if a.Negative != b.Negative || a.Kind.Name != b.Kind.Name || string(a.Mask.Pix) != string(b.Mask.Pix) {
		t.Fatal("the same index and seed planned differently")
	}
}
