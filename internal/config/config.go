// Package config reads the daemon's settings from DIAGD_* environment variables
// (envconfig) and validates all of them at start, naming the variable and the bad value.
package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
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
	TRTFP16       bool          `envconfig:"DIAGD_TRT_FP16" default:"false" desc:"let TensorRT build float16 kernels (provider tensorrt or auto)"`
	TRTCache      string        `envconfig:"DIAGD_TRT_CACHE" desc:"TensorRT engine and timing cache folder (absolute; default $XDG_CACHE_HOME/diagd/tensorrt)"`
	Threads       int           `envconfig:"DIAGD_THREADS" default:"0" desc:"ONNX Runtime intra-op threads on CPU (0: one per core)"`
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

	MQTTMaxPacket int    `envconfig:"DIAGD_MQTT_MAX_PACKET" default:"0" desc:"the broker's max_packet_size in bytes, if it sets one (larger verdicts go to the outbox's dead-letter file); 0: unknown"`
	Commands      string `envconfig:"DIAGD_COMMANDS" desc:"comma-separated MQTT commands to answer, e.g. trigger,status (default: all)"`

	OutboxMaxBytes   int64 `envconfig:"DIAGD_OUTBOX_MAX_BYTES" default:"268435456" desc:"outbox size limit; when full, frames are not taken (verdicts are never dropped)"`
	OutboxMaxRecords int   `envconfig:"DIAGD_OUTBOX_MAX_RECORDS" default:"1000000" desc:"outbox record limit"`

	HTTPAddr        string        `envconfig:"DIAGD_HTTP_ADDR" default:"127.0.0.1:9410" desc:"/livez, /readyz and /metrics; empty: off"`
	ShutdownTimeout time.Duration `envconfig:"DIAGD_SHUTDOWN_TIMEOUT" default:"20s" desc:"how long a stop may take to flush the outbox"`

	// The console (console/): a web page on HTTP_ADDR for operators and technicians.
	Console       bool   `envconfig:"DIAGD_CONSOLE" default:"true" desc:"serve the console web page on HTTP_ADDR"`
	HTTPUsers     string `envconfig:"DIAGD_HTTP_USERS" desc:"console users file (name:role:bcrypt-hash lines); a non-loopback HTTP_ADDR needs it or HTTP_TOKEN_FILE"`
	HTTPTokenFile string `envconfig:"DIAGD_HTTP_TOKEN_FILE" desc:"console bearer tokens file (name:role:token lines, not readable by others)"`
	KeepFails     int    `envconfig:"DIAGD_KEEP_FAILS" default:"100" desc:"failed frames kept on disk for the console (0: none)"`

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
	PromoteTolerance float64       `envconfig:"DIAGD_PROMOTE_TOLERANCE" default:"0" desc:"AP a candidate may lose: promote when the lower confidence bound of AP(candidate) - AP(serving) is >= -tolerance"`
	JobThreads       int           `envconfig:"DIAGD_JOB_THREADS" default:"1" desc:"ONNX Runtime CPU threads for generation and retraining jobs (kept low so judging keeps up)"`
	Arch             string        `envconfig:"DIAGD_ARCH" default:"auto" desc:"network retraining trains: resnet50 (the paper's classifier, from the serving model's weights), segdec (segmentation + decision network from random weights, supervised by the masks), or auto (what the registry serves)"`
	Trainable        string        `envconfig:"DIAGD_TRAINABLE" default:"auto" desc:"what retraining trains: head, last (last stage + head), all, or auto (all on a GPU; on the CPU the most complete setting whose estimate fits TRAIN_BUDGET, head without one)"`
	TrainBudget      time.Duration `envconfig:"DIAGD_TRAIN_BUDGET" default:"0" desc:"time budget of a retraining run for TRAINABLE=auto (e.g. 2h; at least 1m, at most 30 days); 0: none"`

	// Read by every command (the logger, ONNX Runtime), validated here for `run` and `validate`.
	LogLevel  string `envconfig:"DIAGD_LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
	LogFormat string `envconfig:"DIAGD_LOG_FORMAT" default:"json" desc:"json or text"`
	ORTLib    string `envconfig:"DIAGD_ORT_LIB" desc:"ONNX Runtime shared library; default: next to the binary, then the loader's path"`

	// The promotion gate (retrain/gate); the defaults are gate.Default*.
	PromoteConfidence  float64 `envconfig:"DIAGD_PROMOTE_CONFIDENCE" default:"0.95" desc:"confidence of the promotion test (paired bootstrap of AP) and of the chance band"`
	PromoteMinDefects  int     `envconfig:"DIAGD_PROMOTE_MIN_DEFECTS" default:"10" desc:"fewest validation defects to decide on; with fewer, the serving model stays"`
	PromoteMaxGoodFail float64 `envconfig:"DIAGD_PROMOTE_MAX_GOOD_FAIL" default:"0.2" desc:"largest share of validation good parts a candidate's threshold may fail"`
}

// Limits on settings: values outside them are refused, since they only ever come from a
// typo and some of them (a poll or schedule of nanoseconds) would burn a core or flood
// the log.
const (
	MinModelPoll       = 100 * time.Millisecond
	MaxModelPoll       = time.Hour
	MinRetrainEvery    = time.Minute
	MinTrainBudget     = time.Minute
	MaxTrainBudget     = 30 * 24 * time.Hour
	MaxBatchWait       = time.Second
	MinShutdownTimeout = time.Second
	MaxShutdownTimeout = 10 * time.Minute
	MaxThreads         = 1024
	MaxDeviceID        = 255
	MaxNegativesKeep   = 1_000_000
)

// Load reads the environment and validates it. Errors name the variable.
func Load() (Config, error) {
	var c Config
	if err := envconfig.Process("", &c); err != nil {
		// envconfig names the variable: "assigning DIAGD_X to X: converting ..."
		return c, fmt.Errorf("configuration: %s", Redact(err.Error()))
	}
	return c, c.Validate()
}

var stationRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// problems collects validation errors, each naming its variable. Messages are redacted:
// a value may carry a password (a broker or camera URL).
type problems []error

func (p *problems) bad(v string, format string, a ...any) {
	*p = append(*p, fmt.Errorf("%s_%s: %s", Prefix, v, Redact(fmt.Sprintf(format, a...))))
}

// Validate checks every setting, fills in derived defaults, and reports all problems
// at once.
func (c *Config) Validate() error {
	var p problems
	c.validateCore(&p)
	c.validateLimits(&p)
	c.validateMQTT(&p)
	c.validateJobs(&p)
	c.validateRuntime(&p)
	c.validateTRT(&p)
	c.validateConsole(&p)
	return errors.Join(p...)
}

func (c *Config) validateCore(p *problems) {
	if c.Station == "" {
		h, err := os.Hostname()
		if err != nil {
			p.bad("STATION", "not set and the host name is unavailable: %v", err)
		}
		c.Station = h
	}
	if !stationRE.MatchString(c.Station) {
		p.bad("STATION", "%q: use letters, digits, '.', '_' and '-' only (it becomes an MQTT topic level and client id)", c.Station)
	}
	if c.DataDir == "" {
		p.bad("DATA_DIR", "must not be empty")
	}
	if c.ModelDir == "" {
		c.ModelDir = filepath.Join(c.DataDir, "models", "current")
	}
	if _, err := ortenv.ParseProvider(c.Provider); err != nil {
		p.bad("PROVIDER", "%v", err)
	}
	if strings.TrimSpace(c.Sources) != "" {
		if _, err := capture.ParseSources(c.Sources); err != nil {
			p.bad("SOURCES", "%v", err)
		}
	} else if !c.Demo {
		p.bad("SOURCES", "no camera sources configured (set DIAGD_SOURCES, or DIAGD_DEMO=true to try diagd on a generated video)")
	}
	if c.HTTPAddr != "" {
		if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
			p.bad("HTTP_ADDR", "%q: %v", c.HTTPAddr, err)
		}
	}
}

// validateLimits checks numbers and durations against their sane ranges.
func (c *Config) validateLimits(p *problems) {
	if c.ModelPoll < MinModelPoll || c.ModelPoll > MaxModelPoll {
		p.bad("MODEL_POLL", "%v is outside %v..%v", c.ModelPoll, MinModelPoll, MaxModelPoll)
	}
	validateDeviceID(p, c.DeviceID)
	if c.Threads < 0 || c.Threads > MaxThreads {
		p.bad("THREADS", "%d is outside 0..%d", c.Threads, MaxThreads)
	}
	if c.BatchMax < 1 || c.BatchMax > 256 {
		p.bad("BATCH_MAX", "%d is outside 1..256", c.BatchMax)
	}
	if c.BatchWait < 0 || c.BatchWait > MaxBatchWait {
		p.bad("BATCH_WAIT", "%v is outside 0..%v", c.BatchWait, MaxBatchWait)
	}
	if c.NegativesKeep < 0 || c.NegativesKeep > MaxNegativesKeep {
		p.bad("NEGATIVES_KEEP", "%d is outside 0..%d", c.NegativesKeep, MaxNegativesKeep)
	}
	if c.OutboxMaxBytes < 1<<20 {
		p.bad("OUTBOX_MAX_BYTES", "%d is below 1 MiB", c.OutboxMaxBytes)
	}
	if c.OutboxMaxRecords < 100 {
		p.bad("OUTBOX_MAX_RECORDS", "%d is below 100", c.OutboxMaxRecords)
	} else if c.OutboxMaxRecords < c.BatchMax {
		// A batch's verdicts are stored together: a bigger batch would never fit.
		p.bad("OUTBOX_MAX_RECORDS", "%d is below DIAGD_BATCH_MAX (%d)", c.OutboxMaxRecords, c.BatchMax)
	}
	if c.ShutdownTimeout < MinShutdownTimeout || c.ShutdownTimeout > MaxShutdownTimeout {
		p.bad("SHUTDOWN_TIMEOUT", "%v is outside %v..%v", c.ShutdownTimeout, MinShutdownTimeout, MaxShutdownTimeout)
	}
}

// brokerSchemes are the URL schemes the MQTT client speaks (plain and TLS).
var brokerSchemes = map[string]bool{"tcp": false, "mqtt": false, "ssl": true, "tls": true, "mqtts": true, "tcps": true}

// validateMQTT checks the broker URL, the topic prefix and the TLS files. Credentials in
// the broker URL move to MQTTUsername/MQTTPassword, so the URL that is logged and
// published carries none.
func (c *Config) validateMQTT(p *problems) {
	u, err := url.Parse(c.MQTTBroker)
	switch {
	case err != nil || !strings.Contains(c.MQTTBroker, "://"):
		p.bad("MQTT_BROKER", "%q is not a URL like tcp://host:1883", c.MQTTBroker)
	case !knownScheme(u.Scheme):
		p.bad("MQTT_BROKER", "%q: scheme %q is not tcp, mqtt, ssl, tls, mqtts or tcps", c.MQTTBroker, u.Scheme)
	case u.Hostname() == "":
		p.bad("MQTT_BROKER", "%q has no host", c.MQTTBroker)
	case u.User != nil:
		pw, _ := u.User.Password()
		if c.MQTTUsername != "" || c.MQTTPassword != "" {
			p.bad("MQTT_BROKER", "%q carries credentials and DIAGD_MQTT_USERNAME/PASSWORD are set too: give them once", c.MQTTBroker)
			break
		}
		c.MQTTUsername, c.MQTTPassword = u.User.Username(), pw
		u.User = nil
		c.MQTTBroker = u.String()
	}
	if strings.ContainsAny(c.MQTTPrefix, "+#") {
		// Wildcards are for subscribing: a topic published under them is refused.
		p.bad("MQTT_PREFIX", "%q holds + or #, which MQTT allows only in subscriptions", c.MQTTPrefix)
	}
	if c.MQTTPassword != "" && c.MQTTUsername == "" {
		p.bad("MQTT_PASSWORD", "set without DIAGD_MQTT_USERNAME (MQTT sends no password without a user name)")
	}
	c.validateTLS(p)
	c.validateCommands(p)
}

// CommandNames are the MQTT commands the daemon answers (DIAGD_COMMANDS picks from them).
var CommandNames = []string{"status", "trigger", "reload", "augment", "retrain", "cycle"}

// CommandList is DIAGD_COMMANDS as a list; nil when unset (every command).
func (c *Config) CommandList() []string {
	var out []string
	for _, n := range strings.Split(c.Commands, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	return out
}

// validateCommands checks the command allow-list and the broker's packet limit.
func (c *Config) validateCommands(p *problems) {
	if c.MQTTMaxPacket != 0 && (c.MQTTMaxPacket < 512 || c.MQTTMaxPacket > 268435455) {
		p.bad("MQTT_MAX_PACKET", "%d: want 0 (unknown) or 512..268435455 bytes", c.MQTTMaxPacket)
	}
	if strings.TrimSpace(c.Commands) != "" && len(c.CommandList()) == 0 {
		p.bad("COMMANDS", "%q names no command (leave it unset to answer every command)", c.Commands)
	}
	for _, n := range c.CommandList() {
		if !slices.Contains(CommandNames, n) {
			p.bad("COMMANDS", "unknown command %q (commands: %s)", n, strings.Join(CommandNames, ", "))
		}
	}
}

func knownScheme(s string) bool { _, ok := brokerSchemes[s]; return ok }

func (c *Config) validateTLS(p *problems) {
	if c.MQTTCAFile != "" {
		if b, err := os.ReadFile(c.MQTTCAFile); err != nil {
			p.bad("MQTT_CA_FILE", "%v", err)
		} else if !x509.NewCertPool().AppendCertsFromPEM(b) {
			p.bad("MQTT_CA_FILE", "%s holds no PEM certificate", c.MQTTCAFile)
		}
	}
	if (c.MQTTCertFile == "") != (c.MQTTKeyFile == "") {
		p.bad("MQTT_CERT_FILE", "client certificate and key (DIAGD_MQTT_KEY_FILE) must be given together")
	} else if c.MQTTCertFile != "" {
		if _, err := tls.LoadX509KeyPair(c.MQTTCertFile, c.MQTTKeyFile); err != nil {
			p.bad("MQTT_CERT_FILE", "with DIAGD_MQTT_KEY_FILE: %v", err)
		}
	}
}

// validateRuntime checks logging and the ONNX Runtime library.
func (c *Config) validateRuntime(p *problems) {
	switch strings.ToLower(c.LogLevel) {
	case "", "debug", "info", "warn", "error":
	default:
		p.bad("LOG_LEVEL", "%q: want debug, info, warn or error", c.LogLevel)
	}
	switch c.LogFormat {
	case "", "json", "text":
	default:
		p.bad("LOG_FORMAT", "%q: want json or text", c.LogFormat)
	}
	if c.ORTLib != "" {
		if st, err := os.Stat(c.ORTLib); err != nil {
			p.bad("ORT_LIB", "%v (unset it to use the library next to the binary)", err)
		} else if st.IsDir() {
			p.bad("ORT_LIB", "%s is a folder; name libonnxruntime.so itself", c.ORTLib)
		}
	}
}

// validateJobs checks the settings of the generation and retraining job.
func (c *Config) validateJobs(p *problems) {
	if c.Registry == "" && c.DataDir != "" {
		c.Registry = filepath.Join(c.DataDir, "models")
	}
	// A missing or invalid catalogue file is not fatal: verdicts matter more, and the
	// daemon keeps retrying on edits (jobs that need it refuse until it is valid).
	if c.Catalogue != "" {
		if st, err := os.Stat(c.Catalogue); err == nil && st.IsDir() {
			p.bad("CATALOGUE", "%s is a folder; name the catalogue's YAML file", c.Catalogue)
		}
	}
	if c.SDXLDir != "" {
		if st, err := os.Stat(c.SDXLDir); err != nil {
			p.bad("SDXL_DIR", "%v", err)
		} else if !st.IsDir() {
			p.bad("SDXL_DIR", "%s is not a folder (want the optimum SDXL-inpainting export)", c.SDXLDir)
		}
	}
	c.validateGenerator(p)
	if c.AugmentN < 1 || c.AugmentN > 100000 {
		p.bad("AUGMENT_N", "%d is outside 1..100000", c.AugmentN)
	}
	if c.RetrainEvery < 0 || (c.RetrainEvery > 0 && c.RetrainEvery < MinRetrainEvery) {
		p.bad("RETRAIN_EVERY", "%v: want 0 (no schedule) or at least %v", c.RetrainEvery, MinRetrainEvery)
	}
	switch c.RetrainMode {
	case "", "auto":
		c.RetrainMode = "auto"
	case "zero-shot", "full-shot":
	default:
		p.bad("RETRAIN_MODE", "%q: want auto, zero-shot or full-shot", c.RetrainMode)
	}
	if !(c.PromoteTolerance >= 0 && c.PromoteTolerance <= 1) {
		p.bad("PROMOTE_TOLERANCE", "%v is outside 0..1 (it is an AP difference)", c.PromoteTolerance)
	}
	c.validateGate(p)
	if c.JobThreads < 0 || c.JobThreads > MaxThreads {
		p.bad("JOB_THREADS", "%d is outside 0..%d", c.JobThreads, MaxThreads)
	}
	c.validateTraining(p)
}

// validateTraining checks what retraining trains and its time budget.
func (c *Config) validateTraining(p *problems) {
	switch c.Arch {
	case "":
		c.Arch = "auto"
	case "auto", "resnet50", "segdec":
	default:
		p.bad("ARCH", "%q: want auto, resnet50 or segdec", c.Arch)
	}
	if c.Arch == "segdec" && c.Trainable != "" && c.Trainable != "auto" && c.Trainable != "all" {
		p.bad("TRAINABLE", "%q does not apply to ARCH=segdec, which trains every layer from random weights", c.Trainable)
	}
	switch c.Trainable {
	case "":
		c.Trainable = "auto"
	case "auto", "head", "last", "all":
	default:
		p.bad("TRAINABLE", "%q: want auto, head, last or all", c.Trainable)
	}
	if c.TrainBudget != 0 && (c.TrainBudget < MinTrainBudget || c.TrainBudget > MaxTrainBudget) {
		p.bad("TRAIN_BUDGET", "%v: want 0 (none) or %v..%v", c.TrainBudget, MinTrainBudget, MaxTrainBudget)
	}
}

func (c *Config) validateGenerator(p *problems) {
	switch c.Generator {
	case "", "auto":
		c.Generator = "memseg"
		if c.SDXLDir != "" {
			c.Generator = "diag"
		}
	case "memseg":
	case "diag":
		if c.SDXLDir == "" {
			p.bad("GENERATOR", "diag needs DIAGD_SDXL_DIR (an SDXL-inpainting ONNX export); use memseg to generate without a model")
		}
	default:
		p.bad("GENERATOR", "%q: want auto, diag or memseg", c.Generator)
	}
}

// validateGate checks the promotion gate's settings (retrain/gate).
func (c *Config) validateGate(p *problems) {
	if !(c.PromoteConfidence > 0.5 && c.PromoteConfidence < 1) {
		p.bad("PROMOTE_CONFIDENCE", "%v is outside (0.5, 1)", c.PromoteConfidence)
	}
	if c.PromoteMinDefects < 1 || c.PromoteMinDefects > 100000 {
		p.bad("PROMOTE_MIN_DEFECTS", "%d is outside 1..100000", c.PromoteMinDefects)
	}
	if !(c.PromoteMaxGoodFail > 0 && c.PromoteMaxGoodFail <= 1) {
		p.bad("PROMOTE_MAX_GOOD_FAIL", "%v is outside (0, 1] (it is a share of good parts)", c.PromoteMaxGoodFail)
	}
}

// validateTRT checks the TensorRT settings: they only mean something where TensorRT may
// run, and the cache must be a folder diagd can name without a working directory.
func (c *Config) validateTRT(pr *problems) {
	p, err := ortenv.ParseProvider(c.Provider)
	tensorRT := err == nil && (p == ortenv.TensorRT || p == ortenv.Auto)
	if c.TRTFP16 && err == nil && !tensorRT {
		pr.bad("TRT_FP16", "true has no effect with DIAGD_PROVIDER=%s (TensorRT only: use tensorrt or auto)", p)
	}
	validateTRTCache(pr, c.TRTCache)
}

func validateDeviceID(p *problems, id int) {
	if id < 0 || id > MaxDeviceID {
		p.bad("DEVICE_ID", "%d is outside 0..%d", id, MaxDeviceID)
	}
}

func validateTRTCache(pr *problems, dir string) {
	if dir == "" {
		return
	}
	switch {
	case !filepath.IsAbs(dir):
		pr.bad("TRT_CACHE", "%q is not an absolute path", dir)
	case strings.ContainsRune(dir, 0):
		pr.bad("TRT_CACHE", "contains a NUL byte")
	default:
		if st, err := os.Stat(dir); err == nil && !st.IsDir() {
			pr.bad("TRT_CACHE", "%s is a file; name a folder", dir)
		}
	}
}

// Session is the ONNX Runtime session options the settings give, with threads for the
// caller's job (THREADS for judging, JOB_THREADS for jobs). Call after Validate.
func (c Config) Session(threads int) ortenv.Options {
	p, _ := ortenv.ParseProvider(c.Provider)
	return SessionEnv{DeviceID: c.DeviceID, TRTFP16: c.TRTFP16, TRTCache: c.TRTCache}.Options(p, threads)
}

// SessionEnv are the session settings besides the provider, as Config reads them (same
// variables, same defaults, same checks): what the CLI tools honour, which take the
// provider from --provider and need no daemon configuration.
type SessionEnv struct {
	DeviceID int    `envconfig:"DIAGD_DEVICE_ID" default:"0"`
	TRTFP16  bool   `envconfig:"DIAGD_TRT_FP16" default:"false"`
	TRTCache string `envconfig:"DIAGD_TRT_CACHE"`
}

// LoadSessionEnv reads and checks DIAGD_DEVICE_ID, DIAGD_TRT_FP16 and DIAGD_TRT_CACHE
// alone. Errors name the variable.
func LoadSessionEnv() (SessionEnv, error) {
	var s SessionEnv
	if err := envconfig.Process("", &s); err != nil {
		return s, fmt.Errorf("configuration: %s", Redact(err.Error()))
	}
	var p problems
	validateDeviceID(&p, s.DeviceID)
	validateTRTCache(&p, s.TRTCache)
	return s, errors.Join(p...)
}

// Options are the session options for provider p with threads intra-op threads.
func (s SessionEnv) Options(p ortenv.Provider, threads int) ortenv.Options {
	return ortenv.Options{Provider: p, DeviceID: s.DeviceID, Threads: threads, TRTFP16: s.TRTFP16, TRTCacheDir: s.TRTCache}
}
