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
	loggedErr  string
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
	reason := connectReason(err)
	c.m.connectFailures.Inc()
	now := time.Now()
	c.mu.Lock()
	cl := &c.conn
	cl.failures++
	cl.lastErr, cl.lastErrAt = reason, now
	logIt := reason != cl.loggedErr || now.Sub(cl.loggedAt) >= relogEvery
	suppressed := cl.suppressed
	if logIt {
		cl.loggedErr, cl.loggedAt, cl.suppressed = reason, now, 0
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
func connectReason(err error) string {
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
		return "the broker refused the connection: not authorised (CONNACK 5): check the username and password, the client certificate, and the broker's ACL"
	case errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword):
		return "the broker refused the connection: bad user name or password (CONNACK 4)"
	case errors.Is(err, packets.ErrorRefusedIDRejected):
		return "the broker refused the connection: client id rejected (CONNACK 2)"
	case errors.Is(err, packets.ErrorRefusedServerUnavailable):
		return "the broker refused the connection: server unavailable (CONNACK 3)"
	case errors.Is(err, packets.ErrorRefusedBadProtocolVersion):
		return "the broker refused the connection: it does not speak MQTT 3.1.1 (CONNACK 1)"
	case errors.As(err, &unknownCA):
		return "TLS: the broker's certificate is not signed by a trusted CA (check the CA file): " + msg
	case errors.As(err, &hostname):
		return "TLS: the broker's certificate does not name this host: " + msg
	case errors.As(err, &invalid):
		return "TLS: the broker's certificate is not valid (expired?): " + msg
	case errors.As(err, &plainText):
		return "TLS: the broker answered in plain text: this port does not speak TLS (use tcp:// or the TLS port): " + msg
	case errors.As(err, &alert) || strings.Contains(msg, "remote error: tls:"):
		return "TLS: the broker rejected the handshake (a client certificate missing or not trusted?): " + msg
	case errors.Is(err, syscall.ECONNREFUSED):
		return "nothing accepts connections at the broker's address: " + msg
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET):
		return "the broker closed the connection without answering (a TLS port spoken to in plain TCP? use ssl://): " + msg
	}
	return msg
}

// redact removes a password from a broker URL for logs and state.
func redact(broker string) string {
	u, err := url.Parse(broker)
	if err != nil {
		return "(unparsable broker URL)"
	}
	return u.Redacted()
}
