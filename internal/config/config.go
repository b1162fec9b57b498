// Package config reads the daemon's settings from DIAGD_* environment variables
// (envconfig) and validates all of them at start, naming the variable and the bad value.
package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/diagd/diagd/capture"
	"github.com/diagd/diagd/internal/ortenv"
)

// Prefix is the environment prefix of every setting.
const Prefix = "DIAGD"

// Config is the daemon's configuration. Each field's variable is its envconfig tag, in
// full: envconfig falls back from PREFIX_NAME to a bare NAME tag (THREADS, SOURCES, DEMO),
// which would let an unrelated variable in the service's environment configure diagd, so
// the tags carry the DIAGD_ prefix and Process is called without one. The README lists
// every variable with these defaults. Settings are read once at start:
// a change needs a restart, except the model (hot-swapped when MODEL_DIR's content
// changes) and the defect catalogue (reloaded when its files change).
type Config struct {
	Station string `envconfig:"DIAGD_STATION" desc:"inspection station name; MQTT client id and topic prefix derive from it (default: the host name)"`
	Sources string `envconfig:"DIAGD_SOURCES" desc:"camera sources, e.g. cam1=device:0,fps=30;drop=folder:/srv/drop (see README)"`
	DataDir string `envconfig:"DIAGD_DATA_DIR" default:"/var/lib/diagd" desc:"state: outbox, journals, negatives pool, models"`

	ModelDir      string        `envconfig:"DIAGD_MODEL_DIR" desc:"detector folder (model.onnx + model.json); default DATA_DIR/models/current"`
	ModelPoll     time.Duration `envconfig:"DIAGD_MODEL_POLL" default:"5s" desc:"how often MODEL_DIR is checked for a new model"`
	Provider      string        `envconfig:"DIAGD_PROVIDER" default:"auto" desc:"auto, tensorrt, cuda or cpu"`
	DeviceID      int           `envconfig:"DIAGD_DEVICE_ID" default:"0" desc:"GPU index"`
	Threads       int           `envconfig:"DIAGD_THREADS" default:"0" desc:"ONNX Runtime intra-op threads on CPU (0: one per core)"`
	TRTFP16       bool          `envconfig:"DIAGD_TRT_FP16" default:"false" desc:"let TensorRT build float16 kernels (provider tensorrt or auto)"`
	TRTCache      string        `envconfig:"DIAGD_TRT_CACHE" desc:"TensorRT engine and timing cache folder (absolute; default $XDG_CACHE_HOME/diagd/tensorrt)"`
	BatchMax      int           `envconfig:"DIAGD_BATCH_MAX" default:"8" desc:"frames judged per model call at most"`
	BatchWait     time.Duration `envconfig:"DIAGD_BATCH_WAIT" default:"2ms" desc:"how long to wait for more frames to fill a batch"`
	NegativesKeep int           `envconfig:"DIAGD_NEGATIVES_KEEP" default:"0" desc:"keep every Nth passing frame in DATA_DIR/negatives for retraining (0: off)"`

	MQTTBroker   string `envconfig:"DIAGD_MQTT_BROKER" default:"tcp://127.0.0.1:1883" desc:"broker URL: tcp://host:1883 or ssl://host:8883"`
	MQTTPrefix   string `envconfig:"DIAGD_MQTT_PREFIX" desc:"topic prefix (default diagd/<station>)"`
	MQTTUsername string `envconfig:"DIAGD_MQTT_USERNAME"`
	MQTTPassword string `envconfig:"DIAGD_MQTT_PASSWORD"`
	MQTTCAFile   string `envconfig:"DIAGD_MQTT_CA_FILE" desc:"CA certificate for TLS"`
	MQTTCertFile string `envconfig:"DIAGD_MQTT_CERT_FILE" desc:"client certificate for mutual TLS"`
	MQTTKeyFile  string `envconfig:"DIAGD_MQTT_KEY_FILE" desc:"client key for mutual TLS"`

	OutboxMaxBytes   int64 `envconfig:"DIAGD_OUTBOX_MAX_BYTES" default:"268435456" desc:"outbox size limit; when full, frames are not taken (verdicts are never dropped)"`
	OutboxMaxRecords int   `envconfig:"DIAGD_OUTBOX_MAX_RECORDS" default:"1000000" desc:"outbox record limit"`

	HTTPAddr        string        `envconfig:"DIAGD_HTTP_ADDR" default:"127.0.0.1:9410" desc:"/livez, /readyz and /metrics; empty: off"`
	ShutdownTimeout time.Duration `envconfig:"DIAGD_SHUTDOWN_TIMEOUT" default:"20s" desc:"how long a stop may take to flush the outbox"`

	Demo bool `envconfig:"DIAGD_DEMO" default:"false" desc:"with no sources and no model, run on a generated demo video and a demo model"`

	// The periodic DIAG job: generate synthetic defects, retrain, promote when not worse.
	Catalogue        string        `envconfig:"DIAGD_CATALOGUE" desc:"defect catalogue YAML for synthetic defects (reloaded on edit); empty: no generation"`
	SDXLDir          string        `envconfig:"DIAGD_SDXL_DIR" desc:"SDXL-inpainting ONNX export (optimum) for the diag generator"`
	Generator        string        `envconfig:"DIAGD_GENERATOR" default:"auto" desc:"auto (diag when SDXL_DIR is set, else memseg), diag or memseg"`
	AugmentN         int           `envconfig:"DIAGD_AUGMENT_N" default:"100" desc:"synthetic images per generation batch (the paper's N)"`
	RetrainEvery     time.Duration `envconfig:"DIAGD_RETRAIN_EVERY" default:"0" desc:"run a generation+retraining cycle this often; 0: only on the MQTT command"`
	AutoAccept       bool          `envconfig:"DIAGD_AUTO_ACCEPT" default:"true" desc:"generated images go straight to DATA_DIR/synthetic/accepted/<batch>; false: to synthetic/pending/<batch> for review"`
	Registry         string        `envconfig:"DIAGD_REGISTRY" desc:"model registry folder; default DATA_DIR/models (its current link is MODEL_DIR's default)"`
	RetrainMode      string        `envconfig:"DIAGD_RETRAIN_MODE" default:"auto" desc:"auto (full-shot when DATA_DIR/defects holds real defects, else zero-shot), zero-shot or full-shot"`
	PromoteTolerance float64       `envconfig:"DIAGD_PROMOTE_TOLERANCE" default:"0" desc:"promote a candidate whose validation AP >= serving AP - tolerance"`
	JobThreads       int           `envconfig:"DIAGD_JOB_THREADS" default:"1" desc:"ONNX Runtime CPU threads for generation and retraining jobs (kept low so judging keeps up)"`
}

