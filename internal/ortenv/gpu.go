package ortenv

import (
	"debug/elf"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	ort "github.com/yalue/onnxruntime_go"
)

// GPULibName is the GPU build's name next to the binary: scripts/setup.sh --gpu links it
// there beside the CPU build's LibName.
const GPULibName = "libonnxruntime-gpu.so"

// The provider libraries an ONNX Runtime GPU build keeps in the folder of its core
// library; the core loads them from there by these names.
const (
	CUDAProviderLib     = "libonnxruntime_providers_cuda.so"
	TensorRTProviderLib = "libonnxruntime_providers_tensorrt.so"
	SharedProviderLib   = "libonnxruntime_providers_shared.so"
)

// providerLib is the file each GPU provider lives in.
var providerLib = map[Provider]string{CUDA: CUDAProviderLib, TensorRT: TensorRTProviderLib}

// cuDNN is not in the ELF NEEDED list of ONNX Runtime ≥ 1.2x's CUDA provider: the
// provider opens "libcudnn.so.9" itself at first use (the name is built inline in its
// code), and every convolution needs it. Older builds (JetPack 5's, cuDNN 8) link it
// directly; then NEEDED already names it and nothing is added.
const lazyCuDNN = "libcudnn.so.9"

// MissingDeps returns the shared libraries that the provider library at path needs and
// that the dynamic loader cannot open here: its ELF NEEDED entries, plus cuDNN for the
// CUDA provider. Each is tried by name (ld.so.cache, LD_LIBRARY_PATH) and then in the
// provider's own folder, where some builds bundle them.
func MissingDeps(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	needed, err := f.ImportedLibraries()
	if err != nil {
		return nil, fmt.Errorf("%s: reading its NEEDED list: %w", path, err)
	}
	if filepath.Base(path) == CUDAProviderLib && !slices.ContainsFunc(needed, func(s string) bool {
		return strings.HasPrefix(s, "libcudnn")
	}) {
		needed = append(needed, lazyCuDNN)
	}
	dir := filepath.Dir(path)
	var missing []string
	for _, lib := range needed {
		if loadable(lib) || loadable(filepath.Join(dir, lib)) {
			continue
		}
		missing = append(missing, lib)
	}
	return missing, nil
}

// gpuSkipReason says why the GPU build at lib cannot run its CUDA provider here, or ""
// when it can: the provider files must sit beside the core and every library the CUDA
// provider needs must open. TensorRT is optional: a GPU build whose CUDA provider works
// is worth choosing even without TensorRT.
func gpuSkipReason(lib string) string {
	real, err := filepath.EvalSymlinks(lib)
	if err != nil {
		return err.Error()
	}
	dir := filepath.Dir(real)
	for _, f := range []string{SharedProviderLib, CUDAProviderLib} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return fmt.Sprintf("no %s beside %s", f, real)
		}
	}
	missing, err := MissingDeps(filepath.Join(dir, CUDAProviderLib))
	if err != nil {
		return err.Error()
	}
	if len(missing) > 0 {
		return "the CUDA provider cannot load; missing: " + strings.Join(missing, ", ")
	}
	return ""
}

// ProviderStatus is whether one execution provider can be used with the loaded library.
type ProviderStatus struct {
	Provider Provider
	OK       bool
	Reason   string // why not, when !OK
}

// ProbeProviders checks, for the library Init loaded, which execution providers can be
// appended to a session: CPU always; CUDA and TensorRT when their provider library is
// beside the core, every library it needs opens, and ONNX Runtime accepts it. No model
// is loaded and no GPU memory is taken beyond what loading the provider libraries does.
func ProbeProviders(log *slog.Logger) ([]ProviderStatus, error) {
	if _, err := Init(log); err != nil {
		return nil, err
	}
	lib := Loaded()
	var out []ProviderStatus
	for _, p := range []Provider{TensorRT, CUDA} {
		st := ProviderStatus{Provider: p}
		if reason := providerFileReason(lib, p); reason != "" {
			st.Reason = reason
		} else if err := appendProvider(p); err != nil {
			st.Reason = err.Error()
		} else {
			st.OK = true
		}
		out = append(out, st)
	}
	return append(out, ProviderStatus{Provider: CPU, OK: true}), nil
}

// providerFileReason checks the provider's file and its libraries before ONNX Runtime
// tries them, so the answer names the missing libraries instead of ORT's "Failed to
// load shared library". A library found on the loader path (a bare name) has no known
// folder; ORT is then asked directly.
func providerFileReason(lib string, p Provider) string {
	if !strings.ContainsRune(lib, '/') {
		return ""
	}
	path := filepath.Join(filepath.Dir(lib), providerLib[p])
	if _, err := os.Stat(path); err != nil {
		return fmt.Sprintf("this ONNX Runtime build has no %s provider (no %s beside %s)", p, providerLib[p], lib)
	}
	missing, err := MissingDeps(path)
	if err != nil {
		return err.Error()
	}
	if len(missing) > 0 {
		return fmt.Sprintf("%s cannot load; missing: %s", providerLib[p], strings.Join(missing, ", "))
	}
	return ""
}

// appendProvider appends p with default options to throwaway session options: that is
// the step which loads the provider library and its CUDA dependencies.
func appendProvider(p Provider) error {
	so, err := ort.NewSessionOptions()
	if err != nil {
		return err
	}
	defer so.Destroy()
	switch p {
	case CUDA:
		o, err := ort.NewCUDAProviderOptions()
		if err != nil {
			return err
		}
		defer o.Destroy()
		return so.AppendExecutionProviderCUDA(o)
	case TensorRT:
		o, err := ort.NewTensorRTProviderOptions()
		if err != nil {
			return err
		}
		defer o.Destroy()
		return so.AppendExecutionProviderTensorRT(o)
	}
	return nil
}
