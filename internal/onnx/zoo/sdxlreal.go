package zoo

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/diagd/diagd/internal/atomicfile"
	"github.com/diagd/diagd/internal/half"
)

// SDXLArch is the architecture of the five networks of an SDXL-inpainting export.
type SDXLArch struct {
	UNet     UNetArch
	VAE      VAEArch
	TE1, TE2 CLIPArch
}

// RealSDXL is diffusers/stable-diffusion-xl-1.0-inpainting-0.1: SDXL 1.0's UNet with a
// 9-channel conv_in, its VAE and its two text encoders. Parameters (derived in
// sdxlreal_test.go from these numbers alone, and equal to the published counts):
// UNet 2,567,463,684 with 4 input channels (SDXL base) and 14,400 more for the 5 extra
// inpainting channels of conv_in; VAE 83,653,863 (encoder+quant_conv 34,163,664,
// post_quant_conv+decoder 49,490,199); text encoders 123,060,480 and 694,659,840.
func RealSDXL() SDXLArch {
	return SDXLArch{
		UNet: UNetArch{InChannels: SDXLUNetIn, OutChannels: SDXLLatentCh, Channels: [3]int{320, 640, 1280},
			Depths: [3]int{0, 2, 10}, LayersPerBlock: 2, HeadDim: 64, Groups: 32,
			CrossDim: SDXLHidden1 + SDXLHidden2, AddTimeDim: 256, TextEmbedDim: SDXLHidden2},
		VAE: VAEArch{Channels: [4]int{128, 256, 512, 512}, LayersPerBlock: 2, Groups: 32, Latent: SDXLLatentCh},
		TE1: CLIPArch{Vocab: 49408, Positions: SDXLSeqLen, Hidden: SDXLHidden1, Layers: SDXLLayers1, Heads: 12, MLP: 3072, QuickGELU: true},
		TE2: CLIPArch{Vocab: 49408, Positions: SDXLSeqLen, Hidden: SDXLHidden2, Layers: SDXLLayers2, Heads: 20, MLP: 5120, Projection: true},
	}
}

// TinySDXL is RealSDXL's graphs with narrow layers and few blocks, for tests: the UNet and
// VAE keep every interface width the pipeline sees (9 input channels, cross-attention
// 2048, text_embeds 1280, 6 time ids, 4 latent channels, factor 8), so they drop into an
// export folder beside TinySDXL text encoders' stand-ins; the text encoders are narrow
// (64 wide) and fit only a standalone check.
func TinySDXL() SDXLArch {
	a := RealSDXL()
	a.UNet.Channels, a.UNet.Depths, a.UNet.HeadDim, a.UNet.LayersPerBlock = [3]int{32, 64, 64}, [3]int{0, 1, 1}, 32, 1
	a.VAE.Channels = [4]int{32, 32, 64, 64}
	for _, te := range []*CLIPArch{&a.TE1, &a.TE2} {
		te.Hidden, te.Layers, te.Heads, te.MLP = 64, 2, 2, 128
	}
	return a
}

// SDXLParts are the export's network folders.
var SDXLParts = []string{"text_encoder", "text_encoder_2", "unet", "vae_encoder", "vae_decoder"}

func (a SDXLArch) part(name string, fp16 bool) (*wnet, error) {
	switch name {
	case "text_encoder":
		return a.TE1.encoder(name, fp16)
	case "text_encoder_2":
		return a.TE2.encoder(name, fp16)
	case "unet":
		return a.UNet.build(fp16)
	case "vae_encoder":
		return a.VAE.encoder(fp16)
	case "vae_decoder":
		return a.VAE.decoder(fp16)
	}
	return nil, fmt.Errorf("zoo: no SDXL part %q (want one of %v)", name, SDXLParts)
}

// SDXLParams counts each part's parameters from its graph, which is built without its
// weights: cheap enough for every CI run even at real size.
func SDXLParams(a SDXLArch) (map[string]int64, error) {
	m := map[string]int64{}
	for _, p := range SDXLParts {
		n, err := a.part(p, false)
		if err != nil {
			return nil, fmt.Errorf("zoo: sdxl %s: %w", p, err)
		}
		m[p] = n.g.Params()
	}
	return m, nil
}

// WriteSDXLRealPart writes one part as dir/part/model.onnx with every weight in
// model.onnx_data beside it (the >2 GB layout optimum writes), float16 throughout when
// fp16. Weights are drawn as they are written, in parallel chunks, so memory stays small
// for any size. progress, if not nil, gets the bytes written so far and the total.
func WriteSDXLRealPart(dir, part string, a SDXLArch, fp16 bool, seed uint64, progress func(done, total int64)) error {
	n, err := a.part(part, fp16)
	if err != nil {
		return fmt.Errorf("zoo: sdxl %s: %w", part, err)
	}
	d := filepath.Join(dir, part)
	if err := os.MkdirAll(d, 0o755); err != nil {
		return err
	}
	err = atomicfile.Write(filepath.Join(d, DataFile), 0o644, func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 8<<20)
		if err := n.writeData(bw, seed, progress); err != nil {
			return err
		}
		return bw.Flush()
	})
	if err != nil {
		return fmt.Errorf("zoo: sdxl %s: %w", part, err)
	}
	return n.g.Save(filepath.Join(d, "model.onnx"))
}

