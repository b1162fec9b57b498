// Package sdxl runs Stable Diffusion XL inpainting (diffusers' StableDiffusionXLInpaintPipeline
// as DIAG calls it, spec §2 and §8) on ONNX Runtime from an optimum export folder. The
// numerics outside the networks — tokenising, Pillow-exact resampling, the crop around
// the mask, VAE posterior sampling, classifier-free guidance, Euler steps and the
// paste-back — are done here in Go, in float32.
package sdxl

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/diagd/diagd/augment/clip"
	"github.com/diagd/diagd/augment/scheduler"
	"github.com/diagd/diagd/internal/ortenv"
)

// DefaultScaling is the SDXL VAE scaling_factor, used when vae_decoder/config.json lacks it.
const DefaultScaling = 0.13025

// The parts of an optimum SDXL export, in the order Digest hashes them.
var modelParts = []string{"text_encoder", "text_encoder_2", "unet", "vae_encoder", "vae_decoder"}

// Pipeline holds the five ONNX Runtime sessions, the tokenizers and the scheduler config
// of one export folder. Inpaint calls are serialised: the large buffers are reused.
type Pipeline struct {
	log     *slog.Logger
	dir     string
	tok1    *clip.Tokenizer
	tok2    *clip.Tokenizer
	sched   scheduler.Config
	scaling float32
	digest  string

	te1, te2, unet, venc, vdec *ortenv.Session
	io                         ioInfo
	notes                      []string // warnings every result carries (e.g. unseedable VAE)

	mu         sync.Mutex
	bufs       *buffers
	forceZeros bool                // model_index.json force_zeros_for_empty_prompt
	prompts    map[string]*encoded // prompt cache: text encoders run once per distinct prompt
}

// ioInfo is what introspecting the sessions found.
type ioInfo struct {
	ids1, ids2 ort.TensorElementDataType // int32 or int64
	seq1, seq2 int64                     // fixed sequence length or -1
	te1FP16    bool
	te2FP16    bool
	hidden1    string // hidden_states.{N-1} of text_encoder
	hidden2    string // of text_encoder_2
	unetFP16   bool
	unetBatch  int64 // fixed batch of the UNet's sample, or -1 (dynamic)
	tsType     ort.TensorElementDataType
	tsRank     int
	tsLen      int64 // for rank 1: elements to feed
	tsCast     bool  // rank-0 float16 timestep: fed as float32 to a graph that casts it
	vencOut    string
	vencParams bool // latent_parameters (mean ‖ logvar) rather than a sampled latent
	vencFP16   bool
	vdecFP16   bool
}

// Open loads an optimum export folder (spec §4.1). Every file it needs is checked first,
// so a missing part is reported by its path before any model is loaded.
func Open(log *slog.Logger, dir string, o ortenv.Options) (*Pipeline, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var need []string
	for _, part := range modelParts {
		need = append(need, filepath.Join(part, "model.onnx"))
	}
	for _, tok := range []string{"tokenizer", "tokenizer_2"} {
		need = append(need, filepath.Join(tok, "vocab.json"), filepath.Join(tok, "merges.txt"))
	}
	need = append(need, filepath.Join("scheduler", "scheduler_config.json"))
	for _, rel := range need {
		if _, err := os.Stat(filepath.Join(dir, rel)); err != nil {
			return nil, fmt.Errorf("sdxl: %s is missing from the model folder (want an optimum SDXL inpainting export): %w",
				filepath.Join(dir, rel), err)
		}
	}
	p := &Pipeline{log: log, dir: dir, prompts: map[string]*encoded{}}
	var err error
	if p.tok1, err = clip.Load(filepath.Join(dir, "tokenizer")); err != nil {
		return nil, fmt.Errorf("sdxl: %w", err)
	}
	if p.tok2, err = clip.Load(filepath.Join(dir, "tokenizer_2")); err != nil {
		return nil, fmt.Errorf("sdxl: %w", err)
	}
	if p.sched, err = scheduler.LoadConfig(filepath.Join(dir, "scheduler", "scheduler_config.json")); err != nil {
		return nil, fmt.Errorf("sdxl: %w", err)
	}
	if p.scaling, err = readScaling(filepath.Join(dir, "vae_decoder", "config.json")); err != nil {
		return nil, fmt.Errorf("sdxl: %w", err)
	}
	if p.forceZeros, err = forceZeros(dir); err != nil {
		return nil, fmt.Errorf("sdxl: %w", err)
	}
	if p.digest, err = digest(dir); err != nil {
		return nil, fmt.Errorf("sdxl: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			p.Close()
		}
	}()
	if err := p.openSessions(o); err != nil {
		return nil, err
	}
	ok = true
	log.Info("sdxl pipeline ready", "dir", dir, "digest", p.digest[:12], "unet_fp16", p.io.unetFP16,
		"timestep", fmt.Sprintf("%v rank %d", p.io.tsType, p.io.tsRank), "timestep_cast_in_graph", p.io.tsCast, "vae_encoder_output", p.io.vencOut,
		"text_hidden", p.io.hidden1+"+"+p.io.hidden2, "scaling_factor", p.scaling)
	return p, nil
}

