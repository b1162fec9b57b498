package sdxl

import (
	"encoding/binary"
	"fmt"

	ort "github.com/yalue/onnxruntime_go"
)

// ftensor is a float tensor at a session boundary. The host side is always float32 (F);
// for a float16 model an fp16 byte mirror backs the ORT value and is converted on the way
// in (push) and out (pull). Both live as long as the tensor, so steps allocate nothing.
type ftensor struct {
	F    []float32
	half []byte
	v    ort.Value
}

// newFTensor wraps data (allocated when nil) in an ORT value of the given shape.
func newFTensor(shape ort.Shape, fp16 bool, data []float32) (*ftensor, error) {
	n := int(shape.FlattenedSize())
	if data == nil {
		data = make([]float32, n)
	}
	if len(data) < n {
		return nil, fmt.Errorf("sdxl: tensor %v needs %d values, have %d", shape, n, len(data))
	}
	t := &ftensor{F: data[:n]}
	var err error
	if fp16 {
		t.half = make([]byte, 2*n)
		t.v, err = ort.NewCustomDataTensor(shape, t.half, ort.TensorElementDataTypeFloat16)
	} else {
		t.v, err = ort.NewTensor(shape, t.F)
	}
	if err != nil {
		return nil, fmt.Errorf("sdxl: tensor %v: %w", shape, err)
	}
	return t, nil
}

// push copies F into the fp16 mirror (no-op for float32).
func (t *ftensor) push() {
	if t.half == nil {
		return
	}
	for i, v := range t.F {
		binary.LittleEndian.PutUint16(t.half[2*i:], f32ToF16(v))
	}
}

// pull copies the fp16 mirror into F (no-op for float32).
func (t *ftensor) pull() {
	if t.half == nil {
		return
	}
	for i := range t.F {
		t.F[i] = f16ToF32(binary.LittleEndian.Uint16(t.half[2*i:]))
	}
}

func (t *ftensor) destroy() {
	if t != nil && t.v != nil {
		t.v.Destroy()
		t.v = nil
	}
}
