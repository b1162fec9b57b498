package zoo

import (
	"fmt"

	"github.com/diagd/diagd/internal/onnx/build"
)

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