// WriteSDXLReal writes a whole export folder with the parts at arch a: what
// WriteSDXLInpaint writes (configs, scheduler, tokenizers) with these networks. Only
// OptimumNew's interface exists at real size (c.Export is ignored); c.FP16, c.Seed and
// c.TokenizerDir apply.
func WriteSDXLReal(dir string, a SDXLArch, c SDXLConfig, progress func(part string, done, total int64)) error {
	if err := writeSDXLFiles(dir, c); err != nil {
		return err
	}
	for i, p := range SDXLParts {
		var pf func(done, total int64)
		if progress != nil {
			pf = func(done, total int64) { progress(p, done, total) }
		}
		if err := WriteSDXLRealPart(dir, p, a, c.FP16, c.Seed+uint64(i), pf); err != nil {
			return err
		}
	}
	return nil
}

// chunkValues is how many values one worker draws at a time.
const chunkValues = 1 << 20

// writeData writes every weight in file order, padding to each one's offset. A chunk's
// values depend only on (seed, weight index, chunk index), never on the worker count.
func (n *wnet) writeData(w io.Writer, seed uint64, progress func(done, total int64)) error {
	workers := runtime.GOMAXPROCS(0)
	bufs := make([][]byte, workers)
	for i := range bufs {
		bufs[i] = make([]byte, chunkValues*n.esize)
	}
	pad := make([]byte, alignTo)
	var pos int64
	for i, s := range n.specs {
		if s.off > pos {
			if _, err := w.Write(pad[:s.off-pos]); err != nil {
				return err
			}
			pos = s.off
		}
		chunks := int((s.n + chunkValues - 1) / chunkValues)
		for c0 := 0; c0 < chunks; c0 += workers {
			k := min(workers, chunks-c0)
			var wg sync.WaitGroup
			for j := range k {
				wg.Go(func() { n.fill(bufs[j], s, seed, i, c0+j) })
			}
			wg.Wait()
			for j := range k {
				vals := min(chunkValues, s.n-int64(c0+j)*chunkValues)
				if _, err := w.Write(bufs[j][:vals*n.esize]); err != nil {
					return err
				}
				pos += vals * n.esize
			}
			if progress != nil {
				progress(pos, n.off)
			}
		}
	}
	return nil
}

// fill draws chunk c of weight i into buf: uniform on ±√3·std (variance std²), or the
// constant fill.
func (n *wnet) fill(buf []byte, s wspec, seed uint64, i, c int) {
	vals := min(chunkValues, s.n-int64(c)*chunkValues)
	rng := rand.New(rand.NewPCG(seed, uint64(i)<<32|uint64(c)))
	a := s.std * float32(math.Sqrt(3))
	for k := range vals {
		v := s.fill
		if s.std != 0 {
			v = (float32(rng.Uint64()>>40)*(2.0/(1<<24)) - 1) * a
		}
		if n.esize == 2 {
			binary.LittleEndian.PutUint16(buf[2*k:], half.FromFloat32(v))
		} else {
			binary.LittleEndian.PutUint32(buf[4*k:], math.Float32bits(v))
		}
	}
}

// standinStamp records what a finished WriteSDXLReal folder holds, so a later run can
// reuse it (writing a real-size export takes minutes) and a half-written one is redone.
type standinStamp struct {
	Arch SDXLArch
	FP16 bool
	Seed uint64
}

const stampFile = "diagd-standin.json"

// EnsureSDXLReal is WriteSDXLReal unless dir already holds a complete export of the same
// architecture, dtype and seed; it reports whether it reused one.
func EnsureSDXLReal(dir string, a SDXLArch, c SDXLConfig, progress func(part string, done, total int64)) (bool, error) {
	want, err := json.Marshal(standinStamp{a, c.FP16, c.Seed})
	if err != nil {
		return false, err
	}
	if got, err := os.ReadFile(filepath.Join(dir, stampFile)); err == nil && bytes.Equal(got, want) {
		return true, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, err
	}
	os.Remove(filepath.Join(dir, stampFile))
	if err := WriteSDXLReal(dir, a, c, progress); err != nil {
		return false, err
	}
	return false, atomicfile.WriteFile(filepath.Join(dir, stampFile), want, 0o644)
}

// WriteSDXLNarrow writes a small export folder whose UNet and VAE are the real
// architecture narrowed (TinySDXL) beside WriteSDXLInpaint's text encoders, which keep
// the real interface widths: the cheapest folder that runs the real UNet and VAE graphs
// through the pipeline (tests, and benchmark smoke runs).
func WriteSDXLNarrow(dir string, c SDXLConfig) error {
	c.Export = OptimumNew
	if err := WriteSDXLInpaint(dir, c); err != nil {
		return err
	}
	for i, part := range []string{"unet", "vae_encoder", "vae_decoder"} {
		if err := WriteSDXLRealPart(dir, part, TinySDXL(), c.FP16, c.Seed+uint64(10+i), nil); err != nil {
			return err
		}
	}
	return nil
}
