package fullnet

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	pb "github.com/diagd/diagd/internal/onnx/onnxpb"
)

// Setting names which parameters train.
type Setting string

// Settings, cheapest first.
const (
	// Head trains the last layer: the parameters after the last point every path to the
	// logit passes through (for a ResNet, the Gemm on the pooled features).
	Head Setting = "head"
	// Last trains the last stage and the head: the parameters after the input of the
	// block holding the network's last downsampling (ResNet-50: layer4 and fc).
	Last Setting = "last"
	// All trains every parameter (the paper: nothing is frozen, spec §1.6).
	All Setting = "all"
)

// Settings lists the settings, cheapest first.
var Settings = []Setting{Head, Last, All}

// ParseSetting reads a setting name.
func ParseSetting(s string) (Setting, error) {
	if slices.Contains(Settings, Setting(s)) {
		return Setting(s), nil
	}
	return "", fmt.Errorf("unknown trainable setting %q (want head, last or all)", s)
}

// ErrNoStages is returned for --trainable last on a network whose stages cannot be
// told apart.
var ErrNoStages = errors.New("no recognisable stages")

// Trainables is what a setting trains in one model.
type Trainables struct {
	Setting Setting
	Names   []string // initializer names, in graph order
	// Params is the number of trained values.
	Params int64
	// Describe says what was chosen, for people ("layer4 (30 tensors) + fc (2)").
	Describe string
}

// Resolve finds the initializers a setting trains on the way to the outputs (the logit,
// and a segmentation output when it trains too), from the graph's structure rather than
// from names (a torchvision export with BatchNormalization folded into Conv names its
// weights onnx::Conv_123). Parameters are the weights and biases of Conv, ConvTranspose,
// Gemm and MatMul (and the bias added to a MatMul) and the scale and bias of
// BatchNormalization; running statistics and other constants never train.
//
// The model is walked in topological order from its inputs to the logit, keeping the set
// of values still needed later. Where that set is a single value, every path passes
// through it: a cut (a ResNet block's output, the pooled features). Head is what follows
// the last cut with parameters after it; Last what follows the last cut before the final
// downsampling (the last Conv or pool with a stride above 1).
func Resolve(m *pb.ModelProto, outputs []string, s Setting) (Trainables, error) {
	w, err := walk(m.GetGraph(), outputs)
	if err != nil {
		return Trainables{}, err
	}
	t := Trainables{Setting: s}
	switch s {
	case All:
		t.Names = w.paramsAfter(-1)
	case Head:
		t.Names = w.paramsAfter(w.lastCutWithParams())
	case Last:
		c, err := w.lastStageCut()
		if err != nil {
			return Trainables{}, err
		}
		t.Names = w.paramsAfter(c)
	default:
		return Trainables{}, fmt.Errorf("unknown trainable setting %q", s)
	}
	if len(t.Names) == 0 {
		return Trainables{}, fmt.Errorf("%s: no trainable parameters found on the way to %q (Conv, Gemm, MatMul or BatchNormalization weights stored as initializers)", s, outputs)
	}
	for _, n := range t.Names {
		t.Params += numel(w.inits[n].GetDims())
	}
	t.Describe = describe(t.Names, w.paramsAfter(w.lastCutWithParams()))
	return t, nil
}

// graphWalk is the order of the nodes on the way to the logit, where the cuts are, and
// which parameters each node reads.
type graphWalk struct {
	nodes   []*pb.NodeProto // on a path to the logit, in graph order
	params  [][]string      // parameters each node reads
	cuts    []cut
	strided []int // indices into nodes of Conv and pools with a stride above 1
	inits   map[string]*pb.TensorProto
}

type cut struct {
	value string
	after int // index of the node after which it is the only live value
}

func walk(g *pb.GraphProto, outputs []string) (*graphWalk, error) {
	w := &graphWalk{inits: map[string]*pb.TensorProto{}}
	for _, t := range g.GetInitializer() {
		w.inits[t.GetName()] = t
	}
	w.nodes = onPath(g, outputs)
	for _, o := range outputs {
		if !slices.ContainsFunc(w.nodes, func(n *pb.NodeProto) bool { return slices.Contains(n.Output, o) }) {
			return nil, fmt.Errorf("no node produces the output %q", o)
		}
	}
	data := dataValues(g, w.nodes, w.inits)
	uses := map[string]int{}
	for _, n := range w.nodes {
		for _, v := range n.Input {
			if data[v] {
				uses[v]++
			}
		}
	}
	live := map[string]bool{}
	for _, in := range g.GetInput() {
		if data[in.GetName()] && uses[in.GetName()] > 0 {
			live[in.GetName()] = true
		}
	}
	prod := producers(w.nodes)
	for i, n := range w.nodes {
		w.params = append(w.params, paramInputs(n, w.inits, prod))
		for _, v := range n.Input {
			if data[v] {
				if uses[v]--; uses[v] == 0 {
					delete(live, v)
				}
			}
		}
		for _, o := range n.Output {
			if data[o] && (uses[o] > 0 || slices.Contains(outputs, o)) {
				live[o] = true
			}
		}
		if len(live) == 1 {
			for v := range live {
				w.cuts = append(w.cuts, cut{value: v, after: i})
			}
		}
		if strided(n) {
			w.strided = append(w.strided, i)
		}
	}
	return w, nil
}

