// Package mqtt publishes diagd's verdicts, state, events and command results to an MQTT
// 3.1.1 broker, with the durable outbox (package mqtt/outbox) as the source of truth:
// a verdict is fsynced before it is published and leaves the outbox only on PUBACK.
//
// Topics, under a prefix (default diagd/<station>):
//
//	<prefix>/available          retained QoS1: online | stopped | offline (last will)
//	<prefix>/verdict            QoS1: Verdict JSON
//	<prefix>/state/<name>       retained QoS1: last value, republished on every connect
//	<prefix>/events/<kind>      QoS1: JSON, best effort (bounded in-memory queue)
//	<prefix>/cmd/<name>         subscribed QoS1: JSON command (retained ones are ignored)
//	<prefix>/cmd/<name>/result  QoS1: {"ok":bool,"error":string,"id":…,"result":…}
//
// The client's own states: "mqtt" (the connection and the reason of its last failure),
// "outbox" (whether verdicts can be stored) and "commands" (each command's scope and
// whether this station answers it).
package mqtt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/diagd/diagd/mqtt/outbox"
)

// ErrClosed is returned after Close.
var ErrClosed = errors.New("mqtt: client closed")

// Client publishes through paho with a fixed client id and CleanSession=false.
type Client struct {
	cfg   Config
	log   *slog.Logger
	ob    *outbox.Outbox
	pc    paho.Client
	store *sessionStore
	tls   bool // the connection is TLS
	m     metrics

	mu        sync.Mutex
	closing   bool
	epoch     uint64        // +1 on every connect and connection loss
	up        bool          // connected and set up (subscribed, state published)
	upChanged chan struct{} // closed on every change of up
	connects  int
	conn      connLog
	handlers  map[string]command
	// cmdQueues holds, per command name, the commands waiting for that name's worker:
	// commands of one name run one at a time in arrival order (two triggers sent 1 ms
	// apart must reach the camera in that order), different names concurrently.
	cmdQueues  map[string][]queuedCommand
	states     map[string][]byte
	dirty      map[string]bool // states changed since last published
	events     []event
	outboxSeen *outboxState // last outbox state published
	// poisoned holds the seqs of verdicts the broker refused (seq → reason), marked by
	// the session store before paho can complete their tokens (a few, ever).
	poisoned sync.Map
	// refuseLogged is when a refused command was last logged, by reason.
	refuseLogged map[string]time.Time

	stateMu   sync.Mutex // serialises state publication so the newest value wins
	stateKick chan struct{}
	eventKick chan struct{}
	cmdSlots  chan struct{} // one token per command in progress
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

type event struct {
	topic   string
	payload []byte
}

// New checks cfg and builds a client that publishes what ob holds. The caller owns ob
// (open it before, close it after Close). Metrics are registered on reg when not nil.
func New(log *slog.Logger, cfg Config, ob *outbox.Outbox, reg prometheus.Registerer) (*Client, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	tlsCfg, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{
		cfg: cfg, log: log.With("client_id", cfg.ClientID), ob: ob,
		upChanged:    make(chan struct{}),
		handlers:     map[string]command{},
		cmdQueues:    map[string][]queuedCommand{},
		refuseLogged: map[string]time.Time{},
		states:       map[string][]byte{},
		dirty:        map[string]bool{},
		stateKick:    make(chan struct{}, 1),
		eventKick:    make(chan struct{}, 1),
		cmdSlots:     make(chan struct{}, cfg.MaxCommandsInFlight),
		ctx:          ctx, cancel: cancel,
	}
	c.store = newSessionStore(c.onPoison)
	if err := c.registerMetrics(reg); err != nil {
		cancel()
		return nil, err
	}
	o := paho.NewClientOptions().
		AddBroker(cfg.Broker).
		SetClientID(cfg.ClientID).
		SetCleanSession(false).
		SetStore(c.store).
		SetProtocolVersion(4).
		SetUsername(cfg.Username).
		SetPassword(cfg.Password).
		SetKeepAlive(cfg.KeepAlive).
		SetPingTimeout(min(cfg.KeepAlive, cfg.AckTimeout)).
		SetConnectTimeout(cfg.ConnectTimeout).
		SetWriteTimeout(cfg.AckTimeout).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(min(time.Second, cfg.MaxReconnectInterval)).
		SetMaxReconnectInterval(cfg.MaxReconnectInterval).
		SetWill(c.topic("available"), "offline", 1, true).
		SetOnConnectHandler(c.onConnect).
		SetConnectionLostHandler(c.onConnectionLost).
		// paho keeps connection failures to its debug log; this hands us each one.
		SetConnectionNotificationHandler(c.onConnNotification).
		// With a persistent session the broker may deliver queued commands before we
		// resubscribe; the default handler routes them too.
		SetDefaultPublishHandler(c.onMessage)
	if tlsCfg != nil {
		o.SetTLSConfig(tlsCfg)
		c.tls = true
	}
	c.pc = paho.NewClient(o)
	return c, nil
}

func (c *Client) topic(parts ...string) string {
	return c.cfg.TopicPrefix + "/" + strings.Join(parts, "/")
}

// Start begins connecting in the background and returns at once: verdicts go to the
// outbox whether or not the broker is reachable, and paho retries with backoff.
func (c *Client) Start() {
	c.publishCommands()
	c.checkOutboxHealth()
	c.wg.Add(3)
	go c.verdictPump()
	go c.statePump()
	go c.eventPump()
	c.pc.Connect() // with ConnectRetry the token completes only when connected
	c.log.Info("mqtt: connecting", "broker", redact(c.cfg.Broker), "prefix", c.cfg.TopicPrefix)
}

// Connected reports whether the client is connected and set up.
func (c *Client) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.up
}

