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
// DIAGD_ORT_LIB (so a user can point at a GPU build even when the CPU build sits next to
// the binary; when it does not exist Init fails rather than fall back), then next to
// the executable, then ../lib beside it (a /usr/local or /opt
// install), then the dynamic loader's own search path.
func Candidates() []string {
	var c []string
	if p := os.Getenv(LibEnv); p != "" {
		c = append(c, p)
	}
	if exe, err := os.Executable(); err == nil {
		if r, err := filepath.EvalSymlinks(exe); err == nil {
			exe = r
		}
		dir := filepath.Dir(exe)
		c = append(c, filepath.Join(dir, LibName), filepath.Join(dir, "..", "lib", LibName))
	}
	return append(c, LibName+".1", LibName)
}

var (
	initOnce sync.Once
	initPath string
	initErr  error
)

// Init initialises the ONNX Runtime environment once per process and returns the
// library path used. Later calls return the first call's result.
func Init(log *slog.Logger) (string, error) {
	initOnce.Do(func() { initPath, initErr = initialise(log) })
	return initPath, initErr
}

func initialise(log *slog.Logger) (string, error) {
	if p := os.Getenv(LibEnv); p != "" {
		// An explicit library that is not there is a mistake to report, not a reason to
		// run silently on another build (a CPU library instead of the GPU one).
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", LibEnv, p, err)
		}
	}
	var tried []string
	for _, p := range Candidates() {
		// A bare name goes to the loader's search path; a path must exist to be worth a dlopen.
		if strings.ContainsRune(p, '/') {
			if _, err := os.Stat(p); err != nil {
				tried = append(tried, p+": "+errors.Unwrap(err).Error())
				continue
			}
		}
		ort.SetSharedLibraryPath(p)
		if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
			tried = append(tried, p+": "+err.Error())
			continue
		}
		log.Info("onnx runtime loaded", "library", p, "version", ort.GetVersion())
		return p, nil
	}
	return "", fmt.Errorf("ONNX Runtime library not found; run scripts/setup.sh, or set %s to libonnxruntime.so (tried: %s)",
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
	TRTCacheDir string // TensorRT engine cache; building engines takes minutes, so cache them
	TRTFP16     bool
}

// Session is an open session and the provider it actually runs on.
type Session struct {
	*ort.DynamicAdvancedSession
	Provider Provider
	Path     string
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
// where the GPU providers' shared libraries are simply not there.
func explain(p Provider, err error) error {
	if err == nil {
		return nil
	}
	if strings.Contains(err.Error(), "libonnxruntime_providers_shared.so") && strings.Contains(err.Error(), "cannot open shared object") {
		return fmt.Errorf("this ONNX Runtime build has no %s provider (no libonnxruntime_providers_shared.so beside the library; see README, GPU)", p)
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
		trt, err := ort.NewTensorRTProviderOptions()
		if err != nil {
			return nil, err
		}
		defer trt.Destroy()
		kv := map[string]string{"device_id": strconv.Itoa(o.DeviceID)}
		if o.TRTCacheDir == "" {
			// Building an engine takes minutes; without a cache every start pays it again.
			if dir, err := os.UserCacheDir(); err == nil {
				o.TRTCacheDir = filepath.Join(dir, "diagd", "tensorrt")
			}
		}
		if o.TRTCacheDir != "" {
			if err := os.MkdirAll(o.TRTCacheDir, 0o755); err != nil {
				return nil, fmt.Errorf("tensorrt engine cache: %w", err)
			}
			kv["trt_engine_cache_enable"] = "1"
			kv["trt_engine_cache_path"] = o.TRTCacheDir
		}
		if o.TRTFP16 {
			kv["trt_fp16_enable"] = "1"
		}
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

func openWith(path string, inputs, outputs []string, p Provider, o Options) (*ort.DynamicAdvancedSession, error) {
	so, err := SessionOptions(p, o)
	if err != nil {
		return nil, err
	}
	defer so.Destroy()
	return ort.NewDynamicAdvancedSession(path, inputs, outputs, so)
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