// Load reads the environment and validates it. Errors name the variable.
func Load() (Config, error) {
	var c Config
	if err := envconfig.Process("", &c); err != nil {
		// envconfig names the variable: "assigning DIAGD_X to X: converting ..."
		return c, fmt.Errorf("configuration: %w", err)
	}
	return c, c.Validate()
}

var stationRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// Validate checks every setting and reports all problems at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(v string, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s_%s: %s", Prefix, v, fmt.Sprintf(format, a...)))
	}
	if c.Station == "" {
		h, err := os.Hostname()
		if err != nil {
			bad("STATION", "not set and the host name is unavailable: %v", err)
		}
		c.Station = h
	}
	if !stationRE.MatchString(c.Station) {
		bad("STATION", "%q: use letters, digits, '.', '_' and '-' only (it becomes an MQTT topic level and client id)", c.Station)
	}
	if c.DataDir == "" {
		bad("DATA_DIR", "must not be empty")
	}
	if c.ModelDir == "" {
		c.ModelDir = filepath.Join(c.DataDir, "models", "current")
	}
	if c.ModelPoll <= 0 {
		bad("MODEL_POLL", "%v must be positive", c.ModelPoll)
	}
	if _, err := ortenv.ParseProvider(c.Provider); err != nil {
		bad("PROVIDER", "%v", err)
	}
	if c.DeviceID < 0 {
		bad("DEVICE_ID", "%d is negative", c.DeviceID)
	}
	if c.Threads < 0 {
		bad("THREADS", "%d is negative", c.Threads)
	}
	c.validateTRT(bad)
	if c.BatchMax < 1 || c.BatchMax > 256 {
		bad("BATCH_MAX", "%d is outside 1..256", c.BatchMax)
	}
	if c.BatchWait < 0 {
		bad("BATCH_WAIT", "%v is negative", c.BatchWait)
	}
	if c.NegativesKeep < 0 {
		bad("NEGATIVES_KEEP", "%d is negative", c.NegativesKeep)
	}
	if strings.TrimSpace(c.Sources) != "" {
		if _, err := capture.ParseSources(c.Sources); err != nil {
			bad("SOURCES", "%v", err)
		}
	} else if !c.Demo {
		bad("SOURCES", "no camera sources configured (set DIAGD_SOURCES, or DIAGD_DEMO=true to try diagd on a generated video)")
	}
	if !strings.Contains(c.MQTTBroker, "://") {
		bad("MQTT_BROKER", "%q is not a URL like tcp://host:1883", c.MQTTBroker)
	}
	for v, p := range map[string]string{"MQTT_CA_FILE": c.MQTTCAFile, "MQTT_CERT_FILE": c.MQTTCertFile, "MQTT_KEY_FILE": c.MQTTKeyFile} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err != nil {
			bad(v, "%v", err)
		}
	}
	if (c.MQTTCertFile == "") != (c.MQTTKeyFile == "") {
		bad("MQTT_CERT_FILE", "client certificate and key (DIAGD_MQTT_KEY_FILE) must be given together")
	}
	if c.OutboxMaxBytes < 1<<20 {
		bad("OUTBOX_MAX_BYTES", "%d is below 1 MiB", c.OutboxMaxBytes)
	}
	if c.OutboxMaxRecords < 100 {
		bad("OUTBOX_MAX_RECORDS", "%d is below 100", c.OutboxMaxRecords)
	} else if c.OutboxMaxRecords < c.BatchMax {
		// A batch's verdicts are stored together: a bigger batch would never fit.
		bad("OUTBOX_MAX_RECORDS", "%d is below DIAGD_BATCH_MAX (%d)", c.OutboxMaxRecords, c.BatchMax)
	}
	if c.HTTPAddr != "" {
		if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
			bad("HTTP_ADDR", "%q: %v", c.HTTPAddr, err)
		}
	}
	if c.ShutdownTimeout <= 0 {
		bad("SHUTDOWN_TIMEOUT", "%v must be positive", c.ShutdownTimeout)
	}
	c.validateJobs(bad)
	return errors.Join(errs...)
}

