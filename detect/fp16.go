package detect

import (
	ort "github.com/yalue/onnxruntime_go"

	"github.com/diagd/diagd/internal/half"
)

// ioTypes says which of the detector's float boundaries are float16 (a model.half()
// export), and the segmentation output's size when the model has one. Preprocessing and
// scores stay float32; values are converted at the boundary.
type ioTypes struct {
	inFP16, outFP16, segFP16 bool
	segH, segW               int // 0: no segmentation output
}

// Floats is a float tensor at a detector's boundary: float32 on the Go side (F) and, for
// a float16 input or output (a model.half() export), a float16 mirror that the ORT values
// wrap, converted on the way in (Encode) and out (Decode). Everything else — the
// preprocessing, the features, the scores — stays float32. Serving and feature
// extraction (retrain/features) both cross the boundary through it.
type Floats struct {
	F    []float32
	half []byte // nil for float32
}

// NewFloats allocates n values, with a float16 mirror when fp16.
func NewFloats(n int, fp16 bool) *Floats {
	f := &Floats{F: make([]float32, n)}
	if fp16 {
		f.half = make([]byte, 2*n)
	}
	return f
}

// FP16 says whether the model's side is float16.
func (f *Floats) FP16() bool { return f.half != nil }

// Value wraps the front of the buffer (shape's element count) in an ORT value of the
// model's type. The value shares the memory: Encode before a run, Decode after.
func (f *Floats) Value(shape ort.Shape) (ort.Value, error) {
	n := shape.FlattenedSize()
	if f.half == nil {
		return ort.NewTensor(shape, f.F[:n])
	}
	return ort.NewCustomDataTensor(shape, f.half[:2*n], ort.TensorElementDataTypeFloat16)
}

// Encode converts F[:n] into the float16 mirror (no-op for float32).
func (f *Floats) Encode(n int) {
	if f.half != nil {
		half.Encode(f.half, f.F[:n])
	}
}

// Decode converts the mirror's first n values into F (no-op for float32).
func (f *Floats) Decode(n int) {
	if f.half != nil {
		half.Decode(f.F[:n], f.half)
	}
}

func newWorker(pre *Preprocessor, maxBatch int, io ioTypes) *worker {
	return &worker{pre: pre, io: io, inBuf: NewFloats(maxBatch*pre.Size(), io.inFP16), outBuf: NewFloats(maxBatch, io.outFP16),
		segBuf: NewFloats(maxBatch*io.segH*io.segW, io.segFP16),
		idx:    make([]int, maxBatch), in: map[int]ort.Value{}, out: map[int][]ort.Value{}}
}

// tensors makes (once per batch size n) the worker's input and output values over the
// front of its buffers, in the model's element types.
func (w *worker) tensors(n int, spec InputSpec) error {
	if _, ok := w.in[n]; ok {
		return nil
	}
	in, err := w.inBuf.Value(ort.NewShape(int64(n), 3, int64(spec.Height), int64(spec.Width)))
	if err != nil {
		return err
	}
	out, err := w.outBuf.Value(ort.NewShape(int64(n), 1))
	if err != nil {
		in.Destroy()
		return err
	}
	outs := []ort.Value{out}
	if w.io.segH > 0 {
		seg, err := w.segBuf.Value(ort.NewShape(int64(n), 1, int64(w.io.segH), int64(w.io.segW)))
		if err != nil {
			in.Destroy()
			out.Destroy()
			return err
		}
		outs = append(outs, seg)
	}
	w.in[n], w.out[n] = in, outs
	return nil
}
