// Package build writes valid ONNX files from Go. Tests use it to make real models with
// the exact input and output names, shapes and dtypes of the exported ones (no weights can
// be downloaded here); tools use it to write trained detectors back as ONNX.
package build

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/diagd/diagd/internal/atomicfile"
	pb "github.com/diagd/diagd/internal/onnx/onnxpb"
)

// DType is an ONNX tensor element type.
type DType = pb.TensorProto_DataType

// The element types the project uses.
const (
	Float   DType = pb.TensorProto_FLOAT
	Double  DType = pb.TensorProto_DOUBLE
	Float16 DType = pb.TensorProto_FLOAT16
	Int32   DType = pb.TensorProto_INT32
	Int64   DType = pb.TensorProto_INT64
	Bool    DType = pb.TensorProto_BOOL
)

// Opset is the default ONNX opset: 17 has every operator the project needs
// (LayerNormalization included) and ORT 1.24 runs it natively.
const Opset = 17

// IRVersion 8 is the IR that opset 17 was released with.
const IRVersion = 8

// Graph accumulates nodes, initializers, inputs and outputs. Errors are sticky and
// reported by Model/Save, so model-building code reads as a straight list of layers.
type Graph struct {
	g      *pb.GraphProto
	opset  int64
	seq    int
	names  map[string]bool
	err    error
	meta   map[string]string
	params int64
}

// New starts a graph.
func New(name string) *Graph {
	return &Graph{g: &pb.GraphProto{Name: proto.String(name)}, opset: Opset, names: map[string]bool{}}
}

// SetOpset overrides the default opset (optimum exports use 14).
func (g *Graph) SetOpset(v int64) { g.opset = v }

// SetMetadata adds a key to the model's metadata_props.
func (g *Graph) SetMetadata(k, v string) {
	if g.meta == nil {
		g.meta = map[string]string{}
	}
	g.meta[k] = v
}

// Err returns the first error met while building.
func (g *Graph) Err() error { return g.err }

// Params is the number of float parameters in initializers.
func (g *Graph) Params() int64 { return g.params }

func (g *Graph) fail(format string, a ...any) {
	if g.err == nil {
		g.err = fmt.Errorf(format, a...)
	}
}

func (g *Graph) claim(name string) {
	if g.names[name] {
		g.fail("onnx build: name %q defined twice", name)
	}
	g.names[name] = true
}

// Fresh returns a new unique value name with the given stem.
func (g *Graph) Fresh(stem string) string {
	for {
		g.seq++
		n := stem + "_" + strconv.Itoa(g.seq)
		if !g.names[n] {
			return n
		}
	}
}

func valueInfo(name string, dt DType, dims []any) (*pb.ValueInfoProto, error) {
	shape := &pb.TensorShapeProto{}
	for _, d := range dims {
		var dim *pb.TensorShapeProto_Dimension
		switch v := d.(type) {
		case int:
			dim = &pb.TensorShapeProto_Dimension{Value: &pb.TensorShapeProto_Dimension_DimValue{DimValue: int64(v)}}
		case int64:
			dim = &pb.TensorShapeProto_Dimension{Value: &pb.TensorShapeProto_Dimension_DimValue{DimValue: v}}
		case string:
			dim = &pb.TensorShapeProto_Dimension{Value: &pb.TensorShapeProto_Dimension_DimParam{DimParam: v}}
		default:
			return nil, fmt.Errorf("onnx build: %s: dimension %v (%T) is neither a size nor a symbolic name", name, d, d)
		}
		shape.Dim = append(shape.Dim, dim)
	}
	return &pb.ValueInfoProto{
		Name: proto.String(name),
		Type: &pb.TypeProto{Value: &pb.TypeProto_TensorType{TensorType: &pb.TypeProto_Tensor{
			ElemType: proto.Int32(int32(dt)), Shape: shape,
		}}},
	}, nil
}

// Input declares a graph input. Dims are int (fixed) or string (symbolic, e.g. "batch").
func (g *Graph) Input(name string, dt DType, dims ...any) string {
	g.claim(name)
	vi, err := valueInfo(name, dt, dims)
	if err != nil {
		g.fail("%w", err)
		return name
	}
	g.g.Input = append(g.g.Input, vi)
	return name
}

// Output declares an existing value as a graph output.
func (g *Graph) Output(name string, dt DType, dims ...any) {
	if !g.names[name] {
		g.fail("onnx build: output %q is not produced by any node", name)
	}
	vi, err := valueInfo(name, dt, dims)
	if err != nil {
		g.fail("%w", err)
		return
	}
	g.g.Output = append(g.g.Output, vi)
}

