package mqtt

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/diagd/diagd/mqtt/outbox"
)

// PublishVerdict stores v durably in the outbox (assigning its seq) and returns; the
// verdict pump publishes it. duplicate is true when v.MessageID was stored before: the
// original (with its seq) is returned and nothing new is published. When the outbox is
// full the error wraps outbox.ErrOutboxFull; when the disk fails, outbox.ErrStorage.
func (c *Client) PublishVerdict(v Verdict) (out Verdict, duplicate bool, err error) {
	vs, dups, err := c.PublishVerdicts([]Verdict{v})
	if err != nil {
		return v, false, err
	}
	return vs[0], dups[0], nil
}

// PublishVerdicts is PublishVerdict for a judged batch of frames: consecutive seqs and
// one fsync for the whole batch. All or nothing: on error (a bad verdict, a full
// outbox, a failing disk) none of them is stored. Both outbox.ErrOutboxFull and
// outbox.ErrStorage are passing conditions: hold the verdicts and retry.
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
	c.checkOutboxHealth()
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
				cursor = r.Seq
				if limit := c.packetLimit(); limit > 0 && packetSize(topic, len(r.Data)) > limit {
					c.setAside(r.Seq, fmt.Sprintf("verdict of %d bytes over the broker's packet limit of %d bytes", packetSize(topic, len(r.Data)), limit))
					continue
				}
				fly = append(fly, inflight{seq: r.Seq, tok: c.pc.Publish(topic, 1, false, r.Data), sent: time.Now()})
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
			if reason, refused := c.poisoned.Load(f.seq); refused {
				c.setAside(f.seq, reason.(string))
			} else if !c.acknowledged(f.tok) {
				c.log.Debug("mqtt: a verdict's token completed by paho's resume, not by a PUBACK; replaying from the outbox", "seq", f.seq)
				return true
			} else {
				c.ob.Ack(f.seq)
				c.m.published.Inc()
			}
			fly[0] = inflight{}
			fly = fly[1:]
		case <-timer.C:
			c.m.failures.Inc()
			c.log.Warn("mqtt: no PUBACK in time; will re-send from the outbox", "seq", fly[0].seq, "timeout", c.cfg.AckTimeout)
			return false
		}
	}
}

// acknowledged says whether a completed publish token means the broker has the message.
// paho also completes a token, without an error, when its resume after a reconnect
// re-sends the stored packet under a new token (messageIds.claimID); that packet is then
// still in the session store, unacknowledged. Taking such a completion for a PUBACK
// would ack the outbox for a verdict the broker may never get (if the process dies
// before paho's re-send is acknowledged, or the broker refuses it by size).
func (c *Client) acknowledged(tok paho.Token) bool {
	t, ok := tok.(interface{ MessageID() uint16 })
	return !ok || !c.store.Unacked(t.MessageID())
}

// packetLimit is the largest packet the broker takes, as configured or as learned from
// a message it kept refusing; 0 when unknown.
func (c *Client) packetLimit() int {
	learned := c.store.Refused() - 1
	switch {
	case learned < 0:
		return c.cfg.MaxPacket
	case c.cfg.MaxPacket > 0:
		return min(learned, c.cfg.MaxPacket)
	default:
		return learned
	}
}

// setAside moves a verdict that can never be delivered to the outbox's dead-letter
// file, so that it no longer blocks the ones after it, and reports it.
func (c *Client) setAside(seq uint64, reason string) {
	err := c.ob.DeadLetter(seq, reason)
	if errors.Is(err, outbox.ErrNotPending) {
		return // already set aside (the pump and the session store may both find it)
	}
	c.m.tooLarge.Inc()
	ev := deadLetterEvent{Seq: seq, Reason: reason, File: outbox.DeadLetterFile}
	if err != nil {
		ev.Error = err.Error()
	}
	c.log.Error("mqtt: verdict set aside, never to be published", "seq", seq, "reason", reason,
		"file", outbox.DeadLetterFile, "save_error", ev.Error)
	_ = c.Event("dead_letter", ev)
	c.checkOutboxHealth()
}

// deadLetterEvent is published on <prefix>/events/dead_letter.
type deadLetterEvent struct {
	Seq    uint64 `json:"seq"`
	Reason string `json:"reason"`
	File   string `json:"file"`
	Error  string `json:"error,omitempty"`
}
