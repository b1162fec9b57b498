package zoo

import (
	"fmt"

	"github.com/diagd/diagd/internal/onnx/build"
)

// VAEArch is SDXL's AutoencoderKL (vae/config.json): four levels, two resnets per
// encoder level and three per decoder level, one single-head attention in each mid block.
type VAEArch struct {
	Channels       [4]int // block_out_channels 128, 256, 512, 512
	LayersPerBlock int    // 2
	Groups         int    // 32
	Latent         int    // latent_channels 4
}

// vaeResnet is ResnetBlock2D without a time embedding (eps 1e-6).
func (a VAEArch) resnet(n *wnet, x, p string, in, out int) string {
	h := n.conv(n.silu(n.groupNorm(x, p+".norm1", in, a.Groups, 1e-6)), p+".conv1", in, out, 3, 1, 1)
	h = n.conv(n.silu(n.groupNorm(h, p+".norm2", out, a.Groups, 1e-6)), p+".conv2", out, out, 3, 1, 1)
	if in != out {
		x = n.conv(x, p+".conv_shortcut", in, out, 1, 1, 0)
	}
	return n.g.Add(x, h)
}

// mid is UNetMidBlock2D: resnet, one-head self-attention over all pixels (GroupNorm,
// q/k/v/out with bias, residual), resnet.
func (a VAEArch) mid(n *wnet, x, p string, c int) string {
	h := a.resnet(n, x, p+".resnets.0", c, c)
	t := n.toTokens(n.groupNorm(h, p+".attentions.0.group_norm", c, a.Groups, 1e-6), c)
	t = n.attention(t, "", p+".attentions.0", c, c, 1, true, "")
	h = n.g.Add(h, n.fromTokens(t, h, c))
	return a.resnet(n, h, p+".resnets.1", c, c)
}

// encoder is optimum's vae_encoder: Encoder + quant_conv; sample [B,3,H,W] in [-1,1] →
// latent_parameters [B,8,H/8,W/8] (mean ‖ logvar), optimum ≥ 1.23's output.
func (a VAEArch) encoder(fp16 bool) (*wnet, error) {
	n := newWNet("vae_encoder", fp16)
	B := "batch_size"
	x := n.input("sample", B, 3, "height", "width")
	h := n.conv(x, "encoder.conv_in", 3, a.Channels[0], 3, 1, 1)
	ch := a.Channels[0]
	for lvl, out := range a.Channels {
		for j := range a.LayersPerBlock {
			h = a.resnet(n, h, fmt.Sprintf("encoder.down_blocks.%d.resnets.%d", lvl, j), ch, out)
			ch = out
		}
		if lvl < len(a.Channels)-1 {
			// Downsample2D(padding=0): pad right and bottom by one, then a stride-2 3×3.
			h = n.op("Pad", []string{h, n.ints(0, 0, 0, 0, 0, 0, 1, 1)})
			h = n.conv(h, fmt.Sprintf("encoder.down_blocks.%d.downsamplers.0.conv", lvl), out, out, 3, 2, 0)
		}
	}
	h = a.mid(n, h, "encoder.mid_block", ch)
	h = n.silu(n.groupNorm(h, "encoder.conv_norm_out", ch, a.Groups, 1e-6))
	h = n.conv(h, "encoder.conv_out", ch, 2*a.Latent, 3, 1, 1)
	h = n.conv(h, "quant_conv", 2*a.Latent, 2*a.Latent, 1, 1, 0)
	n.output(h, "latent_parameters", B, 2*a.Latent, "latent_height", "latent_width")
	return n, n.g.Err()
}

// decoder is optimum's vae_decoder: post_quant_conv + Decoder; latent_sample [B,4,h,w]
// → sample [B,3,8h,8w].
func (a VAEArch) decoder(fp16 bool) (*wnet, error) {
	n := newWNet("vae_decoder", fp16)
	B := "batch_size"
	z := n.input("latent_sample", B, a.Latent, "latent_height", "latent_width")
	z = n.conv(z, "post_quant_conv", a.Latent, a.Latent, 1, 1, 0)
	last := len(a.Channels) - 1
	ch := a.Channels[last]
	h := n.conv(z, "decoder.conv_in", a.Latent, ch, 3, 1, 1)
	h = a.mid(n, h, "decoder.mid_block", ch)
	for i := range a.Channels {
		out := a.Channels[last-i]
		for j := range a.LayersPerBlock + 1 {
			h = a.resnet(n, h, fmt.Sprintf("decoder.up_blocks.%d.resnets.%d", i, j), ch, out)
			ch = out
		}
		if i < last {
			h = n.conv(n.upsample2x(h), fmt.Sprintf("decoder.up_blocks.%d.upsamplers.0.conv", i), out, out, 3, 1, 1)
		}
	}
	h = n.silu(n.groupNorm(h, "decoder.conv_norm_out", ch, a.Groups, 1e-6))
	h = n.conv(h, "decoder.conv_out", ch, 3, 3, 1, 1)
	n.output(h, "sample", B, 3, "height", "width")
	return n, n.g.Err()
}

