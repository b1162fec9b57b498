package mqtt

import (
	"crypto/sha256"
	"slices"
	"strconv"
	"sync"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// poisonStrikes is how many reconnects in a row may each die on the same message,
// with nothing acknowledged meanwhile, before it is taken for one the broker refuses.
const poisonStrikes = 3

// sessionStore is paho's memory store with two additions.
//
// Get returns a copy of a stored PUBLISH. On reconnect paho's resume sets the DUP flag on
// what Get returns while the old connection's writer may still be encoding the same
// packet: a data race in paho itself (eclipse-paho/paho.mqtt.golang#703, seen here under
// -race). A copy keeps the writer's packet untouched; it is made without reading the
// length field the writer sets (a publish made while resume runs is in the store and
// on the wire at once).
//
// It also finds a message the broker refuses by size. MQTT 3.1.1 has no way to say so:
// mosquitto just closes the connection when a packet exceeds its max_packet_size, and
// paho re-sends the stored packet on every reconnect, so one oversized message would
// stall the session for good. At each resume (a new connection) the store looks at
// what the last connection left unacknowledged. The largest such message, when it is
// larger than every message the broker has ever acknowledged, is the suspect; resume
// sends it first. When poisonStrikes connections in a row die with the suspect unacked
// and no PUBLISH acknowledged at all, it is removed from the session and handed to
// onPoison, and its size becomes a known limit (Refused).
type sessionStore struct {
	paho.Store
	onPoison func(topic string, payload []byte, size int)

	mu       sync.Mutex
	info     map[string]storedPub // outbound PUBLISHes by key
	maxAcked int                  // largest PUBLISH packet acknowledged so far
	progress bool                 // a PUBLISH was acknowledged since the last resume
	suspect  [32]byte
	strikes  int
	refused  int // smallest packet size found refused; 0: none
}

type storedPub struct {
	digest [32]byte
	size   int
}

func newSessionStore(onPoison func(topic string, payload []byte, size int)) *sessionStore {
	return &sessionStore{Store: paho.NewMemoryStore(), onPoison: onPoison, info: map[string]storedPub{}}
}

// packetSize is the encoded size of a QoS 1 PUBLISH: fixed header (type byte and
// remaining length), topic, packet id, payload. It is at least what brokers compare with
// their packet limit.
func packetSize(topic string, payload int) int {
	rem := 2 + len(topic) + 2 + payload
	n := 1
	for r := rem; ; r >>= 7 {
		n++
		if r < 128 {
			break
		}
	}
	return n + rem
}

func digest(topic string, payload []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(topic))
	h.Write([]byte{0})
	h.Write(payload)
	var d [32]byte
	h.Sum(d[:0])
	return d
}

func (s *sessionStore) Put(key string, p packets.ControlPacket) {
	if pub, ok := p.(*packets.PublishPacket); ok && key[:2] == "o." {
		info := storedPub{digest(pub.TopicName, pub.Payload), packetSize(pub.TopicName, len(pub.Payload))}
		s.mu.Lock()
		s.info[key] = info
		s.mu.Unlock()
	}
	s.Store.Put(key, p)
}

func (s *sessionStore) Get(key string) packets.ControlPacket {
	p := s.Store.Get(key)
	if pub, ok := p.(*packets.PublishPacket); ok {
		// Field by field: the writer may be setting RemainingLength (which Write
		// recomputes) at this moment. The payload is never written after Put.
		cp := &packets.PublishPacket{TopicName: pub.TopicName, MessageID: pub.MessageID, Payload: pub.Payload}
		cp.MessageType, cp.Dup, cp.Qos, cp.Retain = pub.MessageType, pub.Dup, pub.Qos, pub.Retain
		return cp
	}
	return p
}

// Del is how paho forgets an outbound PUBLISH once the broker acknowledged it.
func (s *sessionStore) Del(key string) {
	s.mu.Lock()
	if info, ok := s.info[key]; ok {
		s.progress = true
		s.maxAcked = max(s.maxAcked, info.size)
		delete(s.info, key)
	}
	s.mu.Unlock()
	s.Store.Del(key)
}

func (s *sessionStore) Reset() {
	s.mu.Lock()
	clear(s.info)
	s.mu.Unlock()
	s.Store.Reset()
}

// Unacked says whether the outbound PUBLISH with packet id mid is still in the session
// waiting for its PUBACK (paho deletes it from the store before it completes the token
// on a PUBACK).
func (s *sessionStore) Unacked(mid uint16) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.info["o."+strconv.Itoa(int(mid))]
	return ok
}

// Refused is the smallest packet size the broker was found to refuse, 0 if none.
func (s *sessionStore) Refused() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}

// All is called by paho's resume at every connect: judge the suspect, drop a poisoned
// message, and put the suspect first.
func (s *sessionStore) All() []string {
	keys := s.Store.All()
	s.mu.Lock()
	lead, poisoned := s.judgeLocked(keys)
	s.progress = false
	var bad []string
	if poisoned {
		for _, k := range keys {
			if s.info[k].digest == s.suspect {
				bad = append(bad, k)
			}
		}
		if size := s.info[lead].size; s.refused == 0 || size < s.refused {
			s.refused = size
		}
		s.strikes = 0
	}
	s.mu.Unlock()
	if poisoned {
		return s.dropPoison(keys, bad)
	}
	if lead != "" {
		for i, k := range keys {
			if k == lead {
				keys[0], keys[i] = keys[i], keys[0]
			}
		}
	}
	return keys
}

// judgeLocked returns the key of the suspect among keys ("" when none) and whether it
// has now struck out. Caller holds s.mu.
func (s *sessionStore) judgeLocked(keys []string) (string, bool) {
	lead, size := "", 0
	for _, k := range keys {
		if info, ok := s.info[k]; ok && info.size > size {
			lead, size = k, info.size
		}
	}
	if lead == "" || size <= s.maxAcked {
		s.strikes = 0
		return "", false
	}
	d := s.info[lead].digest
	if d == s.suspect && !s.progress {
		s.strikes++
	} else {
		s.suspect, s.strikes = d, 0
	}
	return lead, s.strikes >= poisonStrikes
}

// dropPoison removes every stored copy of the poisoned message and reports it once.
func (s *sessionStore) dropPoison(keys, bad []string) []string {
	var topic string
	var payload []byte
	for _, k := range bad {
		if pub, ok := s.Store.Get(k).(*packets.PublishPacket); ok {
			topic, payload = pub.TopicName, pub.Payload
		}
		s.mu.Lock()
		delete(s.info, k)
		s.mu.Unlock()
		s.Store.Del(k)
	}
	out := keys[:0]
	for _, k := range keys {
		if !slices.Contains(bad, k) {
			out = append(out, k)
		}
	}
	if payload != nil && s.onPoison != nil {
		s.onPoison(topic, payload, packetSize(topic, len(payload))) // must not block: paho is resuming
	}
	return out
}
