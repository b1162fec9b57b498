# ort.sh: the ONNX Runtime part of scripts/setup.sh, as functions it sources (and tests
# call one by one). Nothing here runs when the file is sourced.
#
# Pins. Every tarball comes from the npm registry and is checked against a sha256 taken
# when its version was adopted (npm's dist.integrity is sha512 over the same bytes).
#
# CPU build (CI and every machine): onnxruntime-node 1.24.1, linux/{x64,arm64}.
ORT_VERSION=1.24.1
ORT_TGZ_SHA256=57181cf6e6e711b155c5b942d591fd63ded0b5de5c4922d51fd994e7f6ac2772
#
# GPU build (x64 with an NVIDIA GPU): ONNX Runtime 1.29.0, whose C API (24 and up) the
# binding onnxruntime_go v1.27.0 asks for. Two packages, because npm's size limit keeps
# Microsoft's CUDA provider out of onnxruntime-node:
#  - core: onnxruntime-node@1.29.0's linux/x64 libonnxruntime.so.1 (44,726,808 bytes,
#    symbol version VERS_1.29.0). It is the GPU-flavoured core: it exports
#    OrtSessionOptionsAppendExecutionProvider_CUDA and _Tensorrt, and its install script
#    pairs it with exactly the three provider files below from Microsoft's
#    Microsoft.ML.OnnxRuntime.Gpu.Linux 1.29.0. (The core in com.github.asus4.onnxruntime
#    0.4.9 is a CPU build: it exports only the CPU entry point.)
#  - providers: com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9 (ONNX Runtime 1.29.0):
#    libonnxruntime_providers_{shared,cuda,tensorrt}.so. Built for CUDA 13, cuDNN 9 and
#    TensorRT 10 (their NEEDED lists: see ORT_GPU_NEEDS below).
ORT_GPU_VERSION=1.29.0
ORT_GPU_CORE_PKG=onnxruntime-node
ORT_GPU_CORE_PKG_VERSION=1.29.0
ORT_GPU_CORE_SHA256=cfdfb45ec4044b1fdca43e5d2e180fb6817e649ff8ad1e0dfc90e18e51b67037
ORT_GPU_EP_PKG=com.github.asus4.onnxruntime.linux-x64-gpu
ORT_GPU_EP_PKG_VERSION=0.4.9
ORT_GPU_EP_SHA256=2b459e0c17f340c92970c10ed86de4f37a3009f93c14053e6ad4334cbb6be412
ORT_GPU_PROVIDERS=(libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so libonnxruntime_providers_tensorrt.so)
# What the providers need beyond glibc/libstdc++. NEEDED (readelf -d): CUDA provider
# libcublasLt.so.13 libcublas.so.13 libcurand.so.10 libcudart.so.13 libcuda.so.1;
# TensorRT provider libcublas.so.13 libcudart.so.13 libcudnn.so.9 libnvinfer.so.10
# libnvonnxparser.so.10. The CUDA provider also opens libcudnn.so.9 itself (every Conv
# needs it) and libcufft.so.12 (FFT operators only), so ldd cannot see those two.
ORT_CUDA_LAZY=(libcudnn.so.9)
# CUDA 13 needs an R580 driver or newer.
ORT_GPU_MIN_DRIVER=580

ort_log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
ort_err() { echo "setup: $*" >&2; }
ort_dryrun() { [ "${DIAGD_SETUP_DRYRUN:-0}" = 1 ]; }

# ort_arch prints x64 or arm64 for this CPU, or fails.
ort_arch() {
  case "$(uname -m)" in
    x86_64) echo x64 ;;
    aarch64|arm64) echo arm64 ;;
    *) ort_err "unsupported CPU $(uname -m): ONNX Runtime's npm package has x64 and arm64 Linux builds"; return 1 ;;
  esac
}

# npm_fetch NAME VERSION SHA256 DIR: puts NAME-VERSION.tgz into DIR, checked against
# SHA256, and prints its path. It is taken from $DIAGD_NPM_CACHE when there (a machine
# without network gets the tarballs copied in), else from the npm registry. A tarball
# that does not match is refused and removed from DIR. In a dry run nothing is
# downloaded: it says what would be and fails.
npm_fetch() {
  local name=$1 version=$2 want=$3 dir=$4
  local file="$name-$version.tgz" got
  if [ -n "${DIAGD_NPM_CACHE:-}" ] && [ -f "$DIAGD_NPM_CACHE/$file" ]; then
    cp "$DIAGD_NPM_CACHE/$file" "$dir/$file"
  elif ort_dryrun; then
    ort_log "dry run: would fetch $name@$version from the npm registry (sha256 $want)" >&2
    return 1
  else
    ort_log "fetching $name@$version from the npm registry" >&2
    (cd "$dir" && npm pack --silent "$name@$version" >/dev/null) || { ort_err "npm pack $name@$version failed"; return 1; }
  fi
  got=$(sha256sum "$dir/$file" | cut -d' ' -f1)
  if [ "$got" != "$want" ]; then
    rm -f "$dir/$file"
    ort_err "sha256 mismatch for $file: got $got, want $want; refusing it"
    return 1
  fi
  echo "$dir/$file"
}

