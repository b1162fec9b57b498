// Package ortenv owns the one piece of global state diagd has: the ONNX Runtime
// environment. It finds the shared library, initialises it once, and opens sessions on
// the best execution provider that works (TensorRT, then CUDA, then CPU), saying why.
package ortenv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// LibEnv is the variable that names the ONNX Runtime shared library explicitly.
const LibEnv = "DIAGD_ORT_LIB"

// LibName is the file name setup.sh installs next to the binary.
const LibName = "libonnxruntime.so"

// Candidates lists, in order, where the library is looked for: an explicit
// DIAGD_ORT_LIB (so a user can point at any build, e.g. NVIDIA's for a Jetson, even when
// setup's builds sit next to the binary); next to the executable, the GPU build
// (GPULibName) when its CUDA provider can load here, then the CPU build (LibName); the
// same two in ../lib beside it (a /usr/local or /opt install); then the dynamic loader's
// own search path.
func Candidates() []string {
	var c []string
	for _, k := range candidates() {
		if k.skip == "" {
			c = append(c, k.path)
		}
	}
	return c
}

// candidate is one place to look, with the reason it is passed over ("" to try it).
type candidate struct{ path, skip string }

func candidates() []candidate {
	dir := ""
	if exe, err := os.Executable(); err == nil {
		if r, err := filepath.EvalSymlinks(exe); err == nil {
			exe = r
		}
		dir = filepath.Dir(exe)
	}
	return candidatesIn(os.Getenv(LibEnv), dir)
}

// candidatesIn is candidates for an explicit library (may be "") and the binary's folder
// (may be "").
func candidatesIn(explicit, exeDir string) []candidate {
	var c []candidate
	if explicit != "" {
		c = append(c, candidate{path: explicit})
	}
	if exeDir != "" {
		for _, d := range []string{exeDir, filepath.Join(exeDir, "..", "lib")} {
			if gpu := filepath.Join(d, GPULibName); exists(gpu) {
				c = append(c, candidate{path: gpu, skip: gpuSkipReason(gpu)})
			}
			c = append(c, candidate{path: filepath.Join(d, LibName)})
		}
	}
	return append(c, candidate{path: LibName + ".1"}, candidate{path: LibName})
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

var (
	initOnce    sync.Once
	initPath    string // as found (may be a symlink)
	initReal    string // the file loaded: initPath with symlinks resolved
	initErr     error
	initSkipped []string // libraries passed over, with the reason
)

// Loaded is the file Init loaded: its path with symlinks resolved, in whose folder ONNX
// Runtime looks for its provider libraries. Call it after Init has returned.
func Loaded() string { return initReal }

// PassedOver lists the libraries Init passed over before the one it loaded, each with
// why (a GPU build whose CUDA libraries are missing, a path that does not exist). Call
// it after Init has returned.
func PassedOver() []string { return initSkipped }

// Init initialises the ONNX Runtime environment once per process and returns the
// library's path as it was found (Loaded gives the file behind a symlink). Later calls
// return the first call's result.
func Init(log *slog.Logger) (string, error) {
	initOnce.Do(func() { initPath, initReal, initErr = initialise(log) })
	return initPath, initErr
}

func initialise(log *slog.Logger) (found, loaded string, err error) {
	if p := os.Getenv(LibEnv); p != "" {
		// An explicit library that is not there is a mistake to report, not a reason to
		// run silently on another build (a CPU library instead of the GPU one).
		if _, err := os.Stat(p); err != nil {
			return "", "", fmt.Errorf("%s=%s: %w", LibEnv, p, err)
		}
	}
	var tried []string
	for _, k := range candidates() {
		p := k.path
		if k.skip != "" {
			log.Info("onnx runtime GPU build passed over", "library", p, "reason", k.skip)
			tried = append(tried, p+": "+k.skip)
			continue
		}
		// A bare name goes to the loader's search path; a path must exist to be worth a dlopen.
		found := p
		if strings.ContainsRune(p, '/') {
			if _, err := os.Stat(p); err != nil {
				tried = append(tried, p+": "+errors.Unwrap(err).Error())
				continue
			}
			// ORT looks for its provider libraries beside the path it was loaded from, so
			// a symlink (bin/libonnxruntime-gpu.so → .deps/...) is loaded by its target.
			if r, err := filepath.EvalSymlinks(p); err == nil {
				p = r
			}
		}
		ort.SetSharedLibraryPath(p)
		if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
			tried = append(tried, p+": "+err.Error())
			continue
		}
		log.Info("onnx runtime loaded", "library", found, "file", p, "version", ort.GetVersion())
		initSkipped = tried
		return found, p, nil
	}
	return "", "", fmt.Errorf("ONNX Runtime library not found; run scripts/setup.sh, or set %s to libonnxruntime.so (tried: %s)",
		LibEnv, strings.Join(tried, "; "))
}

// Provider names an execution provider choice.
type Provider string

