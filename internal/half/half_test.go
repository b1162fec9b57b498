package half_test

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/diagd/diagd/internal/half"
	"github.com/diagd/diagd/internal/onnx/build"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/internal/testenv"
)

func TestKnownValuesAndExactRoundTrip(t *testing.T) {
	for f, want := range map[float32]uint16{1: 0x3c00, -2: 0xc000, 65504: 0x7bff, 65520: 0x7c00, 0.1: 0x2e66,
		1e-8: 0, 5.960464477539063e-08: 1, 6.103515625e-05: 0x0400, float32(math.Inf(-1)): 0xfc00} {
		if got := half.FromFloat32(f); got != want {
			t.Errorf("FromFloat32(%g) = %#04x, want %#04x", f, got, want)
		}
	}
	for h := 0; h < 1<<16; h++ {
		f := half.ToFloat32(uint16(h))
		if f != f { // NaN
			continue
		}
		if back := half.FromFloat32(f); back != uint16(h) {
			t.Fatalf("%#04x -> %g -> %#04x", h, f, back)
		}
	}
}

// TestMatchesONNXRuntimeCast: Encode rounds exactly as ORT's Cast to float16 does, and
// Decode as its Cast back, over values spread across float16's whole range (normal,
// subnormal, overflowing) and ties.
func TestMatchesONNXRuntimeCast(t *testing.T) {
	testenv.ORT(t)
	const n = 1 << 16
	g := build.New("cast")
	x := g.Input("x", build.Float, n)
	h := g.Cast(x, build.Float16)
	g.Identity(h, "h")
	g.Output("h", build.Float16, n)
	g.Identity(g.Cast(h, build.Float), "back")
	g.Output("back", build.Float, n)
	path := filepath.Join(t.TempDir(), "cast.onnx")
	if err := g.Save(path); err != nil {
		t.Fatal(err)
	}
	s, err := ortenv.OpenSession(testenv.Logger(t), path, []string{"x"}, []string{"h", "back"}, ortenv.Options{Provider: ortenv.CPU})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()
	rng := rand.New(rand.NewPCG(1, 2))
	xs := make([]float32, n)
	for i := range xs {
		switch i % 4 {
		case 0: // anywhere from 2^-30 to 2^20, either sign
			xs[i] = float32(math.Ldexp(1+rng.Float64(), rng.IntN(50)-30))
		case 1: // exact ties: the midpoint of two neighbouring float16 values (12 bits, exact in float32)
			h := uint16(rng.IntN(0x7bff))
			xs[i] = (half.ToFloat32(h) + half.ToFloat32(h+1)) / 2
		default:
			xs[i] = float32(rng.NormFloat64() * 100)
		}
		if rng.IntN(2) == 0 {
			xs[i] = -xs[i]
		}
	}
	in, err := ort.NewTensor(ort.NewShape(n), xs)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Destroy()
	ortHalf := make([]byte, 2*n)
	hv, err := ort.NewCustomDataTensor(ort.NewShape(n), ortHalf, ort.TensorElementDataTypeFloat16)
	if err != nil {
		t.Fatal(err)
	}
	defer hv.Destroy()
	back, err := ort.NewEmptyTensor[float32](ort.NewShape(n))
	if err != nil {
		t.Fatal(err)
	}
	defer back.Destroy()
	if err := s.Run([]ort.Value{in}, []ort.Value{hv, back}); err != nil {
		t.Fatal(err)
	}
	ours := make([]byte, 2*n)
	half.Encode(ours, xs)
	decoded := make([]float32, n)
	half.Decode(decoded, ortHalf)
	for i := range xs {
		if ours[2*i] != ortHalf[2*i] || ours[2*i+1] != ortHalf[2*i+1] {
			t.Fatalf("x=%g: Encode %#02x%02x, ORT %#02x%02x", xs[i], ours[2*i+1], ours[2*i], ortHalf[2*i+1], ortHalf[2*i])
		}
		if decoded[i] != back.GetData()[i] {
			t.Fatalf("x=%g: Decode %g, ORT %g", xs[i], decoded[i], back.GetData()[i])
		}
	}
}
