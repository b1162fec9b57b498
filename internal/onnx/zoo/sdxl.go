package zoo

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/diagd/diagd/internal/atomicfile"
	"github.com/diagd/diagd/internal/onnx/build"
)

// SDXLExport selects which optimum version's SDXL export interface a stand-in copies
// (spec §4.2): the versions differ in input dtypes and in the VAE encoder's output.
type SDXLExport int

const (
	// OptimumNew is optimum ≥ 1.24 (and optimum-onnx): text_encoder input_ids int64,
	// UNet timestep a rank-0 float, vae_encoder output latent_parameters [B,8,h,w].
	OptimumNew SDXLExport = iota
	// OptimumOld is optimum ≤ 1.22/1.23: text_encoder input_ids int32, UNet timestep int64
	// [steps], vae_encoder output latent_sample with the posterior sampling (RandomNormalLike)
	// inside the graph.
	OptimumOld
)

// SDXLConfig describes a tiny stand-in SDXL-inpainting export folder. The interface dims
// the Go pipeline depends on are real (77 tokens; hidden 768 and 1280, so 2048 concatenated;
// text_embeds 1280; time_ids 6; a 9-channel UNet input; 4 latent channels; VAE factor 8);
// the computation is trivial (an embedding lookup with a few affine layers, a 1×1
// convolution plus a per-sample conditioning scalar, an 8×8 patch VAE), so a 64² image
// runs in milliseconds.
type SDXLConfig struct {
	Export SDXLExport
	// FP16 makes every float input and output float16 (optimum --dtype fp16); inside, the
	// graphs cast to float32 and back.
	FP16 bool
	Seed uint64
	// PlainUNet makes out_sample exactly the first four sample channels (the scaled
	// latents), with no conditioning: the denoising loop then has a closed form that
	// tests can check against the scheduler tables.
	PlainUNet bool
	// TokenizerDir is a CLIP tokenizer folder (vocab.json, merges.txt) to copy into
	// tokenizer/ and tokenizer_2/. Empty writes a byte-level vocabulary without merges
	// (one token per byte) with CLIP's special-token ids.
	TokenizerDir string
}

// Real SDXL interface dims (spec §4.2).
const (
	SDXLSeqLen       = 77
	SDXLHidden1      = 768
	SDXLHidden2      = 1280
	SDXLLayers1      = 12
	SDXLLayers2      = 32
	SDXLTimeIDs      = 6
	SDXLUNetIn       = 9
	SDXLLatentCh     = 4
	SDXLVAEFactor    = 8
	SDXLScaling      = 0.13025
	sdxlVocabStandIn = 64 // ids are reduced mod this before the embedding lookup
)

