package mqtt

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"
)

// Config is how diagd talks to its broker. Zero durations and sizes take the defaults
// named on each field.
type Config struct {
	// Broker URL: tcp://host:1883, or ssl://host:8883 (also tls://, mqtts://) for TLS.
	Broker string
	// Station names this inspection station. The MQTT client id and the topic prefix
	// derive from it, so two daemons configured with the same station fight over one
	// session (each connect kicks the other off and availability flaps): give every
	// daemon its own station name.
	Station string
	// TopicPrefix, default "diagd/<station>".
	TopicPrefix string
	// ClientID, default "diagd-<station>".
	ClientID string

	Username string
	Password string
	// CAFile verifies the broker's certificate (default: the system roots).
	CAFile string
	// CertFile and KeyFile: client certificate for mutual TLS (both or neither).
	CertFile string
	KeyFile  string

	KeepAlive      time.Duration // default 30 s
	ConnectTimeout time.Duration // default 10 s
	// AckTimeout bounds every wait on the broker (PUBACK, SUBACK): default 10 s. A
	// verdict not acknowledged in time is re-sent from the outbox.
	AckTimeout time.Duration
	// MaxReconnectInterval caps the reconnect backoff (1 s doubling): default 30 s.
	MaxReconnectInterval time.Duration
	// Window is how many verdicts may await their PUBACK at once: default 64.
	Window int
	// EventQueue bounds the best-effort event queue; the oldest is dropped when full.
	// Default 256.
	EventQueue int
	// CommandTimeout bounds a command handler: default 60 s.
	CommandTimeout time.Duration
	// Commands, when not empty, is the allow-list of commands this station answers;
	// any other gets an error result. Empty: every registered command.
	Commands []string
	// MaxCommandBytes bounds a command's payload: default 64 KiB.
	MaxCommandBytes int
	// MaxCommandsInFlight bounds the commands handled at once; more are dropped (and
	// counted). Default 8.
	MaxCommandsInFlight int
	// MaxPacket is the largest packet the broker accepts (mosquitto's max_packet_size),
	// when known: a larger verdict is set aside in the outbox's dead-letter file, a larger
	// state or event refused, without sending them. 0: unknown (the client then learns
	// the limit from a message the broker keeps refusing; see sessionStore).
	MaxPacket int
}

func (c *Config) normalize() error {
	if c.Broker == "" {
		return errors.New("mqtt: broker URL is empty")
	}
	u, err := url.Parse(c.Broker)
	if err != nil {
		return fmt.Errorf("mqtt: broker URL %q: %w", c.Broker, err)
	}
	switch u.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts", "tcps":
	default:
		return fmt.Errorf("mqtt: broker URL %q: scheme %q is not tcp, mqtt, ssl, tls or mqtts", c.Broker, u.Scheme)
	}
	if c.Station == "" {
		return errors.New("mqtt: station is empty")
	}
	if strings.ContainsAny(c.Station, "/+#") {
		return fmt.Errorf("mqtt: station %q contains /, + or #", c.Station)
	}
	if c.TopicPrefix == "" {
		c.TopicPrefix = "diagd/" + c.Station
	}
	c.TopicPrefix = strings.TrimSuffix(c.TopicPrefix, "/")
	if strings.ContainsAny(c.TopicPrefix, "+#") {
		return fmt.Errorf("mqtt: topic prefix %q contains + or #", c.TopicPrefix)
	}
	if c.ClientID == "" {
		c.ClientID = "diagd-" + c.Station
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return fmt.Errorf("mqtt: client certificate %q and key %q must be given together", c.CertFile, c.KeyFile)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.KeepAlive, 30*time.Second)
	def(&c.ConnectTimeout, 10*time.Second)
	def(&c.AckTimeout, 10*time.Second)
	def(&c.MaxReconnectInterval, 30*time.Second)
	def(&c.CommandTimeout, 60*time.Second)
	if c.Window <= 0 {
		c.Window = 64
	}
	if c.Window > 65000 {
		return fmt.Errorf("mqtt: window %d exceeds MQTT's packet ids", c.Window)
	}
	if c.EventQueue <= 0 {
		c.EventQueue = 256
	}
	return c.normalizeLimits()
}

func (c *Config) tlsConfig() (*tls.Config, error) {
	u, _ := url.Parse(c.Broker)
	secure := u.Scheme == "ssl" || u.Scheme == "tls" || u.Scheme == "mqtts" || u.Scheme == "tcps"
	if !secure && c.CAFile == "" && c.CertFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt: CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("mqtt: CA file %s holds no PEM certificate", c.CAFile)
		}
		cfg.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt: client certificate %s / key %s: %w", c.CertFile, c.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// minPacket is the smallest broker packet limit accepted. A verdict is about 400 bytes,
// about 2.5 KiB at its field limits (see Verdict); larger ones are set aside.
const minPacket = 512

func (c *Config) normalizeLimits() error {
	if c.MaxCommandBytes <= 0 {
		c.MaxCommandBytes = 64 << 10
	}
	if c.MaxCommandsInFlight <= 0 {
		c.MaxCommandsInFlight = 8
	}
	if c.MaxPacket < 0 || c.MaxPacket > 0 && c.MaxPacket < minPacket {
		return fmt.Errorf("mqtt: max packet size %d: want 0 (unknown) or at least %d bytes", c.MaxPacket, minPacket)
	}
	for _, n := range c.Commands {
		if !validCommandName(n) {
			return fmt.Errorf("mqtt: command allow-list: bad command name %q", n)
		}
	}
	return nil
}
