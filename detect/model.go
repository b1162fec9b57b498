package detect

import (
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
	"gocv.io/x/gocv"

	"github.com/diagd/diagd/internal/imageio"
	"github.com/diagd/diagd/internal/ortenv"
)

// Options configure how models are run.
type Options struct {
	Session  ortenv.Options
	MaxBatch int // frames per ORT call; larger requests are split. Default 8.
	Workers  int // concurrent ORT calls per model, each with its own buffers. Default 2.
}

func (o Options) withDefaults() Options {
	if o.MaxBatch <= 0 {
		o.MaxBatch = 8
	}
	if o.Workers <= 0 {
		o.Workers = 2
	}
	return o
}

// Model is one loaded detector: its metadata, an ORT session, and a pool of workers
// whose tensors are allocated once and reused, so the per-frame path allocates nothing
// large. A Model is safe for concurrent use.
type Model struct {
	Meta     Metadata
	Dir      string
	Provider ortenv.Provider

	log      *slog.Logger
	sess     *ortenv.Session
	maxBatch int
	seg      ioTypes // the segmentation output's size (segH 0: none)
	workers  chan *worker

	digestOnce sync.Once
	digest     string
	digestErr  error
}

// A worker's tensors for each batch size are views of one input and one output buffer
// sized for MaxBatch, so memory stays at one full batch per worker.
type worker struct {
	pre    *Preprocessor
	io     ioTypes
	inBuf  *Floats             // float32 frames, and a float16 mirror for a float16 export
	outBuf *Floats             // logits
	segBuf *Floats             // segmentation logits, MaxBatch maps (empty without)
	idx    []int               // frame index of each packed batch row
	in     map[int]ort.Value   // by batch size, made on first use
	out    map[int][]ort.Value // the logit, and the segmentation when the model has one
}

// LoadModel opens dir/model.onnx with dir/model.json, checking that the metadata agrees
// with the model's real inputs and outputs before anything is served.
func LoadModel(log *slog.Logger, dir string, o Options) (*Model, error) {
	o = o.withDefaults()
	meta, err := ReadMetadata(dir)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, ModelFile)
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("model file: %w", err)
	}
	if st.Size() == 0 {
		return nil, fmt.Errorf("model file %s is empty (0 bytes)", path)
	}
	ins, outs, err := ortenv.Describe(log, path)
	if err != nil {
		return nil, err
	}
	maxBatch, io, err := checkInterface(meta, ins, outs)
	if err != nil {
		return nil, fmt.Errorf("model %s does not match %s: %w", path, filepath.Join(dir, MetadataFile), err)
	}
	if maxBatch > 0 && maxBatch < o.MaxBatch {
		o.MaxBatch = maxBatch
	}
	outNames := []string{meta.Outputs.Logit}
	if io.segH > 0 {
		outNames = append(outNames, meta.Outputs.Segmentation)
	}
	sess, err := ortenv.OpenSession(log, path, []string{meta.Input.Name}, outNames, o.Session)
	if err != nil {
		return nil, err
	}
	if note := ortenv.DTypeNote(sess.Provider, io.inFP16 || io.outFP16 || io.segFP16, o.Session); note != "" {
		log.Warn("detector model dtype", "model", path, "note", note)
	}
	m := &Model{Meta: meta, Dir: dir, Provider: sess.Provider, log: log, sess: sess,
		maxBatch: o.MaxBatch, seg: io, workers: make(chan *worker, o.Workers)}
	for range o.Workers {
		pre := NewPreprocessor(meta.Input)
		m.workers <- newWorker(pre, o.MaxBatch, io)
	}
	if err := m.probe(); err != nil {
		m.Close()
		return nil, fmt.Errorf("model %s refused: %w", dir, err)
	}
	return m, nil
}

