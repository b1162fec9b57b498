package zoo

import (
	"crypto/sha256"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/internal/testenv"
)

// Published parameter counts: sum(p.numel() for p in model.parameters()) for
// stabilityai/stable-diffusion-xl-base-1.0's unet, vae, text_encoder and text_encoder_2.
const (
	publishedUNetBase = 2_567_463_684
	publishedVAE      = 83_653_863
	publishedTE1      = 123_060_480
	publishedTE2      = 694_659_840
)

// The closed forms below derive each count from the architecture alone, module by
// module as diffusers and transformers define them, independently of the graph code.

// lin is nn.Linear(in, out): weight in·out, plus out with a bias.
func lin(in, out int64, bias bool) int64 {
	if bias {
		return in*out + out
	}
	return in * out
}

// conv is nn.Conv2d(in, out, k) with bias; norm is a Group/LayerNorm's weight and bias.
func conv(in, out, k int64) int64 { return in*out*k*k + out }
func norm(c int64) int64          { return 2 * c }

// resnetParams is ResnetBlock2D: norm1, conv1 3×3, time_emb_proj (UNet only), norm2,
// conv2 3×3, and a 1×1 conv_shortcut when the width changes.
func resnetParams(in, out, temb int64) int64 {
	p := norm(in) + conv(in, out, 3) + norm(out) + conv(out, out, 3)
	if temb > 0 {
		p += lin(temb, out, true)
	}
	if in != out {
		p += conv(in, out, 1)
	}
	return p
}

// transformerParams is Transformer2DModel (linear projections): norm, proj_in, depth ×
// BasicTransformerBlock, proj_out. A block: norm1, attn1 (q,k,v bias-free c×c, to_out
// with bias), norm2, attn2 (q c×c, k and v cross×c, to_out), norm3, GEGLU ff (c→8c with
// bias, then 4c→c with bias).
func transformerParams(c, depth, cross int64) int64 {
	block := norm(c) + 3*lin(c, c, false) + lin(c, c, true) +
		norm(c) + lin(c, c, false) + 2*lin(cross, c, false) + lin(c, c, true) +
		norm(c) + lin(c, 8*c, true) + lin(4*c, c, true)
	return norm(c) + lin(c, c, true) + depth*block + lin(c, c, true)
}

// unetParams walks UNet2DConditionModel: time and add embeddings, conv_in, down blocks
// (resnets, transformers, stride-2 convs), mid block, up blocks (skip-widened resnets,
// transformers, upsampling convs), conv_norm_out, conv_out.
func unetParams(a UNetArch) int64 {
	td := int64(4 * a.Channels[0])
	p := lin(int64(a.Channels[0]), td, true) + lin(td, td, true) // time_embedding
	addIn := int64(a.TextEmbedDim + 6*a.AddTimeDim)              // 1280 + 6·256 = 2816
	p += lin(addIn, td, true) + lin(td, td, true)                // add_embedding
	p += conv(int64(a.InChannels), int64(a.Channels[0]), 3)
	skips := []int64{int64(a.Channels[0])}
	ch := int64(a.Channels[0])
	for lvl, o := range a.Channels {
		out := int64(o)
		for range a.LayersPerBlock {
			p += resnetParams(ch, out, td)
			ch = out
			if a.Depths[lvl] > 0 {
				p += transformerParams(out, int64(a.Depths[lvl]), int64(a.CrossDim))
			}
			skips = append(skips, out)
		}
		if lvl < 2 {
			p += conv(out, out, 3)
			skips = append(skips, out)
		}
	}
	p += 2*resnetParams(ch, ch, td) + transformerParams(ch, int64(a.Depths[2]), int64(a.CrossDim))
	for lvl := 2; lvl >= 0; lvl-- {
		out := int64(a.Channels[lvl])
		for range a.LayersPerBlock + 1 {
			s := skips[len(skips)-1]
			skips = skips[:len(skips)-1]
			p += resnetParams(ch+s, out, td)
			ch = out
			if a.Depths[lvl] > 0 {
				p += transformerParams(out, int64(a.Depths[lvl]), int64(a.CrossDim))
			}
		}
		if lvl > 0 {
			p += conv(out, out, 3)
		}
	}
	return p + norm(ch) + conv(ch, int64(a.OutChannels), 3)
}

