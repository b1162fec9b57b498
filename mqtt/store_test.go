package mqtt

import (
	"testing"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// midToken is a completed publish token with a packet id, as paho hands them out.
type midToken struct{ mid uint16 }

func (midToken) Wait() bool                     { return true }
func (midToken) WaitTimeout(time.Duration) bool { return true }
func (midToken) Done() <-chan struct{}          { c := make(chan struct{}); close(c); return c }
func (midToken) Error() error                   { return nil }
func (t midToken) MessageID() uint16            { return t.mid }

// paho completes a publish token without an error also when its resume re-sends the
// stored packet under a new token; the packet is then still in the session. Only a
// token whose packet paho has deleted (on its PUBACK) counts as delivered.
func TestTokenCountsOnlyWhenThePublishLeftTheSession(t *testing.T) {
	c := &Client{store: newSessionStore(nil)}
	pub := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
	pub.TopicName, pub.Qos, pub.MessageID, pub.Payload = "diagd/line1/verdict", 1, 7, []byte(`{"seq":1}`)
	c.store.Put("o.7", pub)
	if c.acknowledged(midToken{7}) {
		t.Error("a token whose PUBLISH is still in the session (resumed, not acknowledged) counted as delivered")
	}
	if !c.acknowledged(midToken{8}) {
		t.Error("a token of another packet id counted as pending")
	}
	c.store.Del("o.7") // what paho does on the PUBACK, before completing the token
	if !c.acknowledged(midToken{7}) {
		t.Error("an acknowledged PUBLISH counted as pending")
	}
}
