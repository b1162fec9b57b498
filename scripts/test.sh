#!/usr/bin/env bash
# The project's test command (README, and what CI runs after scripts/setup.sh).
# Every test uses real parts: ONNX Runtime from bin/ (setup.sh), OpenCV, and mosquitto
# brokers that the tests start themselves on free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."
export DIAGD_ORT_LIB="${DIAGD_ORT_LIB:-$PWD/bin/libonnxruntime.so}"
# Strict: a test whose dependency is missing (mosquitto, systemd-analyze, ../shared)
# fails instead of skipping (internal/testenv.Missing). setup.sh installs them all.
export CI="${CI:-1}"

bad=$(gofmt -l $(find . -name '*.go' -not -path './.deps/*'))
if [ -n "$bad" ]; then echo "gofmt needed on: $bad" >&2; exit 1; fi
go vet ./...
# -race covers the concurrent parts (hot swap, outbox, sources); -count=1 runs every test
# rather than reporting cached results; the timeout keeps a hung
# broker or camera from eating CI's budget.
go test -race -count=1 -timeout 20m "$@" ./...
