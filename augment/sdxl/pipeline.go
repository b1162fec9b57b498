package sdxl

import (
	"context"
	"errors"
	"fmt"
	"image"
	"math"
	"math/rand/v2"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/diagd/diagd/augment/clip"
	"github.com/diagd/diagd/augment/scheduler"
	"github.com/diagd/diagd/internal/imageops"
	"github.com/diagd/diagd/internal/ortenv"
)

// DIAG's settings (spec §0): the defaults for zero Request fields.
const (
	DefaultSteps       = 30
	DefaultGuidance    = 20
	DefaultStrength    = 0.99
	DefaultPadding     = 2
	DefaultWorkingSize = 1024
)

// Request is one inpainting job.
type Request struct {
	Image          image.Image // source negative, any size (8-bit RGB)
	Mask           *image.Gray // same size as Image; > 0 marks defect pixels (soft edges allowed)
	Prompt         string
	NegativePrompt string
	Steps          int     // 0 means 30
	Guidance       float32 // ≤ 1 disables classifier-free guidance, as in diffusers
	Strength       float32 // 0 means 0.99
	Padding        int     // padding_mask_crop; DIAG uses 2
	WorkingSize    int     // square processing size, a multiple of 8; 0 means 1024
	Seed           uint64
	// RoundTrip reproduces DIAG's output exactly: the whole working-size result is resized
	// back to the source size, so pixels far from the defect are the source resized up and
	// down. By default those pixels are the source's own (see Inpaint).
	RoundTrip bool
}

// Result is the generated image.
type Result struct {
	Image    *image.RGBA // same size as Request.Image
	Warnings []string
	Crop     image.Rectangle // the inpainted square, in working-size coordinates
	Timing   Timing
}

// Timing splits an Inpaint call's wall time, and the process's CPU time, between
// ONNX Runtime's Run calls and the Go side. CPU is process-wide (getrusage), so it is
// meaningful when the pipeline is the only busy part of the process, as in bench/.
type Timing struct {
	Total    time.Duration
	Runs     time.Duration // wall time inside session Run calls
	CPU      time.Duration // process CPU time over the call
	RunsCPU  time.Duration // process CPU time inside Run calls
	LoopCPU  time.Duration // Go CPU time of the denoising loop, Run calls excluded
	RunCalls int
	Steps    int
}

// GoSide is the wall time spent outside ONNX Runtime.
func (t Timing) GoSide() time.Duration { return t.Total - t.Runs }

// GoCPU is the CPU time spent outside ONNX Runtime.
func (t Timing) GoCPU() time.Duration { return t.CPU - t.RunsCPU }

// embeddings are the encoded prompts: row 0 negative, row 1 positive.
type embeddings struct {
	ehs      [2][]float32 // 77×2048
	pooled   [2][]float32 // 1280
	warnings []string
}

// buffers are the per-working-size tensors, reused by every call and every step.
type buffers struct {
	W, h, w, nb int
	rows        int // batch rows per UNet call (nb, or 1 for a fixed-batch-1 export)

	sample, ehs, pooled, timeIDs, eps []float32
	calls                             []unetCall

	latents, noise, imgLat, mskLat []float32
	mask, mask8                    []float32
	encIn, encOut                  *ftensor
	decIn, decOut                  *ftensor
	pixels                         []uint8
}

type unetCall struct {
	sample, ehs, pooled, timeIDs, eps *ftensor
	ts                                ort.Value // rank-1 timestep, reused; nil for rank 0
	tsF32                             []float32
	tsI64                             []int64
	tsI32                             []int32
	tsHalf                            []byte
}

const (
	seqLen  = clip.MaxLength
	hidden1 = 768
	hidden2 = 1280
	ehsDim  = hidden1 + hidden2
	latCh   = 4
	unetCh  = 9
)

func (b *buffers) destroy() {
	for _, c := range b.calls {
		c.destroy()
	}
	for _, t := range []*ftensor{b.encIn, b.encOut, b.decIn, b.decOut} {
		t.destroy()
	}
}

func (c *unetCall) destroy() {
	for _, t := range []*ftensor{c.sample, c.ehs, c.pooled, c.timeIDs, c.eps} {
		t.destroy()
	}
	if c.ts != nil {
		c.ts.Destroy()
	}
}

