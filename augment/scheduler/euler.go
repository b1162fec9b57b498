// Package scheduler is diffusers' EulerDiscreteScheduler (v0.29.0) as SDXL ships it:
// betas and sigmas computed in float32 the way torch does, timesteps the way numpy does
// (float64, then cast to float32), the strength subset of the inpaint pipeline's
// get_timesteps, and the Euler step (spec §3).
package scheduler

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strconv"
)

// Config is scheduler/scheduler_config.json. Zero values take diffusers' defaults.
type Config struct {
	NumTrainTimesteps int     `json:"num_train_timesteps"`
	BetaStart         float64 `json:"beta_start"`
	BetaEnd           float64 `json:"beta_end"`
	BetaSchedule      string  `json:"beta_schedule"`
	TimestepSpacing   string  `json:"timestep_spacing"`
	StepsOffset       int     `json:"steps_offset"`
	PredictionType    string  `json:"prediction_type"`
	InterpolationType string  `json:"interpolation_type"`
	UseKarrasSigmas   bool    `json:"use_karras_sigmas"`
	FinalSigmasType   string  `json:"final_sigmas_type"`
	TimestepType      string  `json:"timestep_type"`
	RescaleZeroSNR    bool    `json:"rescale_betas_zero_snr"`
	ClassName         string  `json:"_class_name"`
	// TrainedBetas replaces the beta schedule when set, as diffusers does
	// (torch.tensor(trained_betas, dtype=float32)); it must hold num_train_timesteps values.
	TrainedBetas []float64 `json:"trained_betas"`
}

// MaxTrainTimesteps bounds num_train_timesteps: the tables are that long, and every
// released Stable Diffusion scheduler uses 1000.
const MaxTrainTimesteps = 100_000

// SDXL is the configuration shipped with SDXL-base and the inpainting checkpoint (spec §3.1).
func SDXL() Config {
	return Config{NumTrainTimesteps: 1000, BetaStart: 0.00085, BetaEnd: 0.012, BetaSchedule: "scaled_linear",
		TimestepSpacing: "leading", StepsOffset: 1, PredictionType: "epsilon", InterpolationType: "linear",
		FinalSigmasType: "zero", TimestepType: "discrete", ClassName: "EulerDiscreteScheduler"}
}

// LoadConfig reads scheduler_config.json and checks that it is a variant this package
// implements exactly; anything else is an error naming the field.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("scheduler: %w", err)
	}
	c := Config{NumTrainTimesteps: 1000, BetaStart: 0.0001, BetaEnd: 0.02, BetaSchedule: "linear",
		TimestepSpacing: "linspace", PredictionType: "epsilon", InterpolationType: "linear",
		FinalSigmasType: "zero", TimestepType: "discrete"}
	if err := json.Unmarshal(b, &c); err != nil {
		return Config{}, fmt.Errorf("scheduler: %s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("scheduler: %s: %w", path, err)
	}
	return c, nil
}

// Validate rejects settings this port does not reproduce, and betas that are not
// probabilities (0 < β < 1: β = 0 makes a zero sigma the Euler step divides by, β ≥ 1
// a zero or negative ᾱ).
func (c Config) Validate() error {
	if err := c.validateKind(); err != nil {
		return err
	}
	return c.validateBetas()
}

