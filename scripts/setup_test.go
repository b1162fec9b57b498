// Package scripts tests scripts/setup.sh's ONNX Runtime steps by running them with bash
// in a throwaway copy of the layout, with fake nvidia-smi/uname on PATH and npm tarballs
// served from DIAGD_NPM_CACHE, so nothing is downloaded and the checkout is not touched.
package scripts

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// sandbox is a temporary project root holding copies of setup.sh and ort.sh, and a bin
// folder of fake commands put first on PATH.
type sandbox struct {
	root, fake string
	env        []string
}

func newSandbox(t *testing.T) *sandbox {
	t.Helper()
	s := &sandbox{root: t.TempDir(), fake: t.TempDir()}
	if err := os.MkdirAll(filepath.Join(s.root, "scripts"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"setup.sh", "ort.sh"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(s.root, "scripts", f), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s.env = []string{"PATH=" + s.fake + ":" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "DIAGD_SKIP_APT=1"}
	return s
}

// command writes an executable shell script named name into the fake bin folder.
func (s *sandbox) command(t *testing.T, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(s.fake, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

// nvidiaSMI fakes a working driver with one GPU, answering the query setup makes.
func (s *sandbox) nvidiaSMI(t *testing.T, name, driver string) {
	s.command(t, "nvidia-smi", fmt.Sprintf(`case "$*" in *--query-gpu=name,driver_version*) echo "%s, %s";; *) echo "GPU 0: %s";; esac`, name, driver, name))
}

func (s *sandbox) run(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatalf("bash: %v", err)
	}
	cmd := exec.Command(bash, append([]string{filepath.Join(s.root, "scripts", "setup.sh")}, args...)...)
	cmd.Env = append(append([]string{}, s.env...), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// untouched fails if the run created anything in the sandbox's project root.
func (s *sandbox) untouched(t *testing.T) {
	t.Helper()
	for _, p := range []string{".deps", "bin"} {
		if _, err := os.Stat(filepath.Join(s.root, p)); err == nil {
			t.Errorf("a dry run created %s", p)
		}
	}
}

func contains(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

func lacks(t *testing.T, out string, bad ...string) {
	t.Helper()
	for _, b := range bad {
		if strings.Contains(out, b) {
			t.Errorf("output has %q:\n%s", b, out)
		}
	}
}

const (
	corePin = "would fetch onnxruntime-node@1.29.0 from the npm registry (sha256 cfdfb45ec4044b1fdca43e5d2e180fb6817e649ff8ad1e0dfc90e18e51b67037)"
	epPin   = "would fetch com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9 from the npm registry (sha256 2b459e0c17f340c92970c10ed86de4f37a3009f93c14053e6ad4334cbb6be412)"
	cpuPin  = "would fetch onnxruntime-node@1.24.1 from the npm registry (sha256 57181cf6e6e711b155c5b942d591fd63ded0b5de5c4922d51fd994e7f6ac2772)"
)

// TestSetupFindsTheGPUAndStopsBeforeDownloading: with nvidia-smi reporting a GPU, the
// dry run goes down the GPU branch up to the downloads, naming both pinned packages,
// and warns about a driver too old for CUDA 13. Nothing is written.
func TestSetupFindsTheGPUAndStopsBeforeDownloading(t *testing.T) {
	if hostArch(t) != "x86_64" {
		t.Skip("the npm GPU build is x64; TestSetupJetson covers arm64")
	}
	s := newSandbox(t)
	s.nvidiaSMI(t, "NVIDIA H200", "570.86.15")
	out, err := s.run(t, []string{"DIAGD_SETUP_DRYRUN=1"})
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	contains(t, out, "GPU: NVIDIA H200, 570.86.15", "driver 570.86.15 is older than R580", cpuPin, corePin, epPin,
		"would install ONNX Runtime 1.29.0 GPU into .deps/onnxruntime-gpu-1.29.0/x64", "stopping before the Go build")
	s.untouched(t)

	// A current driver: no warning.
	s.nvidiaSMI(t, "NVIDIA H200", "580.65.06")
	out, _ = s.run(t, []string{"DIAGD_SETUP_DRYRUN=1"})
	contains(t, out, corePin)
	lacks(t, out, "older than")
}

func TestSetupWithoutAGPU(t *testing.T) {
	s := newSandbox(t)
	// nvidia-smi present but no driver, as on a box with the utilities and no card.
	s.command(t, "nvidia-smi", `echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver." >&2; exit 9`)
	out, err := s.run(t, []string{"DIAGD_SETUP_DRYRUN=1"})
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	contains(t, out, "no NVIDIA GPU found", "stopping before the Go build")
	lacks(t, out, "1.29.0")
	// --no-gpu overrides a working nvidia-smi; --gpu forces the branch without one.
	s.nvidiaSMI(t, "NVIDIA RTX 4000", "590.1")
	out, _ = s.run(t, []string{"DIAGD_SETUP_DRYRUN=1"}, "--no-gpu")
	lacks(t, out, "1.29.0")
	if hostArch(t) == "x86_64" {
		os.Remove(filepath.Join(s.fake, "nvidia-smi"))
		out, _ = s.run(t, []string{"DIAGD_SETUP_DRYRUN=1"}, "--gpu")
		contains(t, out, "GPU: forced by --gpu", corePin, epPin)
	}
	if out, err := s.run(t, nil, "--cuda"); err == nil || !strings.Contains(out, "unknown argument --cuda") {
		t.Errorf("bad argument accepted: %v\n%s", err, out)
	}
	s.untouched(t)
}

// TestSetupJetson: on arm64 the GPU branch points at JetPack's build instead of x64 packages.
func TestSetupJetson(t *testing.T) {
	s := newSandbox(t)
	s.command(t, "uname", `[ "$1" = -m ] && echo aarch64 || /bin/uname "$@"`)
	s.nvidiaSMI(t, "Orin (nvgpu)", "540.4.0")
	out, err := s.run(t, []string{"DIAGD_SETUP_DRYRUN=1"})
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	contains(t, out, "arm64 (Jetson)", "DIAGD_ORT_LIB", "ONNX Runtime 1.24.1 (arm64)")
	lacks(t, out, "1.29.0")
	s.untouched(t)
}

// TestSetupRefusesTamperedTarballs: tarballs whose sha256 is not the pin are refused;
// setup fails, and neither the GPU build nor its link appears.
func TestSetupRefusesTamperedTarballs(t *testing.T) {
	if hostArch(t) != "x86_64" {
		t.Skip("the npm GPU build is x64")
	}
	s := newSandbox(t)
	// The CPU build is already there, as after an earlier setup.
	cpu := filepath.Join(s.root, ".deps", "onnxruntime-1.24.1", "x64")
	if err := os.MkdirAll(cpu, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cpu, "libonnxruntime.so.1.24.1"), []byte("cpu"), 0o644); err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	core := fakeTarball(t, map[string]string{"package/bin/napi-v6/linux/x64/libonnxruntime.so.1": "not the real core"})
	eps := fakeTarball(t, providerFiles("tampered"))
	writeFile(t, filepath.Join(cache, "onnxruntime-node-1.29.0.tgz"), core)
	writeFile(t, filepath.Join(cache, "com.github.asus4.onnxruntime.linux-x64-gpu-0.4.9.tgz"), eps)
	s.nvidiaSMI(t, "NVIDIA H200", "580.65.06")
	out, err := s.run(t, []string{"DIAGD_NPM_CACHE=" + cache})
	if err == nil {
		t.Fatalf("setup accepted tampered tarballs:\n%s", out)
	}
	contains(t, out, "sha256 mismatch for onnxruntime-node-1.29.0.tgz: got "+sum(core),
		"sha256 mismatch for com.github.asus4.onnxruntime.linux-x64-gpu-0.4.9.tgz: got "+sum(eps), "refusing it")
	lacks(t, out, "building bin/diagd")
	for _, p := range []string{".deps/onnxruntime-gpu-1.29.0", "bin/libonnxruntime-gpu.so"} {
		if _, err := os.Lstat(filepath.Join(s.root, p)); err == nil {
			t.Errorf("%s exists after the refusal", p)
		}
	}
	// The cache's own copies are left alone (the refused copy is removed from setup's temp folder only).
	if b, err := os.ReadFile(filepath.Join(cache, "onnxruntime-node-1.29.0.tgz")); err != nil || !bytes.Equal(b, core) {
		t.Errorf("cache file changed: %v", err)
	}
}

// TestInstallGPUUnpacksAndNamesMissingLibraries calls ort.sh's functions directly with
// pins set to synthetic tarballs of the real layout: the GPU build lands in its folder
// complete, and cuda_missing names the libraries the providers need but cannot find.
func TestInstallGPUUnpacksAndNamesMissingLibraries(t *testing.T) {
	dir := t.TempDir()
	cuda := sharedLib(t, dir, "libonnxruntime_providers_cuda.so", "libdiagd_absent_cublasLt.so.13")
	trt := sharedLib(t, dir, "libonnxruntime_providers_tensorrt.so", "libdiagd_absent_nvinfer.so.10")
	files := providerFiles("")
	files["package/Plugins/Linux/x64/libonnxruntime_providers_cuda.so"] = string(readFile(t, cuda))
	files["package/Plugins/Linux/x64/libonnxruntime_providers_tensorrt.so"] = string(readFile(t, trt))
	core := fakeTarball(t, map[string]string{"package/bin/napi-v6/linux/x64/libonnxruntime.so.1": "core 1.29.0"})
	eps := fakeTarball(t, files)
	cache := t.TempDir()
	writeFile(t, filepath.Join(cache, "onnxruntime-node-1.29.0.tgz"), core)
	writeFile(t, filepath.Join(cache, "com.github.asus4.onnxruntime.linux-x64-gpu-0.4.9.tgz"), eps)
	dest := filepath.Join(t.TempDir(), "onnxruntime-gpu-1.29.0", "x64")
	lib, err := filepath.Abs("ort.sh")
	if err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf(`set -euo pipefail
source %q
ORT_GPU_CORE_SHA256=%s
ORT_GPU_EP_SHA256=%s
install_gpu_ort %q
cuda_missing %q`, lib, sum(core), sum(eps), dest, dest)
	cmd := exec.Command("bash", "-c", script)
	cmd.Env = append(os.Environ(), "DIAGD_NPM_CACHE="+cache)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if b := readFile(t, filepath.Join(dest, "libonnxruntime.so.1.29.0")); string(b) != "core 1.29.0" {
		t.Errorf("core = %q", b)
	}
	if b := readFile(t, filepath.Join(dest, "libonnxruntime_providers_shared.so")); string(b) != "shared" {
		t.Errorf("shared provider = %q", b)
	}
	contains(t, string(out), "cuda: libdiagd_absent_cublasLt.so.13", "tensorrt: libdiagd_absent_nvinfer.so.10")
	lacks(t, string(out), "libc.so.6")
	if !findable("libcudnn.so.9") {
		contains(t, string(out), "cuda: libcudnn.so.9")
	}
}

func providerFiles(tag string) map[string]string {
	m := map[string]string{}
	for _, p := range []string{"shared", "cuda", "tensorrt"} {
		m["package/Plugins/Linux/x64/libonnxruntime_providers_"+p+".so"] = p + tag
	}
	return m
}

func fakeTarball(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func writeFile(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func hostArch(t *testing.T) string {
	out, err := exec.Command("uname", "-m").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// findable asks the loader's cache, as ort.sh's lib_findable does for cuDNN.
func findable(so string) bool {
	out, _ := exec.Command("sh", "-c", `"$(command -v ldconfig || echo /sbin/ldconfig)" -p 2>/dev/null`).Output()
	return strings.Contains(string(out), so+" ")
}

// sharedLib compiles an empty shared library dir/name whose NEEDED list names a library
// that cannot be found (it is linked against a stub that is then thrown away).
func sharedLib(t *testing.T, dir, name, missing string) string {
	t.Helper()
	stubs := t.TempDir()
	src := filepath.Join(stubs, "x.c")
	writeFile(t, src, []byte("int diagd_probe(void) { return 1; }\n"))
	if out, err := exec.Command("gcc", "-shared", "-fPIC", "-Wl,-soname,"+missing, "-o", filepath.Join(stubs, missing), src).CombinedOutput(); err != nil {
		t.Fatalf("gcc (setup.sh installs it): %v\n%s", err, out)
	}
	lib := filepath.Join(dir, name)
	if out, err := exec.Command("gcc", "-shared", "-fPIC", "-o", lib, src, "-Wl,--no-as-needed", "-L"+stubs, "-l:"+missing).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	return lib
}

// TestDeviceCheckWithoutAGPU: on a machine without a GPU the device check still writes
// its one report, saying that everything was skipped and why, and fails.
func TestDeviceCheckWithoutAGPU(t *testing.T) {
	s := newSandbox(t)
	b, err := os.ReadFile("device-check.sh")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(s.root, "scripts", "device-check.sh"), b)
	s.command(t, "nvidia-smi", `echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."; exit 9`)
	out := t.TempDir()
	cmd := exec.Command("bash", filepath.Join(s.root, "scripts", "device-check.sh"))
	cmd.Env = append(append([]string{}, s.env...), "OUT="+out, "DIAGD_CHECK_WORK="+filepath.Join(t.TempDir(), "work"))
	log, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("device check passed without a GPU:\n%s", log)
	}
	report := string(readFile(t, filepath.Join(out, "device-report.md")))
	contains(t, report, "# diagd device check", "GPU: none found",
		"everything: nvidia-smi finds no NVIDIA GPU (NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.)")
}
