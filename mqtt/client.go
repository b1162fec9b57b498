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
//	<prefix>/cmd/<name>         subscribed QoS1: JSON command
//	<prefix>/cmd/<name>/result  QoS1: {"ok":bool,"error":string,"id":…,"result":…}
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
	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/diagd/diagd/mqtt/outbox"
)

// ErrClosed is returned after Close.
var ErrClosed = errors.New("mqtt: client closed")

// CommandHandler answers one command. payload is the command's JSON (nil when the
// message was empty). The result is marshalled into the "result" field.
type CommandHandler func(ctx context.Context, payload []byte) (any, error)

// Client publishes through paho with a fixed client id and CleanSession=false.
type Client struct {
	cfg Config
	log *slog.Logger
	ob  *outbox.Outbox
	pc  paho.Client
	m   metrics

	mu        sync.Mutex
	closing   bool
	epoch     uint64        // +1 on every connect and connection loss
	up        bool          // connected and set up (subscribed, state published)
	upChanged chan struct{} // closed on every change of up
	connects  int
	handlers  map[string]CommandHandler
	states    map[string][]byte
	dirty     map[string]bool // states changed since last published
	events    []event

	stateMu   sync.Mutex // serialises state publication so the newest value wins
	stateKick chan struct{}
	eventKick chan struct{}
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

type event struct {
	topic   string
	payload []byte
}

type metrics struct {
	connected  prometheus.Gauge
	published  prometheus.Counter
	failures   prometheus.Counter
	reconnects prometheus.Counter
	dropped    prometheus.Counter
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
		upChanged: make(chan struct{}),
		handlers:  map[string]CommandHandler{},
		states:    map[string][]byte{},
		dirty:     map[string]bool{},
		stateKick: make(chan struct{}, 1),
		eventKick: make(chan struct{}, 1),
		ctx:       ctx, cancel: cancel,
	}
	if err := c.registerMetrics(reg); err != nil {
		cancel()
		return nil, err
	}
	o := paho.NewClientOptions().
		AddBroker(cfg.Broker).
		SetClientID(cfg.ClientID).
		SetCleanSession(false).
		SetStore(copyingStore{paho.NewMemoryStore()}).
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
		// With a persistent session the broker may deliver queued commands before we
		// resubscribe; the default handler routes them too.
		SetDefaultPublishHandler(c.onMessage)
	if tlsCfg != nil {
		o.SetTLSConfig(tlsCfg)
	}
	c.pc = paho.NewClient(o)
	return c, nil
}

func (c *Client) registerMetrics(reg prometheus.Registerer) error {
	c.m = metrics{
		connected: prometheus.NewGauge(prometheus.GaugeOpts{Name: "diagd_mqtt_connected",
			Help: "1 while connected to the MQTT broker and set up, else 0."}),
		published: prometheus.NewCounter(prometheus.CounterOpts{Name: "diagd_mqtt_verdicts_published_total",
			Help: "Verdicts acknowledged by the broker (PUBACK), re-sends included."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "diagd_mqtt_publish_failures_total",
			Help: "Publishes that failed or timed out (verdicts are re-sent from the outbox)."}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{Name: "diagd_mqtt_reconnects_total",
			Help: "Connections to the broker after the first."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "diagd_mqtt_events_dropped_total",
			Help: "Events dropped because the event queue was full or the publish failed."}),
	}
	if reg == nil {
		return nil
	}
	cs := []prometheus.Collector{c.m.connected, c.m.published, c.m.failures, c.m.reconnects, c.m.dropped,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "diagd_outbox_records",
			Help: "Verdicts stored in the outbox, not yet acknowledged by the broker."},
			func() float64 { return float64(c.ob.Stats().Records) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "diagd_outbox_bytes",
			Help: "Bytes of unacknowledged verdicts in the outbox."},
			func() float64 { return float64(c.ob.Stats().Bytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "diagd_outbox_usage_ratio",
			Help: "Outbox fill: the larger of records/limit and bytes/limit."},
			func() float64 {
				s := c.ob.Stats()
				return max(float64(s.Records)/float64(s.MaxRecords), float64(s.Bytes)/float64(s.MaxBytes))
			}),
	}
	for _, col := range cs {
		if err := reg.Register(col); err != nil {
			return fmt.Errorf("mqtt: register metrics: %w", err)
		}
	}
	return nil
}

// TopicPrefix is the prefix in use.
func (c *Client) TopicPrefix() string { return c.cfg.TopicPrefix }

