package main

import (
	"math/rand/v2"
	"slices"
	"time"

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

// graphRun is an open session on random inputs of its graph's declared shapes.
type graphRun struct {
	sess       *ort.DynamicAdvancedSession
	ins        []ort.Value
	outs       int
	walls, cpu []float64
}

func openGraph(m *pb.ModelProto, outs []string, o ortenv.Options, entries map[string]string) (*graphRun, error) {
	data, err := proto.Marshal(m)
	if err != nil {
		return nil, err
	}
	so, err := sessionOptions(o, entries)
	if err != nil {
		return nil, err
	}
	defer so.Destroy()
	r := &graphRun{outs: len(outs)}
	var names []string
	rng := rand.New(rand.NewPCG(3, 4))
	for _, vi := range m.Graph.Input {
		var dims []int64
		for _, d := range vi.GetType().GetTensorType().GetShape().GetDim() {
			dims = append(dims, d.GetDimValue())
		}
		t, err := ort.NewEmptyTensor[float32](ort.NewShape(dims...))
		if err != nil {
			r.close()
			return nil, err
		}
		for i := range t.GetData() {
			t.GetData()[i] = float32(rng.NormFloat64())
		}
		names = append(names, vi.GetName())
		r.ins = append(r.ins, t)
	}
	if r.sess, err = ort.NewDynamicAdvancedSessionWithONNXData(data, names, outs, so); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

// time runs the graph once and records the seconds.
func (r *graphRun) time() error {
	res := make([]ort.Value, r.outs)
	start, c0 := time.Now(), cpuSeconds()
	if err := r.sess.Run(r.ins, res); err != nil {
		return err
	}
	r.walls = append(r.walls, time.Since(start).Seconds())
	r.cpu = append(r.cpu, cpuSeconds()-c0)
	for _, v := range res {
		v.Destroy()
	}
	return nil
}

// best is the fastest run after the first (warm-up), by wall and by CPU time.
func (r *graphRun) best() stepTiming {
	return stepTiming{wall: slices.Min(r.walls[1:]), cpu: slices.Min(r.cpu[1:])}
}

func (r *graphRun) close() {
	if r.sess != nil {
		r.sess.Destroy()
	}
	for _, v := range r.ins {
		v.Destroy()
	}
}
