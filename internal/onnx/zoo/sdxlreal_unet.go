package zoo

import (
	"fmt"
	"math"

	"github.com/diagd/diagd/internal/onnx/build"
)

// UNetArch is diffusers' UNet2DConditionModel as SDXL configures it (the inpainting
// checkpoint's unet/config.json): three levels, the first without attention.
type UNetArch struct {
	InChannels     int    // 9 for inpainting: 4 latents + 1 mask + 4 masked-image latents
	OutChannels    int    // 4
	Channels       [3]int // block_out_channels: 320, 640, 1280
	Depths         [3]int // transformer_layers_per_block: 0 (no attention), 2, 10
	LayersPerBlock int    // 2 resnets per down block, 3 per up block
	HeadDim        int    // 64 (attention_head_dim [5,10,20] counts heads: 320/5 = 64)
	Groups         int    // norm_num_groups 32
	CrossDim       int    // cross_attention_dim 2048 = 768 + 1280, the text encoders' widths
	AddTimeDim     int    // addition_time_embed_dim 256: each of the 6 time ids is embedded in 256
	TextEmbedDim   int    // text_encoder_2's pooled width 1280; 1280 + 6·256 = 2816 (projection_class_embeddings_input_dim)
}

// timeDim is the time embedding's width, 4 × the first level's channels (1280).
func (a UNetArch) timeDim() int { return 4 * a.Channels[0] }

// unet builds the graph. I/O as optimum ≥ 1.24 exports it: sample [B,9,H,W],
// timestep rank-0, encoder_hidden_states [B,77,2048], text_embeds [B,1280],
// time_ids [B,6] → out_sample [B,4,H,W], all in the net's float type.
func (a UNetArch) build(fp16 bool) (*wnet, error) {
	n := newWNet("unet", fp16)
	B := "batch_size"
	sample := n.input("sample", B, a.InChannels, "height", "width")
	ts := n.input("timestep")
	ehs := n.input("encoder_hidden_states", B, "sequence_length", a.CrossDim)
	textEmbeds := n.input("text_embeds", B, a.TextEmbedDim)
	timeIDs := n.input("time_ids", B, 6)

	emb := a.embedding(n, sample, ts, textEmbeds, timeIDs)
	u := unetBuilder{a: a, n: n, emb: n.silu(emb), ctx: ehs}
	h := n.conv(sample, "conv_in", a.InChannels, a.Channels[0], 3, 1, 1)
	skips := []skip{{h, a.Channels[0]}}
	ch := a.Channels[0]
	for lvl, out := range a.Channels {
		for j := range a.LayersPerBlock {
			p := fmt.Sprintf("down_blocks.%d.resnets.%d", lvl, j)
			h = u.resnet(h, p, ch, out)
			ch = out
			if a.Depths[lvl] > 0 {
				h = u.transformer(h, fmt.Sprintf("down_blocks.%d.attentions.%d", lvl, j), out, a.Depths[lvl])
			}
			skips = append(skips, skip{h, out})
		}
		if lvl < len(a.Channels)-1 {
			h = n.conv(h, fmt.Sprintf("down_blocks.%d.downsamplers.0.conv", lvl), out, out, 3, 2, 1)
			skips = append(skips, skip{h, out})
		}
	}
	last := len(a.Channels) - 1
	h = u.resnet(h, "mid_block.resnets.0", ch, ch)
	h = u.transformer(h, "mid_block.attentions.0", ch, a.Depths[last])
	h = u.resnet(h, "mid_block.resnets.1", ch, ch)
	for i := range a.Channels {
		lvl := last - i
		out := a.Channels[lvl]
		for j := range a.LayersPerBlock + 1 {
			s := skips[len(skips)-1]
			skips = skips[:len(skips)-1]
			h = n.op("Concat", []string{h, s.v}, build.Int("axis", 1))
			h = u.resnet(h, fmt.Sprintf("up_blocks.%d.resnets.%d", i, j), ch+s.c, out)
			ch = out
			if a.Depths[lvl] > 0 {
				h = u.transformer(h, fmt.Sprintf("up_blocks.%d.attentions.%d", i, j), out, a.Depths[lvl])
			}
		}
		if lvl > 0 {
			h = n.conv(n.upsample2x(h), fmt.Sprintf("up_blocks.%d.upsamplers.0.conv", i), out, out, 3, 1, 1)
		}
	}
	h = n.silu(n.groupNorm(h, "conv_norm_out", ch, a.Groups, 1e-5))
	h = n.conv(h, "conv_out", ch, a.OutChannels, 3, 1, 1)
	n.output(h, "out_sample", B, a.OutChannels, "height", "width")
	return n, n.g.Err()
}

type skip struct {
	v string
	c int
}