// ClientID is the MQTT client id in use.
func (c *Client) ClientID() string { return c.cfg.ClientID }

func (c *Client) topic(parts ...string) string {
	return c.cfg.TopicPrefix + "/" + strings.Join(parts, "/")
}

// HandleCommand registers the handler for <prefix>/cmd/<name>. Register before Start.
func (c *Client) HandleCommand(name string, h CommandHandler) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.handlers[name] = h
}

// Start begins connecting in the background and returns at once: verdicts go to the
// outbox whether or not the broker is reachable, and paho retries with backoff.
func (c *Client) Start() {
	c.wg.Add(3)
	go c.verdictPump()
	go c.statePump()
	go c.eventPump()
	c.pc.Connect() // with ConnectRetry the token completes only when connected
	c.log.Info("mqtt: connecting", "broker", c.cfg.Broker, "prefix", c.cfg.TopicPrefix)
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
	Outbox    outbox.Stats
}

// Status reports the connection and the outbox. Ready, per the conventions, is
// Connected or an outbox under its limit; NearFull warns before it fills.
func (c *Client) Status() Status {
	return Status{Connected: c.Connected(), Outbox: c.ob.Stats()}
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
	if up {
		c.m.connected.Set(1)
	} else {
		c.m.connected.Set(0)
	}
	return true
}

