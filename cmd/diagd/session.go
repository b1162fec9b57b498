package main

import (
	"fmt"

	"github.com/diagd/diagd/internal/config"
	"github.com/diagd/diagd/internal/ortenv"
)

// sessionOptions are a tool's ONNX Runtime session options: the provider from its
// --provider flag and, from the environment, the GPU settings `diagd run` honours
// (DIAGD_DEVICE_ID, DIAGD_TRT_FP16, DIAGD_TRT_CACHE), read and checked alone, so a tool
// needs no daemon configuration and finds the TensorRT engines the daemon built. A bad
// value is reported by the command (name) with the variable, for exitConfig.
func sessionOptions(name string, p ortenv.Provider, threads int) (ortenv.Options, error) {
	s, err := config.LoadSessionEnv()
	if err != nil {
		return ortenv.Options{}, fmt.Errorf("diagd %s: %w", name, err)
	}
	return s.Options(p, threads), nil
}