# install_cpu_ort ARCH: the CPU build into .deps/, linked as bin/libonnxruntime.so.
install_cpu_ort() {
  local arch=$1 dest=.deps/onnxruntime-$ORT_VERSION
  local lib=$dest/$arch/libonnxruntime.so.$ORT_VERSION tmp tgz
  if [ ! -f "$lib" ]; then
    tmp=$(mktemp -d)
    if ! tgz=$(npm_fetch onnxruntime-node "$ORT_VERSION" "$ORT_TGZ_SHA256" "$tmp") || ort_dryrun; then
      rm -rf "$tmp"
      ort_dryrun || return 1
      ort_log "dry run: ONNX Runtime $ORT_VERSION ($arch) would be $lib"
      return 0
    fi
    tar -xzf "$tgz" -C "$tmp" "package/bin/napi-v6/linux/$arch/libonnxruntime.so.1"
    mkdir -p "$dest/$arch"
    install -m 0644 "$tmp/package/bin/napi-v6/linux/$arch/libonnxruntime.so.1" "$lib.tmp"
    mv "$lib.tmp" "$lib"
    rm -rf "$tmp"
  fi
  ort_dryrun && { ort_log "dry run: ONNX Runtime $ORT_VERSION ($arch) would be $lib"; return 0; }
  mkdir -p bin
  ln -sfn "../$lib" bin/libonnxruntime.so
  ort_log "ONNX Runtime $ORT_VERSION ($arch): $lib"
}

# gpu_wanted MODE: MODE is --gpu, --no-gpu or auto. Auto asks nvidia-smi for a GPU.
# Prints the GPU's name and driver (or "forced") and succeeds when the GPU build is wanted.
gpu_wanted() {
  local mode=$1 q
  case "$mode" in
    --gpu) echo "forced by --gpu"; return 0 ;;
    --no-gpu) return 1 ;;
  esac
  command -v nvidia-smi >/dev/null || return 1
  q=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1) || return 1
  [ -n "$q" ] || return 1
  echo "$q"
}

# driver_too_old DRIVER: succeeds when the driver's major version is below what CUDA 13 needs.
driver_too_old() {
  local major=${1%%.*}
  [[ "$major" =~ ^[0-9]+$ ]] && [ "$major" -lt "$ORT_GPU_MIN_DRIVER" ]
}

# install_gpu_ort DEST: the GPU build's core and provider libraries into DEST (a folder
# under .deps/), all or nothing: they are unpacked beside DEST and renamed into place.
install_gpu_ort() {
  local dest=$1 tmp core eps f
  if [ -f "$dest/libonnxruntime.so.$ORT_GPU_VERSION" ] && [ -f "$dest/libonnxruntime_providers_cuda.so" ]; then
    return 0
  fi
  tmp=$(mktemp -d)
  # Both are asked for even when the first fails, so a dry run lists both.
  core=$(npm_fetch "$ORT_GPU_CORE_PKG" "$ORT_GPU_CORE_PKG_VERSION" "$ORT_GPU_CORE_SHA256" "$tmp") || core=
  eps=$(npm_fetch "$ORT_GPU_EP_PKG" "$ORT_GPU_EP_PKG_VERSION" "$ORT_GPU_EP_SHA256" "$tmp") || eps=
  if [ -z "$core" ] || [ -z "$eps" ] || ort_dryrun; then
    rm -rf "$tmp"
    [ -n "$core" ] && [ -n "$eps" ] && ort_log "dry run: both GPU tarballs are in DIAGD_NPM_CACHE and match their pins"
    [ -n "$core" ] && [ -n "$eps" ]
    return
  fi
  mkdir -p "$tmp/out" "$tmp/core" "$tmp/eps" "$(dirname "$dest")"
  tar -xzf "$core" -C "$tmp/core" package/bin/napi-v6/linux/x64/libonnxruntime.so.1
  install -m 0644 "$tmp/core/package/bin/napi-v6/linux/x64/libonnxruntime.so.1" "$tmp/out/libonnxruntime.so.$ORT_GPU_VERSION"
  for f in "${ORT_GPU_PROVIDERS[@]}"; do
    tar -xzf "$eps" -C "$tmp/eps" "package/Plugins/Linux/x64/$f"
    install -m 0644 "$tmp/eps/package/Plugins/Linux/x64/$f" "$tmp/out/$f"
  done
  rm -rf "$dest.old"
  [ -e "$dest" ] && mv "$dest" "$dest.old"
  mv "$tmp/out" "$dest"
  rm -rf "$tmp" "$dest.old"
}

