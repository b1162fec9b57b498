package config

import (
	"encoding/json"
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

func TestCommandsAndMaxPacket(t *testing.T) {
	c := Defaults()
	c.Demo, c.Station = true, "s1"
	c.Commands = " trigger, status "
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := c.CommandList(); !reflect.DeepEqual(got, []string{"trigger", "status"}) {
		t.Fatalf("CommandList %q", got)
	}
	for _, tc := range []struct {
		commands string
		packet   int
		want     string
	}{
		{"trigger,retrian", 0, `DIAGD_COMMANDS: unknown command "retrian"`},
		{" , ", 0, "DIAGD_COMMANDS: \" , \" names no command"},
		{"", 100, "DIAGD_MQTT_MAX_PACKET: 100"},
		{"", -1, "DIAGD_MQTT_MAX_PACKET: -1"},
	} {
		c := Defaults()
		c.Demo, c.Station, c.Commands, c.MQTTMaxPacket = true, "s1", tc.commands, tc.packet
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("commands %q, max packet %d: %v, want an error containing %q", tc.commands, tc.packet, err, tc.want)
		}
	}
}

// goodEnv sets a valid configuration for the test.
func goodEnv(t *testing.T) {
	clearEnv(t)
	t.Setenv("DIAGD_STATION", "s1")
	t.Setenv("DIAGD_SOURCES", "cam=folder:"+t.TempDir())
	t.Setenv("DIAGD_DATA_DIR", t.TempDir())
}

// Values that parse yet make no sense are refused, each naming its variable: a poll or
// schedule of nanoseconds would burn a core and flood the log; a typo in the log
// settings or a library path that is not there would be silently ignored.
func TestNonsenseValuesRefused(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	os.WriteFile(notPEM, []byte("not a certificate\n"), 0o644)
	for _, tc := range []struct{ name, value, want string }{
		{"DIAGD_MODEL_POLL", "1ns", "DIAGD_MODEL_POLL: 1ns is outside 100ms..1h0m0s"},
		{"DIAGD_MODEL_POLL", "2h", "DIAGD_MODEL_POLL"},
		{"DIAGD_RETRAIN_EVERY", "1ns", "DIAGD_RETRAIN_EVERY: 1ns: want 0 (no schedule) or at least 1m0s"},
		{"DIAGD_BATCH_WAIT", "1h", "DIAGD_BATCH_WAIT"},
		{"DIAGD_SHUTDOWN_TIMEOUT", "1ms", "DIAGD_SHUTDOWN_TIMEOUT"},
		{"DIAGD_THREADS", "100000", "DIAGD_THREADS"},
		{"DIAGD_JOB_THREADS", "-1", "DIAGD_JOB_THREADS"},
		{"DIAGD_TRAINABLE", "everything", `DIAGD_TRAINABLE: "everything": want auto, head, last or all`},
		{"DIAGD_ARCH", "vgg16", `DIAGD_ARCH: "vgg16": want auto, resnet50 or segdec`},
		{"DIAGD_TRAIN_BUDGET", "30s", "DIAGD_TRAIN_BUDGET: 30s: want 0 (none) or 1m0s..720h0m0s"},
		{"DIAGD_TRAIN_BUDGET", "1000h", "DIAGD_TRAIN_BUDGET"},
		{"DIAGD_TRAIN_BUDGET", "-1h", "DIAGD_TRAIN_BUDGET"},
		{"DIAGD_LOG_LEVEL", "verbose", `DIAGD_LOG_LEVEL: "verbose": want debug, info, warn or error`},
		{"DIAGD_LOG_FORMAT", "xml", `DIAGD_LOG_FORMAT: "xml": want json or text`},
		{"DIAGD_ORT_LIB", filepath.Join(dir, "libonnxruntime.so"), "DIAGD_ORT_LIB"},
		{"DIAGD_MQTT_BROKER", "ftp://h:21", `scheme "ftp" is not tcp`},
		{"DIAGD_MQTT_BROKER", "tcp://:1883", "DIAGD_MQTT_BROKER"},
		{"DIAGD_MQTT_PREFIX", "plant/#", "DIAGD_MQTT_PREFIX"},
		{"DIAGD_MQTT_PREFIX", "plant/+/x", "DIAGD_MQTT_PREFIX"},
		{"DIAGD_MQTT_CA_FILE", notPEM, "DIAGD_MQTT_CA_FILE: " + notPEM + " holds no PEM certificate"},
		{"DIAGD_MQTT_PASSWORD", "secret", "DIAGD_MQTT_PASSWORD: set without DIAGD_MQTT_USERNAME"},
	} {
		goodEnv(t)
		if _, err := Load(); err != nil {
			t.Fatalf("the good environment: %v", err)
		}
		t.Setenv(tc.name, tc.value)
		_, err := Load()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s=%s: got %v, want an error containing %q", tc.name, tc.value, err, tc.want)
		}
	}
	// A client certificate and key that do not make a pair.
	goodEnv(t)
	t.Setenv("DIAGD_MQTT_CERT_FILE", notPEM)
	t.Setenv("DIAGD_MQTT_KEY_FILE", notPEM)
	if _, err := Load(); err == nil || !strings.Contains(err.Error(), "DIAGD_MQTT_CERT_FILE: with DIAGD_MQTT_KEY_FILE") {
		t.Errorf("a bad key pair: %v", err)
	}
}

