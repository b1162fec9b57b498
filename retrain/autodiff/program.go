package autodiff

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	pb "github.com/diagd/diagd/internal/onnx/onnxpb"
)

// Role says what a training graph's input or output is for.
type Role int

// Roles of inputs and outputs.
const (
	RoleData        Role = iota // a forward input (the batch)
	RoleLabels                  // InputLabels
	RolePixelTarget             // InputPixelTargets
	RolePixelWeight             // InputPixelWeights
	RoleLossScale               // InputLossScale
	RoleLossWeight              // InputPixelLossW or InputImageLossW
	RoleLR                      // InputLR
	RoleStep                    // InputStep
	RoleTrainable               // a trained parameter
	RoleOptState                // optimizer state of the parameter named by Of
	RoleBNStat                  // a running mean or variance of a BatchNormalization with trainable scale or bias
	RoleGrad                    // accumulated gradient of the parameter named by Of
	RoleLoss                    // OutputLoss, OutputImageLoss, OutputPixelLoss
	RoleOutput                  // a forward output (logits)
	RoleNext                    // the next value of the input named by Of
)

var roleNames = map[Role]string{RoleData: "data", RoleLabels: "labels", RolePixelTarget: "pixel-target",
	RolePixelWeight: "pixel-weight", RoleLossScale: "loss-scale", RoleLossWeight: "loss-weight", RoleLR: "lr",
	RoleStep: "step", RoleTrainable: "trainable", RoleOptState: "optimizer-state", RoleBNStat: "bn-stat",
	RoleGrad: "grad", RoleLoss: "loss", RoleOutput: "output", RoleNext: "next"}

func (r Role) String() string { return roleNames[r] }

// Tensor is one input or output of a training graph.
type Tensor struct {
	Name  string
	Role  Role
	Shape []int64
	Int64 bool   // InputStep is int64; everything else has the graph's float type
	Of    string // RoleNext: the input it replaces; RoleOptState, RoleGrad: the parameter
}

// Kind is what a Program computes.
type Kind int

// Program kinds.
const (
	// Fused runs forward, backward and the optimizer update in one graph.
	Fused Kind = iota
	// Gradient runs forward and backward and adds the gradients to accumulators
	// (RoleGrad in, RoleNext out); use it per micro-batch, then Apply once.
	Gradient
	// Apply updates parameters and optimizer state from accumulated gradients.
	Apply
	kindVJP // tests: the gradients of sum(dy·output)
)

func (k Kind) String() string { return [...]string{"fused", "gradient", "apply", "vjp"}[k] }

// Program is a built training graph and the description of its interface.
type Program struct {
	Kind    Kind
	Model   *pb.ModelProto
	Inputs  []Tensor
	Outputs []Tensor
	// Convs records each differentiated Conv node's shape and the gradient forms chosen
	// for it (by node name).
	Convs map[string]ConvChoice
}

// ConvChoice is one convolution's shape and the forms used for its gradients.
type ConvChoice struct {
	Shape ConvShape
	Forms ConvForms
}

// Bytes serialises the model.
func (p *Program) Bytes() ([]byte, error) {
	b, err := proto.Marshal(p.Model)
	if err != nil {
		return nil, fmt.Errorf("autodiff: serialising the %s graph: %w", p.Kind, err)
	}
	return b, nil
}

// InputNames and OutputNames list the interface in order (for opening a session).
func (p *Program) InputNames() []string  { return tensorNames(p.Inputs) }
func (p *Program) OutputNames() []string { return tensorNames(p.Outputs) }

func tensorNames(ts []Tensor) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Name
	}
	return out
}

// Input returns the input with the given name.
func (p *Program) Input(name string) (Tensor, bool) {
	for _, t := range p.Inputs {
		if t.Name == name {
			return t, true
		}
	}
	return Tensor{}, false
}