// Attr is a node attribute.
type Attr = *pb.AttributeProto

// Int is an integer attribute.
func Int(name string, v int64) Attr {
	return &pb.AttributeProto{Name: proto.String(name), Type: pb.AttributeProto_INT.Enum(), I: proto.Int64(v)}
}

// String is a string attribute.
func String(name, v string) Attr {
	return &pb.AttributeProto{Name: proto.String(name), Type: pb.AttributeProto_STRING.Enum(), S: []byte(v)}
}

// TensorAttr is a tensor attribute (Constant's value).
func TensorAttr(name string, t *pb.TensorProto) Attr {
	return &pb.AttributeProto{Name: proto.String(name), Type: pb.AttributeProto_TENSOR.Enum(), T: t}
}

// Ints is an integer-list attribute.
func Ints(name string, v ...int64) Attr {
	return &pb.AttributeProto{Name: proto.String(name), Type: pb.AttributeProto_INTS.Enum(), Ints: v}
}

// Float32 is a float attribute.
func Float32(name string, v float32) Attr {
	return &pb.AttributeProto{Name: proto.String(name), Type: pb.AttributeProto_FLOAT.Enum(), F: proto.Float32(v)}
}

// Node appends a node with explicit output names.
func (g *Graph) Node(op string, inputs, outputs []string, attrs ...Attr) {
	for _, in := range inputs {
		if in != "" && !g.names[in] {
			g.fail("onnx build: %s node reads %q, which is not defined yet", op, in)
		}
	}
	for _, out := range outputs {
		g.claim(out)
	}
	g.g.Node = append(g.g.Node, &pb.NodeProto{
		OpType: proto.String(op), Input: inputs, Output: outputs, Attribute: attrs,
		Name: proto.String(g.Fresh(op)),
	})
}

// Op appends a node with one output and returns the output's generated name.
func (g *Graph) Op(op string, inputs []string, attrs ...Attr) string {
	out := g.Fresh(op)
	g.Node(op, inputs, []string{out}, attrs...)
	return out
}

// Tensor makes a TensorProto from Go data. data is []float32, []float64, []int64, []int32,
// []uint16 (fp16 bit patterns) or []bool.
func Tensor(name string, dims []int64, data any) (*pb.TensorProto, error) {
	n := int64(1)
	for _, d := range dims {
		n *= d
	}
	t := &pb.TensorProto{Name: proto.String(name), Dims: dims}
	var raw []byte
	var count int
	switch v := data.(type) {
	case []float32:
		t.DataType = proto.Int32(int32(Float))
		count = len(v)
		raw = make([]byte, 4*len(v))
		for i, f := range v {
			binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(f))
		}
	case []float64:
		t.DataType = proto.Int32(int32(Double))
		count = len(v)
		raw = make([]byte, 8*len(v))
		for i, f := range v {
			binary.LittleEndian.PutUint64(raw[8*i:], math.Float64bits(f))
		}
	case []uint16:
		t.DataType = proto.Int32(int32(Float16))
		count = len(v)
		raw = make([]byte, 2*len(v))
		for i, h := range v {
			binary.LittleEndian.PutUint16(raw[2*i:], h)
		}
	case []int64:
		t.DataType = proto.Int32(int32(Int64))
		count = len(v)
		raw = make([]byte, 8*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint64(raw[8*i:], uint64(x))
		}
	case []int32:
		t.DataType = proto.Int32(int32(Int32))
		count = len(v)
		raw = make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(raw[4*i:], uint32(x))
		}
	case []bool:
		t.DataType = proto.Int32(int32(Bool))
		count = len(v)
		raw = make([]byte, len(v))
		for i, b := range v {
			if b {
				raw[i] = 1
			}
		}
	default:
		return nil, fmt.Errorf("onnx build: tensor %s: unsupported data type %T", name, data)
	}
	if int64(count) != n {
		return nil, fmt.Errorf("onnx build: tensor %s: %d values for shape %v (%d)", name, count, dims, n)
	}
	t.RawData = raw
	return t, nil
}

