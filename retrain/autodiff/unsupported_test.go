package autodiff

import (
	"errors"
	"strings"
	"testing"

	"github.com/diagd/diagd/internal/onnx/build"
)

// An operator without a rule, or an attribute value a rule does not handle, on the
// gradient path is refused with the node, operator and attribute named.
func TestUnsupportedIsRefused(t *testing.T) {
	cases := []struct {
		name, op, attr string
		build          func(f *fdGraph) string
	}{
		{"no rule", "Tanh", "", func(f *fdGraph) string { return f.g.Op("Tanh", []string{f.param("x", 1, 0, 2, 3)}) }},
		{"auto_pad", "Conv", "auto_pad", func(f *fdGraph) string {
			return f.g.Op("Conv", []string{f.param("x", 1, 0, 1, 1, 4, 4), f.param("w", 1, 0, 1, 1, 3, 3)},
				build.String("auto_pad", "SAME_UPPER"))
		}},
		{"storage order", "MaxPool", "storage_order", func(f *fdGraph) string {
			return f.g.Op("MaxPool", []string{f.param("x", 1, 0, 1, 1, 4, 4)}, build.Ints("kernel_shape", 2, 2), build.Int("storage_order", 1))
		}},
		{"cubic resize", "Resize", "mode", func(f *fdGraph) string {
			return f.g.Op("Resize", []string{f.param("x", 1, 0, 1, 1, 4, 4), "", f.g.Const([]int64{4}, []float32{1, 1, 2, 2})},
				build.String("mode", "cubic"))
		}},
		{"strided slice", "Slice", "steps", func(f *fdGraph) string {
			return f.g.Op("Slice", []string{f.param("x", 1, 0, 6), f.g.Const([]int64{1}, []int64{0}), f.g.Const([]int64{1}, []int64{6}),
				f.g.Const([]int64{1}, []int64{0}), f.g.Const([]int64{1}, []int64{2})})
		}},
		{"unknown attribute", "Relu", "mystery", func(f *fdGraph) string {
			return f.g.Op("Relu", []string{f.param("x", 1, 0, 3)}, build.Int("mystery", 1))
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFD(build.Float, 1)
			out := c.build(f)
			f.g.Output(out, build.Float)
			m, err := f.g.Model()
			if err != nil {
				t.Fatal(err)
			}
			_, err = buildVJP(m, Config{Trainable: f.params, Batch: 1}, out)
			var ue *UnsupportedError
			if !errors.As(err, &ue) {
				t.Fatalf("got %v, want an UnsupportedError", err)
			}
			if ue.Op != c.op || ue.Attr != c.attr || ue.Node == "" || !strings.Contains(err.Error(), c.op) {
				t.Fatalf("error %q names op %q attr %q node %q; want op %q attr %q", err, ue.Op, ue.Attr, ue.Node, c.op, c.attr)
			}
			if wantInput := c.name == "strided slice"; ue.Input != wantInput {
				t.Errorf("error %q: Input %v, want %v", err, ue.Input, wantInput)
			}
			t.Log(err)
		})
	}
}

// An operator without a rule off the gradient path (here on a frozen branch) is fine.
func TestUnsupportedOffThePathIsFine(t *testing.T) {
	f := newFD(build.Double, 1)
	frozen := f.g.Op("Tanh", []string{f.constant("c", []int64{3}, []float64{1, 2, 3})})
	out := f.g.Mul(f.param("x", 1, 0, 3), frozen)
	f.check(t, out, fdOpts{})
}