// The execution providers diagd knows. Auto tries TensorRT, then CUDA, then CPU.
const (
	Auto     Provider = "auto"
	TensorRT Provider = "tensorrt"
	CUDA     Provider = "cuda"
	CPU      Provider = "cpu"
)

// ParseProvider checks a provider name from configuration.
func ParseProvider(s string) (Provider, error) {
	switch p := Provider(strings.ToLower(strings.TrimSpace(s))); p {
	case Auto, TensorRT, CUDA, CPU:
		return p, nil
	case "":
		return Auto, nil
	}
	return "", fmt.Errorf("unknown execution provider %q (want auto, tensorrt, cuda or cpu)", s)
}

// Chain is the list of providers to try for a choice, best first.
func (p Provider) Chain() []Provider {
	if p == Auto {
		return []Provider{TensorRT, CUDA, CPU}
	}
	return []Provider{p}
}

// Options tune sessions.
type Options struct {
	Provider    Provider
	DeviceID    int    // GPU index for CUDA and TensorRT
	Threads     int    // intra-op threads on CPU; 0 lets ORT choose
	TRTCacheDir string // TensorRT engine and timing cache; "" is $XDG_CACHE_HOME/diagd/tensorrt
	TRTFP16     bool   // let TensorRT build float16 kernels

	modelData []byte // set by OpenSessionData: the model is opened from memory
	modelDir  string // and its external data lives here
}

// Session is an open session and the provider it actually runs on.
type Session struct {
	*ort.DynamicAdvancedSession
	Provider Provider
	Path     string
}

// OpenSession creates a session from a model path (so external weight files resolve)
// on the first provider in the chain that works. With a single explicit provider a
// failure is an error; under auto each failure is logged and the next one tried.
func OpenSession(log *slog.Logger, path string, inputs, outputs []string, o Options) (*Session, error) {
	if _, err := Init(log); err != nil {
		return nil, err
	}
	if o.Provider == "" {
		o.Provider = Auto
	}
	var reasons []string
	for _, p := range o.Provider.Chain() {
		s, err := openWith(path, inputs, outputs, p, o)
		err = explain(p, err)
		if err == nil {
			log.Info("onnx session ready", "model", path, "provider", string(p), "requested", string(o.Provider),
				"skipped", strings.Join(reasons, "; "))
			return &Session{DynamicAdvancedSession: s, Provider: p, Path: path}, nil
		}
		reasons = append(reasons, fmt.Sprintf("%s: %v", p, err))
		if p != CPU {
			log.Info("execution provider unavailable", "model", path, "provider", string(p), "reason", err.Error())
		}
	}
	return nil, fmt.Errorf("%s: no execution provider could load the model: %s", path, strings.Join(reasons, "; "))
}

// explain shortens ORT's long loader error for the common case of a CPU-only build,
// where the GPU providers' shared libraries are simply not there, and replaces a GPU
// build's bare "Failed to load shared library" with the libraries that are missing.
func explain(p Provider, err error) error {
	if err == nil || p == CPU {
		return err
	}
	if strings.Contains(err.Error(), "libonnxruntime_providers_shared.so") && strings.Contains(err.Error(), "cannot open shared object") {
		return fmt.Errorf("this ONNX Runtime build has no %s provider (no libonnxruntime_providers_shared.so beside the library; see README, GPU)", p)
	}
	if msg := err.Error(); strings.Contains(msg, "Failed to load shared library") || strings.Contains(msg, "Failed to load library") {
		if reason := providerFileReason(initReal, p); reason != "" {
			return fmt.Errorf("%s (see README, GPU)", reason)
		}
	}
	return err
}

// SessionOptions builds ORT session options for one provider.
func SessionOptions(p Provider, o Options) (*ort.SessionOptions, error) {
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			so.Destroy()
		}
	}()
	if o.Threads > 0 {
		if err := so.SetIntraOpNumThreads(o.Threads); err != nil {
			return nil, err
		}
	}
	switch p {
	case TensorRT:
		kv, err := TensorRTOptions(o)
		if err != nil {
			return nil, err
		}
		trt, err := ort.NewTensorRTProviderOptions()
		if err != nil {
			return nil, err
		}
		defer trt.Destroy()
		if err := trt.Update(kv); err != nil {
			return nil, err
		}
		if err := so.AppendExecutionProviderTensorRT(trt); err != nil {
			return nil, err
		}
	case CUDA:
		cuda, err := ort.NewCUDAProviderOptions()
		if err != nil {
			return nil, err
		}
		defer cuda.Destroy()
		if err := cuda.Update(map[string]string{"device_id": strconv.Itoa(o.DeviceID)}); err != nil {
			return nil, err
		}
		if err := so.AppendExecutionProviderCUDA(cuda); err != nil {
			return nil, err
		}
	case CPU:
	default:
		return nil, fmt.Errorf("unknown execution provider %q", p)
	}
	ok = true
	return so, nil
}