// WriteSDXLInpaint writes an optimum-style export folder at dir: model_index.json,
// scheduler/, tokenizer/, tokenizer_2/, text_encoder/, text_encoder_2/, unet/,
// vae_encoder/, vae_decoder/. The UNet and text_encoder_2 keep their weights in
// model.onnx_data, as real fp32 exports do.
func WriteSDXLInpaint(dir string, c SDXLConfig) error {
	rng := rand.New(rand.NewPCG(c.Seed, 0x5d1))
	parts := []struct {
		name     string
		g        *build.Graph
		external bool
	}{
		{"text_encoder", sdxlTextEncoder(c, rng, false).Graph, false},
		{"text_encoder_2", sdxlTextEncoder(c, rng, true).Graph, true},
		{"unet", sdxlUNet(c, rng).Graph, true},
		{"vae_encoder", sdxlVAEEncoder(c).Graph, false},
		{"vae_decoder", sdxlVAEDecoder(c).Graph, false},
	}
	for _, p := range parts {
		d := filepath.Join(dir, p.name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		path := filepath.Join(d, "model.onnx")
		var err error
		if p.external {
			err = p.g.SaveExternal(path, "model.onnx_data", 1024)
		} else {
			err = p.g.Save(path)
		}
		if err != nil {
			return fmt.Errorf("zoo: sdxl %s: %w", p.name, err)
		}
	}
	return writeSDXLFiles(dir, c)
}

// writeSDXLFiles writes an export folder's files other than the networks: model_index,
// the scheduler, the VAE and UNet configs and both tokenizers.
func writeSDXLFiles(dir string, c SDXLConfig) error {
	vaeCfg := map[string]any{"_class_name": "AutoencoderKL", "scaling_factor": SDXLScaling, "latent_channels": 4,
		"block_out_channels": []int{128, 256, 512, 512}, "force_upcast": false}
	files := map[string]any{
		"model_index.json": map[string]any{"_class_name": "StableDiffusionXLInpaintPipeline",
			"force_zeros_for_empty_prompt": true, "requires_aesthetics_score": false},
		"scheduler/scheduler_config.json": map[string]any{"_class_name": "EulerDiscreteScheduler",
			"beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": false,
			"interpolation_type": "linear", "num_train_timesteps": 1000, "prediction_type": "epsilon",
			"sample_max_value": 1.0, "set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1,
			"timestep_spacing": "leading", "trained_betas": nil, "use_karras_sigmas": false},
		"vae_encoder/config.json": vaeCfg,
		"vae_decoder/config.json": vaeCfg,
		"unet/config.json":        map[string]any{"_class_name": "UNet2DConditionModel", "in_channels": 9, "out_channels": 4},
	}
	for name, v := range files {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := atomicfile.WriteFile(p, b, 0o644); err != nil {
			return err
		}
	}
	for tok, pad := range map[string]string{"tokenizer": "<|endoftext|>", "tokenizer_2": "!"} {
		if err := writeTokenizer(filepath.Join(dir, tok), c.TokenizerDir, pad); err != nil {
			return fmt.Errorf("zoo: sdxl %s: %w", tok, err)
		}
	}
	return nil
}

func writeTokenizer(dst, src, pad string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	if src != "" {
		for _, f := range []string{"vocab.json", "merges.txt"} {
			b, err := os.ReadFile(filepath.Join(src, f))
			if err != nil {
				return err
			}
			if err := atomicfile.WriteFile(filepath.Join(dst, f), b, 0o644); err != nil {
				return err
			}
		}
	} else {
		// Byte-level stand-in: the 256 bytes_to_unicode symbols and their </w> forms get
		// ids 0..511 in byte-table order, as in CLIP's vocabulary; no merges.
		vocab := map[string]int{}
		n := 0
		var chars []rune
		for b := 0; b < 256; b++ {
			if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
				chars = append(chars, rune(b))
			}
		}
		for b := 0; b < 256; b++ {
			if !((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) {
				chars = append(chars, rune(256+n))
				n++
			}
		}
		for i, r := range chars {
			vocab[string(r)] = i
			vocab[string(r)+"</w>"] = 256 + i
		}
		vocab["<|startoftext|>"] = 49406
		vocab["<|endoftext|>"] = 49407
		b, err := json.Marshal(vocab)
		if err != nil {
			return err
		}
		if err := atomicfile.WriteFile(filepath.Join(dst, "vocab.json"), b, 0o644); err != nil {
			return err
		}
		if err := atomicfile.WriteFile(filepath.Join(dst, "merges.txt"), []byte("#version: 0.2\n"), 0o644); err != nil {
			return err
		}
	}
	sp := map[string]any{"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "pad_token": pad}
	b, _ := json.MarshalIndent(sp, "", "  ")
	if err := atomicfile.WriteFile(filepath.Join(dst, "special_tokens_map.json"), b, 0o644); err != nil {
		return err
	}
	tc := map[string]any{"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": true, "pad_token": pad}
	b, _ = json.MarshalIndent(tc, "", "  ")
	return atomicfile.WriteFile(filepath.Join(dst, "tokenizer_config.json"), b, 0o644)
}

// sdxlGraph wraps a graph with the float-boundary dtype of the export.
type sdxlGraph struct {
	*build.Graph
	fp16 bool
}

func newSDXLGraph(name string, c SDXLConfig) sdxlGraph {
	g := build.New(name)
	g.SetOpset(14) // optimum's DEFAULT_ONNX_OPSET
	g.SetMetadata("diagd.standin", "sdxl-inpaint "+name)
	return sdxlGraph{g, c.FP16}
}

// inF declares a float input and returns a float32 value of it.
func (g sdxlGraph) inF(name string, dims ...any) string {
	if g.fp16 {
		g.Input(name, build.Float16, dims...)
		return g.Cast(name, build.Float)
	}
	return g.Input(name, build.Float, dims...)
}

// outF publishes a float32 value as a float output.
func (g sdxlGraph) outF(v, name string, dims ...any) {
	if g.fp16 {
		g.Node("Cast", []string{v}, []string{name}, build.Int("to", int64(build.Float16)))
		g.Output(name, build.Float16, dims...)
		return
	}
	g.Identity(v, name)
	g.Output(name, build.Float, dims...)
}

func randVec(rng *rand.Rand, n int, scale float32) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64()) * scale
	}
	return v
}

func (g sdxlGraph) scalar(v float32) string { return g.Const([]int64{}, []float32{v}) }

