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

func floatType(dt ort.TensorElementDataType) (fp16, ok bool) {
	switch dt {
	case ort.TensorElementDataTypeFloat:
		return false, true
	case ort.TensorElementDataTypeFloat16:
		return true, true
	}
	return false, false
}

func newWorker(pre *Preprocessor, maxBatch int, io ioTypes) *worker {
	w := &worker{pre: pre, inBuf: make([]float32, maxBatch*pre.Size()), outBuf: make([]float32, maxBatch),
		segBuf: make([]float32, maxBatch*io.segH*io.segW), io: io,
		idx: make([]int, maxBatch), in: map[int]ort.Value{}, out: map[int][]ort.Value{}}
	if io.inFP16 {
		w.inHalf = make([]byte, 2*len(w.inBuf))
	}
	if io.outFP16 {
		w.outHalf = make([]byte, 2*len(w.outBuf))
	}
	if io.segFP16 {
		w.segHalf = make([]byte, 2*len(w.segBuf))
	}
	return w
}

// tensors makes (once per batch size n) the worker's input and output values over the
// front of its buffers, in the model's element types.
func (w *worker) tensors(n int, spec InputSpec) error {
	if _, ok := w.in[n]; ok {
		return nil
	}
	inShape := ort.NewShape(int64(n), 3, int64(spec.Height), int64(spec.Width))
	in, err := floatValue(inShape, w.inBuf, w.inHalf)
	if err != nil {
		return err
	}
	out, err := floatValue(ort.NewShape(int64(n), 1), w.outBuf, w.outHalf)
	if err != nil {
		in.Destroy()
		return err
	}
	outs := []ort.Value{out}
	if w.io.segH > 0 {
		seg, err := floatValue(ort.NewShape(int64(n), 1, int64(w.io.segH), int64(w.io.segW)), w.segBuf, w.segHalf)
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

// floatValue wraps the float32 buffer, or its float16 mirror when there is one.
func floatValue(shape ort.Shape, f []float32, h []byte) (ort.Value, error) {
	if h == nil {
		return ort.NewTensor(shape, f)
	}
	return ort.NewCustomDataTensor(shape, h[:2*shape.FlattenedSize()], ort.TensorElementDataTypeFloat16)
}

// toHalf converts the first n input values into the float16 input (no-op for float32).
func (w *worker) toHalf(n int) {
	if w.inHalf != nil {
		half.Encode(w.inHalf, w.inBuf[:n])
	}
}

// fromHalf converts the first n logits and segmentation maps out of the float16
// outputs (no-op for float32).
func (w *worker) fromHalf(n int) {
	if w.outHalf != nil {
		half.Decode(w.outBuf[:n], w.outHalf)
	}
	if w.segHalf != nil {
		k := n * w.io.segH * w.io.segW
		half.Decode(w.segBuf[:k], w.segHalf[:2*k])
	}
}
