package main

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/diagd/diagd/internal/ortenv"
)

func runVersion(_ context.Context, env *cliEnv, _ []string) int {
	fmt.Fprintf(env.stdout, "diagd %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	// Loading the library is what tells a user whether diagd will find it at run time.
	path, err := ortenv.Init(slog.New(slog.DiscardHandler))
	if err != nil {
		fmt.Fprintf(env.stdout, "onnx runtime: not found: %v\n", err)
		return 1
	}
	fmt.Fprintf(env.stdout, "onnx runtime %s: %s\n", ort.GetVersion(), path)
	return 0
}
