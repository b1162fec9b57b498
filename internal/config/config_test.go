package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/diagd/diagd/internal/ortenv"
)

// clearEnv unsets every DIAGD_* variable for the test.
func clearEnv(t *testing.T) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, Prefix+"_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
}

func TestDefaultsMatchEnvconfig(t *testing.T) {
	clearEnv(t)
	t.Setenv("DIAGD_DEMO", "true") // the one setting without which Load refuses
	t.Setenv("DIAGD_STATION", "s1")
	got, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	want := Defaults()
	want.Demo, want.Station = true, "s1"
	if err := want.Validate(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("envconfig with nothing set:\n%+v\nDefaults():\n%+v", got, want)
	}
}

func TestOnlyPrefixedVariablesAreRead(t *testing.T) {
	clearEnv(t)
	t.Setenv("DIAGD_DEMO", "true")
	t.Setenv("DIAGD_STATION", "s1")
	// Bare names that envconfig would fall back to if the tags lacked the prefix.
	t.Setenv("THREADS", "7")
	t.Setenv("SOURCES", "x=device:0")
	t.Setenv("DEMO", "false")
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.Threads != 0 || c.Sources != "" || !c.Demo {
		t.Errorf("unprefixed variables leaked into the config: threads %d sources %q demo %v", c.Threads, c.Sources, c.Demo)
	}
}

func TestErrorsNameTheVariable(t *testing.T) {
	clearEnv(t)
	t.Setenv("DIAGD_BATCH_MAX", "many")
	if _, err := Load(); err == nil || !strings.Contains(err.Error(), "DIAGD_BATCH_MAX") {
		t.Errorf("bad integer: %v", err)
	}
	clearEnv(t)
	t.Setenv("DIAGD_PROVIDER", "opencl")
	t.Setenv("DIAGD_MODEL_POLL", "0s")
	_, err := Load()
	for _, v := range []string{"DIAGD_PROVIDER", "DIAGD_MODEL_POLL", "DIAGD_SOURCES"} {
		if err == nil || !strings.Contains(err.Error(), v) {
			t.Errorf("error %v does not name %s", err, v)
		}
	}
}

// TestTRTSettingsReachTheSessionOptions: DIAGD_TRT_FP16 and DIAGD_TRT_CACHE are
// validated against the provider and carried into the options every session opens with.
func TestTRTSettingsReachTheSessionOptions(t *testing.T) {
	clearEnv(t)
	cache := t.TempDir()
	t.Setenv("DIAGD_DEMO", "true")
	t.Setenv("DIAGD_STATION", "s1")
	t.Setenv("DIAGD_PROVIDER", "tensorrt")
	t.Setenv("DIAGD_DEVICE_ID", "1")
	t.Setenv("DIAGD_TRT_FP16", "true")
	t.Setenv("DIAGD_TRT_CACHE", cache)
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	o := c.Session(3)
	if o.Provider != ortenv.TensorRT || o.DeviceID != 1 || o.Threads != 3 || !o.TRTFP16 || o.TRTCacheDir != cache {
		t.Errorf("session options %+v", o)
	}
	kv, err := ortenv.TensorRTOptions(o)
	if err != nil {
		t.Fatal(err)
	}
	if kv["trt_fp16_enable"] != "1" || kv["trt_engine_cache_path"] != cache || kv["device_id"] != "1" {
		t.Errorf("TensorRT provider options %v", kv)
	}
	t.Setenv("DIAGD_PROVIDER", "auto")
	if _, err := Load(); err != nil {
		t.Errorf("auto may pick TensorRT, so FP16 is allowed: %v", err)
	}

	file := filepath.Join(cache, "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ provider, fp16, cache, variable string }{
		{"cpu", "true", "", "DIAGD_TRT_FP16"},
		{"cuda", "true", "", "DIAGD_TRT_FP16"},
		{"tensorrt", "maybe", "", "DIAGD_TRT_FP16"},
		{"tensorrt", "false", "relative/engines", "DIAGD_TRT_CACHE"},
		{"tensorrt", "false", file, "DIAGD_TRT_CACHE"},
	} {
		t.Setenv("DIAGD_PROVIDER", tc.provider)
		t.Setenv("DIAGD_TRT_FP16", tc.fp16)
		t.Setenv("DIAGD_TRT_CACHE", tc.cache)
		if tc.cache == "" {
			os.Unsetenv("DIAGD_TRT_CACHE")
		}
		if _, err := Load(); err == nil || !strings.Contains(err.Error(), tc.variable) {
			t.Errorf("%+v: error %v does not name %s", tc, err, tc.variable)
		}
	}
}