// buffersFor returns the buffers for working size W and nb batch rows, reusing the last
// call's when they match.
func (p *Pipeline) buffersFor(W, nb int) (*buffers, error) {
	if b := p.bufs; b != nil && b.W == W && b.nb == nb {
		return b, nil
	}
	if p.bufs != nil {
		p.bufs.destroy()
		p.bufs = nil
	}
	h, w := W/8, W/8
	hw := h * w
	b := &buffers{W: W, h: h, w: w, nb: nb, rows: nb}
	if p.io.unetBatch == 1 {
		b.rows = 1
	} else if p.io.unetBatch > 1 && p.io.unetBatch != int64(nb) {
		return nil, fmt.Errorf("sdxl: the UNet export has a fixed batch of %d, but this request needs %d", p.io.unetBatch, nb)
	}
	b.sample = make([]float32, nb*unetCh*hw)
	b.ehs = make([]float32, nb*seqLen*ehsDim)
	b.pooled = make([]float32, nb*hidden2)
	b.timeIDs = make([]float32, nb*6)
	b.eps = make([]float32, nb*latCh*hw)
	ok := false
	defer func() {
		if !ok {
			b.destroy()
		}
	}()
	for r0 := 0; r0 < nb; r0 += b.rows {
		c, err := p.newUNetCall(b, r0)
		if err != nil {
			return nil, err
		}
		b.calls = append(b.calls, c)
	}
	b.latents = make([]float32, latCh*hw)
	b.noise = make([]float32, latCh*hw)
	b.imgLat = make([]float32, latCh*hw)
	b.mskLat = make([]float32, latCh*hw)
	b.mask = make([]float32, W*W)
	b.mask8 = make([]float32, hw)
	b.pixels = make([]uint8, W*W*3)
	if err := p.vaeTensors(b); err != nil {
		return nil, err
	}
	ok = true
	p.bufs = b
	return b, nil
}

// newUNetCall makes the tensors of one UNet call over b's batch rows r0..r0+b.rows.
func (p *Pipeline) newUNetCall(b *buffers, r0 int) (c unetCall, err error) {
	defer func() {
		if err != nil {
			c.destroy()
		}
	}()
	r, h, w, hw := int64(b.rows), int64(b.h), int64(b.w), b.h*b.w
	fp16 := p.io.unetFP16
	if c.sample, err = newFTensor(ort.NewShape(r, unetCh, h, w), fp16, b.sample[r0*unetCh*hw:]); err != nil {
		return c, err
	}
	if c.ehs, err = newFTensor(ort.NewShape(r, seqLen, ehsDim), fp16, b.ehs[r0*seqLen*ehsDim:]); err != nil {
		return c, err
	}
	if c.pooled, err = newFTensor(ort.NewShape(r, hidden2), fp16, b.pooled[r0*hidden2:]); err != nil {
		return c, err
	}
	if c.timeIDs, err = newFTensor(ort.NewShape(r, 6), fp16, b.timeIDs[r0*6:]); err != nil {
		return c, err
	}
	if c.eps, err = newFTensor(ort.NewShape(r, latCh, h, w), fp16, b.eps[r0*latCh*hw:]); err != nil {
		return c, err
	}
	if p.io.tsRank == 1 {
		if err := c.timestepTensor(p.io); err != nil {
			return c, err
		}
	}
	return c, nil
}

// timestepTensor makes the rank-1 timestep value, reused by every step.
func (c *unetCall) timestepTensor(io ioInfo) error {
	shape := ort.NewShape(io.tsLen)
	var err error
	switch io.tsType {
	case ort.TensorElementDataTypeFloat:
		c.tsF32 = make([]float32, io.tsLen)
		c.ts, err = ort.NewTensor(shape, c.tsF32)
	case ort.TensorElementDataTypeInt64:
		c.tsI64 = make([]int64, io.tsLen)
		c.ts, err = ort.NewTensor(shape, c.tsI64)
	case ort.TensorElementDataTypeInt32:
		c.tsI32 = make([]int32, io.tsLen)
		c.ts, err = ort.NewTensor(shape, c.tsI32)
	case ort.TensorElementDataTypeFloat16:
		c.tsHalf = make([]byte, 2*io.tsLen)
		c.ts, err = ort.NewCustomDataTensor(shape, c.tsHalf, ort.TensorElementDataTypeFloat16)
	}
	if err != nil {
		return fmt.Errorf("sdxl: timestep tensor: %w", err)
	}
	return nil
}

