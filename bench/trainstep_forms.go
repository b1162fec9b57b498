package main

import (
	"math/rand/v2"

	ort "github.com/yalue/onnxruntime_go"
	"google.golang.org/protobuf/proto"

	"github.com/diagd/diagd/internal/onnx/build"
	pb "github.com/diagd/diagd/internal/onnx/onnxpb"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/retrain/autodiff"
)

// forwardConv is the convolution itself, the baseline of its gradient forms.
func forwardConv(s autodiff.ConvShape) *pb.ModelProto {
	g := build.New("conv")
	x := g.Input("x", build.Float, s.N, s.C, s.H, s.W)
	w := g.Input("w", build.Float, s.M, s.C/s.Group, s.KH, s.KW)
	y := g.Op("Conv", []string{x, w}, build.Ints("kernel_shape", s.KH, s.KW), build.Ints("strides", s.SH, s.SW),
		build.Ints("dilations", s.DH, s.DW), build.Ints("pads", s.Pads[:]...), build.Int("group", s.Group))
	g.Identity(y, "y")
	g.Output("y", build.Float, s.N, s.M, s.OH, s.OW)
	m, _ := g.Model()
	return m
}

// timeGraph runs a graph on random inputs of its declared shapes, best of rounds.
func timeGraph(m *pb.ModelProto, outs []string, s autodiff.ConvShape, o ortenv.Options, rounds int) (float64, error) {
	data, err := proto.Marshal(m)
	if err != nil {
		return 0, err
	}
	so, err := ortenv.SessionOptions(ortenv.CPU, o)
	if err != nil {
		return 0, err
	}
	defer so.Destroy()
	var names []string
	var ins []ort.Value
	rng := rand.New(rand.NewPCG(3, 4))
	for _, vi := range m.Graph.Input {
		var dims []int64
		for _, d := range vi.GetType().GetTensorType().GetShape().GetDim() {
			dims = append(dims, d.GetDimValue())
		}
		t, err := ort.NewEmptyTensor[float32](ort.NewShape(dims...))
		if err != nil {
			return 0, err
		}
		defer t.Destroy()
		for i := range t.GetData() {
			t.GetData()[i] = float32(rng.NormFloat64())
		}
		names = append(names, vi.GetName())
		ins = append(ins, t)
	}
	sess, err := ort.NewDynamicAdvancedSessionWithONNXData(data, names, outs, so)
	if err != nil {
		return 0, err
	}
	defer sess.Destroy()
	return bestOf(rounds+1, func() error {
		res := make([]ort.Value, len(outs))
		if err := sess.Run(ins, res); err != nil {
			return err
		}
		for _, v := range res {
			v.Destroy()
		}
		return nil
	})
}
