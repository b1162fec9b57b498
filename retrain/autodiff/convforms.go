package autodiff

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	pb "github.com/diagd/diagd/internal/onnx/onnxpb"
)

// ConvShape describes one 2-d convolution of the forward graph, for choosing how its
// gradients are computed.
type ConvShape struct {
	N, C, H, W     int64 // input batch, channels, height, width
	M, KH, KW      int64 // output channels and kernel
	OH, OW         int64 // output height and width
	SH, SW, DH, DW int64 // strides and dilations
	Pads           [4]int64
	Group          int64
}

func (s ConvShape) String() string {
	return fmt.Sprintf("%d→%d %dx%d/s%d on %dx%dx%d (batch %d)", s.C, s.M, s.KH, s.KW, s.SH, s.C, s.H, s.W, s.N)
}

// Pointwise says whether the convolution is a matrix product per output pixel: a 1×1
// kernel without padding or groups (any stride).
func (s ConvShape) Pointwise() bool {
	return s.KH == 1 && s.KW == 1 && s.Pads == [4]int64{} && s.Group == 1
}

// WeightForm is how a convolution's weight gradient dW[m,c,i,j] = Σ dY[n,m,p]·X[n,c,p·s+i·d]
// is computed.
type WeightForm int

// Weight-gradient forms. See the package documentation for measurements.
const (
	WeightAuto WeightForm = iota
	// WeightConv is one Conv over batch-major transposed tensors whose kernel is the output
	// gradient; best when the input has few channels (the stem).
	WeightConv
	// WeightGemm transposes the padded input once, then per kernel offset takes a strided
	// Slice and multiplies it with the output gradient in one Gemm (transB); a 1×1 kernel is a
	// single Gemm.
	WeightGemm
	// WeightIm2col concatenates all offsets' slices into one im2col matrix and multiplies once.
	WeightIm2col
	// WeightBatched keeps the batch-major layout: per kernel offset a strided Slice of the
	// padded input (none for a 1×1 stride-1 kernel), then per image dY·Xᵀ as one batched
	// MatMul of a transposed operand (ORT runs it as a GEMM with transB, no copy) and a sum
	// over the batch. No activation-sized transposes.
	WeightBatched
)

var weightFormNames = map[WeightForm]string{WeightAuto: "auto", WeightConv: "conv", WeightGemm: "gemm",
	WeightIm2col: "im2col", WeightBatched: "batched"}

func (f WeightForm) String() string { return weightFormNames[f] }

// InputForm is how a convolution's input gradient is computed.
type InputForm int

// Input-gradient forms.
const (
	InputAuto InputForm = iota
	// InputConvTranspose is ConvTranspose of the output gradient with the same weights.
	InputConvTranspose
	// InputMatMul is Wᵀ·dY per image, spread onto the stride grid with a Pad when strided;
	// for pointwise convolutions only.
	InputMatMul
)

var inputFormNames = map[InputForm]string{InputAuto: "auto", InputConvTranspose: "convtranspose", InputMatMul: "matmul"}

func (f InputForm) String() string { return inputFormNames[f] }

// ConvForms is the pair of forms used for one convolution.
type ConvForms struct {
	Weight WeightForm
	Input  InputForm
}

// ConvPolicy picks the forms for a convolution. Auto values in its answer fall back to
// DefaultConvPolicy's.
type ConvPolicy func(ConvShape) ConvForms

// DefaultConvPolicy is the choice measured on ORT's CPU provider (package doc): for the
// weight gradient, one Conv when the input has few channels (the stem), the batched form
// on large maps (it avoids transposing them), per-offset Gemms on small ones; for the
// input gradient, a MatMul for pointwise stride-1 convolutions that reduce channels,
// ConvTranspose elsewhere.
func DefaultConvPolicy(s ConvShape) ConvForms {
	f := ConvForms{Weight: WeightGemm, Input: InputConvTranspose}
	switch {
	case s.C <= 4 && s.Group == 1:
		f.Weight = WeightConv
	case s.H*s.W >= 2048:
		f.Weight = WeightBatched
	}
	if s.Pointwise() && s.SH == 1 && s.SW == 1 && s.M < s.C {
		f.Input = InputMatMul
	}
	return f
}

// resolve applies the policy and makes its answer valid for the shape.
func (p ConvPolicy) resolve(s ConvShape) ConvForms {
	f := ConvForms{}
	if p != nil {
		f = p(s)
	}
	d := DefaultConvPolicy(s)
	if f.Weight == WeightAuto {
		f.Weight = d.Weight
	}
	if f.Input == InputAuto {
		f.Input = d.Input
	}
	if s.Group != 1 && f.Weight != WeightBatched {
		f.Weight = WeightGemm // the forms with a grouped variant
	}
	if f.Input == InputMatMul && !s.Pointwise() {
		f.Input = InputConvTranspose
	}
	return f
}

// ConvGradModel builds a graph that computes one convolution's gradients with the given
// forms, for measuring forms in isolation (go run ./bench trainstep -forms): inputs x
// [N,C,H,W], w [M,C/group,KH,KW] and dy [N,M,OH,OW]; outputs dx and/or dw as asked.
// OH and OW are derived from the rest of s.
func ConvGradModel(s ConvShape, f ConvForms, wantDX, wantDW bool) (*pb.ModelProto, error) {
	g := geometry{kernel: []int64{s.KH, s.KW}, strides: []int64{s.SH, s.SW}, dilations: []int64{s.DH, s.DW},
		pads: s.Pads[:], autoPad: "NOTSET"}
	s.OH, s.OW = g.out(0, s.H), g.out(1, s.W)
	if s.OH < 1 || s.OW < 1 || s.Group < 1 {
		return nil, fmt.Errorf("autodiff: convolution %v has no output", s)
	}
	out := &pb.GraphProto{Name: proto.String("conv-grad")}
	e := newEmitter(out, pb.TensorProto_FLOAT)
	e.opset = 17
	shapes := map[string][]int64{"x": {s.N, s.C, s.H, s.W}, "w": {s.M, s.C / s.Group, s.KH, s.KW}, "dy": {s.N, s.M, s.OH, s.OW}}
	for _, n := range []string{"x", "w", "dy"} {
		e.claim(n)
		out.Input = append(out.Input, valueInfo(n, pb.TensorProto_FLOAT, shapes[n]))
	}
	f = ConvPolicy(func(ConvShape) ConvForms { return f }).resolve(s)
	if wantDX {
		e.node("Identity", []string{convInputGrad(e, s, f.Input, "dy", "w")}, []string{"dx"})
		out.Output = append(out.Output, valueInfo("dx", pb.TensorProto_FLOAT, shapes["x"]))
	}
	if wantDW {
		e.node("Identity", []string{convWeightGrad(e, s, f.Weight, "x", "dy")}, []string{"dw"})
		out.Output = append(out.Output, valueInfo("dw", pb.TensorProto_FLOAT, shapes["w"]))
	}
	fuseOutputIdentities(out)
	if e.err != nil {
		return nil, e.err
	}
	return &pb.ModelProto{IrVersion: proto.Int64(8), Graph: out,
		OpsetImport: []*pb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(17)}}}, nil
}