// validateTRT checks the TensorRT settings: they only mean something where TensorRT may
// run, and the cache must be a folder diagd can name without a working directory.
func (c *Config) validateTRT(bad func(v string, format string, a ...any)) {
	p, err := ortenv.ParseProvider(c.Provider)
	tensorRT := err == nil && (p == ortenv.TensorRT || p == ortenv.Auto)
	if c.TRTFP16 && err == nil && !tensorRT {
		bad("TRT_FP16", "true has no effect with DIAGD_PROVIDER=%s (TensorRT only: use tensorrt or auto)", p)
	}
	if c.TRTCache == "" {
		return
	}
	switch {
	case !filepath.IsAbs(c.TRTCache):
		bad("TRT_CACHE", "%q is not an absolute path", c.TRTCache)
	case strings.ContainsRune(c.TRTCache, 0):
		bad("TRT_CACHE", "contains a NUL byte")
	default:
		if st, err := os.Stat(c.TRTCache); err == nil && !st.IsDir() {
			bad("TRT_CACHE", "%s is a file; name a folder", c.TRTCache)
		}
	}
}

// Session is the ONNX Runtime session options the settings give, with threads for the
// caller's job (THREADS for judging, JOB_THREADS for jobs). Call after Validate.
func (c Config) Session(threads int) ortenv.Options {
	p, _ := ortenv.ParseProvider(c.Provider)
	return ortenv.Options{Provider: p, DeviceID: c.DeviceID, Threads: threads, TRTFP16: c.TRTFP16, TRTCacheDir: c.TRTCache}
}

