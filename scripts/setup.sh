#!/usr/bin/env bash
# One-command setup for a fresh Debian 12 machine (amd64 or arm64/Jetson). Idempotent: safe to rerun.
#   - Debian packages: OpenCV 4.6 (for gocv v0.31.0), mosquitto broker and clients, systemd-analyze, build tools
#   - ONNX Runtime 1.24.1 CPU library from the npm package onnxruntime-node@1.24.1, sha256-checked,
#     unpacked into .deps/ (git-ignored) and placed next to the binary as bin/libonnxruntime.so
#   - Go modules, then bin/diagd
# Set DIAGD_SKIP_APT=1 to skip the apt step (e.g. when the packages are installed another way).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

ORT_VERSION=1.24.1
# sha256 of onnxruntime-node-1.24.1.tgz as served by the npm registry (its dist.integrity is sha512;
# this pin is ours, taken when the version was adopted).
ORT_TGZ_SHA256=57181cf6e6e711b155c5b942d591fd63ded0b5de5c4922d51fd994e7f6ac2772

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

sudo_() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# 1. Debian packages
# systemd provides systemd-analyze, which the tests use to verify the service unit.
# chromium drives the console's browser tests.
pkgs=(libopencv-dev mosquitto mosquitto-clients systemd pkg-config gcc g++ ca-certificates git chromium)
missing=()
for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
# npm only fetches the ONNX Runtime package; any npm will do (Debian's, or a NodeSource install).
command -v npm >/dev/null || missing+=(npm)
if [ "${DIAGD_SKIP_APT:-0}" != 1 ] && [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  sudo_ apt-get update -qq
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The packaged broker would hold port 1883; diagd's tests start their own brokers on free ports,
# and the demo starts one of its own too, so the system service is left as Debian configured it.

# 2. Go
command -v go >/dev/null || { echo "setup: Go 1.26 is required (https://go.dev/doc/install)" >&2; exit 1; }

# 3. ONNX Runtime
case "$(uname -m)" in
  x86_64) arch=x64 ;;
  aarch64|arm64) arch=arm64 ;;
  *) echo "setup: unsupported CPU $(uname -m): ONNX Runtime's npm package has x64 and arm64 Linux builds" >&2; exit 1 ;;
esac
dest=.deps/onnxruntime-$ORT_VERSION
lib=$dest/$arch/libonnxruntime.so.$ORT_VERSION
if [ ! -f "$lib" ]; then
  log "fetching onnxruntime-node@$ORT_VERSION from the npm registry"
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "onnxruntime-node@$ORT_VERSION" >/dev/null)
  tgz="$tmp/onnxruntime-node-$ORT_VERSION.tgz"
  got=$(sha256sum "$tgz" | cut -d' ' -f1)
  if [ "$got" != "$ORT_TGZ_SHA256" ]; then
    echo "setup: sha256 mismatch for onnxruntime-node-$ORT_VERSION.tgz: got $got, want $ORT_TGZ_SHA256" >&2
    exit 1
  fi
  tar -xzf "$tgz" -C "$tmp" "package/bin/napi-v6/linux/$arch/libonnxruntime.so.1"
  mkdir -p "$dest/$arch"
  install -m 0644 "$tmp/package/bin/napi-v6/linux/$arch/libonnxruntime.so.1" "$lib.tmp"
  mv "$lib.tmp" "$lib"
fi
mkdir -p bin
ln -sfn "../$lib" bin/libonnxruntime.so
log "ONNX Runtime $ORT_VERSION ($arch): $lib"

# 4. Go modules and the binary
log "building bin/diagd"
go mod download
go build -trimpath -ldflags "-X main.version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)" -o bin/diagd ./cmd/diagd
log "done: $root/bin/diagd ($(bin/diagd version | head -1))"