// Status is what /readyz and logs need from the publisher.
type Status struct {
	Connected bool
	// LastError is why the last connection attempt failed or the last connection
	// ended ("" if neither happened), with its time.
	LastError   string
	LastErrorAt time.Time
	// Outbox holds the queue and the health of its disk (Outbox.Fault).
	Outbox outbox.Stats
}

// Status reports the connection and the outbox. Ready, per the conventions, is
// Connected or an outbox under its limit, and an outbox that can store verdicts.
func (c *Client) Status() Status {
	c.mu.Lock()
	s := Status{Connected: c.up, LastError: c.conn.lastErr, LastErrorAt: c.conn.lastErrAt}
	c.mu.Unlock()
	s.Outbox = c.ob.Stats()
	return s
}

func (c *Client) setUp(epoch uint64, up bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if epoch != c.epoch || c.up == up {
		return false
	}
	c.up = up
	close(c.upChanged)
	c.upChanged = make(chan struct{})
	c.m.connected.Set(b2f(up))
	return true
}

func (c *Client) onConnect(paho.Client) {
	now := time.Now()
	c.mu.Lock()
	c.epoch++
	epoch := c.epoch
	c.connects++
	if c.connects > 1 {
		c.m.reconnects.Inc()
	}
	cs := c.connectionStateLocked(now)
	c.mu.Unlock()
	cs.MaxPacket = c.packetLimit()
	// Published by setup with the other states, before online.
	_ = c.SetState("mqtt", cs)
	c.log.Info("mqtt: connected", "broker", redact(c.cfg.Broker), "connect_failures", cs.ConnectFailures,
		"last_error", cs.LastError)
	// Set up off paho's callback goroutine: it waits on the broker.
	go c.setup(epoch)
}

// setup subscribes to commands, republishes every retained state, then announces
// online, so a PLC that sees online also sees current state.
func (c *Client) setup(epoch uint64) {
	tok := c.pc.Subscribe(c.topic("cmd", "+"), 1, c.onMessage)
	if err := c.wait(tok); err != nil {
		c.log.Warn("mqtt: subscribe to commands", "err", err)
	}
	c.stateMu.Lock()
	c.mu.Lock()
	names := make([]string, 0, len(c.states))
	for n := range c.states {
		names = append(names, n)
	}
	clear(c.dirty) // published below
	c.mu.Unlock()
	for _, n := range names {
		c.mu.Lock()
		v, ok := c.states[n]
		stale := c.epoch != epoch
		c.mu.Unlock()
		if stale {
			// The connection was lost meanwhile; the next connect sets up again.
			c.stateMu.Unlock()
			return
		}
		if ok {
			c.publishState(n, v)
		}
	}
	if err := c.wait(c.pc.Publish(c.topic("available"), 1, true, "online")); err != nil {
		c.log.Warn("mqtt: publish online", "err", err)
	}
	// Still holding stateMu: a SetState waiting on it now sees the client up and
	// publishes, instead of storing a value nobody sends until the next reconnect.
	c.setUp(epoch, true)
	c.stateMu.Unlock()
}

