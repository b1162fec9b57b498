package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/diagd/diagd/capture"
	"github.com/diagd/diagd/internal/config"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/mqtt"
)

// CheckOptions tune Check.
type CheckOptions struct {
	// RunningDiagdOK accepts an HTTP port held by a diagd that answers /readyz there (a
	// warning, not an error): `diagd validate` on a station whose daemon runs, before it
	// is restarted with the new settings.
	RunningDiagdOK bool
}

// Check verifies, without starting anything, what Run will need beyond what
// config.Validate can see in the values alone: the data folder is writable, the HTTP
// port is free, the sources can be built, the MQTT client accepts its settings, and
// ONNX Runtime loads. `diagd validate` runs it, and `diagd run` runs it first, so a
// configuration that cannot work is refused as such (exit status 78: systemd does not
// restart it) instead of failing later and restarting forever. Every error names its
// variable. cfg must have passed config.Validate. It returns warnings (things that
// are fine now) and the problems.
func Check(log *slog.Logger, cfg config.Config, o CheckOptions) ([]string, error) {
	var errs []error
	var warnings []string
	bad := func(v string, err error) {
		errs = append(errs, fmt.Errorf("%s_%s: %s", config.Prefix, v, config.Redact(err.Error())))
	}
	if err := checkWritable(cfg.DataDir); err != nil {
		bad("DATA_DIR", err)
	}
	if cfg.HTTPAddr != "" {
		if ln, err := net.Listen("tcp", cfg.HTTPAddr); err == nil {
			ln.Close()
		} else if o.RunningDiagdOK && diagdAt(cfg.HTTPAddr) {
			warnings = append(warnings, fmt.Sprintf("%s_HTTP_ADDR %s is held by a running diagd: restart it to apply these settings",
				config.Prefix, cfg.HTTPAddr))
		} else {
			bad("HTTP_ADDR", err)
		}
	}
	if err := checkSources(cfg.Sources); err != nil {
		bad("SOURCES", err)
	}
	if _, err := mqtt.New(nil, mqttConfig(cfg), nil, nil); err != nil {
		bad("MQTT_BROKER (or the MQTT_* settings)", err)
	}
	if _, err := ortenv.Init(log); err != nil {
		bad("ORT_LIB", err)
	}
	return warnings, errors.Join(errs...)
}

// diagdAt reports whether a diagd answers /readyz at addr.
func diagdAt(addr string) bool {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/readyz")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var r readyz
	dec := json.NewDecoder(io.LimitReader(resp.Body, 1<<16))
	dec.DisallowUnknownFields()
	return dec.Decode(&r) == nil && r.Reasons != nil
}

// checkWritable creates dir if needed and writes, syncs and removes a probe file in it.
func checkWritable(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".diagd-check-*")
	if err != nil {
		return fmt.Errorf("%s is not writable: %w", dir, err)
	}
	name := f.Name()
	_, err = f.Write([]byte("ok"))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	os.Remove(name)
	if err != nil {
		return fmt.Errorf("%s: writing a file: %w", dir, err)
	}
	return nil
}

// checkSources builds every source as Run would, with folder journals in a throwaway
// folder: opening the real journal would rewrite it under a running daemon, and a
// check leaves nothing behind. A journal folder named in the source must be writable.
func checkSources(spec string) error {
	if strings.TrimSpace(spec) == "" {
		return nil // the demo stands in for sources (config.Validate requires them otherwise)
	}
	cfgs, err := capture.ParseSources(spec)
	if err != nil || len(cfgs) == 0 {
		return err
	}
	tmp, err := os.MkdirTemp("", "diagd-check-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for _, sc := range cfgs {
		if sc.Kind == capture.KindFolder {
			if sc.StateDir != "" {
				if err := checkWritable(sc.StateDir); err != nil {
					return fmt.Errorf("source %q: state=%w", sc.Name, err)
				}
			}
			sc.StateDir = filepath.Join(tmp, sc.Name)
		}
		if _, err := capture.New(nil, sc, capture.Hooks{}); err != nil {
			return err
		}
	}
	return nil
}

// mqttConfig is the MQTT client's configuration from the daemon's.
func mqttConfig(cfg config.Config) mqtt.Config {
	return mqtt.Config{
		Broker: cfg.MQTTBroker, Station: cfg.Station, TopicPrefix: cfg.MQTTPrefix,
		Username: cfg.MQTTUsername, Password: cfg.MQTTPassword,
		CAFile: cfg.MQTTCAFile, CertFile: cfg.MQTTCertFile, KeyFile: cfg.MQTTKeyFile,
		MaxPacket: cfg.MQTTMaxPacket, Commands: cfg.CommandList(),
	}
}