func (c Config) validateKind() error {
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("%s = %v is not supported (want %s)", field, v, want)
	}
	switch {
	case c.ClassName != "" && c.ClassName != "EulerDiscreteScheduler":
		return bad("_class_name", c.ClassName, "EulerDiscreteScheduler")
	case c.NumTrainTimesteps < 2 || c.NumTrainTimesteps > MaxTrainTimesteps:
		return bad("num_train_timesteps", c.NumTrainTimesteps, fmt.Sprintf("2..%d", MaxTrainTimesteps))
	case c.BetaSchedule != "scaled_linear" && c.BetaSchedule != "linear":
		return bad("beta_schedule", c.BetaSchedule, "scaled_linear or linear")
	case c.TimestepSpacing != "leading" && c.TimestepSpacing != "trailing" && c.TimestepSpacing != "linspace":
		return bad("timestep_spacing", c.TimestepSpacing, "leading, trailing or linspace")
	case c.StepsOffset < 0 || c.StepsOffset >= c.NumTrainTimesteps:
		return bad("steps_offset", c.StepsOffset, fmt.Sprintf("0..%d", c.NumTrainTimesteps-1))
	case c.PredictionType != "epsilon":
		return bad("prediction_type", c.PredictionType, "epsilon")
	case c.InterpolationType != "linear":
		return bad("interpolation_type", c.InterpolationType, "linear")
	case c.UseKarrasSigmas:
		return bad("use_karras_sigmas", true, "false")
	case c.FinalSigmasType != "zero" && c.FinalSigmasType != "":
		return bad("final_sigmas_type", c.FinalSigmasType, "zero")
	case c.TimestepType != "discrete" && c.TimestepType != "":
		return bad("timestep_type", c.TimestepType, "discrete")
	case c.RescaleZeroSNR:
		return bad("rescale_betas_zero_snr", true, "false")
	}
	return nil
}

func (c Config) validateBetas() error {
	if c.TrainedBetas != nil {
		if len(c.TrainedBetas) != c.NumTrainTimesteps {
			return fmt.Errorf("trained_betas has %d values but num_train_timesteps = %d: they must match", len(c.TrainedBetas), c.NumTrainTimesteps)
		}
		for i, b := range c.TrainedBetas {
			// The float32 value is what diffusers uses; a tiny float64 can round to 0.
			if f := float32(b); !(f > 0 && f < 1) {
				return fmt.Errorf("trained_betas[%d] = %v is not in (0, 1) as a float32", i, b)
			}
		}
		return nil
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"beta_start", c.BetaStart}, {"beta_end", c.BetaEnd}} {
		if !(f.v > 0 && f.v < 1) {
			return fmt.Errorf("%s = %v is not in (0, 1)", f.name, f.v)
		}
	}
	if c.BetaStart > c.BetaEnd {
		return fmt.Errorf("beta_start = %v is above beta_end = %v", c.BetaStart, c.BetaEnd)
	}
	return nil
}

// linspace32 is torch.linspace(start, end, n, dtype=float32) on CPU: the step is computed
// in float32 and the second half is counted back from end, so both ends are exact.
func linspace32(start, end float32, n int) []float32 {
	out := make([]float32, n)
	if n == 1 {
		out[0] = start
		return out
	}
	step := float32((end - start) / float32(n-1))
	half := n / 2
	for i := range out {
		if i < half {
			out[i] = float32(start + float32(step*float32(i)))
		} else {
			out[i] = float32(end - float32(step*float32(n-1-i)))
		}
	}
	return out
}

// AlphasCumprod is the float32 cumulative product of 1-β. torch's CPU cumprod
// accumulates in double and stores each element as float32 (spec §3.3).
func (c Config) AlphasCumprod() []float32 {
	var betas []float32
	switch {
	case c.TrainedBetas != nil:
		betas = make([]float32, len(c.TrainedBetas))
		for i, b := range c.TrainedBetas {
			betas[i] = float32(b)
		}
	case c.BetaSchedule == "scaled_linear":
		betas = linspace32(float32(math.Sqrt(c.BetaStart)), float32(math.Sqrt(c.BetaEnd)), c.NumTrainTimesteps)
		for i, b := range betas {
			betas[i] = float32(b * b)
		}
	default:
		betas = linspace32(float32(c.BetaStart), float32(c.BetaEnd), c.NumTrainTimesteps)
	}
	ac := make([]float32, len(betas))
	p := 1.0
	for i, b := range betas {
		p *= float64(float32(1 - b))
		ac[i] = float32(p)
	}
	return ac
}

// TrainSigmas is σ_train[t] = sqrt((1-ᾱ)/ᾱ) in float32, t = 0..N-1.
func (c Config) TrainSigmas() []float32 {
	ac := c.AlphasCumprod()
	s := make([]float32, len(ac))
	for i, a := range ac {
		s[i] = float32(math.Sqrt(float64(float32(float32(1-a) / a))))
	}
	return s
}

