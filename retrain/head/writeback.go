package head

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"path/filepath"

	"google.golang.org/protobuf/proto"

	"github.com/diagd/diagd/internal/atomicfile"
	"github.com/diagd/diagd/internal/onnx/build"
	pb "github.com/diagd/diagd/internal/onnx/onnxpb"
)

// ErrStructure is returned when the model's head is not a Gemm with constant weights
// fed by the features output, so a trained head cannot be written into it.
var ErrStructure = errors.New("unexpected detector structure")

// ErrFloat16Head is the ErrStructure of a float16 export (model.half()): serving and
// feature extraction take it, but a trained head is written as float32 only.
var ErrFloat16Head = fmt.Errorf("%w: the head's weights are float16 (a model.half() export), and diagd writes float32 heads only; retrain from the float32 export of the detector", ErrStructure)

// passThrough ops do not change values; the logit output may be named through them.
var passThrough = map[string]bool{"Identity": true, "Flatten": true, "Reshape": true, "Squeeze": true, "Unsqueeze": true}

// headGemm finds the Gemm that produces the logit output, following pass-through nodes
// back from the output, and checks that it reads the features.
func headGemm(g *pb.GraphProto, logit, features string) (*pb.NodeProto, error) {
	producer := map[string]*pb.NodeProto{}
	for _, n := range g.Node {
		for _, o := range n.Output {
			producer[o] = n
		}
	}
	name := logit
	for range len(g.Node) + 1 {
		n := producer[name]
		if n == nil {
			return nil, fmt.Errorf("%w: no node produces %q", ErrStructure, name)
		}
		if n.GetOpType() == "Gemm" {
			if len(n.Input) != 3 {
				return nil, fmt.Errorf("%w: the Gemm producing %q has %d inputs; want x, W and bias", ErrStructure, logit, len(n.Input))
			}
			if !reads(producer, n.Input[0], features) {
				return nil, fmt.Errorf("%w: the Gemm producing %q reads %q, which is not the %q output", ErrStructure, logit, n.Input[0], features)
			}
			return n, nil
		}
		if !passThrough[n.GetOpType()] || len(n.Input) == 0 {
			return nil, fmt.Errorf("%w: %q is produced by a %s node, not by a Gemm (Linear) head", ErrStructure, name, n.GetOpType())
		}
		name = n.Input[0]
	}
	return nil, fmt.Errorf("%w: cycle while tracing %q", ErrStructure, logit)
}

// reads says whether value x is the features output or equal to it through Identity.
func reads(producer map[string]*pb.NodeProto, x, features string) bool {
	if x == features {
		return true
	}
	if n := producer[features]; n != nil && n.GetOpType() == "Identity" && n.Input[0] == x {
		return true
	}
	if n := producer[x]; n != nil && n.GetOpType() == "Identity" && n.Input[0] == features {
		return true
	}
	return false
}

func attrInt(n *pb.NodeProto, name string, def int64) int64 {
	for _, a := range n.Attribute {
		if a.GetName() == name {
			return a.GetI()
		}
	}
	return def
}

func attrFloat(n *pb.NodeProto, name string, def float32) float32 {
	for _, a := range n.Attribute {
		if a.GetName() == name {
			return a.GetF()
		}
	}
	return def
}

func initializer(g *pb.GraphProto, name string) *pb.TensorProto {
	for _, t := range g.Initializer {
		if t.GetName() == name {
			return t
		}
	}
	return nil
}

// Writable checks, without writing anything, that WriteBack can write a head into the
// model: its logit comes from a Gemm fed by the features output whose weight and bias
// are float32 initializers. It lets a retraining run refuse a base model before it
// extracts any features.
func Writable(modelPath, logit, features string) error {
	hm, err := loadHead(modelPath, logit, features)
	if err != nil {
		return err
	}
	if err := float32Head(hm.wt, hm.bt); err != nil {
		return fmt.Errorf("%s: %w", modelPath, err)
	}
	return nil
}

// headModel is a loaded model with its head located: the Gemm and its weight and bias
// initializers.
type headModel struct {
	m      *pb.ModelProto
	g      *pb.GraphProto
	n      *pb.NodeProto
	wt, bt *pb.TensorProto
}

// loadHead loads a model and locates its head (external data not read).
func loadHead(path, logit, features string) (*headModel, error) {
	m, err := build.Load(path)
	if err != nil {
		return nil, err
	}
	hm := &headModel{m: m, g: m.GetGraph()}
	if hm.n, err = headGemm(hm.g, logit, features); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	hm.wt, hm.bt = initializer(hm.g, hm.n.Input[1]), initializer(hm.g, hm.n.Input[2])
	if hm.wt == nil || hm.bt == nil {
		return nil, fmt.Errorf("%s: %w: the head Gemm's weight %q and bias %q must be initializers", path, ErrStructure, hm.n.Input[1], hm.n.Input[2])
	}
	return hm, nil
}

// float32Head checks the head's weight and bias types.
func float32Head(wt, bt *pb.TensorProto) error {
	f32, f16 := int32(pb.TensorProto_FLOAT), int32(pb.TensorProto_FLOAT16)
	switch {
	case wt.GetDataType() == f32 && bt.GetDataType() == f32:
		return nil
	case wt.GetDataType() == f16 || bt.GetDataType() == f16:
		return ErrFloat16Head
	}
	return fmt.Errorf("%w: head weights are not float32", ErrStructure)
}

// WriteBack writes a copy of baseModel with the head's weights to outPath (atomically),
// in the storage form Store describes.
func WriteBack(baseModel, outPath, logit, features string, h *Head) error {
	return rewrite(baseModel, outPath, logit, features, h)
}