// CLIPArch is a CLIP text transformer as SDXL uses it: text_encoder is OpenAI's ViT-L/14
// text tower (CLIPTextModel), text_encoder_2 OpenCLIP ViT-bigG/14's (CLIPTextModelWithProjection).
type CLIPArch struct {
	Vocab      int  // 49408
	Positions  int  // max_position_embeddings 77
	Hidden     int  // 768 or 1280
	Layers     int  // 12 or 32
	Heads      int  // 12 or 20 (64 channels each)
	MLP        int  // intermediate_size 3072 or 5120
	QuickGELU  bool // hidden_act quick_gelu (ViT-L) rather than gelu (bigG)
	Projection bool // a text_projection (bias-free hidden→hidden) giving text_embeds
}

// encoder builds the optimum export: input_ids [B,S] int64 → last_hidden_state,
// pooler_output (or text_embeds with a projection) and hidden_states.0..Layers (the
// pipeline takes hidden_states.{Layers-1}, the penultimate layer's output).
func (a CLIPArch) encoder(name string, fp16 bool) (*wnet, error) {
	n := newWNet(name, fp16)
	B, S := "batch_size", "sequence_length"
	ids := n.g.Input("input_ids", build.Int64, B, S)
	seq := n.slice(n.op("Shape", []string{ids}), 0, n.ints(1), n.ints(2))
	pos := n.slice(n.weight("text_model.embeddings.position_embedding.weight", int64(a.Hidden), int64(a.Positions), int64(a.Hidden)),
		0, n.ints(0), seq)
	tok := n.weight("text_model.embeddings.token_embedding.weight", int64(a.Hidden), int64(a.Vocab), int64(a.Hidden))
	h := n.g.Add(n.op("Gather", []string{tok, ids}, build.Int("axis", 0)), pos)
	mask := a.causalMask(n, seq)
	states := []string{h}
	for l := range a.Layers {
		p := fmt.Sprintf("text_model.encoder.layers.%d", l)
		h = n.g.Add(h, n.attention(n.layerNorm(h, p+".layer_norm1", a.Hidden, 1e-5), "", p+".self_attn", a.Hidden, a.Hidden, a.Heads, true, mask))
		m := n.linear(n.layerNorm(h, p+".layer_norm2", a.Hidden, 1e-5), p+".mlp.fc1", a.Hidden, a.MLP, true)
		if a.QuickGELU {
			m = n.quickGELU(m)
		} else {
			m = n.gelu(m)
		}
		h = n.g.Add(h, n.linear(m, p+".mlp.fc2", a.MLP, a.Hidden, true))
		states = append(states, h)
	}
	last := n.layerNorm(h, "text_model.final_layer_norm", a.Hidden, 1e-5)
	// Pooled: the final-norm state at each row's end-of-text token, the highest id.
	eot := n.op("ArgMax", []string{ids}, build.Int("axis", 1), build.Int("keepdims", 1))
	batch := n.op("Squeeze", []string{n.slice(n.op("Shape", []string{ids}), 0, n.ints(0), n.ints(1)), n.ints(0)})
	rows := n.unsqueeze(n.op("Range", []string{n.konst32(nil, []int64{0}), batch, n.konst32(nil, []int64{1})}), 1)
	pooled := n.op("GatherND", []string{last, n.op("Concat", []string{rows, eot}, build.Int("axis", 1))})
	dims := []any{B, S, a.Hidden}
	if a.Projection {
		proj := n.weight("text_projection.weight", int64(a.Hidden), int64(a.Hidden), int64(a.Hidden))
		n.output(n.op("MatMul", []string{pooled, proj}), "text_embeds", B, a.Hidden)
		n.output(last, "last_hidden_state", dims...)
	} else {
		n.output(last, "last_hidden_state", dims...)
		n.output(pooled, "pooler_output", B, a.Hidden)
	}
	for i, s := range states {
		n.output(s, fmt.Sprintf("hidden_states.%d", i), dims...)
	}
	return n, n.g.Err()
}

// causalMask is CLIP's additive mask, 0 on and below the diagonal and a large negative
// above it (representable in float16), cut to the sequence length.
func (a CLIPArch) causalMask(n *wnet, seq string) string {
	p := a.Positions
	m := make([]float32, p*p)
	for i := range p {
		for j := i + 1; j < p; j++ {
			m[i*p+j] = -1e4
		}
	}
	full := n.konst([]int64{int64(p), int64(p)}, m)
	return n.slice(n.slice(full, 0, n.ints(0), seq), 1, n.ints(0), seq)
}
