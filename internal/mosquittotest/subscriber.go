package mosquittotest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// Msg is one message a Subscriber received.
type Msg struct {
	Topic    string
	Payload  string
	Retained bool
	At       time.Time
}

// Subscriber is an independent client as a PLC would be: persistent session
// (CleanSession=false), QoS 1, so the broker queues for it across its own restarts.
type Subscriber struct {
	mu   sync.Mutex
	msgs []Msg
	pc   paho.Client
}

// Subscribe connects a subscriber to filter and returns once the broker acknowledged
// the subscription. It subscribes on every connect and only there: a second SUBSCRIBE
// would replay retained messages and make them look published twice.
func Subscribe(t testing.TB, url, clientID, filter string) *Subscriber {
	t.Helper()
	return SubscribeAs(t, url, clientID, "", "", filter)
}

// SubscribeAs is Subscribe with a username and password (a broker with an ACL).
func SubscribeAs(t testing.TB, url, clientID, user, password, filter string) *Subscriber {
	t.Helper()
	s := &Subscriber{}
	handler := func(_ paho.Client, m paho.Message) {
		s.mu.Lock()
		s.msgs = append(s.msgs, Msg{m.Topic(), string(m.Payload()), m.Retained(), time.Now()})
		s.mu.Unlock()
	}
	subscribed := make(chan error, 1)
	o := paho.NewClientOptions().AddBroker(url).SetClientID(clientID).SetCleanSession(false).
		SetUsername(user).SetPassword(password).
		SetProtocolVersion(4).SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(100 * time.Millisecond).SetMaxReconnectInterval(300 * time.Millisecond).
		SetDefaultPublishHandler(handler).
		SetOnConnectHandler(func(c paho.Client) {
			tok := c.Subscribe(filter, 1, handler)
			go func() {
				tok.WaitTimeout(10 * time.Second)
				select {
				case subscribed <- tok.Error():
				default:
				}
			}()
		})
	s.pc = paho.NewClient(o)
	if tok := s.pc.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber connect: %v", tok.Error())
	}
	select {
	case err := <-subscribed:
		if err != nil {
			t.Fatalf("subscriber subscribe: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("subscriber subscribe: no SUBACK in 10 s")
	}
	t.Cleanup(func() { s.pc.Disconnect(100) })
	return s
}

// Snapshot is every message received so far.
func (s *Subscriber) Snapshot() []Msg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Msg(nil), s.msgs...)
}

// Publish sends a QoS 1 message (a command, as a PLC would).
func (s *Subscriber) Publish(t testing.TB, topic, payload string) {
	t.Helper()
	if tok := s.pc.Publish(topic, 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// PublishRetained sends a retained QoS 1 message, as a careless operator's
// `mosquitto_pub -r` would.
func (s *Subscriber) PublishRetained(t testing.TB, topic, payload string) {
	t.Helper()
	if tok := s.pc.Publish(topic, 1, true, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// Sync returns once the subscription is active at the broker: it publishes a probe on
// topic (which its filter must cover) and waits to receive it. After a broker restart
// the session may come back without its subscription (a SIGKILL can beat mosquitto's
// save); the client then subscribes again on connect.
func (s *Subscriber) Sync(t testing.TB, topic string) {
	t.Helper()
	probe := fmt.Sprintf("probe-%d", time.Now().UnixNano())
	deadline := time.Now().Add(20 * time.Second)
	for {
		s.pc.Publish(topic, 1, false, probe).WaitTimeout(time.Second)
		wait := time.Now().Add(500 * time.Millisecond)
		for time.Now().Before(wait) {
			for _, m := range s.Snapshot() {
				if m.Topic == topic && m.Payload == probe {
					return
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		if time.Now().After(deadline) {
			t.Fatalf("subscriber: probe on %s not received within 20 s", topic)
		}
	}
}

// WaitFor polls until cond holds for the messages received so far.
func (s *Subscriber) WaitFor(t testing.TB, timeout time.Duration, what string, cond func([]Msg) bool) []Msg {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m := s.Snapshot()
		if cond(m) {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s (%d messages seen)", timeout, what, len(m))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