// vaeTensors makes the VAE encoder's and decoder's input and output tensors.
func (p *Pipeline) vaeTensors(b *buffers) error {
	W, h, w := int64(b.W), int64(b.h), int64(b.w)
	encCh := int64(8) // mean ‖ logvar
	if !p.io.vencParams {
		encCh = latCh
	}
	var err error
	if b.encIn, err = newFTensor(ort.NewShape(1, 3, W, W), p.io.vencFP16, nil); err != nil {
		return err
	}
	if b.encOut, err = newFTensor(ort.NewShape(1, encCh, h, w), p.io.vencFP16, nil); err != nil {
		return err
	}
	if b.decIn, err = newFTensor(ort.NewShape(1, latCh, h, w), p.io.vdecFP16, nil); err != nil {
		return err
	}
	if b.decOut, err = newFTensor(ort.NewShape(1, 3, W, W), p.io.vdecFP16, nil); err != nil {
		return err
	}
	return nil
}

// normal draws standard normal float32 values from PCG with the Box–Muller transform,
// (u1, u2) → √(-2 ln u1)·(cos 2πu2, sin 2πu2), u = (53 random bits + ½)/2⁵³ ∈ (0,1).
// PCG's output is specified by math/rand/v2 and Box–Muller is written out here, so a
// seed gives the same image on every Go version (NormFloat64's ziggurat is not promised).
type normal struct {
	src   *rand.PCG
	spare float64
	has   bool
}

func newNormal(seed uint64) *normal {
	// The second PCG word is a fixed stream constant (the golden ratio's bits).
	return &normal{src: rand.NewPCG(seed, 0x9e3779b97f4a7c15)}
}

func (n *normal) fill(dst []float32) {
	for i := range dst {
		if n.has {
			dst[i] = float32(n.spare)
			n.has = false
			continue
		}
		u1 := (float64(n.src.Uint64()>>11) + 0.5) / (1 << 53)
		u2 := (float64(n.src.Uint64()>>11) + 0.5) / (1 << 53)
		r := math.Sqrt(-2 * math.Log(u1))
		s, c := math.Sincos(2 * math.Pi * u2)
		dst[i] = float32(r * c)
		n.spare, n.has = r*s, true
	}
}

// run times one session call. A cancelled ctx ends the call in flight (ONNX Runtime's
// RunOptions terminate flag), so a stop or a cancelled job does not wait for a UNet step.
func (p *Pipeline) run(ctx context.Context, t *Timing, s *ortenv.Session, in, out []ort.Value) error {
	start, cpu := time.Now(), processCPU()
	err := s.RunContext(ctx, in, out)
	t.Runs += time.Since(start)
	t.RunsCPU += processCPU() - cpu
	t.RunCalls++
	if err != nil {
		return fmt.Errorf("sdxl: %s: %w", s.Path, err)
	}
	return nil
}

// Inpaint generates one image (spec §8). Pixels whose value cannot depend on the
// generated crop are the source's own, bit for bit: with the source at the working size
// that is everything outside the crop; otherwise it is every source pixel whose bicubic
// footprint, when the working-size result is resized back, misses the crop. DIAG instead
// resizes the whole result back, which blurs the untouched area by the up-and-down
// resize; set RoundTrip for that.
func (p *Pipeline) Inpaint(ctx context.Context, req Request, progress func(step, total int)) (Result, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	start, cpu := time.Now(), processCPU()
	var res Result
	if p.unet == nil {
		return res, errors.New("sdxl: pipeline is closed")
	}
	req, err := withDefaults(req)
	if err != nil {
		return res, err
	}
	res.Warnings = append(res.Warnings, p.notes...)
	plan, err := p.plan(req)
	if err != nil {
		return res, err
	}
	nb := 1 // batch rows: negative and positive prompt under classifier-free guidance
	if req.Guidance > 1 {
		nb = 2
	}
	b, err := p.buffersFor(req.WorkingSize, nb)
	if err != nil {
		return res, err
	}
	w, err := prepare(req, b)
	if err != nil {
		return res, err
	}
	res.Crop = image.Rect(w.box.X1, w.box.Y1, w.box.X2, w.box.Y2)
	emb, err := p.encodePrompts(ctx, &res.Timing, req.Prompt, req.NegativePrompt)
	if err != nil {
		return res, err
	}
	res.Warnings = append(res.Warnings, emb.warnings...)
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if err := p.initLatents(ctx, &res.Timing, b, w.cropImg, plan, req.Seed); err != nil {
		return res, err
	}
	b.condition(emb)
	if err := p.denoise(ctx, &res.Timing, b, plan, req.Guidance, progress); err != nil {
		return res, err
	}
	final, err := p.decode(ctx, &res.Timing, b, w)
	if err != nil {
		return res, err
	}
	res.Image = final.RGBA()
	res.Timing.Total = time.Since(start)
	res.Timing.CPU = processCPU() - cpu
	return res, nil
}