func (c *Client) onConnectionLost(_ paho.Client, err error) {
	c.mu.Lock()
	c.epoch++ // a setup still running for the lost connection will not mark it up
	if c.up {
		c.up = false
		close(c.upChanged)
		c.upChanged = make(chan struct{})
		c.m.connected.Set(0)
	}
	c.mu.Unlock()
	c.connectionLost(err)
	c.log.Warn("mqtt: connection lost; reconnecting", "err", err)
}

// wait waits for a token with the ack timeout.
func (c *Client) wait(t paho.Token) error {
	if !t.WaitTimeout(c.cfg.AckTimeout) {
		return fmt.Errorf("no answer from the broker within %s", c.cfg.AckTimeout)
	}
	return t.Error()
}

// upState returns whether the client is up, its epoch, and a channel closed on the
// next change.
func (c *Client) upState() (bool, uint64, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.up, c.epoch, c.upChanged
}

// onPoison is told by the session store, while paho resumes (so it must not block), of
// a message the broker refuses (by size). A verdict's seq is marked at once, before
// paho can complete its token: the pump then sets it aside instead of acknowledging a
// verdict that was never delivered. The rest runs on its own goroutine.
func (c *Client) onPoison(topic string, payload []byte, size int) {
	reason := fmt.Sprintf("the broker closed the connection %d times in a row on this %d-byte message, and it "+
		"acknowledges smaller ones: it refuses messages this large (mosquitto: max_packet_size)", poisonStrikes+1, size)
	if topic == c.topic("verdict") {
		var v struct {
			Seq uint64 `json:"seq"`
		}
		if err := json.Unmarshal(payload, &v); err != nil || v.Seq == 0 {
			c.log.Error("mqtt: refused verdict has no seq; it stays in the outbox", "err", err)
			return
		}
		c.poisoned.Store(v.Seq, reason)
		go c.setAside(v.Seq, reason)
		return
	}
	go c.dropRefused(topic, payload, reason)
}

// dropRefused forgets a refused state message, or drops another kind, and reports it.
func (c *Client) dropRefused(topic string, payload []byte, reason string) {
	switch {
	case strings.HasPrefix(topic, c.topic("state")+"/"):
		c.forgetState(strings.TrimPrefix(topic, c.topic("state")+"/"), payload, reason)
	default:
		c.m.tooLarge.Inc()
		c.m.dropped.Inc()
		c.log.Error("mqtt: message dropped: the broker refuses it", "topic", topic, "reason", reason)
	}
}

// Close stops taking verdicts, waits (within ctx) until the outbox is empty, publishes
// "stopped" retained, and disconnects. What is not flushed stays in the outbox for the
// next start. The caller closes the outbox afterwards.
func (c *Client) Close(ctx context.Context) error {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return nil
	}
	c.closing = true
	c.mu.Unlock()

	var flushErr error
	tick := time.NewTicker(10 * time.Millisecond)
	for c.ob.Stats().Records > 0 {
		select {
		case <-ctx.Done():
			flushErr = fmt.Errorf("mqtt: close: %d verdicts left in the outbox for the next start: %w",
				c.ob.Stats().Records, ctx.Err())
		case <-tick.C:
			continue
		}
		break
	}
	tick.Stop()
	if c.Connected() {
		if err := c.wait(c.pc.Publish(c.topic("available"), 1, true, "stopped")); err != nil {
			c.log.Warn("mqtt: publish stopped", "err", err)
		}
	}
	c.cancel()
	c.wg.Wait()
	c.pc.Disconnect(250)
	c.m.connected.Set(0)
	c.log.Info("mqtt: closed", "pending", c.ob.Stats().Records)
	return flushErr
}
