package ortenv_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/diagd/diagd/internal/onnx/build"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/internal/testenv"
)

func TestTensorRTOptions(t *testing.T) {
	cache := filepath.Join(t.TempDir(), "engines")
	kv, err := ortenv.TensorRTOptions(ortenv.Options{DeviceID: 1, TRTCacheDir: cache, TRTFP16: true})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"device_id": "1", "trt_engine_cache_enable": "1", "trt_engine_cache_path": cache,
		"trt_timing_cache_enable": "1", "trt_timing_cache_path": cache, "trt_fp16_enable": "1"}
	for k, v := range want {
		if kv[k] != v {
			t.Errorf("%s = %q, want %q", k, kv[k], v)
		}
	}
	if len(kv) != len(want) {
		t.Errorf("options %v, want exactly %v", kv, want)
	}
	if _, err := ortenv.TensorRTOptions(ortenv.Options{TRTCacheDir: cache}); err != nil {
		t.Fatal(err)
	}
	// The default cache follows XDG_CACHE_HOME (the service unit sets /var/cache/diagd).
	xdg := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", xdg)
	kv, err = ortenv.TensorRTOptions(ortenv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if kv["trt_engine_cache_path"] != filepath.Join(xdg, "diagd", "tensorrt") || kv["trt_fp16_enable"] != "" {
		t.Errorf("defaults: %v", kv)
	}
}

// TestProbeProvidersOnTheCPUBuild: the CPU build CI uses offers CPU only, and says why
// the GPU providers are not there.
func TestProbeProvidersOnTheCPUBuild(t *testing.T) {
	testenv.ORT(t)
	st, err := ortenv.ProbeProviders(testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 3 || st[2].Provider != ortenv.CPU || !st[2].OK {
		t.Fatalf("statuses %+v", st)
	}
	for _, s := range st[:2] {
		if s.OK || !strings.Contains(s.Reason, "no "+map[ortenv.Provider]string{ortenv.CUDA: ortenv.CUDAProviderLib, ortenv.TensorRT: ortenv.TensorRTProviderLib}[s.Provider]) {
			t.Errorf("%s: %+v, want not OK naming its missing provider library", s.Provider, s)
		}
	}
}

// TestOpenSessionDataFindsExternalWeights: a model read into memory resolves its
// model.onnx_data against the folder it came from, and computes what the file does.
func TestOpenSessionDataFindsExternalWeights(t *testing.T) {
	testenv.ORT(t)
	log := testenv.Logger(t)
	dir := t.TempDir()
	g := build.New("ext")
	x := g.Input("x", build.Float, 1, 4)
	w := make([]float32, 4*300)
	for i := range w {
		w[i] = float32(i%7) - 3
	}
	y := g.Op("MatMul", []string{x, g.Init("w", []int64{4, 300}, w)})
	g.Identity(y, "y")
	g.Output("y", build.Float, 1, 300)
	path := filepath.Join(dir, "model.onnx")
	if err := g.SaveExternal(path, "model.onnx_data", 1024); err != nil {
		t.Fatal(err)
	}
	m, err := build.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if m.Graph.Initializer[0].RawData != nil {
		t.Fatal("weights were not written externally")
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	run := func(s *ortenv.Session) []float32 {
		in, _ := ort.NewTensor(ort.NewShape(1, 4), []float32{1, 2, 3, 4})
		out, _ := ort.NewEmptyTensor[float32](ort.NewShape(1, 300))
		defer in.Destroy()
		defer out.Destroy()
		if err := s.Run([]ort.Value{in}, []ort.Value{out}); err != nil {
			t.Fatal(err)
		}
		return append([]float32(nil), out.GetData()...)
	}
	byPath, err := ortenv.OpenSession(log, path, []string{"x"}, []string{"y"}, ortenv.Options{Provider: ortenv.CPU})
	if err != nil {
		t.Fatal(err)
	}
	defer byPath.Destroy()
	byData, err := ortenv.OpenSessionData(log, path, raw, dir, []string{"x"}, []string{"y"}, ortenv.Options{Provider: ortenv.CPU})
	if err != nil {
		t.Fatal(err)
	}
	defer byData.Destroy()
	a, b := run(byPath), run(byData)
	for i := range a {
		want := float32(0)
		for k := 0; k < 4; k++ {
			want += float32(k+1) * w[k*300+i]
		}
		if a[i] != want || b[i] != want {
			t.Fatalf("y[%d]: path %v, data %v, want %v", i, a[i], b[i], want)
		}
	}
	// Without the folder ORT cannot find the weights: the folder is what makes it work.
	if _, err := ortenv.OpenSessionData(log, path, raw, t.TempDir(), []string{"x"}, []string{"y"}, ortenv.Options{Provider: ortenv.CPU}); err == nil {
		t.Error("opened with the wrong external-data folder")
	}
}

func TestDTypeNote(t *testing.T) {
	for _, c := range []struct {
		p    ortenv.Provider
		fp16 bool
		o    ortenv.Options
		want string
	}{
		{ortenv.CPU, true, ortenv.Options{}, "float16 model on the CPU provider"},
		{ortenv.TensorRT, true, ortenv.Options{}, "DIAGD_TRT_FP16=true"},
		{ortenv.TensorRT, true, ortenv.Options{TRTFP16: true}, ""},
		{ortenv.CUDA, true, ortenv.Options{}, ""},
		{ortenv.CPU, false, ortenv.Options{}, ""},
	} {
		got := ortenv.DTypeNote(c.p, c.fp16, c.o)
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("%s fp16 %v %+v: %q, want %q", c.p, c.fp16, c.o, got, c.want)
		}
	}
}
