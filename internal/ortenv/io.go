package ortenv

import (
	"fmt"
	"strings"

	ort "github.com/yalue/onnxruntime_go"
)

// Lookup finds the input or output called name among a model's infos (as Describe
// returns them); kind ("input" or "output") names the side. Every model diagd opens is
// checked through it, so a missing name reads the same everywhere and lists what the
// model has instead:
//
//	no output "score" (the model's outputs: "logit", "features")
func Lookup(infos []ort.InputOutputInfo, kind, name string) (ort.InputOutputInfo, error) {
	for _, i := range infos {
		if i.Name == name {
			return i, nil
		}
	}
	return ort.InputOutputInfo{}, fmt.Errorf("no %s %q (the model's %ss: %s)", kind, name, kind, quoted(Names(infos)))
}

// Names lists the infos' names in order.
func Names(infos []ort.InputOutputInfo) []string {
	n := make([]string, 0, len(infos))
	for _, i := range infos {
		n = append(n, i.Name)
	}
	return n
}

func quoted(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}

// FloatType says whether dt is one of the two float types diagd feeds and reads at a
// model's boundary: float16 (fp16 true) or float32 (fp16 false). ok is false for any
// other type.
func FloatType(dt ort.TensorElementDataType) (fp16, ok bool) {
	switch dt {
	case ort.TensorElementDataTypeFloat:
		return false, true
	case ort.TensorElementDataTypeFloat16:
		return true, true
	}
	return false, false
}

// NeedFloat is FloatType for one input or output, with an error naming it when its type
// is neither.
func NeedFloat(i ort.InputOutputInfo) (fp16 bool, err error) {
	fp16, ok := FloatType(i.DataType)
	if !ok {
		return false, fmt.Errorf("%q is %v; want float32 or float16", i.Name, i.DataType)
	}
	return fp16, nil
}
