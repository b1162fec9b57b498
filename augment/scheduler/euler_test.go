package scheduler

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/diagd/diagd/internal/testenv"
)

// The reference prints float32 values to 9 significant digits, which identifies a float32
// uniquely; our computation emulates the same float32 operations, so the only slack needed
// is for the reference's own last-digit rounding and for library sqrt/sum order: 2 ulp of
// float32 (2·2⁻²³ ≈ 2.4e-7 relative). dt and sigma differences near zero get an absolute
// floor of 1e-8. float64 arithmetic would be off by up to 1e-5 (spec §3.3), so this
// tolerance does distinguish a float32 port from a float64 one.
const relTol = 2.4e-7

func near(a, b float64) bool {
	return math.Abs(a-b) <= relTol*math.Max(math.Abs(a), math.Abs(b))+1e-8
}

type refStrength struct {
	TStart        int     `json:"t_start"`
	NumSteps      int     `json:"num_steps"`
	FirstTimestep float64 `json:"first_timestep"`
	NoiseSigma    float64 `json:"noise_sigma_for_add_noise"`
	Init          string  `json:"init_latents"`
	Steps         []struct {
		I          int     `json:"i"`
		SigmaIndex int     `json:"sigma_index"`
		Timestep   float64 `json:"timestep"`
		Sigma      float64 `json:"sigma"`
		SigmaNext  float64 `json:"sigma_next"`
		CIn        float64 `json:"c_in"`
		Dt         float64 `json:"dt"`
	} `json:"steps"`
}

type reference struct {
	Config         map[string]any     `json:"scheduler_config"`
	Steps          int                `json:"num_inference_steps"`
	Timesteps      []float64          `json:"timesteps_full"`
	Sigmas         []float64          `json:"sigmas_full_f32"`
	InitNoiseSigma float64            `json:"init_noise_sigma_leading"`
	AlphasCumprod  map[string]float64 `json:"alphas_cumprod_f32"`
	SigmaTable     map[string]float64 `json:"sigma_table_f32"`
	S099           refStrength        `json:"strength_0.99"`
	S075           refStrength        `json:"strength_0.75"`
	S100           refStrength        `json:"strength_1.0"`
}