func (c *Client) onConnect(paho.Client) {
	c.mu.Lock()
	c.epoch++
	epoch := c.epoch
	c.connects++
	if c.connects > 1 {
		c.m.reconnects.Inc()
	}
	c.mu.Unlock()
	c.log.Info("mqtt: connected", "broker", c.cfg.Broker)
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
		v, stale := c.states[n], c.epoch != epoch
		c.mu.Unlock()
		if stale {
			// The connection was lost meanwhile; the next connect sets up again.
			c.stateMu.Unlock()
			return
		}
		if err := c.wait(c.pc.Publish(c.topic("state", n), 1, true, v)); err != nil {
			c.log.Warn("mqtt: republish state", "state", n, "err", err)
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

// PublishVerdict stores v durably in the outbox (assigning its seq) and returns; the
// verdict pump publishes it. duplicate is true when v.MessageID was stored before: the
// original (with its seq) is returned and nothing new is published. When the outbox is
// full the error wraps outbox.ErrOutboxFull.
func (c *Client) PublishVerdict(v Verdict) (out Verdict, duplicate bool, err error) {
	vs, dups, err := c.PublishVerdicts([]Verdict{v})
	if err != nil {
		return v, false, err
	}
	return vs[0], dups[0], nil
}

// PublishVerdicts is PublishVerdict for a judged batch of frames: consecutive seqs and
// one fsync for the whole batch. All or nothing: on error (a bad verdict, a full
// outbox) none of them is stored.
func (c *Client) PublishVerdicts(vs []Verdict) ([]Verdict, []bool, error) {
	if len(vs) == 0 {
		return nil, nil, nil
	}
	c.mu.Lock()
	closing := c.closing
	c.mu.Unlock()
	if closing {
		return nil, nil, ErrClosed
	}
	out := make([]Verdict, len(vs))
	items := make([]outbox.Item, len(vs))
	for i, v := range vs {
		if err := v.normalize(c.cfg.Station); err != nil {
			return nil, nil, fmt.Errorf("mqtt: %w", err)
		}
		out[i] = v
		items[i] = outbox.Item{MessageID: v.MessageID, Render: func(seq uint64) ([]byte, error) {
			out[i].Seq = seq
			return json.Marshal(out[i])
		}}
	}
	rs, err := c.ob.AppendBatch(items)
	if err != nil {
		return nil, nil, fmt.Errorf("mqtt: %d verdicts (first %s): %w", len(vs), out[0].MessageID, err)
	}
	dups := make([]bool, len(vs))
	for i, r := range rs {
		if !r.Duplicate {
			continue
		}
		dups[i] = true
		out[i].Seq = r.Seq
		if r.Data != nil {
			var orig Verdict
			if json.Unmarshal(r.Data, &orig) == nil {
				out[i] = orig
			}
		}
	}
	return out, dups, nil
}

type inflight struct {
	seq  uint64
	tok  paho.Token
	sent time.Time
}

// verdictPump publishes the outbox in seq order while connected, with up to Window
// verdicts awaiting PUBACK, and acks the outbox on each PUBACK. On any failure or
// disconnect it starts over from the oldest unacknowledged verdict.
func (c *Client) verdictPump() {
	defer c.wg.Done()
	for c.ctx.Err() == nil {
		up, epoch, changed := c.upState()
		if !up {
			select {
			case <-c.ctx.Done():
				return
			case <-changed:
			}
			continue
		}
		if !c.pumpConnected(epoch) {
			// A failure while still connected: pause before replaying, so a broker
			// that refuses does not make us spin.
			select {
			case <-c.ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}

// pumpConnected runs until the connection changes (true) or a publish fails (false).
func (c *Client) pumpConnected(epoch uint64) bool {
	topic := c.topic("verdict")
	cursor := c.ob.Acked()
	var fly []inflight
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		up, e, connChanged := c.upState()
		if !up || e != epoch {
			return true
		}
		newRecs := c.ob.Changed()
		if len(fly) < c.cfg.Window {
			recs := c.ob.Pending(cursor, c.cfg.Window-len(fly))
			for _, r := range recs {
				fly = append(fly, inflight{seq: r.Seq, tok: c.pc.Publish(topic, 1, false, r.Data), sent: time.Now()})
				cursor = r.Seq
			}
			if len(recs) > 0 {
				continue
			}
		}
		var head <-chan struct{}
		if len(fly) > 0 {
			head = fly[0].tok.Done()
			timer.Reset(time.Until(fly[0].sent.Add(c.cfg.AckTimeout)))
		} else {
			timer.Stop()
		}
		var more <-chan struct{}
		if len(fly) < c.cfg.Window {
			more = newRecs
		}
		select {
		case <-c.ctx.Done():
			return true
		case <-connChanged:
			return true
		case <-more:
		case <-head:
			f := fly[0]
			if err := f.tok.Error(); err != nil {
				c.m.failures.Inc()
				c.log.Warn("mqtt: verdict publish failed; will re-send from the outbox", "seq", f.seq, "err", err)
				return false
			}
			c.ob.Ack(f.seq)
			c.m.published.Inc()
			fly[0] = inflight{}
			fly = fly[1:]
		case <-timer.C:
			c.m.failures.Inc()
			c.log.Warn("mqtt: no PUBACK in time; will re-send from the outbox", "seq", fly[0].seq, "timeout", c.cfg.AckTimeout)
			return false
		}
	}
}

// SetState remembers value as state <name> and publishes it retained (now if
// connected, and again on every connect). A string or []byte is sent as is, anything
// else as JSON.
func (c *Client) SetState(name string, value any) error {
	if name == "" || strings.ContainsAny(name, "+#") {
		return fmt.Errorf("mqtt: state name %q is empty or contains + or #", name)
	}
	b, err := encodePlain(value)
	if err != nil {
		return fmt.Errorf("mqtt: state %s: %w", name, err)
	}
	// Never wait for the broker here: callers include camera goroutines, which a
	// half-open connection must not stall. The state pump publishes the newest value.
	c.mu.Lock()
	c.states[name] = b
	c.dirty[name] = true
	c.mu.Unlock()
	select {
	case c.stateKick <- struct{}{}:
	default:
	}
	return nil
}

// statePump publishes changed states while connected, newest value first-and-only;
// on connect, setup publishes them all.
func (c *Client) statePump() {
	defer c.wg.Done()
	for {
		up, epoch, changed := c.upState()
		if up {
			c.stateMu.Lock()
			c.mu.Lock()
			var names []string
			for n := range c.dirty {
				names = append(names, n)
			}
			c.mu.Unlock()
			for _, n := range names {
				c.mu.Lock()
				v, stale := c.states[n], c.epoch != epoch
				delete(c.dirty, n)
				c.mu.Unlock()
				if stale {
					break // setup on the next connect publishes everything
				}
				if err := c.wait(c.pc.Publish(c.topic("state", n), 1, true, v)); err != nil {
					// Not fatal: the value is republished on the next connect.
					c.log.Warn("mqtt: publish state", "state", n, "err", err)
				}
			}
			c.stateMu.Unlock()
		}
		select {
		case <-c.ctx.Done():
			return
		case <-changed:
		case <-c.stateKick:
		}
	}
}

func encodePlain(v any) ([]byte, error) {
	switch x := v.(type) {
	case string:
		return []byte(x), nil
	case []byte:
		return x, nil
	default:
		return json.Marshal(v)
	}
}

// Event queues a best-effort event on <prefix>/events/<kind>. When the queue is full
// the oldest event is dropped (and counted).
func (c *Client) Event(kind string, payload any) error {
	b, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("mqtt: event %s: %w", kind, err)
	}
	c.mu.Lock()
	if len(c.events) >= c.cfg.EventQueue {
		c.events = c.events[1:]
		c.m.dropped.Inc()
	}
	c.events = append(c.events, event{topic: c.topic("events", kind), payload: b})
	c.mu.Unlock()
	select {
	case c.eventKick <- struct{}{}:
	default:
	}
	return nil
}

func (c *Client) eventPump() {
	defer c.wg.Done()
	for {
		up, _, changed := c.upState()
		c.mu.Lock()
		var ev event
		have := up && len(c.events) > 0
		if have {
			ev = c.events[0]
			c.events = c.events[1:]
		}
		c.mu.Unlock()
		if have {
			if err := c.wait(c.pc.Publish(ev.topic, 1, false, ev.payload)); err != nil {
				c.m.dropped.Inc()
				c.log.Warn("mqtt: event dropped", "topic", ev.topic, "err", err)
			}
			continue
		}
		select {
		case <-c.ctx.Done():
			return
		case <-changed:
		case <-c.eventKick:
		}
	}
}

// commandResult is the JSON answer on <prefix>/cmd/<name>/result.
type commandResult struct {
	OK     bool            `json:"ok"`
	Error  string          `json:"error"`
	ID     json.RawMessage `json:"id,omitempty"`
	Result any             `json:"result,omitempty"`
}

func (c *Client) onMessage(_ paho.Client, m paho.Message) {
	prefix := c.cfg.TopicPrefix + "/cmd/"
	name, ok := strings.CutPrefix(m.Topic(), prefix)
	if !ok || name == "" || strings.Contains(name, "/") {
		return
	}
	payload := append([]byte(nil), m.Payload()...)
	c.mu.Lock()
	closing := c.closing
	h := c.handlers[name]
	if !closing {
		c.wg.Add(1)
	}
	c.mu.Unlock()
	if closing {
		return
	}
	// Handlers may take long (retrain); never block paho's router.
	go func() {
		defer c.wg.Done()
		c.runCommand(name, payload, h)
	}()
}

func (c *Client) runCommand(name string, payload []byte, h CommandHandler) {
	res := commandResult{}
	var req struct {
		ID json.RawMessage `json:"id"`
	}
	switch {
	case len(strings.TrimSpace(string(payload))) > 0 && !json.Valid(payload):
		res.Error = fmt.Sprintf("command %s: payload is not valid JSON", name)
	default:
		if len(strings.TrimSpace(string(payload))) == 0 {
			payload = nil
		} else {
			_ = json.Unmarshal(payload, &req) // a non-object has no id
			res.ID = req.ID
		}
		if h == nil {
			res.Error = fmt.Sprintf("unknown command %q", name)
			break
		}
		ctx, cancel := context.WithTimeout(c.ctx, c.cfg.CommandTimeout)
		out, err := h(ctx, payload)
		cancel()
		if err != nil {
			res.Error = err.Error()
		} else {
			res.OK, res.Result = true, out
		}
	}
	b, err := json.Marshal(res)
	if err != nil {
		b, _ = json.Marshal(commandResult{Error: fmt.Sprintf("command %s: result is not JSON: %v", name, err), ID: res.ID})
	}
	if !res.OK {
		c.log.Warn("mqtt: command failed", "command", name, "err", res.Error)
	}
	if err := c.wait(c.pc.Publish(c.topic("cmd", name, "result"), 1, false, b)); err != nil {
		c.log.Warn("mqtt: publish command result", "command", name, "err", err)
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

// copyingStore is paho's memory store, except that Get returns a copy of a stored
// PUBLISH. On reconnect paho's resume sets the DUP flag on what Get returns while the
// old connection's writer may still be encoding the same packet: a data race in paho
// itself (eclipse-paho/paho.mqtt.golang#703, seen here under -race). A copy keeps the
// writer's packet untouched; paho's own bookkeeping is unchanged.
type copyingStore struct{ paho.Store }

func (s copyingStore) Get(key string) packets.ControlPacket {
	p := s.Store.Get(key)
	if pub, ok := p.(*packets.PublishPacket); ok {
		cp := *pub // the header is a value; the payload is never written after Put
		return &cp
	}
	return p
}
