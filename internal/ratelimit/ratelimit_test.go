package ratelimit

import (
	"testing"
	"time"
)

// A burst of 100 reports in one instant: Burst go out, the rest are held back and
// counted in the next report that goes out once a token has accrued.
func TestBurstThenOnePerInterval(t *testing.T) {
	l := &Limiter{Every: time.Second, Burst: 5}
	t0 := time.Unix(1000, 0)
	sent := 0
	for range 100 {
		if ok, _ := l.Allow(t0); ok {
			sent++
		}
	}
	if sent != 5 {
		t.Fatalf("%d of 100 allowed at once, want the burst of 5", sent)
	}
	if ok, _ := l.Allow(t0.Add(500 * time.Millisecond)); ok {
		t.Fatal("allowed before a token accrued")
	}
	ok, suppressed := l.Allow(t0.Add(1500 * time.Millisecond))
	if !ok || suppressed != 96 {
		t.Fatalf("after 1.5 s: allowed %v, suppressed %d; want true, 96 (95 in the burst, 1 at 0.5 s)", ok, suppressed)
	}
	// Quiet for long: the bucket refills to Burst, no more.
	n := 0
	for range 10 {
		if ok, _ := l.Allow(t0.Add(time.Hour)); ok {
			n++
		}
	}
	if n != 5 {
		t.Fatalf("after an hour: %d allowed at once, want 5", n)
	}
}
