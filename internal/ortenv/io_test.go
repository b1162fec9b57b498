package ortenv_test

import (
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/diagd/diagd/internal/ortenv"
)

// Lookup finds by name and, when the name is missing, says what was looked for and what
// the model has, in the one format every model check uses.
func TestLookup(t *testing.T) {
	outs := []ort.InputOutputInfo{
		{Name: "logit", DataType: ort.TensorElementDataTypeFloat},
		{Name: "features", DataType: ort.TensorElementDataTypeFloat16},
	}
	got, err := ortenv.Lookup(outs, "output", "features")
	if err != nil || got.Name != "features" || got.DataType != ort.TensorElementDataTypeFloat16 {
		t.Fatalf("Lookup(features) = %+v, %v", got, err)
	}
	_, err = ortenv.Lookup(outs, "output", "score")
	if want := `no output "score" (the model's outputs: "logit", "features")`; err == nil || err.Error() != want {
		t.Errorf("missing output: %v, want %q", err, want)
	}
	_, err = ortenv.Lookup(nil, "input", "x")
	if want := `no input "x" (the model's inputs: none)`; err == nil || err.Error() != want {
		t.Errorf("no inputs: %v, want %q", err, want)
	}
}

func TestNeedFloat(t *testing.T) {
	for _, tc := range []struct {
		dt       ort.TensorElementDataType
		fp16, ok bool
	}{
		{ort.TensorElementDataTypeFloat, false, true},
		{ort.TensorElementDataTypeFloat16, true, true},
		{ort.TensorElementDataTypeBFloat16, false, false},
		{ort.TensorElementDataTypeInt64, false, false},
	} {
		fp16, err := ortenv.NeedFloat(ort.InputOutputInfo{Name: "x", DataType: tc.dt})
		if fp16 != tc.fp16 || (err == nil) != tc.ok {
			t.Errorf("%v: fp16 %v, err %v; want fp16 %v, ok %v", tc.dt, fp16, err, tc.fp16, tc.ok)
		}
	}
}
