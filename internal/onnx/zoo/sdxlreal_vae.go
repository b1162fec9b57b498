package zoo

import "fmt"

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