func loadRef(t *testing.T) (reference, Config) {
	t.Helper()
	b, err := os.ReadFile(testenv.Shared(t, "reference/diag-reference-values.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r reference
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	// The reference's own scheduler_config goes through LoadConfig, as a checkpoint's would.
	cb, _ := json.Marshal(r.Config)
	p := filepath.Join(t.TempDir(), "scheduler_config.json")
	if err := os.WriteFile(p, cb, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, func() Config { s := SDXL(); s.ClassName = ""; s.TimestepType = "discrete"; return s }()) {
		t.Fatalf("loaded config %+v differs from SDXL() %+v", c, SDXL())
	}
	return r, c
}

func TestTables(t *testing.T) {
	r, c := loadRef(t)
	checkTrainTables(t, r, c)
	s, err := New(c, r.Steps)
	if err != nil {
		t.Fatal(err)
	}
	checkSchedule(t, r, s)
	for _, tc := range []struct {
		strength float32
		ref      refStrength
	}{{0.99, r.S099}, {0.75, r.S075}, {1.0, r.S100}} {
		checkPlan(t, s, tc.strength, tc.ref, r.InitNoiseSigma)
	}
}

// checkTrainTables checks alphas_cumprod and the training sigmas against the reference.
func checkTrainTables(t *testing.T, r reference, c Config) {
	t.Helper()
	ac := c.AlphasCumprod()
	for k, want := range r.AlphasCumprod {
		i, _ := strconv.Atoi(k)
		if !near(float64(ac[i]), want) {
			t.Errorf("alphas_cumprod[%d] = %.9g, want %.9g", i, ac[i], want)
		}
	}
	train := c.TrainSigmas()
	for k, want := range r.SigmaTable {
		i, _ := strconv.Atoi(k)
		if !near(float64(train[i]), want) {
			t.Errorf("sigma_train[%d] = %.9g, want %.9g", i, train[i], want)
		}
	}
}

// checkSchedule checks the full schedule's timesteps, sigmas and init_noise_sigma.
func checkSchedule(t *testing.T, r reference, s *Schedule) {
	t.Helper()
	if len(s.Timesteps) != len(r.Timesteps) || len(s.Sigmas) != len(r.Sigmas) {
		t.Fatalf("%d timesteps, %d sigmas; want %d, %d", len(s.Timesteps), len(s.Sigmas), len(r.Timesteps), len(r.Sigmas))
	}
	for i, want := range r.Timesteps {
		if float64(s.Timesteps[i]) != want {
			t.Errorf("timesteps[%d] = %v, want %v", i, s.Timesteps[i], want)
		}
	}
	for i, want := range r.Sigmas {
		if !near(float64(s.Sigmas[i]), want) {
			t.Errorf("sigmas[%d] = %.9g, want %.9g", i, s.Sigmas[i], want)
		}
	}
	if !near(float64(s.InitNoiseSigma), r.InitNoiseSigma) {
		t.Errorf("init_noise_sigma = %.9g, want %.9g", s.InitNoiseSigma, r.InitNoiseSigma)
	}
}

// checkPlan checks the plan for one strength against the reference's entry for it.
func checkPlan(t *testing.T, s *Schedule, strength float32, ref refStrength, initNoiseSigma float64) {
	t.Helper()
	p, err := s.Plan(Strength64(strength))
	if err != nil {
		t.Fatal(err)
	}
	if p.TStart != ref.TStart || len(p.Steps) != ref.NumSteps || len(p.Steps) != len(ref.Steps) ||
		float64(p.LatentTimestep) != ref.FirstTimestep {
		t.Fatalf("strength %v: t_start %d, %d steps, first t %v; want %d, %d, %v", strength,
			p.TStart, len(p.Steps), p.LatentTimestep, ref.TStart, ref.NumSteps, ref.FirstTimestep)
	}
	if p.FromNoise != strings.HasPrefix(ref.Init, "noise * init_noise_sigma") {
		t.Errorf("strength %v: FromNoise %v but reference init is %q", strength, p.FromNoise, ref.Init)
	}
	// For strength 1 the reference lists σ[0] (add_noise's σ) while the pipeline scales by init_noise_sigma.
	wantNoise := ref.NoiseSigma
	if p.FromNoise {
		wantNoise = initNoiseSigma
		if !near(float64(s.Sigmas[p.TStart]), ref.NoiseSigma) {
			t.Errorf("strength 1: sigma[0] = %.9g, want %.9g", s.Sigmas[p.TStart], ref.NoiseSigma)
		}
	}
	if !near(float64(p.NoiseSigma), wantNoise) {
		t.Errorf("strength %v: noise sigma %.9g, want %.9g", strength, p.NoiseSigma, wantNoise)
	}
	for i, w := range ref.Steps {
		g := p.Steps[i]
		if g.I != w.I || g.K != w.SigmaIndex || float64(g.Timestep) != w.Timestep ||
			!near(float64(g.Sigma), w.Sigma) || !near(float64(g.SigmaNext), w.SigmaNext) ||
			!near(float64(g.CIn), w.CIn) || !near(float64(g.Dt), w.Dt) {
			t.Errorf("strength %v step %d: got %+v, want %+v", strength, i, g, w)
		}
	}
}

func TestStrengthEdges(t *testing.T) {
	s, err := New(SDXL(), 30)
	if err != nil {
		t.Fatal(err)
	}
	// float32(0.7)·30 is 20.99999…, but Python's 0.7·30 rounds to 21.0: 21 steps, t_start 9.
	if p, err := s.Plan(Strength64(0.7)); err != nil || len(p.Steps) != 21 || p.TStart != 9 {
		t.Fatalf("strength 0.7: %d steps t_start %d err %v; want 21, 9", len(p.Steps), p.TStart, err)
	}
	// int(30·0.02) = 0 steps: diffusers refuses, so do we.
	if _, err := s.Plan(0.02); err == nil {
		t.Fatal("strength 0.02 with 30 steps accepted")
	}
	if _, err := s.Plan(1.5); err == nil {
		t.Fatal("strength 1.5 accepted")
	}
}

func TestEulerStep(t *testing.T) {
	// With σ = 2 and dt = -0.5: x̂₀ = x - 2·eps, d = eps (exact for these dyadic values), x' = x - 0.5·eps.
	x := []float32{1, -3, 0.25}
	eps := []float32{0.5, 2, -1}
	EulerStep(x, eps, Step{Sigma: 2, Dt: -0.5})
	for i, want := range []float32{0.75, -4, 0.75} {
		if x[i] != want {
			t.Fatalf("x[%d] = %v, want %v", i, x[i], want)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "scheduler_config.json")
	os.WriteFile(p, []byte(`{"_class_name":"EulerDiscreteScheduler","prediction_type":"v_prediction"}`), 0o644)
	if _, err := LoadConfig(p); err == nil || !strings.Contains(err.Error(), "prediction_type") {
		t.Fatalf("err %v, want one naming prediction_type", err)
	}
	if _, err := LoadConfig(filepath.Join(dir, "nope.json")); err == nil {
		t.Fatal("missing file accepted")
	}
}