// Summary is the configuration without secrets, for logs and the retained config state.
func (c Config) Summary() map[string]any {
	return map[string]any{
		"station": c.Station, "sources": c.Sources, "dataDir": c.DataDir, "modelDir": c.ModelDir,
		"provider": c.Provider, "trtFP16": c.TRTFP16, "batchMax": c.BatchMax, "mqttBroker": c.MQTTBroker, "mqttPrefix": c.MQTTPrefix,
		"mqttTLS": c.MQTTCAFile != "" || c.MQTTCertFile != "", "mqttAuth": c.MQTTUsername != "",
		"outboxMaxBytes": c.OutboxMaxBytes, "outboxMaxRecords": c.OutboxMaxRecords, "httpAddr": c.HTTPAddr, "demo": c.Demo,
		"catalogue": c.Catalogue, "generator": c.Generator, "augmentN": c.AugmentN, "retrainEvery": c.RetrainEvery.String(),
		"autoAccept": c.AutoAccept, "registry": c.Registry, "retrainMode": c.RetrainMode, "promoteTolerance": c.PromoteTolerance,
	}
}

// validateJobs checks the settings of the generation and retraining job.
func (c *Config) validateJobs(bad func(v string, format string, a ...any)) {
	if c.Registry == "" && c.DataDir != "" {
		c.Registry = filepath.Join(c.DataDir, "models")
	}
	// A missing or invalid catalogue file is not fatal: verdicts matter more, and the
	// daemon keeps retrying on edits (jobs that need it refuse until it is valid).
	if c.Catalogue != "" {
		if st, err := os.Stat(c.Catalogue); err == nil && st.IsDir() {
			bad("CATALOGUE", "%s is a folder; name the catalogue's YAML file", c.Catalogue)
		}
	}
	if c.SDXLDir != "" {
		if st, err := os.Stat(c.SDXLDir); err != nil {
			bad("SDXL_DIR", "%v", err)
		} else if !st.IsDir() {
			bad("SDXL_DIR", "%s is not a folder (want the optimum SDXL-inpainting export)", c.SDXLDir)
		}
	}
	switch c.Generator {
	case "", "auto":
		c.Generator = "memseg"
		if c.SDXLDir != "" {
			c.Generator = "diag"
		}
	case "memseg":
	case "diag":
		if c.SDXLDir == "" {
			bad("GENERATOR", "diag needs DIAGD_SDXL_DIR (an SDXL-inpainting ONNX export); use memseg to generate without a model")
		}
	default:
		bad("GENERATOR", "%q: want auto, diag or memseg", c.Generator)
	}
	if c.AugmentN < 1 || c.AugmentN > 100000 {
		bad("AUGMENT_N", "%d is outside 1..100000", c.AugmentN)
	}
	if c.RetrainEvery < 0 {
		bad("RETRAIN_EVERY", "%v is negative (0 turns the schedule off)", c.RetrainEvery)
	}
	switch c.RetrainMode {
	case "", "auto":
		c.RetrainMode = "auto"
	case "zero-shot", "full-shot":
	default:
		bad("RETRAIN_MODE", "%q: want auto, zero-shot or full-shot", c.RetrainMode)
	}
	if !(c.PromoteTolerance >= 0 && c.PromoteTolerance <= 1) {
		bad("PROMOTE_TOLERANCE", "%v is outside 0..1 (it is an AP difference)", c.PromoteTolerance)
	}
	if c.JobThreads < 0 {
		bad("JOB_THREADS", "%d is negative", c.JobThreads)
	}
}
