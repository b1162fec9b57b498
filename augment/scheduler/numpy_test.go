package scheduler

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// goldenEntry is one (steps, train steps) pair of testdata/numpy_timesteps.json, which
// testdata/numpy_timesteps.py computes in Python floats by transcribing the numpy code
// diffusers runs (numpy is not installed here; see the script's docstring).
type goldenEntry struct {
	Train     int       `json:"train"`
	Steps     int       `json:"steps"`
	Linspace  []float64 `json:"linspace"`
	Trailing  []float64 `json:"trailing"`
	spacing   string
	timesteps []float64
}

func spaced(spacing string, n int) Config {
	c := SDXL()
	c.TimestepSpacing, c.NumTrainTimesteps = spacing, n
	return c
}

// Linspace and trailing timesteps equal numpy's for 2×60 pairs; where numpy's arange
// yields an extra -1 timestep, New refuses and says so.
func TestTimestepsMatchNumpyGolden(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "numpy_timesteps.json"))
	if err != nil {
		t.Fatal(err)
	}
	var golden []goldenEntry
	if err := json.Unmarshal(b, &golden); err != nil {
		t.Fatal(err)
	}
	if len(golden) != 120 {
		t.Fatalf("%d golden entries, want 120", len(golden))
	}
	refused := 0
	for _, g := range golden {
		for spacing, want := range map[string][]float64{"linspace": g.Linspace, "trailing": g.Trailing} {
			s, err := New(spaced(spacing, g.Train), g.Steps)
			if len(want) != g.Steps {
				refused++
				if err == nil || !strings.Contains(err.Error(), "-1") {
					t.Errorf("%s %d/%d: numpy yields %d timesteps ending %v; err %v, want a refusal naming -1", spacing, g.Steps, g.Train, len(want), want[len(want)-1], err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s %d/%d: %v", spacing, g.Steps, g.Train, err)
			}
			for i, w := range want {
				if float64(s.Timesteps[i]) != w {
					t.Errorf("%s %d/%d: timesteps[%d] = %.9g, numpy %.9g", spacing, g.Steps, g.Train, i, s.Timesteps[i], w)
					break
				}
			}
		}
	}
	// The script's own output lists 9 such pairs, all trailing with 999 train steps.
	if refused != 9 {
		t.Errorf("%d refusals, want 9", refused)
	}
}

// refLinspace is numpy's float64 linspace (numpy/_core/function_base.py), written out
// as numpy's Python does it: y = arange(num)*step + start, y[-1] = stop.
func refLinspace(stop float64, num int) []float64 {
	if num == 1 {
		return []float64{0}
	}
	step := stop / float64(num-1)
	y := make([]float64, num)
	for i := range y {
		y[i] = float64(i) * step
	}
	y[num-1] = stop
	return y
}

// refArange is numpy's float64 arange: length ceil((stop-start)/step), then the DOUBLE
// fill function's start + i*(y[1]-y[0]).
func refArange(start, stop, step float64) []float64 {
	n := int(math.Ceil((stop - start) / step))
	y := make([]float64, n)
	y[0] = start
	if n > 1 {
		y[1] = start + step
	}
	for i := 2; i < n; i++ {
		y[i] = start + float64(i)*(y[1]-y[0])
	}
	return y
}

// Many more pairs than the golden file, against the transcription above: 100 step
// counts × 9 training lengths × 3 spacings.
func TestTimestepsManyPairs(t *testing.T) {
	pairs, refusals := 0, 0
	for _, n := range []int{50, 77, 100, 500, 999, 1000, 1001, 1024, 2000} {
		for steps := 1; steps <= min(100, n); steps++ {
			pairs++
			var want []float32
			lin := refLinspace(float64(n-1), steps)
			for i := range lin {
				want = append(want, float32(lin[steps-1-i]))
			}
			check(t, spaced("linspace", n), steps, want)
			want = want[:0]
			for _, v := range refArange(float64(n), 0, -float64(n)/float64(steps)) {
				want = append(want, float32(math.RoundToEven(v))-1)
			}
			if len(want) != steps {
				refusals++
				if _, err := New(spaced("trailing", n), steps); err == nil {
					t.Errorf("trailing %d/%d accepted; numpy yields %d timesteps", steps, n, len(want))
				}
			} else {
				check(t, spaced("trailing", n), steps, want)
			}
			want = want[:0]
			for i := steps - 1; i >= 0; i-- {
				want = append(want, float32(i*(n/steps))+1)
			}
			check(t, spaced("leading", n), steps, want)
		}
	}
	t.Logf("%d pairs, %d trailing schedules refused (numpy's extra -1 timestep)", pairs, refusals)
}

func check(t *testing.T, c Config, steps int, want []float32) {
	t.Helper()
	s, err := New(c, steps)
	if err != nil {
		t.Fatalf("%s %d/%d: %v", c.TimestepSpacing, steps, c.NumTrainTimesteps, err)
	}
	if !reflect.DeepEqual(s.Timesteps, want) {
		t.Errorf("%s %d/%d: timesteps %v, want %v", c.TimestepSpacing, steps, c.NumTrainTimesteps, s.Timesteps, want)
	}
}

// Hand-checkable values: 999/6 = 166.5 exactly, so linspace(0, 999, 7) is exact; with
// 16 of 1000 trailing steps the ratio is 62.5 and every other value is a half, rounded
// to even before the -1 (937.5 → 938 → 937, 812.5 → 812 → 811).
func TestTimestepsByHand(t *testing.T) {
	check(t, spaced("linspace", 1000), 7, []float32{999, 832.5, 666, 499.5, 333, 166.5, 0})
	check(t, spaced("trailing", 1000), 16, []float32{999, 937, 874, 811, 749, 687, 624, 561, 499, 437, 374, 311, 249, 187, 124, 61})
	// 1000/61 = 16.393…: ceil(1000/(1000/61)) is 61 here, but 999/(999/13) rounds up to 14.
	if _, err := New(spaced("trailing", 999), 13); err == nil || !strings.Contains(err.Error(), "14 timesteps") {
		t.Fatalf("trailing 13/999: err %v, want a refusal: numpy yields 14 timesteps", err)
	}
}

// trained_betas replaces the schedule (as float32 values), and is checked.
func TestTrainedBetas(t *testing.T) {
	lin := SDXL()
	lin.BetaSchedule = "linear"
	c := lin
	c.BetaStart, c.BetaEnd = 0.5, 0.6 // ignored when trained_betas is given
	c.TrainedBetas = make([]float64, c.NumTrainTimesteps)
	for i, b := range linspace32(float32(lin.BetaStart), float32(lin.BetaEnd), lin.NumTrainTimesteps) {
		c.TrainedBetas[i] = float64(b)
	}
	if !reflect.DeepEqual(c.AlphasCumprod(), lin.AlphasCumprod()) {
		t.Fatal("trained_betas equal to the linear schedule give other alphas_cumprod")
	}
	// A constant β = 0.01: ᾱ_t = 0.99^(t+1), up to float32 rounding of each factor.
	for i := range c.TrainedBetas {
		c.TrainedBetas[i] = 0.01
	}
	ac := c.AlphasCumprod()
	for _, k := range []int{0, 9, 99, 499} {
		want := math.Pow(float64(float32(1-float32(0.01))), float64(k+1))
		if math.Abs(float64(ac[k])-want) > 1e-6*want {
			t.Errorf("alphas_cumprod[%d] = %g, want %g", k, ac[k], want)
		}
	}
	if _, err := New(c, 30); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, tc := range []struct{ json, want string }{
		{`{"trained_betas": [0.1, 0.2]}`, "trained_betas has 2 values"},
		{`{"num_train_timesteps": 2, "trained_betas": [0.1, 0]}`, "trained_betas[1]"},
		{`{"num_train_timesteps": 2, "trained_betas": [1, 0.5]}`, "trained_betas[0]"},
		{`{"num_train_timesteps": 2, "trained_betas": [1e-50, 0.5]}`, "trained_betas[0]"},
		{`{"beta_start": 0}`, "beta_start"},
		{`{"beta_end": 1}`, "beta_end"},
		{`{"beta_start": 0.5, "beta_end": 0.1}`, "is above beta_end"},
		{`{"num_train_timesteps": 1000000}`, "num_train_timesteps"},
		{`{"steps_offset": -1}`, "steps_offset"},
	} {
		p := filepath.Join(dir, "scheduler_config.json")
		os.WriteFile(p, []byte(tc.json), 0o644)
		if _, err := LoadConfig(p); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want one naming %q", tc.json, err, tc.want)
		}
	}
	p := filepath.Join(dir, "ok.json")
	os.WriteFile(p, []byte(`{"num_train_timesteps": 3, "trained_betas": [0.1, 0.2, 0.3]}`), 0o644)
	got, err := LoadConfig(p)
	if err != nil || !reflect.DeepEqual(got.TrainedBetas, []float64{0.1, 0.2, 0.3}) {
		t.Fatalf("trained_betas not read: %v %v", got.TrainedBetas, err)
	}
	if ac := got.AlphasCumprod(); ac[0] != float32(1-float32(0.1)) {
		t.Fatalf("ᾱ_0 = %v, want float32(1 - 0.1)", ac[0])
	}
}
