#!/usr/bin/env bash
# Regenerates internal/onnx/onnxpb/onnx.pb.go. Run once by a maintainer; the output is committed.
# The .proto comes from Debian's libonnx-dev (ONNX 1.12, Apache-2.0). Its proto package is renamed
# from "onnx" to "diagd.onnx" so it cannot clash with any other copy of onnx.proto linked into the
# same binary (the protobuf registry panics on duplicate full names).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download libonnx-dev >/dev/null && dpkg -x libonnx-dev_*.deb x)
sed -e 's/^package onnx;/package diagd.onnx;/' "$work/x/usr/include/onnx/onnx.proto" >scripts/proto/onnx.proto
sed -i '/^package diagd.onnx;/a option go_package = "github.com/diagd/diagd/internal/onnx/onnxpb";' scripts/proto/onnx.proto
command -v protoc-gen-go >/dev/null || go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PATH="$PATH:$(go env GOPATH)/bin" protoc -I scripts/proto --go_out=. --go_opt=module=github.com/diagd/diagd scripts/proto/onnx.proto