// Schedule is the result of set_timesteps(N).
type Schedule struct {
	Timesteps      []float32 // N, descending
	Sigmas         []float32 // N+1, the last is 0
	InitNoiseSigma float32
}

// New is set_timesteps(steps).
func New(c Config, steps int) (*Schedule, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("scheduler: %w", err)
	}
	if steps < 1 || steps > c.NumTrainTimesteps {
		return nil, fmt.Errorf("scheduler: num_inference_steps = %d, want 1..%d", steps, c.NumTrainTimesteps)
	}
	ts, err := c.timesteps(steps)
	if err != nil {
		return nil, err
	}
	train := c.TrainSigmas()
	s := &Schedule{Timesteps: make([]float32, steps), Sigmas: make([]float32, steps+1)}
	for i, t := range ts {
		s.Timesteps[i] = t
		s.Sigmas[i] = float32(interp(float64(t), train))
	}
	maxSigma := s.Sigmas[0]
	for _, v := range s.Sigmas {
		maxSigma = max(maxSigma, v)
	}
	if c.TimestepSpacing == "leading" {
		s.InitNoiseSigma = float32(math.Sqrt(float64(float32(maxSigma*maxSigma) + 1)))
	} else {
		s.InitNoiseSigma = maxSigma
	}
	return s, nil
}

// timesteps is the timestep part of diffusers' set_timesteps: numpy arithmetic in
// float64, cast to float32 at the end, as diffusers does.
func (c Config) timesteps(steps int) ([]float32, error) {
	n := c.NumTrainTimesteps
	ts := make([]float32, steps)
	switch c.TimestepSpacing {
	case "leading":
		// (np.arange(0, steps) * (n // steps)).round()[::-1].astype(float32) + steps_offset:
		// integers, exact in both types.
		ratio := n / steps
		for i := range ts {
			ts[steps-1-i] = float32(i*ratio) + float32(c.StepsOffset)
		}
	case "trailing":
		// np.arange(n, 0, -n/steps).round().astype(float32) - 1
		r := NumpyArange(float64(n), 0, -float64(n)/float64(steps))
		if len(r) != steps {
			// numpy's length ceil(n / (n/steps)) rounds up past steps here; diffusers then
			// runs an extra step at timestep -1. Not a schedule worth reproducing.
			return nil, fmt.Errorf("scheduler: trailing spacing with %d steps of %d: diffusers itself yields %d timesteps, the last -1 (numpy arange rounding); choose another step count", steps, n, len(r))
		}
		for i, v := range r {
			ts[i] = float32(math.RoundToEven(v)) - 1
		}
	case "linspace":
		// np.linspace(0, n-1, steps, dtype=float32)[::-1]: computed in float64, then cast.
		lin := NumpyLinspace(0, float64(n-1), steps)
		for i := range ts {
			ts[i] = float32(lin[steps-1-i])
		}
	}
	return ts, nil
}

// NumpyLinspace is np.linspace(start, stop, num) (endpoint=True) in float64, as
// numpy/_core/function_base.py computes it: step = (stop-start)/(num-1), y[i] =
// i*step + start (i/div*delta + start when step is 0), and the last element set to
// stop; num = 1 gives [start].
func NumpyLinspace(start, stop float64, num int) []float64 {
	y := make([]float64, max(num, 0))
	div := num - 1
	delta := stop - start
	step := delta / float64(div)
	for i := range y {
		switch {
		case div <= 0:
			y[i] = float64(i)*delta + start
		case step == 0:
			y[i] = float64(i)/float64(div)*delta + start
		default:
			y[i] = float64(i)*step + start
		}
	}
	if num > 1 {
		y[num-1] = stop
	}
	return y
}

// NumpyArange is np.arange(start, stop, step) for float64, as numpy's C code computes
// it (PyArray_ArangeObj and the DOUBLE fill function): length ceil((stop-start)/step);
// y[0] = start, y[1] = start+step, and y[i] = start + i*d for i ≥ 2 where d is
// y[1]-y[0], which can differ from step in its last bits.
func NumpyArange(start, stop, step float64) []float64 {
	l := math.Ceil((stop - start) / step)
	if !(l > 0) || l > 1<<24 {
		return nil
	}
	y := make([]float64, int(l))
	y[0] = start
	if len(y) > 1 {
		y[1] = start + step
	}
	d := y[min(1, len(y)-1)] - start
	for i := 2; i < len(y); i++ {
		y[i] = start + float64(i)*d
	}
	return y
}

