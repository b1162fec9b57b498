package autodiff

import (
	"fmt"

	pb "github.com/diagd/diagd/internal/onnx/onnxpb"
)

// UnsupportedError says which node, operator and attribute the differentiator cannot
// handle. It is returned instead of a graph whose gradient might be silently wrong.
type UnsupportedError struct {
	Node   string // the node's name (or its first output when unnamed)
	Op     string
	Attr   string // the attribute or input at fault; "" when the operator itself has no rule
	Input  bool   // Attr names an input (e.g. Slice's steps), not an attribute
	Detail string
}

func (e *UnsupportedError) Error() string {
	switch {
	case e.Attr == "":
		return fmt.Sprintf("autodiff: node %q: operator %s: %s", e.Node, e.Op, e.Detail)
	case e.Input:
		return fmt.Sprintf("autodiff: node %q: operator %s: input %s: %s", e.Node, e.Op, e.Attr, e.Detail)
	default:
		return fmt.Sprintf("autodiff: node %q: operator %s: attribute %s: %s", e.Node, e.Op, e.Attr, e.Detail)
	}
}

// nodeName is a node's name, or a stand-in built from its first output.
func nodeName(n *pb.NodeProto) string {
	if n.GetName() != "" {
		return n.GetName()
	}
	if len(n.Output) > 0 {
		return "<producer of " + n.Output[0] + ">"
	}
	return "<unnamed>"
}

func unsupported(n *pb.NodeProto, attr, format string, a ...any) error {
	isAttr := false
	for _, at := range n.Attribute {
		isAttr = isAttr || at.GetName() == attr
	}
	return &UnsupportedError{Node: nodeName(n), Op: n.GetOpType(), Attr: attr, Input: attr != "" && !isAttr,
		Detail: fmt.Sprintf(format, a...)}
}
