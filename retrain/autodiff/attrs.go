package autodiff

import (
	"sort"

	pb "github.com/diagd/diagd/internal/onnx/onnxpb"
)

// attrs reads a node's attributes and remembers which ones a rule looked at, so that an
// attribute the rule does not know about is refused rather than ignored.
type attrs struct {
	n    *pb.NodeProto
	by   map[string]*pb.AttributeProto
	used map[string]bool
	err  error
}

func newAttrs(n *pb.NodeProto) *attrs {
	a := &attrs{n: n, by: map[string]*pb.AttributeProto{}, used: map[string]bool{}}
	for _, at := range n.Attribute {
		a.by[at.GetName()] = at
	}
	return a
}

func (a *attrs) get(name string) *pb.AttributeProto {
	a.used[name] = true
	return a.by[name]
}

func (a *attrs) has(name string) bool { return a.by[name] != nil }

func (a *attrs) int(name string, def int64) int64 {
	if at := a.get(name); at != nil {
		return at.GetI()
	}
	return def
}

func (a *attrs) ints(name string, def []int64) []int64 {
	if at := a.get(name); at != nil {
		return append([]int64(nil), at.Ints...)
	}
	return def
}

func (a *attrs) float(name string, def float32) float32 {
	if at := a.get(name); at != nil {
		return at.GetF()
	}
	return def
}

func (a *attrs) str(name, def string) string {
	if at := a.get(name); at != nil {
		return string(at.S)
	}
	return def
}

// fail records the first problem with an attribute.
func (a *attrs) fail(attr, format string, args ...any) {
	if a.err == nil {
		a.err = unsupported(a.n, attr, format, args...)
	}
}

// ignore marks attributes that do not change the gradient (e.g. BatchNormalization's
// momentum in frozen mode).
func (a *attrs) ignore(names ...string) {
	for _, n := range names {
		a.used[n] = true
	}
}

// check returns the first recorded problem, or an error naming an attribute nobody read.
func (a *attrs) check() error {
	if a.err != nil {
		return a.err
	}
	var unknown []string
	for name := range a.by {
		if !a.used[name] {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return unsupported(a.n, unknown[0], "not handled by the backward rule")
	}
	return nil
}