func (g sdxlGraph) reduceMean(x string, keep int64, axes ...int64) string {
	return g.Op("ReduceMean", []string{x}, build.Ints("axes", axes...), build.Int("keepdims", keep))
}

// sdxlTextEncoder: hidden_states.0 = E[ids mod 64] + P; hidden_states.i = a_i·h + b_i;
// last_hidden_state = h_L·0.5; pooler_output / text_embeds = mean over tokens (·proj).
func sdxlTextEncoder(c SDXLConfig, rng *rand.Rand, second bool) sdxlGraph {
	name, hidden, layers := "text_encoder", SDXLHidden1, SDXLLayers1
	if second {
		name, hidden, layers = "text_encoder_2", SDXLHidden2, SDXLLayers2
	}
	g := newSDXLGraph(name, c)
	B, S := "batch_size", "sequence_length"
	var idx string
	if !second && c.Export == OptimumOld {
		ids := g.Input("input_ids", build.Int32, B, S)
		idx = g.Op("Mod", []string{ids, g.Const([]int64{}, []int32{sdxlVocabStandIn})})
	} else {
		ids := g.Input("input_ids", build.Int64, B, S)
		idx = g.Op("Mod", []string{ids, g.Const([]int64{}, []int64{sdxlVocabStandIn})})
	}
	emb := g.Init("embeddings", []int64{sdxlVocabStandIn, int64(hidden)}, randVec(rng, sdxlVocabStandIn*hidden, 0.5))
	pos := g.Init("position_embedding", []int64{SDXLSeqLen, int64(hidden)}, randVec(rng, SDXLSeqLen*hidden, 0.1))
	h := g.Add(g.Op("Gather", []string{emb, idx}, build.Int("axis", 0)), pos)
	states := []string{h}
	for i := 1; i <= layers; i++ {
		a := g.scalar(0.9 + 0.01*float32(i%5))
		b := g.Init(fmt.Sprintf("layer%d.bias", i), []int64{int64(hidden)}, randVec(rng, hidden, 0.05))
		h = g.Add(g.Mul(h, a), b)
		states = append(states, h)
	}
	last := g.Mul(h, g.scalar(0.5))
	pooled := g.reduceMean(last, 0, 1)
	dims3 := []any{B, S, hidden}
	if second {
		proj := g.Init("text_projection", []int64{int64(hidden)}, randVec(rng, hidden, 1))
		g.outF(g.Mul(pooled, proj), "text_embeds", B, hidden)
		g.outF(last, "last_hidden_state", dims3...)
	} else {
		g.outF(last, "last_hidden_state", dims3...)
		g.outF(pooled, "pooler_output", B, hidden)
	}
	for i, s := range states {
		g.outF(s, fmt.Sprintf("hidden_states.%d", i), dims3...)
	}
	return g
}

// sdxlUNet: out_sample = Conv1×1(sample) + 0.01·s, where s per batch row mixes random
// projections of encoder_hidden_states and text_embeds with time_ids and the timestep. The first four input
// channels (the scaled latents) pass with weight 1, so the "noise prediction" is mostly
// the noisy latents themselves and Euler steps shrink them toward the masked-image terms.
func sdxlUNet(c SDXLConfig, rng *rand.Rand) sdxlGraph {
	g := newSDXLGraph("unet", c)
	B := "batch_size"
	sample := g.inF("sample", B, SDXLUNetIn, "height", "width")
	var t string
	if c.Export == OptimumOld {
		ti := g.Input("timestep", build.Int64, "steps")
		t = g.reduceMean(g.Cast(ti, build.Float), 0, 0)
	} else {
		t = g.inF("timestep")
	}
	ehs := g.inF("encoder_hidden_states", B, "sequence_length", SDXLHidden1+SDXLHidden2)
	te := g.inF("text_embeds", B, SDXLHidden2)
	tid := g.inF("time_ids", B, SDXLTimeIDs)
	w := make([]float32, SDXLLatentCh*SDXLUNetIn)
	for o := 0; o < SDXLLatentCh; o++ {
		for i := 0; i < SDXLUNetIn; i++ {
			v := float32(rng.NormFloat64()) * 0.02
			if c.PlainUNet {
				v = 0
			}
			if i == o {
				v = 1
			}
			w[o*SDXLUNetIn+i] = v
		}
	}
	wn := g.Init("conv_in.weight", []int64{SDXLLatentCh, SDXLUNetIn, 1, 1}, w)
	bv := randVec(rng, SDXLLatentCh, 0.01)
	gain := float32(0.01)
	if c.PlainUNet {
		bv, gain = make([]float32, SDXLLatentCh), 0
	}
	bias := g.Init("conv_in.bias", []int64{SDXLLatentCh}, bv)
	// Conditioning: random projections of the prompt embeddings (so prompts, and hence
	// classifier-free guidance, change the output visibly) plus the time ids and timestep.
	// The projections are large, so SaveExternal moves them to model.onnx_data.
	wv := g.Init("cond.prompt_proj", []int64{SDXLSeqLen, SDXLHidden1 + SDXLHidden2}, randVec(rng, SDXLSeqLen*(SDXLHidden1+SDXLHidden2), 1))
	u := g.Init("cond.pooled_proj", []int64{SDXLHidden2}, randVec(rng, SDXLHidden2, 1))
	conv := g.Conv2D(sample, wn, bias, 1, 1, 0)
	s := g.Mul(g.reduceMean(g.Mul(ehs, wv), 0, 1, 2), g.scalar(200))
	s = g.Add(s, g.Mul(g.reduceMean(g.Mul(te, u), 0, 1), g.scalar(10)))
	s = g.Add(s, g.Mul(g.reduceMean(tid, 0, 1), g.scalar(1e-3)))
	s = g.Add(s, g.Mul(t, g.scalar(1e-3)))
	s4 := g.Op("Reshape", []string{s, g.Const([]int64{4}, []int64{-1, 1, 1, 1})})
	out := g.Add(conv, g.Mul(s4, g.scalar(gain)))
	g.outF(out, "out_sample", B, SDXLLatentCh, "height", "width")
	return g
}