// plan is the request's denoising schedule.
func (p *Pipeline) plan(req Request) (scheduler.Plan, error) {
	sched, err := scheduler.New(p.sched, req.Steps)
	if err != nil {
		return scheduler.Plan{}, fmt.Errorf("sdxl: %w", err)
	}
	plan, err := sched.Plan(scheduler.Strength64(req.Strength))
	if err != nil {
		return scheduler.Plan{}, fmt.Errorf("sdxl: %w", err)
	}
	return plan, nil
}

// work is one request's images at the working size, from preprocessing to paste-back.
type work struct {
	src     *imageops.Image // the source as given
	msk     *imageops.Image // the mask at the working size
	img     *imageops.Image // the working-size image, only over reg.work
	box     imageops.Rect   // the crop around the mask, in working-size coordinates
	local   imageops.Rect   // box within img
	reg     regions
	cropImg *imageops.Image // the crop, resized to the working size
}

// prepare is the preprocessing (spec §2.4): bicubic to the working size, crop around the
// mask, lanczos to the working size. It leaves the binarised crop mask in b.mask and
// b.mask8 (at latent size).
func prepare(req Request, b *buffers) (*work, error) {
	W := req.WorkingSize
	w := &work{src: imageops.FromImage(req.Image)}
	srcMask := imageops.FromGray(req.Mask)
	if srcMask.W != w.src.W || srcMask.H != w.src.H {
		return nil, fmt.Errorf("sdxl: mask is %dx%d, image %dx%d; scale the mask first", srcMask.W, srcMask.H, w.src.W, w.src.H)
	}
	var err error
	if w.msk, err = imageops.Resize(srcMask, W, W, imageops.Bicubic); err != nil {
		return nil, fmt.Errorf("sdxl: %w", err)
	}
	if w.box, err = imageops.CropRegion(w.msk, W, W, req.Padding); err != nil {
		return nil, fmt.Errorf("sdxl: %w", err)
	}
	if w.box.Dx() != w.box.Dy() {
		return nil, fmt.Errorf("sdxl: crop %v is not square", w.box) // cannot happen for a square working size
	}
	w.reg = regionsFor(w.src.W, w.src.H, W, w.box, req.RoundTrip)
	// The working-size image is needed only where the result can depend on it.
	if w.img, err = imageops.ResizeWindow(w.src, 0, 0, w.src.W, w.src.H, W, W, imageops.Bicubic, w.reg.work); err != nil {
		return nil, fmt.Errorf("sdxl: %w", err)
	}
	w.local = imageops.Rect{X1: w.box.X1 - w.reg.work.X1, Y1: w.box.Y1 - w.reg.work.Y1, X2: w.box.X2 - w.reg.work.X1, Y2: w.box.Y2 - w.reg.work.Y1}
	if w.cropImg, err = cropResize(w.img, w.local, W); err != nil {
		return nil, err
	}
	cropMsk, err := cropResize(w.msk, w.box, W)
	if err != nil {
		return nil, err
	}
	imageops.Binarize(cropMsk, b.mask)
	imageops.NearestDown(b.mask, W, W, 8, b.mask8)
	return w, nil
}

// cropResize crops r out of m and resizes it (lanczos) to W×W.
func cropResize(m *imageops.Image, r imageops.Rect, W int) (*imageops.Image, error) {
	c, err := imageops.Crop(m, r)
	if err != nil {
		return nil, fmt.Errorf("sdxl: %w", err)
	}
	if c, err = imageops.Resize(c, W, W, imageops.Lanczos); err != nil {
		return nil, fmt.Errorf("sdxl: %w", err)
	}
	return c, nil
}