// readScaling reads scaling_factor from the VAE config optimum copies next to the decoder.
func readScaling(path string) (float32, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return DefaultScaling, nil
	}
	if err != nil {
		return 0, err
	}
	var c struct {
		Scaling *float64 `json:"scaling_factor"`
		Mean    any      `json:"latents_mean"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	if c.Mean != nil {
		return 0, fmt.Errorf("%s: latents_mean/latents_std are not supported (SDXL's VAE has none)", path)
	}
	if c.Scaling == nil {
		return DefaultScaling, nil
	}
	if !(*c.Scaling > 0) {
		return 0, fmt.Errorf("%s: scaling_factor = %v, want > 0", path, *c.Scaling)
	}
	return float32(*c.Scaling), nil
}

var hiddenRe = regexp.MustCompile(`^hidden_states\.(\d+)$`)

// penultimate finds hidden_states.{N-1} among outputs hidden_states.0..N: SDXL takes
// hidden_states[-2], the last layer's input, without the final layer norm (spec §2.2).
func penultimate(path string, outs []ort.InputOutputInfo) (string, ort.TensorElementDataType, error) {
	maxN := -1
	types := map[int]ort.TensorElementDataType{}
	for _, o := range outs {
		if m := hiddenRe.FindStringSubmatch(o.Name); m != nil {
			n, _ := strconv.Atoi(m[1])
			types[n] = o.DataType
			maxN = max(maxN, n)
		}
	}
	if maxN < 1 {
		return "", 0, fmt.Errorf("sdxl: %s: no hidden_states.N outputs; export the text encoders for an SDXL pipeline (output_hidden_states)", path)
	}
	dt, ok := types[maxN-1]
	if !ok {
		return "", 0, fmt.Errorf("sdxl: %s: hidden_states.%d is missing", path, maxN-1)
	}
	return fmt.Sprintf("hidden_states.%d", maxN-1), dt, nil
}

// partPath is the model file of one part of the export.
func (p *Pipeline) partPath(part string) string { return filepath.Join(p.dir, part, "model.onnx") }

// errf is an error about one part, named by its model file.
func (p *Pipeline) errf(part, format string, a ...any) error {
	return fmt.Errorf("sdxl: %s: %w", p.partPath(part), fmt.Errorf(format, a...))
}

func (p *Pipeline) describe(part string) (in, out []ort.InputOutputInfo, err error) {
	in, out, err = ortenv.Describe(p.log, p.partPath(part))
	if err != nil {
		return nil, nil, fmt.Errorf("sdxl: %w", err)
	}
	return in, out, nil
}

// need finds a part's input or output by name (kind "input" or "output").
func (p *Pipeline) need(part string, infos []ort.InputOutputInfo, kind, name string) (ort.InputOutputInfo, error) {
	i, err := ortenv.Lookup(infos, kind, name)
	if err != nil {
		return i, p.errf(part, "%w", err)
	}
	return i, nil
}

// needFloat says whether a part's input or output is float16, refusing other types.
func (p *Pipeline) needFloat(part string, i ort.InputOutputInfo) (bool, error) {
	fp16, err := ortenv.NeedFloat(i)
	if err != nil {
		return false, p.errf(part, "%w", err)
	}
	return fp16, nil
}

func (p *Pipeline) open(part string, inputs, outputs []string, o ortenv.Options) (*ortenv.Session, error) {
	s, err := ortenv.OpenSession(p.log, p.partPath(part), inputs, outputs, o)
	if err != nil {
		return nil, fmt.Errorf("sdxl: %w", err)
	}
	return s, nil
}

// openSessions checks each part's interface against what the pipeline feeds it, then
// opens it; a part that does not fit is named before the larger ones are loaded.
func (p *Pipeline) openSessions(o ortenv.Options) error {
	if err := p.openTextEncoders(o); err != nil {
		return err
	}
	if err := p.checkUNet(); err != nil {
		return err
	}
	if err := p.openUNet(p.partPath("unet"), unetInputs, o); err != nil {
		return err
	}
	if err := p.openVAEEncoder(o); err != nil {
		return err
	}
	if err := p.openVAEDecoder(o); err != nil {
		return err
	}
	for _, s := range []*ortenv.Session{p.te1, p.te2, p.unet, p.venc, p.vdec} {
		if note := ortenv.DTypeNote(s.Provider, p.io.unetFP16 || p.io.vdecFP16, o); note != "" {
			p.notes = append(p.notes, note)
			break
		}
	}
	return nil
}

// textIO is what checking one text encoder found.
type textIO struct {
	ids    ort.TensorElementDataType // of input_ids: int32 (optimum ≤ 1.23) or int64
	seq    int64                     // fixed sequence length or -1
	fp16   bool
	hidden string   // the penultimate hidden_states output
	outs   []string // the outputs to fetch, in Run's order
}

func (p *Pipeline) openTextEncoders(o ortenv.Options) error {
	t1, err := p.checkTextEncoder("text_encoder", false)
	if err != nil {
		return err
	}
	if p.te1, err = p.open("text_encoder", []string{"input_ids"}, t1.outs, o); err != nil {
		return err
	}
	p.io.ids1, p.io.seq1, p.io.te1FP16, p.io.hidden1 = t1.ids, t1.seq, t1.fp16, t1.hidden
	t2, err := p.checkTextEncoder("text_encoder_2", true)
	if err != nil {
		return err
	}
	if p.te2, err = p.open("text_encoder_2", []string{"input_ids"}, t2.outs, o); err != nil {
		return err
	}
	p.io.ids2, p.io.seq2, p.io.te2FP16, p.io.hidden2 = t2.ids, t2.seq, t2.fp16, t2.hidden
	for _, seq := range []int64{p.io.seq1, p.io.seq2} {
		if seq > 0 && seq != int64(p.tok1.MaxLength) {
			return fmt.Errorf("sdxl: text encoder sequence length %d, tokenizer model_max_length %d", seq, p.tok1.MaxLength)
		}
	}
	return nil
}

// checkTextEncoder checks a text encoder: input_ids only, int32 or int64, and the
// hidden states as outputs; the second also has text_embeds, of the same float type.
func (p *Pipeline) checkTextEncoder(part string, second bool) (textIO, error) {
	t := textIO{seq: -1}
	in, out, err := p.describe(part)
	if err != nil {
		return t, err
	}
	ids, err := p.need(part, in, "input", "input_ids")
	if err != nil {
		return t, err
	}
	if len(in) != 1 {
		return t, p.errf(part, "%d inputs, want only input_ids", len(in))
	}
	if ids.DataType != ort.TensorElementDataTypeInt32 && ids.DataType != ort.TensorElementDataTypeInt64 {
		return t, p.errf(part, "input_ids is %v, want int32 or int64", ids.DataType)
	}
	t.ids = ids.DataType
	if len(ids.Dimensions) == 2 && ids.Dimensions[1] > 0 {
		t.seq = ids.Dimensions[1]
	}
	hidden, hdt, err := penultimate(p.partPath(part), out)
	if err != nil {
		return t, err
	}
	fp16, ok := ortenv.FloatType(hdt)
	if !ok {
		return t, p.errf(part, "%s is %v, want float", hidden, hdt)
	}
	t.fp16, t.hidden, t.outs = fp16, hidden, []string{hidden}
	if !second {
		return t, nil
	}
	te, err := p.need(part, out, "output", "text_embeds")
	if err != nil {
		return t, err
	}
	if f, ok := ortenv.FloatType(te.DataType); !ok || f != fp16 {
		return t, p.errf(part, "text_embeds is %v while %s is %v", te.DataType, hidden, hdt)
	}
	t.outs = []string{"text_embeds", hidden}
	return t, nil
}

// unetInputs are an SDXL inpainting UNet's inputs, in Run's order.
var unetInputs = []string{"sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids"}

// checkUNet checks the UNet's inputs and output: exactly unetInputs, a 9-channel
// sample, one float type throughout, and a timestep the pipeline can feed.
func (p *Pipeline) checkUNet() error {
	in, out, err := p.describe("unet")
	if err != nil {
		return err
	}
	var fp16s []bool
	for _, n := range unetInputs {
		i, err := p.need("unet", in, "input", n)
		if err != nil {
			return err
		}
		if n == "timestep" {
			if err := p.checkTimestep(i); err != nil {
				return err
			}
			continue
		}
		f, err := p.needFloat("unet", i)
		if err != nil {
			return err
		}
		fp16s = append(fp16s, f)
		if n == "sample" {
			if len(i.Dimensions) != 4 || i.Dimensions[1] != 9 {
				return p.errf("unet", "sample is %v, want [batch, 9, h, w] (an inpainting UNet)", i.Dimensions)
			}
			p.io.unetBatch = i.Dimensions[0]
		}
	}
	if names := ortenv.Names(in); slices.Contains(names, "timestep_cond") || len(in) != len(unetInputs) {
		return p.errf("unet", "inputs %v, want exactly %v", names, unetInputs)
	}
	oi, err := p.need("unet", out, "output", "out_sample")
	if err != nil {
		return err
	}
	f, err := p.needFloat("unet", oi)
	if err != nil {
		return err
	}
	for _, g := range fp16s {
		if g != f {
			return p.errf("unet", "mixed float16 and float32 inputs/outputs")
		}
	}
	p.io.unetFP16 = f
	if p.io.tsType == ort.TensorElementDataTypeFloat16 && !f {
		return p.errf("unet", "float16 timestep in a float32 UNet")
	}
	return nil
}

// checkTimestep reads the timestep input's type and rank: a float, int64 or int32
// scalar or vector, or a float16 one in a float16 UNet.
func (p *Pipeline) checkTimestep(i ort.InputOutputInfo) error {
	p.io.tsType, p.io.tsRank = i.DataType, len(i.Dimensions)
	switch {
	case p.io.tsRank > 1:
		return p.errf("unet", "timestep has rank %d, want 0 or 1", p.io.tsRank)
	case p.io.tsRank == 1 && i.Dimensions[0] > 0:
		p.io.tsLen = i.Dimensions[0]
	case p.io.tsRank == 1:
		p.io.tsLen = 1
	}
	switch i.DataType {
	case ort.TensorElementDataTypeFloat, ort.TensorElementDataTypeInt64, ort.TensorElementDataTypeInt32:
	case ort.TensorElementDataTypeFloat16:
		// onnxruntime_go makes rank-0 tensors of Go element types only: the graph
		// gets a float32 timestep and a Cast in front (castTimestep).
		p.io.tsCast = p.io.tsRank == 0
	default:
		return p.errf("unet", "timestep is %v, want float or int64", i.DataType)
	}
	return nil
}

// openVAEEncoder checks and opens the VAE encoder: sample in, latent_parameters
// (optimum ≥ 1.23) or latent_sample (sampled in the graph) out, of one float type.
func (p *Pipeline) openVAEEncoder(o ortenv.Options) error {
	in, out, err := p.describe("vae_encoder")
	if err != nil {
		return err
	}
	si, err := p.need("vae_encoder", in, "input", "sample")
	if err != nil {
		return err
	}
	if p.io.vencFP16, err = p.needFloat("vae_encoder", si); err != nil {
		return err
	}
	lo, err := p.vaeEncoderOutput(out)
	if err != nil {
		return err
	}
	if f, err := p.needFloat("vae_encoder", lo); err != nil {
		return err
	} else if f != p.io.vencFP16 {
		return p.errf("vae_encoder", "input and output float types differ")
	}
	p.venc, err = p.open("vae_encoder", []string{"sample"}, []string{p.io.vencOut}, o)
	return err
}

// vaeEncoderOutput picks the VAE encoder's output: latent_parameters (mean ‖ logvar,
// sampled here from the seed) or, from older exports, latent_sample with a note that
// results are then not reproducible.
func (p *Pipeline) vaeEncoderOutput(out []ort.InputOutputInfo) (ort.InputOutputInfo, error) {
	if lo, err := ortenv.Lookup(out, "output", "latent_parameters"); err == nil {
		p.io.vencOut, p.io.vencParams = "latent_parameters", true
		return lo, nil
	}
	lo, err := ortenv.Lookup(out, "output", "latent_sample")
	if err != nil {
		return lo, p.errf("vae_encoder", "no latent_parameters or latent_sample output (the model's outputs: %q)", ortenv.Names(out))
	}
	p.io.vencOut, p.io.vencParams = "latent_sample", false
	p.notes = append(p.notes, "vae_encoder exports latent_sample (optimum ≤ 1.22): the VAE posterior is sampled inside the ONNX graph, so results are not reproducible from the seed; re-export with optimum ≥ 1.23")
	return lo, nil
}

// openVAEDecoder checks and opens the VAE decoder: latent_sample in, sample out, of one
// float type.
func (p *Pipeline) openVAEDecoder(o ortenv.Options) error {
	in, out, err := p.describe("vae_decoder")
	if err != nil {
		return err
	}
	li, err := p.need("vae_decoder", in, "input", "latent_sample")
	if err != nil {
		return err
	}
	so, err := p.need("vae_decoder", out, "output", "sample")
	if err != nil {
		return err
	}
	if p.io.vdecFP16, err = p.needFloat("vae_decoder", li); err != nil {
		return err
	}
	if f, err := p.needFloat("vae_decoder", so); err != nil {
		return err
	} else if f != p.io.vdecFP16 {
		return p.errf("vae_decoder", "input and output float types differ")
	}
	p.vdec, err = p.open("vae_decoder", []string{"latent_sample"}, []string{"sample"}, o)
	return err
}

// openUNet opens the UNet session, from a rewritten graph when its timestep is a rank-0
// float16 (the pipeline then feeds float32 scalars).
func (p *Pipeline) openUNet(path string, inputs []string, o ortenv.Options) error {
	out := []string{"out_sample"}
	var err error
	if !p.io.tsCast {
		if p.unet, err = ortenv.OpenSession(p.log, path, inputs, out, o); err != nil {
			return fmt.Errorf("sdxl: %w", err)
		}
		return nil
	}
	data, err := castTimestep(path)
	if err != nil {
		return fmt.Errorf("sdxl: %w", err)
	}
	if p.unet, err = ortenv.OpenSessionData(p.log, path, data, filepath.Dir(path), inputs, out, o); err != nil {
		return fmt.Errorf("sdxl: %w", err)
	}
	p.io.tsType = ort.TensorElementDataTypeFloat
	return nil
}

// Close releases the sessions and buffers.
func (p *Pipeline) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range []**ortenv.Session{&p.te1, &p.te2, &p.unet, &p.venc, &p.vdec} {
		if *s != nil {
			(*s).Destroy()
			*s = nil
		}
	}
	if p.bufs != nil {
		p.bufs.destroy()
		p.bufs = nil
	}
}

// Digest identifies the model folder for sidecars: sha256 over, for each part, the size
// and the first and last MiB of model.onnx and model.onnx_data, plus the whole of the
// small files that change the computation (tokenizers, scheduler and VAE configs). It
// reads about 20 MiB instead of the export's ~14 GB, is stable under copying (no
// mtimes), and changes whenever the weights are re-exported in practice.
func (p *Pipeline) Digest() string { return p.digest }

func digest(dir string) (string, error) {
	h := sha256.New()
	var files []string
	for _, part := range modelParts {
		files = append(files, filepath.Join(part, "model.onnx"), filepath.Join(part, "model.onnx_data"))
	}
	for _, rel := range files {
		if err := sampleFile(h, dir, rel); err != nil {
			return "", err
		}
	}
	for _, rel := range []string{"tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer/special_tokens_map.json",
		"tokenizer/tokenizer_config.json", "tokenizer_2/vocab.json", "tokenizer_2/merges.txt",
		"tokenizer_2/special_tokens_map.json", "tokenizer_2/tokenizer_config.json",
		"scheduler/scheduler_config.json", "vae_decoder/config.json"} {
		b, err := os.ReadFile(filepath.Join(dir, rel))
		if errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(h, "%s absent\n", rel)
			continue
		}
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", rel, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func sampleFile(h io.Writer, dir, rel string) error {
	f, err := os.Open(filepath.Join(dir, rel))
	if errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(h, "%s absent\n", rel)
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	const chunk = 1 << 20
	fmt.Fprintf(h, "%s %d\n", rel, st.Size())
	if _, err := io.Copy(h, io.LimitReader(f, chunk)); err != nil {
		return err
	}
	if st.Size() > 2*chunk {
		var off [8]byte
		binary.LittleEndian.PutUint64(off[:], uint64(st.Size()-chunk))
		h.Write(off[:])
		if _, err := io.Copy(h, io.NewSectionReader(f, st.Size()-chunk, chunk)); err != nil {
			return err
		}
	} else if st.Size() > chunk {
		if _, err := io.Copy(h, f); err != nil {
			return err
		}
	}
	return nil
}