// TensorRTOptions is the TensorRT provider's option map for o. The engine cache is always
// on: an engine takes minutes to build, and without a cache every start pays it again.
// The timing cache beside it makes rebuilds for new shapes faster. FP16 lets TensorRT
// choose float16 kernels for a float32 model (and is needed for a float16 one to run in
// float16 at all: without it TensorRT widens float16 weights to float32).
func TensorRTOptions(o Options) (map[string]string, error) {
	kv := map[string]string{"device_id": strconv.Itoa(o.DeviceID)}
	dir := o.TRTCacheDir
	if dir == "" {
		if d, err := os.UserCacheDir(); err == nil {
			dir = filepath.Join(d, "diagd", "tensorrt")
		}
	}
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("tensorrt engine cache: %w", err)
		}
		kv["trt_engine_cache_enable"] = "1"
		kv["trt_engine_cache_path"] = dir
		kv["trt_timing_cache_enable"] = "1"
		kv["trt_timing_cache_path"] = dir
	}
	if o.TRTFP16 {
		kv["trt_fp16_enable"] = "1"
	}
	if o.modelDir != "" {
		// A model opened from memory: TensorRT's parser finds external weights here.
		kv["trt_onnx_model_folder_path"] = o.modelDir
	}
	return kv, nil
}

func openWith(path string, inputs, outputs []string, p Provider, o Options) (*ort.DynamicAdvancedSession, error) {
	so, err := SessionOptions(p, o)
	if err != nil {
		return nil, err
	}
	defer so.Destroy()
	if o.modelData != nil {
		// ORT resolves external data of an in-memory model against this folder.
		if err := so.AddSessionConfigEntry("session.model_external_initializers_file_folder_path", o.modelDir); err != nil {
			return nil, err
		}
		return ort.NewDynamicAdvancedSessionWithONNXData(o.modelData, inputs, outputs, so)
	}
	return ort.NewDynamicAdvancedSession(path, inputs, outputs, so)
}

// OpenSessionData is OpenSession for a model held in memory (e.g. one whose graph diagd
// rewrote) whose external weight files are in dir, the folder of the file it came from.
// path names the model in logs and errors.
func OpenSessionData(log *slog.Logger, path string, data []byte, dir string, inputs, outputs []string, o Options) (*Session, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%s: no model data", path)
	}
	o.modelData, o.modelDir = data, dir
	return OpenSession(log, path, inputs, outputs, o)
}

// DTypeNote says what running a model whose float inputs and outputs are float16 (fp16)
// or float32 means on provider p, or "" when the pair suits. Nothing here is fatal: ORT
// runs float16 models on the CPU by wrapping nodes that lack float16 kernels in casts.
func DTypeNote(p Provider, fp16 bool, o Options) string {
	switch {
	case fp16 && p == CPU:
		return "a float16 model on the CPU provider: ONNX Runtime wraps every node without a float16 CPU kernel in casts, " +
			"so it runs several times slower than a float32 export and rounds differently; export float32 for CPU, or run on cuda or tensorrt"
	case fp16 && p == TensorRT && !o.TRTFP16:
		return "a float16 model on TensorRT without DIAGD_TRT_FP16=true: TensorRT may widen its float16 layers to float32; set DIAGD_TRT_FP16=true"
	}
	return ""
}

// Describe returns the model's inputs and outputs as ORT sees them. It loads the model
// on CPU with graph optimisation off, which is quick even for large models and does not
// trigger a TensorRT engine build.
func Describe(log *slog.Logger, path string) (in, out []ort.InputOutputInfo, err error) {
	if _, err := Init(log); err != nil {
		return nil, nil, err
	}
	if _, err := os.Stat(path); err != nil {
		return nil, nil, err
	}
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, nil, err
	}
	defer so.Destroy()
	if err := so.SetGraphOptimizationLevel(ort.GraphOptimizationLevelDisableAll); err != nil {
		return nil, nil, err
	}
	in, out, err = ort.GetInputOutputInfoWithOptions(path, so)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: ONNX Runtime cannot read the model: %w", path, err)
	}
	return in, out, nil
}

// RunContext is Run that ends early when ctx does: ONNX Runtime's RunOptions terminate
// flag makes the run in flight fail at its next operator, so a stop or a cancelled job
// does not wait for a long call (an SDXL UNet step takes seconds on a CPU). The error
// then wraps ctx.Err().
func (s *Session) RunContext(ctx context.Context, inputs, outputs []ort.Value) error {
	if ctx.Done() == nil {
		return s.Run(inputs, outputs)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: not run: %w", s.Path, err)
	}
	ro, err := ort.NewRunOptions()
	if err != nil {
		return err
	}
	terminated := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(terminated)
		ro.Terminate()
	})
	defer func() {
		if !stop() {
			<-terminated // Terminate is running or ran: let it finish before Destroy
		}
		ro.Destroy()
	}()
	err = s.RunWithOptions(inputs, outputs, ro)
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%s: run terminated: %w", s.Path, ctx.Err())
	}
	return err
}
