#!/usr/bin/env bash
# One-command setup for a fresh Debian 12 machine (amd64 or arm64/Jetson). Idempotent: safe to rerun.
#   - Debian packages: OpenCV 4.6 (for gocv v0.31.0), mosquitto broker and clients, systemd-analyze, build tools
#   - ONNX Runtime 1.24.1 CPU library from the npm package onnxruntime-node@1.24.1, sha256-checked,
#     unpacked into .deps/ (git-ignored) and placed next to the binary as bin/libonnxruntime.so
#   - on x64 with an NVIDIA GPU (nvidia-smi finds one) or with --gpu: also the ONNX Runtime 1.29.0
#     GPU build (CUDA and TensorRT providers; scripts/ort.sh has the pins and what they need),
#     linked as bin/libonnxruntime-gpu.so, and a list of the CUDA/cuDNN/TensorRT libraries missing
#   - Go modules, then bin/diagd
#
#   scripts/setup.sh [--gpu | --no-gpu]
#
# Set DIAGD_SKIP_APT=1 to skip the apt step (e.g. when the packages are installed another way).
# DIAGD_NPM_CACHE=DIR takes npm tarballs from DIR when they are there (a machine without network);
# they are sha256-checked like downloads. DIAGD_SETUP_DRYRUN=1 says what would be installed and
# fetched, and stops before any download, build or change.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# shellcheck source=scripts/ort.sh
source scripts/ort.sh

gpu_mode=auto
for a in "$@"; do
  case "$a" in
    --gpu|--no-gpu) gpu_mode=$a ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "setup: unknown argument $a (want --gpu or --no-gpu)" >&2; exit 2 ;;
  esac
done

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

sudo_() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# 1. Debian packages
# systemd provides systemd-analyze, which the tests use to verify the service unit.
# chromium drives the console's browser tests.
pkgs=(libopencv-dev mosquitto mosquitto-clients systemd pkg-config gcc g++ ca-certificates git chromium)
missing=()
if [ "${DIAGD_SKIP_APT:-0}" != 1 ]; then
  for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
  # npm only fetches the ONNX Runtime package; any npm will do (Debian's, or a NodeSource install).
  command -v npm >/dev/null || missing+=(npm)
fi
if [ ${#missing[@]} -gt 0 ]; then
  if ort_dryrun; then
    log "dry run: would install Debian packages: ${missing[*]}"
  else
    log "installing Debian packages: ${missing[*]}"
    sudo_ apt-get update -qq
    sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi
# The packaged broker would hold port 1883; diagd's tests start their own brokers on free ports,
# and the demo starts one of its own too, so the system service is left as Debian configured it.

# 2. Go
command -v go >/dev/null || { echo "setup: Go 1.26 is required (https://go.dev/doc/install)" >&2; exit 1; }

# 3. ONNX Runtime: the CPU build always, the GPU build beside it where it can be used.
arch=$(ort_arch)
install_cpu_ort "$arch"
setup_gpu_ort "$gpu_mode" "$arch"
if ort_dryrun; then
  log "dry run: stopping before the Go build"
  exit 0
fi

# 4. Go modules and the binary
log "building bin/diagd"
go mod download
go build -trimpath -ldflags "-X main.version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)" -o bin/diagd ./cmd/diagd
log "done: $root/bin/diagd ($(bin/diagd version | head -1))"
if [ -e bin/libonnxruntime-gpu.so ]; then
  # What diagd itself makes of the GPU build: the library it picks and each provider's state.
  bin/diagd version | sed -n '2,$p' | while read -r l; do log "$l"; done
fi