// initLatents encodes the crop and the masked crop and draws the starting latents
// (spec §2.5, §2.6), in diffusers' order of random draws: image posterior, noise,
// masked-image posterior.
func (p *Pipeline) initLatents(ctx context.Context, t *Timing, b *buffers, cropImg *imageops.Image, plan scheduler.Plan, seed uint64) error {
	W := b.W
	rng := newNormal(seed)
	normalise(cropImg, b.encIn.F)
	if !plan.FromNoise {
		if err := p.encode(ctx, t, b, rng, b.imgLat); err != nil {
			return err
		}
	}
	rng.fill(b.noise)
	for i := range b.mask {
		if b.mask[i] >= 0.5 {
			b.encIn.F[i], b.encIn.F[W*W+i], b.encIn.F[2*W*W+i] = 0, 0, 0
		}
	}
	if err := p.encode(ctx, t, b, rng, b.mskLat); err != nil {
		return err
	}
	if plan.FromNoise {
		for i, n := range b.noise {
			b.latents[i] = n * plan.NoiseSigma
		}
	} else {
		for i, n := range b.noise {
			b.latents[i] = b.imgLat[i] + n*plan.NoiseSigma
		}
	}
	return nil
}

// condition fills the UNet inputs that stay the same over the steps: mask and
// masked-image latents in channels 4..8, prompts, pooled embeddings and time ids
// [H, W, 0, 0, H, W] (original_size, crop (0,0), target_size; diffusers' tuples are
// (height, width)). With one batch row it takes the positive prompt; with two, row 0 is
// the negative.
func (b *buffers) condition(emb *embeddings) {
	hw, W := b.h*b.w, float32(b.W)
	rows := [][2]int{{1, 0}} // (embedding row, batch row)
	if b.nb == 2 {
		rows = [][2]int{{0, 0}, {1, 1}}
	}
	for _, r := range rows {
		e, br := r[0], r[1]
		s := b.sample[br*unetCh*hw:]
		copy(s[latCh*hw:(latCh+1)*hw], b.mask8)
		copy(s[(latCh+1)*hw:unetCh*hw], b.mskLat)
		copy(b.ehs[br*seqLen*ehsDim:(br+1)*seqLen*ehsDim], emb.ehs[e])
		copy(b.pooled[br*hidden2:(br+1)*hidden2], emb.pooled[e])
		copy(b.timeIDs[br*6:(br+1)*6], []float32{W, W, 0, 0, W, W})
	}
	for _, c := range b.calls {
		c.ehs.push()
		c.pooled.push()
		c.timeIDs.push()
	}
}

// denoise runs the Euler loop (spec §2.8) on b.latents, with classifier-free guidance
// when b has two rows.
func (p *Pipeline) denoise(ctx context.Context, t *Timing, b *buffers, plan scheduler.Plan, guidance float32, progress func(step, total int)) error {
	latHW := latCh * b.h * b.w
	total := len(plan.Steps)
	loopCPU, loopRuns := processCPU(), t.RunsCPU
	for _, st := range plan.Steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := p.predictNoise(ctx, t, b, st); err != nil {
			return err
		}
		eps := b.eps[:latHW]
		if b.nb == 2 {
			cond := b.eps[latHW:]
			for i, u := range eps {
				eps[i] = u + guidance*(cond[i]-u)
			}
		}
		scheduler.EulerStep(b.latents, eps, st)
		t.Steps++
		if progress != nil {
			progress(st.I+1, total)
		}
	}
	t.LoopCPU = processCPU() - loopCPU - (t.RunsCPU - loopRuns)
	return ctx.Err()
}

// predictNoise runs the UNet for one step on the scaled latents: b.eps gets one noise
// prediction per batch row.
func (p *Pipeline) predictNoise(ctx context.Context, t *Timing, b *buffers, st scheduler.Step) error {
	hw := b.h * b.w
	for r := 0; r < b.nb; r++ {
		s := b.sample[r*unetCh*hw : r*unetCh*hw+latCh*hw]
		for i, x := range b.latents {
			s[i] = x / st.Denom
		}
	}
	for _, c := range b.calls {
		c.sample.push()
		ts, err := c.timestep(p.io, st.Timestep)
		if err != nil {
			return err
		}
		err = p.run(ctx, t, p.unet, []ort.Value{c.sample.v, ts, c.ehs.v, c.pooled.v, c.timeIDs.v}, []ort.Value{c.eps.v})
		if c.ts == nil {
			ts.Destroy()
		}
		if err != nil {
			return err
		}
		c.eps.pull()
	}
	return nil
}

