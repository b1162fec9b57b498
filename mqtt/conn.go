package mqtt

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/url"
	"strings"
	"syscall"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// connectionState is the retained state "mqtt", published on every connect: how the
// link to the broker has fared, with the reason of the last failure.
type connectionState struct {
	Connected bool      `json:"connected"`
	Broker    string    `json:"broker"` // without a password
	Since     Timestamp `json:"since"`  // this connection
	Connects  int       `json:"connects"`
	// ConnectFailures counts failed connection attempts since the start.
	ConnectFailures uint64     `json:"connectFailures"`
	LastError       string     `json:"lastError,omitempty"`
	LastErrorAt     *Timestamp `json:"lastErrorAt,omitempty"`
	// MaxPacket is the broker's packet limit in bytes, configured or learned; 0: unknown.
	MaxPacket int `json:"maxPacket,omitempty"`
}

// connLog keeps the last connection problem, and how often it was logged, so a broker
// that refuses every second does not flood the log.
type connLog struct {
	lastErr    string
	lastErrAt  time.Time
	failures   uint64
	loggedKind string // the kind (see classify) last logged
	loggedAt   time.Time
	suppressed int
}

// relogEvery is how often an unchanged connection failure is logged again.
const relogEvery = time.Minute

func (c *Client) onConnNotification(_ paho.Client, n paho.ConnectionNotification) {
	if f, ok := n.(paho.ConnectionNotificationFailed); ok && f.Reason != nil {
		c.connectFailed(f.Reason)
	}
}

// connectFailed records, counts and logs (once per reason and minute) why a connection
// attempt failed.
func (c *Client) connectFailed(err error) {
	kind, reason := connectReason(err, c.tls)
	c.m.connectFailures.Inc()
	now := time.Now()
	c.mu.Lock()
	cl := &c.conn
	cl.failures++
	cl.lastErr, cl.lastErrAt = reason, now
	logIt := kind != cl.loggedKind || now.Sub(cl.loggedAt) >= relogEvery
	suppressed := cl.suppressed
	if logIt {
		cl.loggedKind, cl.loggedAt, cl.suppressed = kind, now, 0
	} else {
		cl.suppressed++
	}
	c.mu.Unlock()
	if logIt {
		c.log.Warn("mqtt: cannot connect to the broker; retrying", "broker", redact(c.cfg.Broker), "reason", reason,
			"same_failures_since_last_log", suppressed)
	}
}

// connectionLost records why an established connection ended.
func (c *Client) connectionLost(err error) {
	reason := "connection lost"
	if err != nil {
		reason += ": " + err.Error()
	}
	c.mu.Lock()
	c.conn.lastErr, c.conn.lastErrAt = reason, time.Now()
	c.mu.Unlock()
}

// connectionStateLocked builds the state published on connect. Caller holds c.mu.
func (c *Client) connectionStateLocked(now time.Time) connectionState {
	s := connectionState{Connected: true, Broker: redact(c.cfg.Broker), Since: Timestamp(now),
		Connects: c.connects, ConnectFailures: c.conn.failures, LastError: c.conn.lastErr}
	if !c.conn.lastErrAt.IsZero() {
		at := Timestamp(c.conn.lastErrAt)
		s.LastErrorAt = &at
	}
	return s
}

// connectReason turns a connection error into what an operator can act on: the
// broker's CONNACK refusal, or the TLS or network failure with its likely cause.
//
// kind is a stable name for the cause: repeats of one kind are logged once a minute.
// overTLS says whether the connection was TLS, which tells a broker that hangs up on a
// TLS client (a client certificate missing or refused, in TLS 1.3 only seen after the
// handshake) from one that hangs up on plain TCP (a TLS port).
func connectReason(err error, overTLS bool) (kind, reason string) {
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		plainText tls.RecordHeaderError
		alert     tls.AlertError
	)
	msg := err.Error()
	switch {
	case errors.Is(err, packets.ErrorRefusedNotAuthorised):
		return "not_authorised", "the broker refused the connection: not authorised (CONNACK 5): check the username and password, the client certificate, and the broker's ACL"
	case errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword):
		return "bad_credentials", "the broker refused the connection: bad user name or password (CONNACK 4)"
	case errors.Is(err, packets.ErrorRefusedIDRejected):
		return "id_rejected", "the broker refused the connection: client id rejected (CONNACK 2)"
	case errors.Is(err, packets.ErrorRefusedServerUnavailable):
		return "unavailable", "the broker refused the connection: server unavailable (CONNACK 3)"
	case errors.Is(err, packets.ErrorRefusedBadProtocolVersion):
		return "protocol", "the broker refused the connection: it does not speak MQTT 3.1.1 (CONNACK 1)"
	case errors.As(err, &unknownCA):
		return "tls_unknown_ca", "TLS: the broker's certificate is not signed by a trusted CA (check the CA file): " + msg
	case errors.As(err, &hostname):
		return "tls_hostname", "TLS: the broker's certificate does not name this host: " + msg
	case errors.As(err, &invalid):
		return "tls_invalid_certificate", "TLS: the broker's certificate is not valid (expired?): " + msg
	case errors.As(err, &plainText):
		return "tls_plaintext", "TLS: the broker answered in plain text: this port does not speak TLS (use tcp:// or the TLS port): " + msg
	case errors.As(err, &alert) || strings.Contains(msg, "remote error: tls:"):
		return "tls_rejected", "TLS: the broker rejected the handshake (does it want a client certificate, or refuse the one given?): " + msg
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused", "nothing accepts connections at the broker's address: " + msg
	case closed(err) && overTLS:
		// The same cause as an alert: which one the client sees first is a race.
		return "tls_rejected", "TLS: the broker closed the connection without answering (does it want a client certificate, or refuse the one given?): " + msg
	case closed(err):
		return "closed", "the broker closed the connection without answering (a TLS port spoken to in plain TCP? use ssl://): " + msg
	}
	return "other", msg
}

func closed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE)
}

// redact removes a password from a broker URL for logs and state.
func redact(broker string) string {
	u, err := url.Parse(broker)
	if err != nil {
		return "(unparsable broker URL)"
	}
	return u.Redacted()
}
