package mqtt

import (
	"encoding/json"
	"fmt"
	"strings"
)

// maxMessageBytes bounds a state, event or command result diagd publishes: far above
// what it builds, far below what a broker or PLC must take.
const maxMessageBytes = 256 << 10

// SetState remembers value as state <name> and publishes it retained (now if
// connected, and again on every connect). A string or []byte is sent as is, anything
// else as JSON.
func (c *Client) SetState(name string, value any) error {
	if name == "" || len(name) > 128 || strings.ContainsAny(name, "+#") {
		return fmt.Errorf("mqtt: state name %q is empty, too long, or contains + or #", name)
	}
	b, err := encodePlain(value)
	if err != nil {
		return fmt.Errorf("mqtt: state %s: %w", name, err)
	}
	if err := c.checkSize(c.topic("state", name), len(b)); err != nil {
		c.m.tooLarge.Inc()
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

// checkSize refuses a message larger than maxMessageBytes or the broker's packet limit.
func (c *Client) checkSize(topic string, n int) error {
	if n > maxMessageBytes {
		return fmt.Errorf("%d bytes, limit %d", n, maxMessageBytes)
	}
	if limit := c.packetLimit(); limit > 0 && packetSize(topic, n) > limit {
		return fmt.Errorf("%d bytes, over the broker's packet limit of %d bytes", packetSize(topic, n), limit)
	}
	return nil
}

// publishState publishes one retained state and waits for the broker. A value the
// broker turns out to refuse (see sessionStore) is forgotten rather than re-sent.
func (c *Client) publishState(name string, v []byte) {
	topic := c.topic("state", name)
	if err := c.checkSize(topic, len(v)); err != nil {
		c.forgetState(name, v, err.Error())
		return
	}
	if err := c.wait(c.pc.Publish(topic, 1, true, v)); err != nil {
		// Not fatal: the value is republished on the next connect.
		c.log.Warn("mqtt: publish state", "state", name, "err", err)
	}
}

func (c *Client) forgetState(name string, v []byte, why string) {
	c.mu.Lock()
	same := string(c.states[name]) == string(v)
	if same {
		delete(c.states, name)
		delete(c.dirty, name)
	}
	c.mu.Unlock()
	if same {
		c.m.tooLarge.Inc()
		c.log.Error("mqtt: state dropped: the broker cannot take it", "state", name, "reason", why)
	}
}

// statePump publishes changed states while connected, newest value first-and-only;
// on connect, setup publishes them all.
func (c *Client) statePump() {
	defer c.wg.Done()
	for {
		up, epoch, changed := c.upState()
		if up {
			c.publishDirty(epoch)
		}
		select {
		case <-c.ctx.Done():
			return
		case <-changed:
		case <-c.stateKick:
		}
	}
}

func (c *Client) publishDirty(epoch uint64) {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	c.mu.Lock()
	var names []string
	for n := range c.dirty {
		names = append(names, n)
	}
	c.mu.Unlock()
	for _, n := range names {
		c.mu.Lock()
		v, ok := c.states[n]
		stale := c.epoch != epoch
		delete(c.dirty, n)
		c.mu.Unlock()
		if stale {
			return // setup on the next connect publishes everything
		}
		if ok {
			c.publishState(n, v)
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
	topic := c.topic("events", kind)
	if err := c.checkSize(topic, len(b)); err != nil {
		c.m.tooLarge.Inc()
		c.m.dropped.Inc()
		return fmt.Errorf("mqtt: event %s: %w", kind, err)
	}
	c.mu.Lock()
	if len(c.events) >= c.cfg.EventQueue {
		c.events = c.events[1:]
		c.m.dropped.Inc()
	}
	c.events = append(c.events, event{topic: topic, payload: b})
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

// outboxState is the retained state "outbox" and the payload of events/outbox: whether
// verdicts can be stored, and what went wrong with the disk so far.
type outboxState struct {
	OK bool `json:"ok"`
	// Error is the storage error while appends fail; Since when they began failing.
	Error          string    `json:"error,omitempty"`
	Since          Timestamp `json:"since,omitzero"`
	WriteErrors    uint64    `json:"writeErrors"`
	CorruptRecords uint64    `json:"corruptRecords"`
	DeadLetters    uint64    `json:"deadLetters"`
}

// checkOutboxHealth publishes the outbox's state when it changed, and an event (an
// alarm) when storing verdicts starts or stops failing.
func (c *Client) checkOutboxHealth() {
	st := c.ob.Stats()
	s := outboxState{OK: st.Fault == "", Error: st.Fault, Since: Timestamp(st.FaultSince), WriteErrors: st.WriteErrors,
		CorruptRecords: st.Corrupt, DeadLetters: st.DeadLetters}
	c.mu.Lock()
	prev := c.outboxSeen
	changed := prev == nil || *prev != s
	if changed {
		c.outboxSeen = &s
	}
	c.mu.Unlock()
	if !changed {
		return
	}
	if err := c.SetState("outbox", s); err != nil {
		c.log.Warn("mqtt: outbox state", "err", err)
	}
	if prev == nil && !s.OK || prev != nil && prev.OK != s.OK {
		_ = c.Event("outbox", s)
	}
}