# cuda_missing DIR: prints, one per line, the libraries the GPU providers in DIR need
# and the loader cannot find, as "provider: library".
cuda_missing() {
  local dir=$1 p lib
  for p in cuda tensorrt; do
    LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ldd "$dir/libonnxruntime_providers_$p.so" 2>/dev/null |
      awk -v p="$p" '/not found/ {print p ": " $1}'
    [ "$p" = cuda ] || continue
    for lib in "${ORT_CUDA_LAZY[@]}"; do
      lib_findable "$lib" "$dir" || echo "cuda: $lib"
    done
  done
}

# lib_findable SONAME DIR: whether the loader would find SONAME (ld.so.cache,
# LD_LIBRARY_PATH) or it lies in DIR.
lib_findable() {
  local so=$1 dir=$2 d
  [ -e "$dir/$so" ] && return 0
  # ldconfig lives in /sbin, which a normal user's PATH on Debian lacks.
  "$(command -v ldconfig || echo /sbin/ldconfig)" -p 2>/dev/null | grep -q "^[[:space:]]*$so " && return 0
  local IFS=:
  for d in ${LD_LIBRARY_PATH:-}; do
    [ -n "$d" ] && [ -e "$d/$so" ] && return 0
  done
  return 1
}

# setup_gpu_ort MODE: decides on the GPU build and installs it on x64, linking it as
# bin/libonnxruntime-gpu.so (diagd picks it over the CPU build when its CUDA provider's
# libraries load). It names every missing CUDA, cuDNN or TensorRT library. On arm64 it
# points at the JetPack route instead.
setup_gpu_ort() {
  local mode=$1 arch=$2 gpu driver dest missing f
  gpu=$(gpu_wanted "$mode") || { ort_log "no NVIDIA GPU found (nvidia-smi): CPU build only (--gpu forces the GPU build)"; return 0; }
  ort_log "GPU: $gpu"
  if [ "$arch" != x64 ]; then
    ort_log "arm64 (Jetson): the npm GPU build is x64 only. Install NVIDIA's ONNX Runtime GPU build for your JetPack and set DIAGD_ORT_LIB to its libonnxruntime.so (README, GPU); 'diagd version' then lists its providers"
    return 0
  fi
  driver=${gpu##*, }
  if [ "$driver" != "$gpu" ] && driver_too_old "$driver"; then
    ort_log "warning: driver $driver is older than R$ORT_GPU_MIN_DRIVER, which CUDA 13 (the GPU build's) needs: the CUDA provider will not start until the driver is updated"
  fi
  dest=.deps/onnxruntime-gpu-$ORT_GPU_VERSION/x64
  if ort_dryrun; then
    ort_log "dry run: would install ONNX Runtime $ORT_GPU_VERSION GPU into $dest and link bin/libonnxruntime-gpu.so"
    install_gpu_ort "$dest" || true
    return 0
  fi
  if ! install_gpu_ort "$dest"; then
    ort_err "the GPU build was not installed (rerun with --no-gpu to install the CPU build only)"
    return 1
  fi
  mkdir -p bin
  ln -sfn "../$dest/libonnxruntime.so.$ORT_GPU_VERSION" bin/libonnxruntime-gpu.so
  ort_log "ONNX Runtime $ORT_GPU_VERSION GPU (x64): $dest, linked as bin/libonnxruntime-gpu.so"
  missing=$(cuda_missing "$dest")
  if [ -n "$missing" ]; then
    ort_log "the GPU providers cannot load yet; missing libraries (provider: library):"
    while read -r f; do echo "  $f"; done <<<"$missing"
    ort_log "install CUDA 13 (cudart, cuBLAS, cuRAND, cuFFT), cuDNN 9 for CUDA 13 and, for TensorRT, TensorRT 10 (libnvinfer, libnvonnxparsers), e.g. from NVIDIA's apt repository; until then diagd uses the CPU build"
  else
    ort_log "CUDA and TensorRT provider libraries all load"
  fi
}
