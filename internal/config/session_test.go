package config

import (
	"reflect"
	"strings"
	"testing"

	"github.com/diagd/diagd/internal/ortenv"
)

// SessionEnv reads the same variables with the same defaults as Config.
func TestSessionEnvMatchesConfig(t *testing.T) {
	byTag := map[string]reflect.StructField{}
	ct := reflect.TypeFor[Config]()
	for i := range ct.NumField() {
		byTag[ct.Field(i).Tag.Get("envconfig")] = ct.Field(i)
	}
	st := reflect.TypeFor[SessionEnv]()
	for i := range st.NumField() {
		f := st.Field(i)
		c, ok := byTag[f.Tag.Get("envconfig")]
		if !ok || c.Type != f.Type || c.Tag.Get("default") != f.Tag.Get("default") {
			t.Errorf("SessionEnv.%s (%s %s, default %q) has no twin in Config", f.Name, f.Tag.Get("envconfig"), f.Type, f.Tag.Get("default"))
		}
	}
}

func TestLoadSessionEnv(t *testing.T) {
	clearEnv(t)
	s, err := LoadSessionEnv()
	if err != nil || s != (SessionEnv{}) {
		t.Fatalf("defaults: %+v, %v", s, err)
	}
	cache := t.TempDir()
	t.Setenv("DIAGD_DEVICE_ID", "1")
	t.Setenv("DIAGD_TRT_FP16", "true")
	t.Setenv("DIAGD_TRT_CACHE", cache)
	// A setting run would refuse but a CLI tool does not read: not this loader's business.
	t.Setenv("DIAGD_BATCH_WAIT", "forever")
	s, err = LoadSessionEnv()
	if err != nil {
		t.Fatal(err)
	}
	want := ortenv.Options{Provider: ortenv.TensorRT, DeviceID: 1, Threads: 2, TRTFP16: true, TRTCacheDir: cache}
	if got := s.Options(ortenv.TensorRT, 2); !reflect.DeepEqual(got, want) {
		t.Errorf("options %+v, want %+v", got, want)
	}
	for k, v := range map[string]string{
		"DIAGD_DEVICE_ID": "-1",
		"DIAGD_TRT_CACHE": "relative/cache",
		"DIAGD_TRT_FP16":  "yes please",
	} {
		t.Run(k, func(t *testing.T) {
			t.Setenv(k, v)
			if _, err := LoadSessionEnv(); err == nil || !strings.Contains(err.Error(), k) {
				t.Errorf("%s=%s: %v, want an error naming the variable", k, v, err)
			}
		})
	}
}
