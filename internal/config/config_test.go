package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
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

func TestPromotionGateSettings(t *testing.T) {
	clearEnv(t)
	t.Setenv("DIAGD_DEMO", "true")
	t.Setenv("DIAGD_STATION", "s1")
	c, err := Load()
	if err != nil || c.PromoteConfidence != 0.95 || c.PromoteMinDefects != 10 || c.PromoteMaxGoodFail != 0.2 {
		t.Fatalf("defaults %v %v %v: %v", c.PromoteConfidence, c.PromoteMinDefects, c.PromoteMaxGoodFail, err)
	}
	t.Setenv("DIAGD_PROMOTE_CONFIDENCE", "1.5")
	t.Setenv("DIAGD_PROMOTE_MIN_DEFECTS", "0")
	t.Setenv("DIAGD_PROMOTE_MAX_GOOD_FAIL", "0")
	_, err = Load()
	for _, v := range []string{"DIAGD_PROMOTE_CONFIDENCE", "DIAGD_PROMOTE_MIN_DEFECTS", "DIAGD_PROMOTE_MAX_GOOD_FAIL"} {
		if err == nil || !strings.Contains(err.Error(), v) {
			t.Errorf("error %v does not name %s", err, v)
		}
	}
}