// interp is np.interp(t, arange(len(y)), y) with clamping at the ends.
func interp(t float64, y []float32) float64 {
	if t <= 0 {
		return float64(y[0])
	}
	if t >= float64(len(y)-1) {
		return float64(y[len(y)-1])
	}
	i := int(math.Floor(t))
	f := t - float64(i)
	if f == 0 {
		return float64(y[i])
	}
	return float64(y[i]) + f*(float64(y[i+1])-float64(y[i]))
}

// Step is one denoising iteration of a plan.
type Step struct {
	I         int     // iteration, 0-based
	K         int     // index into Sigmas (scheduler step_index)
	Timestep  float32 // t passed to the UNet
	Sigma     float32
	SigmaNext float32
	CIn       float32 // 1/sqrt(σ²+1), the reference's c_in
	Denom     float32 // sqrt(σ²+1): scale_model_input divides by it
	Dt        float32 // σ_next - σ
}

// Plan is the part of the schedule an img2img/inpaint call with a given strength runs.
type Plan struct {
	TStart int
	Steps  []Step
	// FromNoise is strength == 1: latents = noise·InitNoiseSigma, the image is not encoded.
	FromNoise bool
	// NoiseSigma multiplies the noise in add_noise (σ[TStart]); for FromNoise, InitNoiseSigma.
	NoiseSigma float32
	// LatentTimestep is timesteps[TStart], the t of add_noise.
	LatentTimestep float32
}

// Strength64 recovers the decimal a user typed from a float32 strength (0.7 stays 0.7,
// not 0.699999988), so int(steps*strength) matches Python's double arithmetic.
func Strength64(s float32) float64 {
	v, _ := strconv.ParseFloat(strconv.FormatFloat(float64(s), 'g', -1, 32), 64)
	return v
}

// Plan is the inpaint pipeline's get_timesteps(N, strength) followed by the per-step
// constants of scale_model_input and step.
func (s *Schedule) Plan(strength float64) (Plan, error) {
	if !(strength > 0 && strength <= 1) {
		return Plan{}, fmt.Errorf("scheduler: strength = %v, want 0 < strength <= 1", strength)
	}
	n := len(s.Timesteps)
	initT := min(int(float64(n)*strength), n)
	tStart := max(n-initT, 0)
	if tStart >= n {
		return Plan{}, fmt.Errorf("scheduler: strength %v with %d steps leaves no step to run (int(%d*%v) = 0)", strength, n, n, strength)
	}
	p := Plan{TStart: tStart, FromNoise: strength == 1, LatentTimestep: s.Timesteps[tStart]}
	if p.FromNoise {
		p.NoiseSigma = s.InitNoiseSigma
	} else {
		p.NoiseSigma = s.Sigmas[tStart]
	}
	for k := tStart; k < n; k++ {
		sg, nx := s.Sigmas[k], s.Sigmas[k+1]
		den := float32(math.Sqrt(float64(float32(sg*sg) + 1)))
		p.Steps = append(p.Steps, Step{
			I: k - tStart, K: k, Timestep: s.Timesteps[k], Sigma: sg, SigmaNext: nx,
			CIn: float32(1 / den), Denom: den, Dt: float32(nx - sg),
		})
	}
	return p, nil
}

// EulerStep applies one Euler step in place: x ← x + d·dt with d = (x - x̂₀)/σ and
// x̂₀ = x - σ·eps (epsilon prediction, γ = 0), all in float32 as diffusers does.
func EulerStep(x, eps []float32, st Step) {
	sg, dt := st.Sigma, st.Dt
	for i, xv := range x {
		x0 := float32(xv - float32(sg*eps[i]))
		d := float32(float32(xv-x0) / sg)
		x[i] = float32(xv + float32(d*dt))
	}
}
