package autodiff

import (
	"fmt"
	"math"
)

// Config says what a training graph trains and how.
type Config struct {
	// Trainable names the float initializers to train; every other initializer stays a
	// constant of the graph.
	Trainable []string
	// Batch is the batch size the graph is built for: it replaces the symbolic (or
	// unknown) first axis of the forward graph's inputs. All shapes are static.
	Batch int
	// InputShapes optionally gives full shapes for inputs with other symbolic axes.
	InputShapes map[string][]int64
	Loss        Loss
	Optimizer   Optimizer
	BatchNorm   BNMode
	// ConvPolicy picks each convolution's gradient forms; nil uses DefaultConvPolicy.
	ConvPolicy ConvPolicy
	// Outputs lists forward outputs the step also returns, beside the loss's logits.
	Outputs []string
	// StopGradient names forward values that pass no gradient back to what produced
	// them (PyTorch's detach()): the losses reaching the model through them do not train
	// what lies before them. Each must be the output of a forward node.
	StopGradient []string
}

// Loss is binary cross-entropy with logits on an image-level output, a per-pixel
// output, or both (total = a·pixel + b·image, a and b fed per step).
type Loss struct {
	// Logit is the image-level logit output ([N] or [N,1]); "" for none. Labels are fed
	// as InputLabels, [N], 0 or 1 (soft labels work too).
	Logit string
	// PosWeight multiplies the positive term (PyTorch's pos_weight); 0 or 1 give the
	// paper's plain mean.
	PosWeight float64
	// PixelLogit is a per-pixel logit output (any shape, e.g. [N,1,H,W]); "" for none.
	// Targets and weights of the same shape are fed as InputPixelTargets and
	// InputPixelWeights; the loss is mean(weight·BCE).
	PixelLogit string
}

func (l Loss) posWeight() float64 {
	if l.PosWeight == 0 {
		return 1
	}
	return l.PosWeight
}

// OptimizerKind selects the update rule.
type OptimizerKind int

// Optimizers, with PyTorch's semantics.
const (
	Adam OptimizerKind = iota
	AdamW
	SGD
)

// Optimizer configures the update inside the graph. The learning rate is fed per step
// (InputLR), so schedules live in the caller.
type Optimizer struct {
	Kind        OptimizerKind
	Beta1       float64 // Adam: default 0.9
	Beta2       float64 // Adam: default 0.999
	Eps         float64 // Adam: default 1e-8
	WeightDecay float64 // Adam: L2 added to the gradient; AdamW: decoupled; SGD: L2
	Momentum    float64 // SGD; 0 keeps no state
}

// PaperAdam is the paper's optimizer: Adam, betas (0.9, 0.999), eps 1e-8, no weight
// decay (learning rate 1e-4, fed per step).
func PaperAdam() Optimizer { return Optimizer{Kind: Adam, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8} }

func (o Optimizer) withDefaults() Optimizer {
	if o.Kind != SGD {
		if o.Beta1 == 0 {
			o.Beta1 = 0.9
		}
		if o.Beta2 == 0 {
			o.Beta2 = 0.999
		}
		if o.Eps == 0 {
			o.Eps = 1e-8
		}
	}
	return o
}

// stateSuffixes are the per-parameter state tensors an optimizer keeps.
func (o Optimizer) stateSuffixes() []string {
	switch o.Kind {
	case Adam, AdamW:
		return []string{SuffixAdamM, SuffixAdamV}
	case SGD:
		if o.Momentum != 0 {
			return []string{SuffixMomentum}
		}
	}
	return nil
}

func (o Optimizer) check() error {
	bad := func(v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) || v < 0 }
	switch {
	case o.Kind < Adam || o.Kind > SGD:
		return fmt.Errorf("autodiff: unknown optimizer kind %d", o.Kind)
	case bad(o.WeightDecay) || bad(o.Momentum) || bad(o.Eps):
		return fmt.Errorf("autodiff: optimizer settings must be finite and non-negative: %+v", o)
	case o.Kind != SGD && (o.Beta1 < 0 || o.Beta1 >= 1 || o.Beta2 < 0 || o.Beta2 >= 1):
		return fmt.Errorf("autodiff: Adam betas must lie in [0, 1): %v, %v", o.Beta1, o.Beta2)
	}
	return nil
}

// BNMode says how BatchNormalization layers with trainable scale or bias run.
type BNMode int

// BatchNorm modes. Layers whose scale and bias are both frozen always run frozen.
const (
	// BNTrain normalises with the batch's statistics and updates the running statistics
	// (PyTorch's model.train(); the paper's first epoch).
	BNTrain BNMode = iota
	// BNFrozen normalises with the running statistics, which stay fixed, while scale and
	// bias still train (the paper from its second epoch on).
	BNFrozen
)

func (m BNMode) String() string {
	if m == BNFrozen {
		return "frozen"
	}
	return "train"
}

// Names of the training graph's own inputs and outputs, and suffixes of per-parameter
// tensors (appended to the trainable's name).
const (
	InputLabels       = "labels"            // [N] image labels
	InputPixelTargets = "pixel_targets"     // per-pixel targets, shape of Loss.PixelLogit
	InputPixelWeights = "pixel_weights"     // per-pixel weights, same shape
	InputLossScale    = "loss_scale"        // [1]: this micro-batch's share of the batch (1 unsplit)
	InputPixelLossW   = "loss_pixel_weight" // [1]: a (both losses only)
	InputImageLossW   = "loss_image_weight" // [1]: b (both losses only)
	InputLR           = "lr"                // [1]: learning rate
	InputStep         = "step"              // int64 [1]: the 1-based number of this update (Adam)
	OutputLoss        = "loss"              // [1]: loss_scale·(a·pixel + b·image)
	OutputImageLoss   = "loss_image"        // [1]: mean image BCE (both losses only)
	OutputPixelLoss   = "loss_pixel"        // [1]: mean weighted pixel BCE (both losses only)
	SuffixNext        = ".next"             // output carrying an input's next value
	SuffixGrad        = ".grad"             // accumulated gradient (gradient and apply graphs)
	SuffixAdamM       = ".adam_m"           // Adam first moment
	SuffixAdamV       = ".adam_v"           // Adam second moment
	SuffixMomentum    = ".momentum"         // SGD momentum buffer
)
