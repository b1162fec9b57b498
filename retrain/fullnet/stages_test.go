package fullnet

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/diagd/diagd/internal/onnx/build"
	pb "github.com/diagd/diagd/internal/onnx/onnxpb"
	"github.com/diagd/diagd/internal/onnx/zoo"
)

func model(t testing.TB, c zoo.ResNetConfig) *pb.ModelProto {
	t.Helper()
	g, err := c.Build()
	if err != nil {
		t.Fatal(err)
	}
	m, err := g.Model()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func prefixes(names []string) map[string]int {
	out := map[string]int{}
	for _, n := range names {
		out[strings.SplitN(n, ".", 2)[0]]++
	}
	return out
}

// The paper's ResNet-50: head is fc, last is layer4 + fc, all is every weight and
// BatchNormalization scale and bias (161 tensors: 53 convolutions, 53 BatchNormalizations
// with two each, fc with two), never a running statistic.
func TestResolveResNet50(t *testing.T) {
	m := model(t, zoo.ResNet50(1))
	want := map[Setting]map[string]int{
		Head: {"fc": 2},
		Last: {"layer4": 30, "fc": 2},
		All:  {"conv1": 1, "bn1": 2, "layer1": 30, "layer2": 39, "layer3": 57, "layer4": 30, "fc": 2},
	}
	for s, w := range want {
		tr, err := Resolve(m, []string{zoo.DetectorLogit}, s)
		if err != nil {
			t.Fatal(err)
		}
		got := prefixes(tr.Names)
		if len(got) != len(w) {
			t.Errorf("%s: %v, want %v", s, got, w)
		}
		for k, v := range w {
			if got[k] != v {
				t.Errorf("%s: %s has %d tensors, want %d (%v)", s, k, got[k], v, got)
			}
		}
		for _, n := range tr.Names {
			if strings.Contains(n, "running_") {
				t.Errorf("%s trains %s", s, n)
			}
		}
		t.Logf("%s: %s, %d values", s, tr.Describe, tr.Params)
	}
}

// The zoo's small backbone (two stages): last is layer2 + fc.
func TestResolveSmallResNet(t *testing.T) {
	m := model(t, zoo.SmallResNet(32, 32, 1))
	tr, err := Resolve(m, []string{zoo.DetectorLogit}, Last)
	if err != nil {
		t.Fatal(err)
	}
	if got := prefixes(tr.Names); len(got) != 2 || got["layer2"] != 9 || got["fc"] != 2 {
		t.Errorf("last: %v (%v)", got, tr.Names)
	}
}

// Structure, not names: the same network with every initializer renamed as a
// BatchNorm-folding export would (onnx::Conv_N) resolves to the same tensors.
func TestResolveByStructure(t *testing.T) {
	m := model(t, zoo.SmallResNet(32, 32, 1))
	want, err := Resolve(m, []string{zoo.DetectorLogit}, Last)
	if err != nil {
		t.Fatal(err)
	}
	rename := map[string]string{}
	for i, init := range m.Graph.Initializer {
		old := init.GetName()
		rename[old] = fmt.Sprintf("onnx::Conv_%d", 100+i)
		init.Name = &[]string{rename[old]}[0]
	}
	for _, n := range m.Graph.Node {
		for i, v := range n.Input {
			if r, ok := rename[v]; ok {
				n.Input[i] = r
			}
		}
	}
	got, err := Resolve(m, []string{zoo.DetectorLogit}, Last)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Names) != len(want.Names) {
		t.Fatalf("renamed: %d tensors, want %d", len(got.Names), len(want.Names))
	}
	for i, n := range want.Names {
		if got.Names[i] != rename[n] {
			t.Errorf("tensor %d: %s, want %s", i, got.Names[i], rename[n])
		}
	}
}

// A network without downsampling has no stages to tell apart: last is refused with the
// reason; head and all still resolve.
func TestResolveRefusesWithoutStages(t *testing.T) {
	g := build.New("flat")
	x := g.Input("input", build.Float, "batch", 3, 8, 8)
	w := g.Init("c.weight", []int64{4, 3, 3, 3}, make([]float32, 4*3*9))
	y := g.Relu(g.Conv2D(x, w, "", 3, 1, 1))
	f := g.Flatten(g.GlobalAveragePool(y), 1)
	fw := g.Init("fc.weight", []int64{1, 4}, make([]float32, 4))
	fb := g.Init("fc.bias", []int64{1}, []float32{0})
	g.Identity(g.Gemm(f, fw, fb), "logit")
	g.Output("logit", build.Float, "batch", 1)
	m, err := g.Model()
	if err != nil {
		t.Fatal(err)
	}
	_, err = Resolve(m, []string{"logit"}, Last)
	if !errors.Is(err, ErrNoStages) || !strings.Contains(err.Error(), "strided") {
		t.Errorf("last on a flat network: %v", err)
	}
	for s, n := range map[Setting]int{Head: 2, All: 3} {
		tr, err := Resolve(m, []string{"logit"}, s)
		if err != nil || len(tr.Names) != n {
			t.Errorf("%s: %v %v", s, tr.Names, err)
		}
	}
}