// Store writes a copy of a model with its own head in diagd's storage form: the head
// inline in model.onnx and every other sizeable weight (the backbone) in one side file
// beside it named by the sha256 of its bytes (BlobName). Models that share a backbone
// thus share a side file name and content, which the registry stores once (hard links).
// A model whose head is not a Gemm fed by the features output gives ErrStructure.
func Store(srcModel, dstModel, logit, features string) error {
	return rewrite(srcModel, dstModel, logit, features, nil)
}

// rewrite loads base, replaces its head with h (nil keeps it), and writes it to out with
// the backbone in a content-addressed side file.
func rewrite(base, out, logit, features string, h *Head) error {
	hm, err := loadHead(base, logit, features)
	if err != nil {
		return err
	}
	m, g, n, wt, bt := hm.m, hm.g, hm.n, hm.wt, hm.bt
	if err := resolveExternal(g, filepath.Dir(base)); err != nil {
		return fmt.Errorf("%s: %w", base, err)
	}
	if h != nil {
		if err := setHead(n, wt, bt, h); err != nil {
			return fmt.Errorf("%s: %w", base, err)
		}
	}
	name, blob := externalize(g, wt.GetName(), bt.GetName())
	if blob != nil {
		if err := writeBlob(filepath.Dir(base), filepath.Dir(out), name, blob); err != nil {
			return err
		}
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return fmt.Errorf("%s: %w", out, err)
	}
	return atomicfile.WriteFile(out, b, 0o644)
}

// setHead stores h in the head Gemm's weight and bias tensors.
func setHead(n *pb.NodeProto, wt, bt *pb.TensorProto, h *Head) error {
	if attrInt(n, "transA", 0) != 0 {
		return fmt.Errorf("%w: the head Gemm has transA=1", ErrStructure)
	}
	transB := attrInt(n, "transB", 0)
	alpha, beta := attrFloat(n, "alpha", 1), attrFloat(n, "beta", 1)
	if alpha == 0 || beta == 0 {
		return fmt.Errorf("%w: the head Gemm has alpha=%v beta=%v", ErrStructure, alpha, beta)
	}
	f := int64(len(h.W))
	wantW := []int64{1, f}
	if transB == 0 {
		wantW = []int64{f, 1}
	}
	if !equalDims(wt.Dims, wantW) {
		return fmt.Errorf("%w: head weight %q has shape %v; a %d-feature head needs %v", ErrStructure, wt.GetName(), wt.Dims, f, wantW)
	}
	if n := numel(bt.Dims); n != 1 {
		return fmt.Errorf("%w: head bias %q has shape %v; want one value", ErrStructure, bt.GetName(), bt.Dims)
	}
	if err := float32Head(wt, bt); err != nil {
		return err
	}
	// Gemm computes alpha·x·W + beta·c, so store W/alpha and b/beta.
	w := make([]float32, f)
	for i, v := range h.W {
		w[i] = v / alpha
	}
	nt, err := build.Tensor(wt.GetName(), wt.Dims, w)
	if err != nil {
		return err
	}
	nb, err := build.Tensor(bt.GetName(), bt.Dims, []float32{h.B / beta})
	if err != nil {
		return err
	}
	proto.Reset(wt)
	proto.Merge(wt, nt)
	proto.Reset(bt)
	proto.Merge(bt, nb)
	return nil
}

func equalDims(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func numel(d []int64) int64 {
	n := int64(1)
	for _, v := range d {
		n *= v
	}
	return n
}

// ReadHead returns the head a model serves with (logit = W·features + B, with the
// Gemm's alpha and beta folded in) and a digest of everything else in the model: the
// backbone. Two models that differ only in their head share the backbone digest, so
// features cached for one serve the other; weights stored inline or in side files give
// the same digest (side files are read into the model before hashing).
func ReadHead(modelPath, logit, features string) (*Head, string, error) {
	hm, err := loadHead(modelPath, logit, features)
	if err != nil {
		return nil, "", err
	}
	m, g, n, wt, bt := hm.m, hm.g, hm.n, hm.wt, hm.bt
	if err := resolveExternal(g, filepath.Dir(modelPath)); err != nil {
		return nil, "", fmt.Errorf("%s: %w", modelPath, err)
	}
	w, err := floats(wt)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", modelPath, err)
	}
	b, err := floats(bt)
	if err != nil || len(b) != 1 {
		return nil, "", fmt.Errorf("%s: %w: head bias", modelPath, ErrStructure)
	}
	alpha, beta := attrFloat(n, "alpha", 1), attrFloat(n, "beta", 1)
	h := &Head{W: make([]float32, len(w)), B: b[0] * beta}
	for i, v := range w {
		h.W[i] = v * alpha
	}
	// Backbone digest: the model with the head's values blanked, serialised
	// deterministically.
	for _, t := range g.Initializer {
		t.DataLocation = nil
		if t.GetName() == wt.GetName() || t.GetName() == bt.GetName() {
			t.RawData, t.FloatData = nil, nil
		}
	}
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(raw)
	return h, hex.EncodeToString(sum[:]), nil
}

// floats decodes a float32 initializer stored as raw_data or float_data.
func floats(t *pb.TensorProto) ([]float32, error) {
	if t.GetDataType() != int32(pb.TensorProto_FLOAT) {
		return nil, fmt.Errorf("%w: %s is not float32", ErrStructure, t.GetName())
	}
	if len(t.FloatData) > 0 {
		return append([]float32(nil), t.FloatData...), nil
	}
	if len(t.RawData)%4 != 0 {
		return nil, fmt.Errorf("%w: %s has %d raw bytes", ErrStructure, t.GetName(), len(t.RawData))
	}
	out := make([]float32, len(t.RawData)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.RawData[4*i:]))
	}
	return out, nil
}