// probe runs the model on its probe images (mid-grey and a gradient, at its input size)
// and refuses it when it fails on them or yields a non-finite logit: such a model would
// give an unknown verdict, or a silent pass, to ordinary frames.
func (m *Model) probe() error {
	h, w := m.Meta.Input.Height, m.Meta.Input.Width
	grey := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(128, 128, 128, 0), h, w, gocv.MatTypeCV8UC3)
	defer grey.Close()
	px := make([]byte, 0, h*w*3)
	for y := range h {
		for x := range w {
			v := byte(255 * (x + y) / max(1, h+w-2))
			px = append(px, v, v, 255-v)
		}
	}
	grad, err := gocv.NewMatFromBytes(h, w, gocv.MatTypeCV8UC3, px)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	defer grad.Close()
	names := []string{"grey", "gradient"}
	frames := []gocv.Mat{grey, grad}
	logits := make([]float32, len(frames))
	errs := make([]error, len(frames))
	if err := m.Logits(frames, logits, errs); err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	for i, l := range logits {
		if errs[i] != nil {
			return fmt.Errorf("probe image %s: %w", names[i], errs[i])
		}
		if math.IsNaN(float64(l)) || math.IsInf(float64(l), 0) {
			return fmt.Errorf("%w on its probe image %q (logit %v)", ErrNonFinite, names[i], l)
		}
	}
	return nil
}

// checkInterface compares metadata with the model's declared inputs and outputs and
// returns the largest batch the model accepts (0 when the batch axis is dynamic).
func checkInterface(meta Metadata, ins, outs []ort.InputOutputInfo) (int, ioTypes, error) {
	var io ioTypes
	in, err := ortenv.Lookup(ins, "input", meta.Input.Name)
	if err != nil {
		return 0, io, fmt.Errorf("metadata input.name: %w", err)
	}
	if io.inFP16, err = ortenv.NeedFloat(in); err != nil {
		return 0, io, fmt.Errorf("input %w", err)
	}
	d := in.Dimensions
	if len(d) != 4 {
		return 0, io, fmt.Errorf("input %q has shape %v; want [batch,3,H,W]", in.Name, d)
	}
	if d[1] != 3 && d[1] >= 0 {
		return 0, io, fmt.Errorf("input %q has %d channels; want 3", in.Name, d[1])
	}
	if (d[2] >= 0 && d[2] != int64(meta.Input.Height)) || (d[3] >= 0 && d[3] != int64(meta.Input.Width)) {
		return 0, io, fmt.Errorf("metadata says input is %dx%d (HxW) but the model's input %q is %dx%d",
			meta.Input.Height, meta.Input.Width, in.Name, d[2], d[3])
	}
	out, err := ortenv.Lookup(outs, "output", meta.Outputs.Logit)
	if err != nil {
		return 0, io, fmt.Errorf("metadata outputs.logit: %w", err)
	}
	if io.outFP16, err = ortenv.NeedFloat(out); err != nil {
		return 0, io, fmt.Errorf("output %w", err)
	}
	od := out.Dimensions
	if len(od) != 2 || (od[1] != 1 && od[1] >= 0) {
		return 0, io, fmt.Errorf("output %q has shape %v; want [batch,1]", out.Name, od)
	}
	if meta.Outputs.Features != "" {
		if _, err := ortenv.Lookup(outs, "output", meta.Outputs.Features); err != nil {
			return 0, io, fmt.Errorf("metadata outputs.features: %w", err)
		}
	}
	if err := checkSegmentation(meta, outs, &io); err != nil {
		return 0, io, err
	}
	if d[0] > 0 {
		return int(d[0]), io, nil
	}
	return 0, io, nil
}

// checkSegmentation checks the segmentation output model.json names, if any: float,
// [batch,1,h,w] with h and w fixed and no larger than the input.
func checkSegmentation(meta Metadata, outs []ort.InputOutputInfo, io *ioTypes) error {
	name := meta.Outputs.Segmentation
	if name == "" {
		return nil
	}
	o, err := ortenv.Lookup(outs, "output", name)
	if err != nil {
		return fmt.Errorf("metadata outputs.segmentation: %w", err)
	}
	if io.segFP16, err = ortenv.NeedFloat(o); err != nil {
		return fmt.Errorf("output %w", err)
	}
	d := o.Dimensions
	if len(d) != 4 || (d[1] != 1 && d[1] >= 0) || d[2] < 1 || d[3] < 1 || d[2] > int64(meta.Input.Height) || d[3] > int64(meta.Input.Width) {
		return fmt.Errorf("output %q has shape %v; want [batch,1,h,w] with fixed h and w no larger than the input's %dx%d",
			name, d, meta.Input.Height, meta.Input.Width)
	}
	io.segH, io.segW = int(d[2]), int(d[3])
	return nil
}