// decode runs the VAE decoder on the final latents and pastes the result back (spec
// §2.9): lanczos to the crop's size, overlaid through the mask, back to the source.
func (p *Pipeline) decode(ctx context.Context, t *Timing, b *buffers, w *work) (*imageops.Image, error) {
	W := b.W
	for i, x := range b.latents {
		b.decIn.F[i] = x / p.scaling
	}
	b.decIn.push()
	if err := p.run(ctx, t, p.vdec, []ort.Value{b.decIn.v}, []ort.Value{b.decOut.v}); err != nil {
		return nil, err
	}
	b.decOut.pull()
	plane := W * W
	for c := 0; c < 3; c++ {
		ch := b.decOut.F[c*plane : (c+1)*plane]
		for i, y := range ch {
			v := y/2 + 0.5
			v = min(max(v, 0), 1)
			b.pixels[3*i+c] = uint8(math.RoundToEven(float64(v * 255)))
		}
	}
	gen, err := imageops.Resize(&imageops.Image{W: W, H: W, C: 3, Pix: b.pixels}, w.box.Dx(), w.box.Dy(), imageops.Lanczos)
	if err != nil {
		return nil, fmt.Errorf("sdxl: %w", err)
	}
	mskR, err := imageops.Crop(w.msk, w.reg.work)
	if err != nil {
		return nil, fmt.Errorf("sdxl: %w", err)
	}
	out, err := imageops.Overlay(w.img, mskR, gen, w.local)
	if err != nil {
		return nil, fmt.Errorf("sdxl: %w", err)
	}
	return backToSource(out, w.src, W, w.reg)
}

func withDefaults(r Request) (Request, error) {
	if r.Image == nil || r.Mask == nil {
		return r, errors.New("sdxl: request needs Image and Mask")
	}
	if r.Steps == 0 {
		r.Steps = DefaultSteps
	}
	if r.Strength == 0 {
		r.Strength = DefaultStrength
	}
	if r.WorkingSize == 0 {
		r.WorkingSize = DefaultWorkingSize
	}
	switch {
	case r.Steps < 1:
		return r, fmt.Errorf("sdxl: Steps = %d, want ≥ 1", r.Steps)
	case r.WorkingSize < 8 || r.WorkingSize%8 != 0:
		return r, fmt.Errorf("sdxl: WorkingSize = %d, want a positive multiple of 8", r.WorkingSize)
	case r.Padding < 0:
		return r, fmt.Errorf("sdxl: Padding = %d, want ≥ 0", r.Padding)
	case math.IsNaN(float64(r.Guidance)) || math.IsInf(float64(r.Guidance), 0):
		return r, fmt.Errorf("sdxl: Guidance = %v", r.Guidance)
	}
	return r, nil
}

// normalise is pil_to_numpy (/255 in float32), NHWC → NCHW and 2x-1.
func normalise(m *imageops.Image, dst []float32) {
	plane := m.W * m.H
	for i := 0; i < plane; i++ {
		for c := 0; c < 3; c++ {
			v := float32(m.Pix[3*i+c]) / 255
			dst[c*plane+i] = 2*v - 1
		}
	}
}

// timestep returns the UNet's timestep value for t, shaped and typed as the export wants.
func (c *unetCall) timestep(io ioInfo, t float32) (ort.Value, error) {
	if c.ts == nil {
		switch io.tsType {
		case ort.TensorElementDataTypeFloat:
			return ort.NewScalar(t)
		case ort.TensorElementDataTypeInt64:
			return ort.NewScalar(int64(t))
		case ort.TensorElementDataTypeInt32:
			return ort.NewScalar(int32(t))
		}
		return nil, fmt.Errorf("sdxl: unsupported timestep type %v", io.tsType)
	}
	for i := range c.tsF32 {
		c.tsF32[i] = t
	}
	for i := range c.tsI64 {
		c.tsI64[i] = int64(t)
	}
	for i := range c.tsI32 {
		c.tsI32[i] = int32(t)
	}
	for i := 0; i < len(c.tsHalf); i += 2 {
		h := f32ToF16(t)
		c.tsHalf[i], c.tsHalf[i+1] = byte(h), byte(h>>8)
	}
	return c.ts, nil
}

