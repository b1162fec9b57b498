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

func isFloat(dt ort.TensorElementDataType) (fp16, ok bool) {
	switch dt {
	case ort.TensorElementDataTypeFloat:
		return false, true
	case ort.TensorElementDataTypeFloat16:
		return true, true
	}
	return false, false
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

func find(infos []ort.InputOutputInfo, name string) (ort.InputOutputInfo, bool) {
	for _, i := range infos {
		if i.Name == name {
			return i, true
		}
	}
	return ort.InputOutputInfo{}, false
}

func (p *Pipeline) openSessions(o ortenv.Options) error {
	path := func(part string) string { return filepath.Join(p.dir, part, "model.onnx") }
	describe := func(part string) ([]ort.InputOutputInfo, []ort.InputOutputInfo, error) {
		in, out, err := ortenv.Describe(p.log, path(part))
		if err != nil {
			return nil, nil, fmt.Errorf("sdxl: %w", err)
		}
		return in, out, nil
	}
	need := func(part string, infos []ort.InputOutputInfo, name, what string) (ort.InputOutputInfo, error) {
		i, ok := find(infos, name)
		if !ok {
			return i, fmt.Errorf("sdxl: %s: has no %s %q", path(part), what, name)
		}
		return i, nil
	}
	needFloat := func(part string, i ort.InputOutputInfo) (bool, error) {
		fp16, ok := isFloat(i.DataType)
		if !ok {
			return false, fmt.Errorf("sdxl: %s: %s is %v, want float32 or float16", path(part), i.Name, i.DataType)
		}
		return fp16, nil
	}

	// Text encoders: input_ids int32 (optimum ≤ 1.23) or int64; hidden states as outputs.
	for k, part := range []string{"text_encoder", "text_encoder_2"} {
		in, out, err := describe(part)
		if err != nil {
			return err
		}
		ids, err := need(part, in, "input_ids", "input")
		if err != nil {
			return err
		}
		if len(in) != 1 {
			return fmt.Errorf("sdxl: %s: %d inputs, want only input_ids", path(part), len(in))
		}
		if ids.DataType != ort.TensorElementDataTypeInt32 && ids.DataType != ort.TensorElementDataTypeInt64 {
			return fmt.Errorf("sdxl: %s: input_ids is %v, want int32 or int64", path(part), ids.DataType)
		}
		seq := int64(-1)
		if len(ids.Dimensions) == 2 && ids.Dimensions[1] > 0 {
			seq = ids.Dimensions[1]
		}
		hidden, hdt, err := penultimate(path(part), out)
		if err != nil {
			return err
		}
		fp16, ok := isFloat(hdt)
		if !ok {
			return fmt.Errorf("sdxl: %s: %s is %v, want float", path(part), hidden, hdt)
		}
		outs := []string{hidden}
		if k == 1 {
			te, err := need(part, out, "text_embeds", "output")
			if err != nil {
				return err
			}
			if f, ok := isFloat(te.DataType); !ok || f != fp16 {
				return fmt.Errorf("sdxl: %s: text_embeds is %v while %s is %v", path(part), te.DataType, hidden, hdt)
			}
			outs = []string{"text_embeds", hidden}
		}
		s, err := ortenv.OpenSession(p.log, path(part), []string{"input_ids"}, outs, o)
		if err != nil {
			return fmt.Errorf("sdxl: %w", err)
		}
		if k == 0 {
			p.te1, p.io.ids1, p.io.seq1, p.io.te1FP16, p.io.hidden1 = s, ids.DataType, seq, fp16, hidden
		} else {
			p.te2, p.io.ids2, p.io.seq2, p.io.te2FP16, p.io.hidden2 = s, ids.DataType, seq, fp16, hidden
		}
	}
	for _, seq := range []int64{p.io.seq1, p.io.seq2} {
		if seq > 0 && seq != int64(p.tok1.MaxLength) {
			return fmt.Errorf("sdxl: text encoder sequence length %d, tokenizer model_max_length %d", seq, p.tok1.MaxLength)
		}
	}

	// UNet.
	in, out, err := describe("unet")
	if err != nil {
		return err
	}
	unetIn := []string{"sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids"}
	var fp16s []bool
	for _, n := range unetIn {
		i, err := need("unet", in, n, "input")
		if err != nil {
			return err
		}
		if n == "timestep" {
			p.io.tsType, p.io.tsRank = i.DataType, len(i.Dimensions)
			switch {
			case p.io.tsRank > 1:
				return fmt.Errorf("sdxl: %s: timestep has rank %d, want 0 or 1", path("unet"), p.io.tsRank)
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
				return fmt.Errorf("sdxl: %s: timestep is %v, want float or int64", path("unet"), i.DataType)
			}
			continue
		}
		f, err := needFloat("unet", i)
		if err != nil {
			return err
		}
		fp16s = append(fp16s, f)
		if n == "sample" {
			if len(i.Dimensions) != 4 || i.Dimensions[1] != 9 {
				return fmt.Errorf("sdxl: %s: sample is %v, want [batch, 9, h, w] (an inpainting UNet)", path("unet"), i.Dimensions)
			}
			p.io.unetBatch = i.Dimensions[0]
		}
	}
	if _, ok := find(in, "timestep_cond"); ok || len(in) != len(unetIn) {
		return fmt.Errorf("sdxl: %s: inputs %v, want exactly %v", path("unet"), names(in), unetIn)
	}
	oi, err := need("unet", out, "out_sample", "output")
	if err != nil {
		return err
	}
	f, err := needFloat("unet", oi)
	if err != nil {
		return err
	}
	for _, g := range append(fp16s, f) {
		if g != f {
			return fmt.Errorf("sdxl: %s: mixed float16 and float32 inputs/outputs", path("unet"))
		}
	}
	p.io.unetFP16 = f
	if p.io.tsType == ort.TensorElementDataTypeFloat16 && !f {
		return fmt.Errorf("sdxl: %s: float16 timestep in a float32 UNet", path("unet"))
	}
	if err := p.openUNet(path("unet"), unetIn, o); err != nil {
		return err
	}

	// VAE encoder: latent_parameters (optimum ≥ 1.23) or latent_sample (sampled in-graph).
	in, out, err = describe("vae_encoder")
	if err != nil {
		return err
	}
	si, err := need("vae_encoder", in, "sample", "input")
	if err != nil {
		return err
	}
	if p.io.vencFP16, err = needFloat("vae_encoder", si); err != nil {
		return err
	}
	lo, ok := find(out, "latent_parameters")
	p.io.vencOut, p.io.vencParams = "latent_parameters", true
	if !ok {
		if lo, ok = find(out, "latent_sample"); !ok {
			return fmt.Errorf("sdxl: %s: no latent_parameters or latent_sample output", path("vae_encoder"))
		}
		p.io.vencOut, p.io.vencParams = "latent_sample", false
		p.notes = append(p.notes, "vae_encoder exports latent_sample (optimum ≤ 1.22): the VAE posterior is sampled inside the ONNX graph, so results are not reproducible from the seed; re-export with optimum ≥ 1.23")
	}
	if f, err := needFloat("vae_encoder", lo); err != nil {
		return err
	} else if f != p.io.vencFP16 {
		return fmt.Errorf("sdxl: %s: input and output float types differ", path("vae_encoder"))
	}
	if p.venc, err = ortenv.OpenSession(p.log, path("vae_encoder"), []string{"sample"}, []string{p.io.vencOut}, o); err != nil {
		return fmt.Errorf("sdxl: %w", err)
	}

	// VAE decoder.
	in, out, err = describe("vae_decoder")
	if err != nil {
		return err
	}
	li, err := need("vae_decoder", in, "latent_sample", "input")
	if err != nil {
		return err
	}
	so, err := need("vae_decoder", out, "sample", "output")
	if err != nil {
		return err
	}
	if p.io.vdecFP16, err = needFloat("vae_decoder", li); err != nil {
		return err
	}
	if f, err := needFloat("vae_decoder", so); err != nil {
		return err
	} else if f != p.io.vdecFP16 {
		return fmt.Errorf("sdxl: %s: input and output float types differ", path("vae_decoder"))
	}
	if p.vdec, err = ortenv.OpenSession(p.log, path("vae_decoder"), []string{"latent_sample"}, []string{"sample"}, o); err != nil {
		return fmt.Errorf("sdxl: %w", err)
	}
	for _, s := range []*ortenv.Session{p.te1, p.te2, p.unet, p.venc, p.vdec} {
		if note := ortenv.DTypeNote(s.Provider, p.io.unetFP16 || p.io.vdecFP16, o); note != "" {
			p.notes = append(p.notes, note)
			break
		}
	}
	return nil
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

func names(infos []ort.InputOutputInfo) []string {
	var n []string
	for _, i := range infos {
		n = append(n, i.Name)
	}
	return n
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
