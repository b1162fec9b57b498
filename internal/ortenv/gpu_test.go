package ortenv

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// sharedLib compiles an empty shared library at dir/name whose ELF NEEDED list holds
// libc and the given sonames. Each needed soname is linked against a stub built for the
// purpose, which is then deleted unless keep says otherwise, so the loader cannot open
// it: a real ELF file with real missing dependencies, as a GPU provider library on a
// machine without CUDA.
func sharedLib(t *testing.T, dir, name string, needed []string, keep bool) string {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Fatalf("gcc is needed to build test libraries (scripts/setup.sh installs it): %v", err)
	}
	stubs := t.TempDir()
	src := filepath.Join(stubs, "x.c")
	if err := os.WriteFile(src, []byte("int diagd_probe_symbol(void) { return 1; }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-shared", "-fPIC", "-o", filepath.Join(dir, name), src, "-Wl,--no-as-needed", "-L" + stubs}
	for _, so := range needed {
		stub := filepath.Join(stubs, so)
		if out, err := exec.Command(gcc, "-shared", "-fPIC", "-Wl,-soname,"+so, "-o", stub, src).CombinedOutput(); err != nil {
			t.Fatalf("gcc stub %s: %v\n%s", so, err, out)
		}
		args = append(args, "-l:"+so)
	}
	if out, err := exec.Command(gcc, args...).CombinedOutput(); err != nil {
		t.Fatalf("gcc %s: %v\n%s", name, err, out)
	}
	if keep {
		for _, so := range needed {
			if err := os.Rename(filepath.Join(stubs, so), filepath.Join(dir, so)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return filepath.Join(dir, name)
}

func TestMissingDepsNamesUnloadableLibraries(t *testing.T) {
	dir := t.TempDir()
	lib := sharedLib(t, dir, "libprobe.so", []string{"libdiagd_absent_cublas.so.13", "libdiagd_absent_cudart.so.13"}, false)
	missing, err := MissingDeps(lib)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"libdiagd_absent_cublas.so.13", "libdiagd_absent_cudart.so.13"}
	if !slices.Equal(missing, want) {
		t.Errorf("missing = %v, want %v (libc must load)", missing, want)
	}
	// Libraries bundled in the provider's own folder count as present.
	dir2 := t.TempDir()
	lib2 := sharedLib(t, dir2, "libprobe.so", []string{"libdiagd_bundled.so.1"}, true)
	if missing, err := MissingDeps(lib2); err != nil || len(missing) != 0 {
		t.Errorf("bundled dependency: missing = %v, %v; want none", missing, err)
	}
	if _, err := MissingDeps(filepath.Join(dir, "absent.so")); err == nil {
		t.Error("no error for a missing file")
	}
}

// TestCUDAProviderNeedsCuDNN: the CUDA provider opens cuDNN itself, so it is checked
// although its NEEDED list does not name it.
func TestCUDAProviderNeedsCuDNN(t *testing.T) {
	dir := t.TempDir()
	lib := sharedLib(t, dir, CUDAProviderLib, nil, false)
	missing, err := MissingDeps(lib)
	if err != nil {
		t.Fatal(err)
	}
	if got := slices.Contains(missing, lazyCuDNN); got == loadable(lazyCuDNN) {
		t.Errorf("missing = %v: cuDNN listed %v, but the loader can open it: %v", missing, got, loadable(lazyCuDNN))
	}
	// With cuDNN beside it (a bundled build) nothing is missing.
	sharedLib(t, dir, lazyCuDNN, nil, false)
	if missing, err := MissingDeps(lib); err != nil || len(missing) != 0 {
		t.Errorf("cuDNN bundled: missing = %v, %v", missing, err)
	}
}

// gpuBuild lays out bin/libonnxruntime-gpu.so → gpu/libonnxruntime.so.1.29.0 with the
// provider libraries beside the target, as setup.sh --gpu does. cudaNeeds is the CUDA
// provider's NEEDED list; withCuDNN puts a cuDNN beside it.
func gpuBuild(t *testing.T, cudaNeeds []string, withCuDNN bool) (bin string) {
	t.Helper()
	root := t.TempDir()
	bin, gpu := filepath.Join(root, "bin"), filepath.Join(root, "gpu")
	for _, d := range []string{bin, gpu} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"libonnxruntime.so.1.29.0", SharedProviderLib} {
		if err := os.WriteFile(filepath.Join(gpu, f), []byte("stand-in"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sharedLib(t, gpu, CUDAProviderLib, cudaNeeds, false)
	if withCuDNN {
		sharedLib(t, gpu, lazyCuDNN, nil, false)
	}
	if err := os.Symlink("../gpu/libonnxruntime.so.1.29.0", filepath.Join(bin, GPULibName)); err != nil {
		t.Fatal(err)
	}
	return bin
}

func TestCandidatesPreferAWorkingGPUBuild(t *testing.T) {
	bin := gpuBuild(t, nil, true)
	c := candidatesIn("", bin)
	if c[0].path != filepath.Join(bin, GPULibName) || c[0].skip != "" {
		t.Fatalf("first candidate = %+v, want the GPU build, usable", c[0])
	}
	if c[1].path != filepath.Join(bin, LibName) {
		t.Errorf("second candidate = %+v, want the CPU build beside it", c[1])
	}
	// DIAGD_ORT_LIB still wins.
	if c := candidatesIn("/opt/jetson/libonnxruntime.so", bin); c[0].path != "/opt/jetson/libonnxruntime.so" {
		t.Errorf("explicit library is not first: %+v", c[0])
	}
}

func TestCandidatesPassOverAGPUBuildThatCannotLoad(t *testing.T) {
	bin := gpuBuild(t, []string{"libdiagd_absent_cublasLt.so.13"}, true)
	c := candidatesIn("", bin)
	if c[0].path != filepath.Join(bin, GPULibName) || !strings.Contains(c[0].skip, "missing: libdiagd_absent_cublasLt.so.13") {
		t.Fatalf("GPU build = %+v, want it skipped naming the missing library", c[0])
	}
	// No provider files at all: a CPU-only build under the GPU name.
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, GPULibName), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if c := candidatesIn("", root); !strings.Contains(c[0].skip, "no "+SharedProviderLib) {
		t.Errorf("bare GPU name: %+v", c[0])
	}
	// Without a GPU build the order is the CPU build's, as before.
	plain := t.TempDir()
	want := []string{filepath.Join(plain, LibName), filepath.Join(plain, "..", "lib", LibName), LibName + ".1", LibName}
	var got []string
	for _, k := range candidatesIn("", plain) {
		got = append(got, k.path)
	}
	if !slices.Equal(got, want) {
		t.Errorf("CPU-only order = %v, want %v", got, want)
	}
}

// TestExplainNamesMissingLibraries: ORT's "Failed to load library" for a GPU build
// becomes the list of CUDA libraries that are missing beside or on the loader path.
func TestExplainNamesMissingLibraries(t *testing.T) {
	bin := gpuBuild(t, []string{"libdiagd_absent_cublasLt.so.13"}, true)
	lib, err := filepath.EvalSymlinks(filepath.Join(bin, GPULibName))
	if err != nil {
		t.Fatal(err)
	}
	saved := initReal
	initReal = lib
	defer func() { initReal = saved }()
	orig := errors.New("provider_bridge_ort.cc:1988 FAIL : Failed to load library " + filepath.Dir(lib) + "/" + CUDAProviderLib + " with error: libdiagd_absent_cublasLt.so.13: cannot open shared object file")
	got := explain(CUDA, orig).Error()
	if !strings.Contains(got, CUDAProviderLib+" cannot load; missing: libdiagd_absent_cublasLt.so.13") {
		t.Errorf("explained as %q", got)
	}
	// TensorRT's library is absent from this build: said so.
	if got := explain(TensorRT, errors.New("Failed to load shared library")).Error(); !strings.Contains(got, "no "+TensorRTProviderLib) {
		t.Errorf("TensorRT explained as %q", got)
	}
	if explain(CPU, orig) != orig {
		t.Error("a CPU error was rewritten")
	}
}