// A password in the broker URL never reaches a log line, validate's output or the
// retained state/config message: it moves into the credentials, the URL loses it.
func TestBrokerCredentialsLeaveTheURL(t *testing.T) {
	goodEnv(t)
	t.Setenv("DIAGD_MQTT_BROKER", "ssl://plc:s3cr%40t@broker.local:8883")
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.MQTTBroker != "ssl://broker.local:8883" || c.MQTTUsername != "plc" || c.MQTTPassword != "s3cr@t" {
		t.Fatalf("broker %q user %q password %q", c.MQTTBroker, c.MQTTUsername, c.MQTTPassword)
	}
	b, _ := json.Marshal(c.Summary())
	if strings.Contains(string(b), "s3cr") || !strings.Contains(string(b), `"mqttAuth":true`) || !strings.Contains(string(b), `"mqttTLS":true`) {
		t.Fatalf("summary %s", b)
	}
	// Both in the URL and in the variables: ambiguous, refused (without echoing it).
	t.Setenv("DIAGD_MQTT_USERNAME", "other")
	_, err = Load()
	if err == nil || !strings.Contains(err.Error(), "DIAGD_MQTT_BROKER") || strings.Contains(err.Error(), "s3cr") {
		t.Fatalf("credentials given twice: %v", err)
	}
	// A bad URL with a password is reported without it.
	clearEnv(t)
	goodEnv(t)
	t.Setenv("DIAGD_MQTT_BROKER", "ftp://plc:hunter2@broker:21")
	if _, err := Load(); err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "plc:"+RedactedPassword+"@broker") {
		t.Fatalf("bad broker with a password: %v", err)
	}
}

// Camera URLs in DIAGD_SOURCES keep their passwords out of the summary too.
func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"tcp://u:p@h:1883":                           "tcp://u:xxxxx@h:1883",
		"cam=url:rtsp://admin:p@ss@10.0.0.5/s1":      "cam=url:rtsp://admin:xxxxx@10.0.0.5/s1",
		"a=url:rtsp://u:1@h/x@y;b=url:http://v:2@g/": "a=url:rtsp://u:xxxxx@h/x@y;b=url:http://v:xxxxx@g/",
		"tcp://user@h:1883":                          "tcp://user@h:1883",
		"drop=folder:/srv/a:b@c":                     "drop=folder:/srv/a:b@c",
		`parse "tcp://u:pw@h:x": invalid port`:       `parse "tcp://u:xxxxx@h:x": invalid port`,
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
	c := Defaults()
	c.Sources = "cam=url:rtsp://admin:pw1@10.0.0.5/s1"
	if s := c.Summary(); strings.Contains(s.Sources, "pw1") {
		t.Fatalf("summary sources %q", s.Sources)
	}
}

// A misspelled DIAGD_* variable is named with the closest real one.
func TestUnknownVariablesWarned(t *testing.T) {
	got := UnknownVariables([]string{"DIAGD_RETRAIN_EVRY=1h", "DIAGD_BATCH_MAX=8", "PATH=/bin", "DIAGD_DEMO_SECONDS=3",
		"DIAGD_COMPLETELY_DIFFERENT_THING=1"})
	want := []string{
		"DIAGD_COMPLETELY_DIFFERENT_THING is not a diagd setting and is ignored",
		"DIAGD_RETRAIN_EVRY is not a diagd setting and is ignored (did you mean DIAGD_RETRAIN_EVERY?)",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("warnings %q, want %q", got, want)
	}
}

func TestPromotionGateSettings(t *testing.T) {
	goodEnv(t)
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

// A segdec network trains every layer from random weights: DIAGD_TRAINABLE=head with
// DIAGD_ARCH=segdec is refused, naming TRAINABLE; all and auto are taken.
func TestSegDecNeedsEveryLayer(t *testing.T) {
	for trainable, ok := range map[string]bool{"head": false, "last": false, "all": true, "auto": true} {
		goodEnv(t)
		t.Setenv("DIAGD_ARCH", "segdec")
		t.Setenv("DIAGD_TRAINABLE", trainable)
		_, err := Load()
		if ok != (err == nil) || (!ok && !strings.Contains(err.Error(), "DIAGD_TRAINABLE")) {
			t.Errorf("TRAINABLE=%s with ARCH=segdec: %v", trainable, err)
		}
	}
}