// onPath returns the nodes the outputs depend on, in graph order (ONNX graphs are
// topologically sorted).
func onPath(g *pb.GraphProto, outputs []string) []*pb.NodeProto {
	prod := map[string]int{}
	for i, n := range g.Node {
		for _, o := range n.Output {
			prod[o] = i
		}
	}
	need := map[int]bool{}
	stack := append([]string(nil), outputs...)
	for len(stack) > 0 {
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		i, ok := prod[v]
		if !ok || need[i] {
			continue
		}
		need[i] = true
		stack = append(stack, g.Node[i].Input...)
	}
	var out []*pb.NodeProto
	for i, n := range g.Node {
		if need[i] {
			out = append(out, n)
		}
	}
	return out
}

// dataValues marks the values computed from the graph's inputs, not counting shape
// arithmetic (Shape and what is computed from it and constants alone).
func dataValues(g *pb.GraphProto, nodes []*pb.NodeProto, inits map[string]*pb.TensorProto) map[string]bool {
	data := map[string]bool{}
	for _, in := range g.GetInput() {
		if inits[in.GetName()] == nil {
			data[in.GetName()] = true
		}
	}
	for _, n := range nodes {
		if n.GetOpType() == "Shape" || n.GetOpType() == "Size" {
			continue
		}
		for _, v := range n.Input {
			if data[v] {
				for _, o := range n.Output {
					if o != "" {
						data[o] = true
					}
				}
				break
			}
		}
	}
	return data
}

func producers(nodes []*pb.NodeProto) map[string]*pb.NodeProto {
	p := map[string]*pb.NodeProto{}
	for _, n := range nodes {
		for _, o := range n.Output {
			p[o] = n
		}
	}
	return p
}

// paramInputs lists the float initializers a node reads as trainable weights.
func paramInputs(n *pb.NodeProto, inits map[string]*pb.TensorProto, prod map[string]*pb.NodeProto) []string {
	var idx []int
	switch n.GetOpType() {
	case "Conv", "ConvTranspose", "Gemm":
		idx = []int{1, 2}
	case "BatchNormalization":
		idx = []int{1, 2}
	case "MatMul":
		idx = []int{0, 1}
	case "Add":
		// a Linear exported as MatMul + Add: the bias trains with the weight
		for i, v := range n.Input {
			if p := prod[v]; p != nil && p.GetOpType() == "MatMul" && len(n.Input) == 2 {
				idx = []int{1 - i}
			}
		}
	}
	var out []string
	for _, i := range idx {
		if i >= len(n.Input) {
			continue
		}
		t := inits[n.Input[i]]
		if t != nil && pb.TensorProto_DataType(t.GetDataType()) == pb.TensorProto_FLOAT {
			out = append(out, n.Input[i])
		}
	}
	return out
}

func strided(n *pb.NodeProto) bool {
	switch n.GetOpType() {
	case "Conv", "MaxPool", "AveragePool":
	default:
		return false
	}
	for _, a := range n.Attribute {
		if a.GetName() == "strides" {
			return slices.ContainsFunc(a.GetInts(), func(s int64) bool { return s > 1 })
		}
	}
	return false
}

// paramsAfter lists the parameters read by nodes after index i (all for i = -1), once
// each, in graph order.
func (w *graphWalk) paramsAfter(i int) []string {
	var out []string
	seen := map[string]bool{}
	for k := i + 1; k < len(w.nodes); k++ {
		for _, p := range w.params[k] {
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	return out
}

// lastCutWithParams is the node index of the last cut that parameters follow.
func (w *graphWalk) lastCutWithParams() int {
	for k := len(w.cuts) - 1; k >= 0; k-- {
		if len(w.paramsAfter(w.cuts[k].after)) > 0 {
			return w.cuts[k].after
		}
	}
	return -1
}

// lastStageCut is the node index of the last cut before the final downsampling: the
// input of the last stage.
func (w *graphWalk) lastStageCut() (int, error) {
	if len(w.strided) == 0 {
		return 0, fmt.Errorf("%w: the network has no strided convolution or pooling, so its last stage cannot be told from the rest (use --trainable head or all)", ErrNoStages)
	}
	last := w.strided[len(w.strided)-1]
	for k := len(w.cuts) - 1; k >= 0; k-- {
		if w.cuts[k].after < last {
			if c := w.cuts[k].after; c < 0 || len(w.paramsAfter(c)) == len(w.paramsAfter(-1)) {
				break
			}
			return w.cuts[k].after, nil
		}
	}
	return 0, fmt.Errorf("%w: no single value feeds the block with the last downsampling (%s node %q), so the last stage has no clear input (use --trainable head or all)",
		ErrNoStages, w.nodes[last].GetOpType(), w.nodes[last].GetName())
}

// describe names the chosen parameters by their leading name component when they have
// one (torchvision: layer4, fc), else counts them.
func describe(names, head []string) string {
	groups := map[string]int{}
	var order []string
	for _, n := range names {
		g := n
		if i := strings.IndexByte(n, '.'); i > 0 {
			g = n[:i]
		}
		if slices.Contains(head, n) && !strings.Contains(n, ".") {
			g = "head"
		}
		if groups[g] == 0 {
			order = append(order, g)
		}
		groups[g]++
	}
	if len(order) > 6 {
		return fmt.Sprintf("%d tensors (%d of them the head)", len(names), len(head))
	}
	parts := make([]string, len(order))
	for i, g := range order {
		parts[i] = fmt.Sprintf("%s (%d)", g, groups[g])
	}
	return strings.Join(parts, " + ")
}

func numel(d []int64) int64 {
	n := int64(1)
	for _, v := range d {
		n *= v
	}
	return n
}