// Init adds an initializer (a weight) and returns its name.
func (g *Graph) Init(name string, dims []int64, data any) string {
	t, err := Tensor(name, dims, data)
	if err != nil {
		g.fail("%w", err)
		return name
	}
	g.claim(name)
	if f, ok := data.([]float32); ok {
		g.params += int64(len(f))
	}
	if h, ok := data.([]uint16); ok {
		g.params += int64(len(h))
	}
	if d, ok := data.([]float64); ok {
		g.params += int64(len(d))
	}
	g.g.Initializer = append(g.g.Initializer, t)
	return name
}

// Extern adds an initializer of element type dt whose bytes are not in the model but at
// [offset, offset+length) of the file location beside it (the layout SaveExternal
// writes), and counts its parameters. Whoever calls it writes that file; a graph this
// big (an SDXL UNet) is built without ever holding its weights.
func (g *Graph) Extern(name string, dims []int64, dt DType, location string, offset, length int64) string {
	n := int64(1)
	for _, d := range dims {
		n *= d
	}
	g.claim(name)
	g.params += n
	g.g.Initializer = append(g.g.Initializer, &pb.TensorProto{
		Name: proto.String(name), Dims: dims, DataType: proto.Int32(int32(dt)),
		DataLocation: pb.TensorProto_EXTERNAL.Enum(),
		ExternalData: []*pb.StringStringEntryProto{
			{Key: proto.String("location"), Value: proto.String(location)},
			{Key: proto.String("offset"), Value: proto.String(strconv.FormatInt(offset, 10))},
			{Key: proto.String("length"), Value: proto.String(strconv.FormatInt(length, 10))},
		},
	})
	return name
}

// Const adds a small constant initializer with a generated name.
func (g *Graph) Const(dims []int64, data any) string {
	return g.Init(g.Fresh("const"), dims, data)
}

// Model returns the finished ModelProto.
func (g *Graph) Model() (*pb.ModelProto, error) {
	if g.err != nil {
		return nil, g.err
	}
	if len(g.g.Output) == 0 {
		return nil, errors.New("onnx build: graph has no outputs")
	}
	m := &pb.ModelProto{
		IrVersion:       proto.Int64(IRVersion),
		ProducerName:    proto.String("diagd"),
		ProducerVersion: proto.String("1"),
		Graph:           g.g,
		OpsetImport:     []*pb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(g.opset)}},
	}
	for k, v := range g.meta {
		m.MetadataProps = append(m.MetadataProps, &pb.StringStringEntryProto{Key: proto.String(k), Value: proto.String(v)})
	}
	return m, nil
}

// Bytes serialises the model.
func (g *Graph) Bytes() ([]byte, error) {
	m, err := g.Model()
	if err != nil {
		return nil, err
	}
	return proto.Marshal(m)
}

// Save writes the model to path atomically.
func (g *Graph) Save(path string) error {
	b, err := g.Bytes()
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return atomicfile.WriteFile(path, b, 0o644)
}

// SaveExternal writes the model to path with every initializer of at least threshold
// bytes moved into one side file named dataName in the same folder, laid out as
// optimum/onnx write it (location, offset, length). ORT resolves the side file relative
// to the model's path, so sessions must be created from the path.
func (g *Graph) SaveExternal(path, dataName string, threshold int) error {
	m, err := g.Model()
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	m = proto.Clone(m).(*pb.ModelProto)
	dataPath := filepath.Join(filepath.Dir(path), dataName)
	var offset int64
	err = atomicfile.Write(dataPath, 0o644, func(w io.Writer) error {
		for _, t := range m.Graph.Initializer {
			if len(t.RawData) < threshold {
				continue
			}
			// ONNX's writer aligns external tensors to 4096 only for mmap; plain offsets are valid too.
			if _, err := w.Write(t.RawData); err != nil {
				return err
			}
			t.ExternalData = []*pb.StringStringEntryProto{
				{Key: proto.String("location"), Value: proto.String(dataName)},
				{Key: proto.String("offset"), Value: proto.String(strconv.FormatInt(offset, 10))},
				{Key: proto.String("length"), Value: proto.String(strconv.Itoa(len(t.RawData)))},
			}
			t.DataLocation = pb.TensorProto_EXTERNAL.Enum()
			offset += int64(len(t.RawData))
			t.RawData = nil
		}
		return nil
	})
	if err != nil {
		return err
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return atomicfile.WriteFile(path, b, 0o644)
}

// Load reads an ONNX file's protobuf (without resolving external data).
func Load(path string) (*pb.ModelProto, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := &pb.ModelProto{}
	if err := proto.Unmarshal(b, m); err != nil {
		return nil, fmt.Errorf("%s: not an ONNX model: %w", path, err)
	}
	return m, nil
}