// vaeParams is AutoencoderKL: encoder (conv_in, 2 resnets per level, stride-2 convs,
// mid block with a 1-head attention: group_norm and q,k,v,out with bias, conv_norm_out,
// conv_out to 2·latent), quant_conv, post_quant_conv and the decoder (conv_in, mid, 3
// resnets per level, upsampling convs, conv_norm_out, conv_out).
func vaeParams(a VAEArch) (enc, dec int64) {
	lat := int64(a.Latent)
	mid := func(c int64) int64 { return 2*resnetParams(c, c, 0) + norm(c) + 4*lin(c, c, true) }
	ch := int64(a.Channels[0])
	enc = conv(3, ch, 3)
	for lvl, o := range a.Channels {
		out := int64(o)
		for range a.LayersPerBlock {
			enc += resnetParams(ch, out, 0)
			ch = out
		}
		if lvl < 3 {
			enc += conv(out, out, 3)
		}
	}
	enc += mid(ch) + norm(ch) + conv(ch, 2*lat, 3) + conv(2*lat, 2*lat, 1)
	ch = int64(a.Channels[3])
	dec = conv(lat, lat, 1) + conv(lat, ch, 3) + mid(ch)
	for i := range 4 {
		out := int64(a.Channels[3-i])
		for range a.LayersPerBlock + 1 {
			dec += resnetParams(ch, out, 0)
			ch = out
		}
		if i < 3 {
			dec += conv(out, out, 3)
		}
	}
	return enc, dec + norm(ch) + conv(ch, 3, 3)
}

// clipParams is CLIPTextModel(WithProjection): token and position embeddings, layers ×
// (layer_norm1, q,k,v,out with bias, layer_norm2, fc1, fc2), final_layer_norm, and the
// bias-free text_projection.
func clipParams(a CLIPArch) int64 {
	h, m := int64(a.Hidden), int64(a.MLP)
	layer := norm(h) + 4*lin(h, h, true) + norm(h) + lin(h, m, true) + lin(m, h, true)
	p := int64(a.Vocab)*h + int64(a.Positions)*h + int64(a.Layers)*layer + norm(h)
	if a.Projection {
		p += lin(h, h, false)
	}
	return p
}

// TestRealSDXLParameterCounts: the real-size graphs (built without weights) have the
// published parameter counts, and so do the closed forms above; the inpainting UNet is
// the base UNet plus conv_in's 5 extra input channels (320·5·3·3 = 14,400).
func TestRealSDXLParameterCounts(t *testing.T) {
	a := RealSDXL()
	got, err := SDXLParams(a)
	if err != nil {
		t.Fatal(err)
	}
	base := a
	base.UNet.InChannels = 4
	gotBase, err := SDXLParams(base)
	if err != nil {
		t.Fatal(err)
	}
	enc, dec := vaeParams(a.VAE)
	for _, c := range []struct {
		what           string
		graph, formula int64
		published      int64
	}{
		{"unet (base, 4 channels)", gotBase["unet"], unetParams(base.UNet), publishedUNetBase},
		{"unet (inpainting, 9 channels)", got["unet"], unetParams(a.UNet), publishedUNetBase + 320*5*3*3},
		{"vae encoder + decoder", got["vae_encoder"] + got["vae_decoder"], enc + dec, publishedVAE},
		{"vae_encoder", got["vae_encoder"], enc, enc},
		{"text_encoder", got["text_encoder"], clipParams(a.TE1), publishedTE1},
		{"text_encoder_2", got["text_encoder_2"], clipParams(a.TE2), publishedTE2},
	} {
		if c.graph != c.published || c.formula != c.published {
			t.Errorf("%s: graph %d, closed form %d, published %d", c.what, c.graph, c.formula, c.published)
		}
	}
	t.Logf("parameters: %v (unet base %d)", got, gotBase["unet"])
}

// TestTinySDXLCountsMatchToo: the closed forms and the graphs agree away from the real
// widths as well, so the agreement above is not a coincidence of one configuration.
func TestTinySDXLCountsMatchToo(t *testing.T) {
	a := TinySDXL()
	got, err := SDXLParams(a)
	if err != nil {
		t.Fatal(err)
	}
	enc, dec := vaeParams(a.VAE)
	if got["unet"] != unetParams(a.UNet) || got["vae_encoder"] != enc || got["vae_decoder"] != dec ||
		got["text_encoder"] != clipParams(a.TE1) || got["text_encoder_2"] != clipParams(a.TE2) {
		t.Errorf("graph %v; closed forms unet %d vae %d+%d te %d %d", got, unetParams(a.UNet), enc, dec, clipParams(a.TE1), clipParams(a.TE2))
	}
}