// Close releases the session and every worker's buffers. The caller guarantees no call
// is in flight (Detector does this for swapped-out models).
func (m *Model) Close() {
	close(m.workers)
	for w := range m.workers {
		w.pre.Close()
		for _, t := range w.in {
			t.Destroy()
		}
		for _, ts := range w.out {
			for _, t := range ts {
				t.Destroy()
			}
		}
	}
	m.sess.Destroy()
}

// MaxBatch is the number of frames one ORT call takes.
func (m *Model) MaxBatch() int { return m.maxBatch }

// Digest is the sha256 of model.onnx, computed once. Training caches features by it.
func (m *Model) Digest() (string, error) {
	m.digestOnce.Do(func() { m.digest, m.digestErr = imageio.FileDigest(filepath.Join(m.Dir, ModelFile)) })
	return m.digest, m.digestErr
}

// Logits judges frames and writes one logit per frame into out. Frames are split into
// batches of MaxBatch. A frame that cannot be preprocessed gets its error in errs[i]
// and is left out of the batch; the others are still judged. The returned error is
// for failures of the model itself, which affect every frame of the call.
func (m *Model) Logits(frames []gocv.Mat, out []float32, errs []error) error {
	return m.Segment(frames, out, nil, errs)
}

// Segments reports whether the model has a segmentation output, and its size.
func (m *Model) Segments() (ok bool, w, h int) {
	w, h = m.seg.segW, m.seg.segH
	return h > 0, w, h
}

// Segment is Logits that also fills segs[i] (when segs is not nil and the model has a
// segmentation output) with frame i's defect probabilities. Maps of frames that could
// not be judged stay empty.
func (m *Model) Segment(frames []gocv.Mat, out []float32, segs []SegMap, errs []error) error {
	if len(out) != len(frames) || len(errs) != len(frames) || (segs != nil && len(segs) != len(frames)) {
		return fmt.Errorf("logits: %d outputs, %d maps and %d error slots for %d frames", len(out), len(segs), len(errs), len(frames))
	}
	w := <-m.workers
	defer func() { m.workers <- w }()
	for start := 0; start < len(frames); start += m.maxBatch {
		end := min(start+m.maxBatch, len(frames))
		var s []SegMap
		if segs != nil {
			s = segs[start:end]
		}
		if err := m.runBatch(w, frames[start:end], out[start:end], s, errs[start:end]); err != nil {
			return err
		}
	}
	return nil
}

func (m *Model) runBatch(w *worker, frames []gocv.Mat, out []float32, segs []SegMap, errs []error) error {
	size := w.pre.Size()
	n := 0 // good frames packed at the front of the input buffer
	for i, f := range frames {
		errs[i] = w.pre.Into(f, w.inBuf.F[n*size:(n+1)*size])
		if errs[i] == nil {
			w.idx[n] = i
			n++
		}
	}
	if n == 0 {
		return nil
	}
	if err := w.tensors(n, m.Meta.Input); err != nil {
		return err
	}
	w.inBuf.Encode(n * size)
	if err := m.runTensor(w, n); err != nil {
		return err
	}
	w.outBuf.Decode(n)
	cells := w.io.segH * w.io.segW
	w.segBuf.Decode(n * cells)
	for j, i := range w.idx[:n] {
		out[i] = w.outBuf.F[j]
		if segs != nil && cells > 0 {
			p := make([]float32, cells)
			for k, z := range w.segBuf.F[j*cells : (j+1)*cells] {
				p[k] = float32(Sigmoid(z))
			}
			segs[i] = SegMap{W: w.io.segW, H: w.io.segH, P: p, Threshold: m.Meta.SegThreshold()}
		}
	}
	return nil
}

// runTensor runs the worker's already-filled input buffer as a batch of n; the logits
// land in w.outBuf.F[:n] and the segmentation logits in w.segBuf.F (after Decode).
func (m *Model) runTensor(w *worker, n int) error {
	if err := m.sess.Run([]ort.Value{w.in[n]}, w.out[n]); err != nil {
		return fmt.Errorf("model %s: run: %w", m.Meta.ModelVersion, err)
	}
	return nil
}

// Sigmoid maps a logit to a score in [0,1], stably for large |x|.
func Sigmoid(x float32) float64 {
	v := float64(x)
	if v >= 0 {
		return 1 / (1 + math.Exp(-v))
	}
	e := math.Exp(v)
	return e / (1 + e)
}
