// Package scheduler is diffusers' EulerDiscreteScheduler (v0.29.0) as SDXL ships it:
// betas, sigmas and timesteps computed in float32 the way torch/numpy do, the strength
// subset of the inpaint pipeline's get_timesteps, and the Euler step (spec §3).
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
}

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

// Validate rejects settings this port does not reproduce.
func (c Config) Validate() error {
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("%s = %v is not supported (want %s)", field, v, want)
	}
	switch {
	case c.ClassName != "" && c.ClassName != "EulerDiscreteScheduler":
		return bad("_class_name", c.ClassName, "EulerDiscreteScheduler")
	case c.NumTrainTimesteps < 2:
		return bad("num_train_timesteps", c.NumTrainTimesteps, ">= 2")
	case c.BetaSchedule != "scaled_linear" && c.BetaSchedule != "linear":
		return bad("beta_schedule", c.BetaSchedule, "scaled_linear or linear")
	case c.TimestepSpacing != "leading" && c.TimestepSpacing != "trailing" && c.TimestepSpacing != "linspace":
		return bad("timestep_spacing", c.TimestepSpacing, "leading, trailing or linspace")
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
	if c.BetaSchedule == "scaled_linear" {
		betas = linspace32(float32(math.Sqrt(c.BetaStart)), float32(math.Sqrt(c.BetaEnd)), c.NumTrainTimesteps)
		for i, b := range betas {
			betas[i] = float32(b * b)
		}
	} else {
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
	n := c.NumTrainTimesteps
	ts := make([]float64, steps)
	switch c.TimestepSpacing {
	case "leading":
		ratio := n / steps
		for i := range ts {
			ts[steps-1-i] = math.RoundToEven(float64(i*ratio)) + float64(c.StepsOffset)
		}
	case "trailing":
		ratio := float64(n) / float64(steps)
		// np.arange(n, 0, -ratio).round() - 1
		for i := range ts {
			ts[i] = math.RoundToEven(float64(n)-float64(i)*ratio) - 1
		}
	case "linspace":
		lin := linspace32(0, float32(n-1), steps) // numpy's float32 linspace; equal here for integer ends
		for i := range ts {
			ts[i] = float64(lin[steps-1-i])
		}
	}
	train := c.TrainSigmas()
	s := &Schedule{Timesteps: make([]float32, steps), Sigmas: make([]float32, steps+1)}
	for i, t := range ts {
		s.Timesteps[i] = float32(t)
		s.Sigmas[i] = float32(interp(t, train))
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