// TestTinySDXLPartsRun writes each part of the tiny architecture (same graph code as
// the real size) and runs it in ONNX Runtime with the shapes of a 64² image, checking
// output shapes and finite values. (The float16 UNet, whose rank-0 float16 timestep
// needs augment/sdxl's graph rewrite, is run by augment/sdxl's tests.)
func TestTinySDXLPartsRun(t *testing.T) {
	testenv.ORT(t)
	log := testenv.Logger(t)
	a := TinySDXL()
	dir := t.TempDir()
	for _, p := range SDXLParts {
		if err := WriteSDXLRealPart(dir, p, a, false, 1, nil); err != nil {
			t.Fatal(err)
		}
	}
	f32 := func(shape ort.Shape, seed int) ort.Value {
		v := make([]float32, shape.FlattenedSize())
		for i := range v {
			v[i] = float32(math.Sin(float64(i*7+seed))) * 0.8
		}
		x, err := ort.NewTensor(shape, v)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	ids := make([]int64, 2*77)
	for i := range ids {
		ids[i] = int64(49406 + i%2) // start/end tokens; the last (end) is the argmax
		if i%77 > 2 {
			ids[i] = int64(320 + i%500)
		}
	}
	idsT, _ := ort.NewTensor(ort.NewShape(2, 77), ids)
	ts, _ := ort.NewScalar(float32(981))
	unetIn := []ort.Value{f32(ort.NewShape(2, 9, 16, 16), 1), ts, f32(ort.NewShape(2, 77, 2048), 2), f32(ort.NewShape(2, 1280), 3),
		f32(ort.NewShape(2, 6), 4)}
	cases := []struct {
		part   string
		in     []string
		out    string
		values []ort.Value
		shape  []int64
	}{
		{"text_encoder", []string{"input_ids"}, "hidden_states.1", []ort.Value{idsT}, []int64{2, 77, 64}},
		{"text_encoder_2", []string{"input_ids"}, "text_embeds", []ort.Value{idsT}, []int64{2, 64}},
		{"unet", []string{"sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids"}, "out_sample", unetIn, []int64{2, 4, 16, 16}},
		{"vae_encoder", []string{"sample"}, "latent_parameters", []ort.Value{f32(ort.NewShape(1, 3, 64, 64), 5)}, []int64{1, 8, 8, 8}},
		{"vae_decoder", []string{"latent_sample"}, "sample", []ort.Value{f32(ort.NewShape(1, 4, 8, 8), 6)}, []int64{1, 3, 64, 64}},
	}
	for _, c := range cases {
		s, err := ortenv.OpenSession(log, filepath.Join(dir, c.part, "model.onnx"), c.in, []string{c.out}, ortenv.Options{Provider: ortenv.CPU, Threads: 1})
		if err != nil {
			t.Fatalf("%s: %v", c.part, err)
		}
		out := []ort.Value{nil}
		if err := s.Run(c.values, out); err != nil {
			t.Fatalf("%s: %v", c.part, err)
		}
		s.Destroy()
		got := out[0].(*ort.Tensor[float32])
		if fmt.Sprint([]int64(got.GetShape())) != fmt.Sprint(c.shape) {
			t.Errorf("%s: %s is %v, want %v", c.part, c.out, got.GetShape(), c.shape)
		}
		var sum float64
		for _, v := range got.GetData() {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("%s: non-finite output", c.part)
			}
			sum += float64(v) * float64(v)
		}
		if sum == 0 {
			t.Errorf("%s: output is all zeros", c.part)
		}
		out[0].Destroy()
	}
}

// TestRealPartDataIsIndependentOfWorkers: the drawn weights depend on the seed only.
func TestRealPartDataIsIndependentOfWorkers(t *testing.T) {
	digest := func(procs int) string {
		prev := runtime.GOMAXPROCS(procs)
		defer runtime.GOMAXPROCS(prev)
		dir := t.TempDir()
		if err := WriteSDXLRealPart(dir, "vae_decoder", TinySDXL(), false, 9, nil); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(filepath.Join(dir, "vae_decoder", DataFile))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%x", h.Sum(nil))
	}
	if a, b := digest(1), digest(4); a != b {
		t.Errorf("data with 1 worker %s, with 4 %s", a, b)
	}
}
