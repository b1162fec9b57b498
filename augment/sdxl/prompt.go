package sdxl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/diagd/diagd/augment/clip"
)

// encoded is one prompt through both text encoders.
type encoded struct {
	ehs     []float32 // 77×2048: hidden_states[-2] of encoder 1 ‖ of encoder 2
	pooled  []float32 // 1280: text_encoder_2's text_embeds
	warning string
}

// maxCached bounds the prompt cache; DIAG uses two prompts and one negative prompt.
const maxCached = 16

// forceZeros reads model_index.json's force_zeros_for_empty_prompt (true for SDXL).
func forceZeros(dir string) (bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, "model_index.json"))
	if errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	var m struct {
		Force *bool `json:"force_zeros_for_empty_prompt"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return false, fmt.Errorf("%s: %w", filepath.Join(dir, "model_index.json"), err)
	}
	return m.Force == nil || *m.Force, nil
}

// encodePrompts returns [negative, positive] embeddings (spec §2.2). An empty negative
// prompt is diffusers' negative_prompt=None: zeros when force_zeros_for_empty_prompt.
func (p *Pipeline) encodePrompts(ctx context.Context, t *Timing, prompt, negative string) (*embeddings, error) {
	e := &embeddings{}
	pos, err := p.encodeCached(ctx, t, prompt)
	if err != nil {
		return nil, err
	}
	if pos.warning != "" {
		e.warnings = append(e.warnings, pos.warning)
	}
	e.ehs[1], e.pooled[1] = pos.ehs, pos.pooled
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if negative == "" && p.forceZeros {
		e.ehs[0], e.pooled[0] = make([]float32, len(pos.ehs)), make([]float32, len(pos.pooled))
		return e, nil
	}
	neg, err := p.encodeCached(ctx, t, negative)
	if err != nil {
		return nil, err
	}
	if neg.warning != "" {
		e.warnings = append(e.warnings, "negative "+neg.warning)
	}
	e.ehs[0], e.pooled[0] = neg.ehs, neg.pooled
	return e, nil
}

func (p *Pipeline) encodeCached(ctx context.Context, t *Timing, text string) (*encoded, error) {
	if e, ok := p.prompts[text]; ok {
		return e, nil
	}
	e, err := p.encodePrompt(ctx, t, text)
	if err != nil {
		return nil, err
	}
	if len(p.prompts) >= maxCached {
		clear(p.prompts)
	}
	p.prompts[text] = e
	return e, nil
}

func idsValue(dt ort.TensorElementDataType, enc clip.Encoding) (ort.Value, error) {
	shape := ort.NewShape(1, int64(len(enc.IDs)))
	if dt == ort.TensorElementDataTypeInt32 {
		v := make([]int32, len(enc.IDs))
		for i, id := range enc.IDs {
			v[i] = int32(id)
		}
		return ort.NewTensor(shape, v)
	}
	return ort.NewTensor(shape, append([]int64(nil), enc.IDs...))
}

func (p *Pipeline) encodePrompt(ctx context.Context, t *Timing, text string) (*encoded, error) {
	e1, e2 := p.tok1.Encode(text), p.tok2.Encode(text)
	out := &encoded{ehs: make([]float32, seqLen*ehsDim), pooled: make([]float32, hidden2)}
	if e1.Truncated {
		out.warning = fmt.Sprintf("prompt %q is longer than %d tokens: %d tokens were dropped", text, p.tok1.MaxLength, e1.Dropped)
	}
	if len(e1.IDs) != seqLen {
		return nil, fmt.Errorf("sdxl: tokenizer model_max_length %d, want %d", len(e1.IDs), seqLen)
	}
	ids1, err := idsValue(p.io.ids1, e1)
	if err != nil {
		return nil, fmt.Errorf("sdxl: %w", err)
	}
	defer ids1.Destroy()
	ids2, err := idsValue(p.io.ids2, e2)
	if err != nil {
		return nil, fmt.Errorf("sdxl: %w", err)
	}
	defer ids2.Destroy()
	h1, err := newFTensor(ort.NewShape(1, seqLen, hidden1), p.io.te1FP16, nil)
	if err != nil {
		return nil, err
	}
	defer h1.destroy()
	h2, err := newFTensor(ort.NewShape(1, seqLen, hidden2), p.io.te2FP16, nil)
	if err != nil {
		return nil, err
	}
	defer h2.destroy()
	pooled, err := newFTensor(ort.NewShape(1, hidden2), p.io.te2FP16, out.pooled)
	if err != nil {
		return nil, err
	}
	defer pooled.destroy()
	if err := p.run(ctx, t, p.te1, []ort.Value{ids1}, []ort.Value{h1.v}); err != nil {
		return nil, err
	}
	if err := p.run(ctx, t, p.te2, []ort.Value{ids2}, []ort.Value{pooled.v, h2.v}); err != nil {
		return nil, err
	}
	h1.pull()
	h2.pull()
	pooled.pull()
	for s := 0; s < seqLen; s++ {
		copy(out.ehs[s*ehsDim:s*ehsDim+hidden1], h1.F[s*hidden1:(s+1)*hidden1])
		copy(out.ehs[s*ehsDim+hidden1:(s+1)*ehsDim], h2.F[s*hidden2:(s+1)*hidden2])
	}
	return out, nil
}