// encode runs the VAE encoder on b.encIn and writes scaling·z to dst, z sampled from the
// posterior N(mean, exp(logvar)) with logvar clamped to [-30, 20] (diffusers'
// DiagonalGaussianDistribution), or taken as the export's in-graph sample.
func (p *Pipeline) encode(ctx context.Context, t *Timing, b *buffers, rng *normal, dst []float32) error {
	b.encIn.push()
	if err := p.run(ctx, t, p.venc, []ort.Value{b.encIn.v}, []ort.Value{b.encOut.v}); err != nil {
		return err
	}
	b.encOut.pull()
	n := len(dst)
	if !p.io.vencParams {
		for i, z := range b.encOut.F[:n] {
			dst[i] = p.scaling * z
		}
		return nil
	}
	rng.fill(dst)
	mean, logvar := b.encOut.F[:n], b.encOut.F[n:2*n]
	for i, r := range dst {
		lv := min(max(logvar[i], -30), 20)
		std := float32(math.Exp(float64(0.5 * lv)))
		dst[i] = p.scaling * (mean[i] + std*r)
	}
	return nil
}

// regions are the parts of the working image and of the source that one result touches.
type regions struct {
	work imageops.Rect // working-size pixels the result depends on (⊇ crop)
	out  imageops.Rect // source pixels that may differ from the source
}

// regionsFor works out, for crop box in the W×W working image, which source pixels can
// change: with the source at the working size, the crop itself; otherwise the source
// pixels whose bicubic footprint (resizing W² back to the source size) meets the crop,
// and the working pixels those footprints read. RoundTrip resizes everything, as DIAG.
func regionsFor(srcW, srcH, W int, box imageops.Rect, roundTrip bool) regions {
	full := regions{work: imageops.Rect{X2: W, Y2: W}, out: imageops.Rect{X2: srcW, Y2: srcH}}
	if srcW == W && srcH == W {
		return regions{work: box, out: box}
	}
	if roundTrip {
		return full
	}
	touch := func(spans []imageops.Span, lo, hi int) (o0, o1, w0, w1 int) {
		o0, w0, w1 = -1, hi, lo
		for i, s := range spans {
			if s.Min < hi && s.Min+s.N > lo {
				if o0 < 0 {
					o0 = i
				}
				o1 = i + 1
				w0, w1 = min(w0, s.Min), max(w1, s.Min+s.N)
			}
		}
		return
	}
	ox0, ox1, wx0, wx1 := touch(imageops.Spans(W, srcW, imageops.Bicubic), box.X1, box.X2)
	oy0, oy1, wy0, wy1 := touch(imageops.Spans(W, srcH, imageops.Bicubic), box.Y1, box.Y2)
	if ox0 < 0 || oy0 < 0 {
		return full // cannot happen: the spans cover every working pixel
	}
	return regions{work: imageops.Rect{X1: min(wx0, box.X1), Y1: min(wy0, box.Y1), X2: max(wx1, box.X2), Y2: max(wy1, box.Y2)},
		out: imageops.Rect{X1: ox0, Y1: oy0, X2: ox1, Y2: oy1}}
}

// backToSource puts the overlaid working region back into a copy of the source: pasted
// as is when the source is at the working size, else bicubic-resized (DIAG's
// out.resize(RES)) for just the source pixels in reg.out.
func backToSource(ov, src *imageops.Image, W int, reg regions) (*imageops.Image, error) {
	part := ov
	if src.W != W || src.H != W {
		var err error
		part, err = imageops.ResizeWindow(ov, reg.work.X1, reg.work.Y1, W, W, src.W, src.H, imageops.Bicubic, reg.out)
		if err != nil {
			return nil, fmt.Errorf("sdxl: %w", err)
		}
	}
	res := &imageops.Image{W: src.W, H: src.H, C: 3, Pix: append([]uint8(nil), src.Pix...)}
	row := reg.out.Dx() * 3
	for y := 0; y < reg.out.Dy(); y++ {
		copy(res.Pix[((reg.out.Y1+y)*src.W+reg.out.X1)*3:], part.Pix[y*row:(y+1)*row])
	}
	return res, nil
}