// sdxlVAEEncoder: an 8×8 stride-8 convolution. Mean channels 0-2 are the RGB patch
// averages and 3 the grey average; logvar channels are -6 (σ = e^-3).
func sdxlVAEEncoder(c SDXLConfig) sdxlGraph {
	g := newSDXLGraph("vae_encoder", c)
	B := "batch_size"
	x := g.inF("sample", B, 3, "height", "width")
	const k = SDXLVAEFactor
	w := make([]float32, 8*3*k*k)
	b := make([]float32, 8)
	for o := 0; o < 4; o++ {
		for i := 0; i < 3; i++ {
			v := float32(0)
			switch {
			case o == i:
				v = 1.0 / (k * k)
			case o == 3:
				v = 1.0 / (3 * k * k)
			}
			for j := 0; j < k*k; j++ {
				w[(o*3+i)*k*k+j] = v
			}
		}
	}
	for o := 4; o < 8; o++ {
		b[o] = -6
	}
	wn := g.Init("encoder.weight", []int64{8, 3, k, k}, w)
	bn := g.Init("encoder.bias", []int64{8}, b)
	moments := g.Conv2D(x, wn, bn, k, k, 0)
	lat := []any{B, 8, "latent_height", "latent_width"}
	if c.Export == OptimumNew {
		g.outF(moments, "latent_parameters", lat...)
		return g
	}
	// ≤ 1.22: latent_dist.sample() traced into the graph, unseedable from outside.
	starts := g.Const([]int64{1}, []int64{0})
	mid := g.Const([]int64{1}, []int64{4})
	end := g.Const([]int64{1}, []int64{8})
	axis := g.Const([]int64{1}, []int64{1})
	mean := g.Op("Slice", []string{moments, starts, mid, axis})
	logvar := g.Op("Slice", []string{moments, mid, end, axis})
	std := g.Op("Exp", []string{g.Mul(logvar, g.scalar(0.5))})
	noise := g.Op("RandomNormalLike", []string{mean}, build.Int("dtype", int64(build.Float)))
	g.outF(g.Add(mean, g.Mul(std, noise)), "latent_sample", B, 4, "latent_height", "latent_width")
	return g
}

// sdxlVAEDecoder: an 8×8 stride-8 transposed convolution copying latent channels 0-2 to
// RGB, so decode(encode(x)/0.13025·0.13025) is x averaged over 8×8 blocks.
func sdxlVAEDecoder(c SDXLConfig) sdxlGraph {
	g := newSDXLGraph("vae_decoder", c)
	B := "batch_size"
	z := g.inF("latent_sample", B, 4, "latent_height", "latent_width")
	const k = SDXLVAEFactor
	w := make([]float32, 4*3*k*k)
	for c := 0; c < 3; c++ {
		for j := 0; j < k*k; j++ {
			w[(c*3+c)*k*k+j] = 1
		}
	}
	wn := g.Init("decoder.weight", []int64{4, 3, k, k}, w)
	y := g.Op("ConvTranspose", []string{z, wn}, build.Ints("kernel_shape", k, k), build.Ints("strides", k, k))
	g.outF(y, "sample", B, 3, "height", "width")
	return g
}