// embedding is the time embedding plus SDXL's "text_time" added embedding:
// TimestepEmbedding(sin/cos(t)) + TimestepEmbedding(text_embeds ‖ sin/cos(time_ids)).
// The sinusoids are computed in float32 and cast to the net's type, as diffusers does
// (Timesteps returns float32; the UNet casts t_emb to the sample's dtype).
func (a UNetArch) embedding(n *wnet, sample, ts, textEmbeds, timeIDs string) string {
	c0, td := a.Channels[0], a.timeDim()
	batch := n.slice(n.op("Shape", []string{sample}), 0, n.ints(0), n.ints(1))
	t := n.op("Expand", []string{n.toF32(ts), batch}) // timestep.expand(sample.shape[0])
	temb := n.fromF32(sinusoids(n, t, c0))
	temb = n.linear(n.silu(n.linear(temb, "time_embedding.linear_1", c0, td, true)), "time_embedding.linear_2", td, td, true)
	ids := n.op("Reshape", []string{n.toF32(timeIDs), n.ints(-1)})
	tid := n.fromF32(sinusoids(n, ids, a.AddTimeDim))
	tid = n.op("Reshape", []string{tid, n.ints(-1, int64(6*a.AddTimeDim))})
	add := n.op("Concat", []string{textEmbeds, tid}, build.Int("axis", 1))
	in := a.TextEmbedDim + 6*a.AddTimeDim
	add = n.linear(n.silu(n.linear(add, "add_embedding.linear_1", in, td, true)), "add_embedding.linear_2", td, td, true)
	return n.g.Add(temb, add)
}

// sinusoids is diffusers' Timesteps(dim, flip_sin_to_cos=True, downscale_freq_shift=0)
// on a float32 [N] input: [cos(t·f), sin(t·f)] with f_i = 10000^(−i/(dim/2)).
func sinusoids(n *wnet, t string, dim int) string {
	half := dim / 2
	f := make([]float32, half)
	for i := range f {
		f[i] = float32(math.Exp(-math.Log(10000) * float64(i) / float64(half)))
	}
	e := n.g.Mul(n.unsqueeze(t, 1), n.konst32([]int64{1, int64(half)}, f))
	return n.op("Concat", []string{n.op("Cos", []string{e}), n.op("Sin", []string{e})}, build.Int("axis", 1))
}

type unetBuilder struct {
	a   UNetArch
	n   *wnet
	emb string // silu(emb), what every resnet's time_emb_proj reads
	ctx string // encoder_hidden_states
}

// resnet is ResnetBlock2D with a time embedding (eps 1e-5, output scale 1).
func (u unetBuilder) resnet(x, p string, in, out int) string {
	n := u.n
	h := n.conv(n.silu(n.groupNorm(x, p+".norm1", in, u.a.Groups, 1e-5)), p+".conv1", in, out, 3, 1, 1)
	t := n.linear(u.emb, p+".time_emb_proj", u.a.timeDim(), out, true)
	h = n.g.Add(h, n.unsqueeze(t, 2, 3))
	h = n.conv(n.silu(n.groupNorm(h, p+".norm2", out, u.a.Groups, 1e-5)), p+".conv2", out, out, 3, 1, 1)
	if in != out {
		x = n.conv(x, p+".conv_shortcut", in, out, 1, 1, 0)
	}
	return n.g.Add(x, h)
}

// transformer is Transformer2DModel with use_linear_projection: GroupNorm (eps 1e-6),
// proj_in, depth BasicTransformerBlocks (self-attention, cross-attention to the prompt,
// GEGLU feed-forward, each pre-LayerNorm with a residual), proj_out, plus the input.
func (u unetBuilder) transformer(x, p string, c, depth int) string {
	n := u.n
	h := n.toTokens(n.groupNorm(x, p+".norm", c, u.a.Groups, 1e-6), c)
	h = n.linear(h, p+".proj_in", c, c, true)
	heads := c / u.a.HeadDim
	for b := range depth {
		q := fmt.Sprintf("%s.transformer_blocks.%d", p, b)
		h = n.g.Add(h, n.attention(n.layerNorm(h, q+".norm1", c, 1e-5), "", q+".attn1", c, c, heads, false, ""))
		h = n.g.Add(h, n.attention(n.layerNorm(h, q+".norm2", c, 1e-5), u.ctx, q+".attn2", c, u.a.CrossDim, heads, false, ""))
		h = n.g.Add(h, u.geglu(n.layerNorm(h, q+".norm3", c, 1e-5), q+".ff", c))
	}
	h = n.linear(h, p+".proj_out", c, c, true)
	return n.g.Add(x, n.fromTokens(h, x, c))
}

// geglu is FeedForward with GEGLU: proj to 2·4c, value·gelu(gate), back to c.
func (u unetBuilder) geglu(x, p string, c int) string {
	n := u.n
	h := n.linear(x, p+".net.0.proj", c, 8*c, true)
	parts := []string{n.g.Fresh("geglu_value"), n.g.Fresh("geglu_gate")}
	n.g.Node("Split", []string{h, n.ints(int64(4*c), int64(4*c))}, parts, build.Int("axis", -1))
	return n.linear(n.g.Mul(parts[0], n.gelu(parts[1])), p+".net.2", 4*c, c, true)
}
