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
	log := slog.New(slog.DiscardHandler)
	path, err := ortenv.Init(log)
	if err != nil {
		fmt.Fprintf(env.stdout, "onnx runtime: not found: %v\n", err)
		return 1
	}
	if real := ortenv.Loaded(); real != path {
		path += " (" + real + ")"
	}
	fmt.Fprintf(env.stdout, "onnx runtime %s: %s\n", ort.GetVersion(), path)
	for _, s := range ortenv.PassedOver() {
		fmt.Fprintf(env.stdout, "passed over: %s\n", s)
	}
	// Which providers this library can use here: the check for a GPU build (setup's, or
	// NVIDIA's JetPack build named by DIAGD_ORT_LIB) and its CUDA/TensorRT libraries.
	st, err := ortenv.ProbeProviders(log)
	if err != nil {
		fmt.Fprintf(env.stdout, "providers: %v\n", err)
		return 1
	}
	for _, s := range st {
		if s.OK {
			fmt.Fprintf(env.stdout, "provider %s: available\n", s.Provider)
		} else {
			fmt.Fprintf(env.stdout, "provider %s: unavailable: %s\n", s.Provider, s.Reason)
		}
	}
	return 0
}
