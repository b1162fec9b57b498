package mqtt

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/diagd/diagd/internal/mosquittotest"
	"github.com/diagd/diagd/mqtt/outbox"
)

func TestConfigDefaultsAndErrors(t *testing.T) {
	c := Config{Broker: "tcp://plc-broker:1883", Station: "line3"}
	if err := c.normalize(); err != nil {
		t.Fatal(err)
	}
	if c.ClientID != "diagd-line3" || c.TopicPrefix != "diagd/line3" || c.Window != 64 || c.AckTimeout != 10*time.Second {
		t.Fatalf("defaults: %+v", c)
	}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Station: "s"}, "broker URL is empty"},
		{Config{Broker: "http://x:80", Station: "s"}, `scheme "http"`},
		{Config{Broker: "tcp://x:1883"}, "station is empty"},
		{Config{Broker: "tcp://x:1883", Station: "a/b"}, `station "a/b"`},
		{Config{Broker: "tcp://x:1883", Station: "s", TopicPrefix: "plant/#"}, `topic prefix "plant/#"`},
		{Config{Broker: "tcp://x:1883", Station: "s", CertFile: "c.pem"}, "must be given together"},
	} {
		err := tc.cfg.normalize()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one containing %q", tc.cfg, err, tc.want)
		}
	}
	c = Config{Broker: "ssl://x:8883", Station: "s", CAFile: filepath.Join(t.TempDir(), "missing.pem")}
	if _, err := New(nil, c, nil, nil); err == nil || !strings.Contains(err.Error(), "CA file") {
		t.Fatalf("missing CA file: %v", err)
	}
}

// TestVerdictJSONFields pins the payload's field names (DeepStream/Metropolis) and the
// timestamp format, which PLC programs parse.
func TestVerdictJSONFields(t *testing.T) {
	v := sample(1)
	v.PartID = "P-1"
	if err := v.normalize("line1"); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	want := "@timestamp analyticsModule frameId latencyMs messageid partId score sensorId seq station threshold verdict"
	if strings.Join(keys, " ") != want {
		t.Fatalf("verdict keys %v, want %s", keys, want)
	}
	if m["@timestamp"] != "2026-11-28T12:00:00.001Z" {
		t.Fatalf("@timestamp %v", m["@timestamp"])
	}
	u := Verdict{Verdict: Unknown, Timestamp: Timestamp(time.Now())}
	u.Score = float64(0) / zero()
	if err := u.normalize("line1"); err != nil || u.Score != 0 || len(u.MessageID) != 36 {
		t.Fatalf("unknown verdict with NaN score: %+v %v", u, err)
	}
	f := Verdict{Verdict: Fail, Timestamp: Timestamp(time.Now()), Score: u.Score}
	f.Threshold = float64(1) / zero()
	if err := f.normalize("line1"); err == nil || !strings.Contains(err.Error(), "threshold") {
		t.Fatalf("fail verdict with infinite threshold: %v", err)
	}
}

func zero() float64 { return 0 }

func TestEventQueueDropsOldest(t *testing.T) {
	ob, err := outbox.Open(t.TempDir(), outbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	c, err := New(nil, Config{Broker: "tcp://127.0.0.1:1", Station: "s", EventQueue: 3}, ob, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := c.Event("augment", map[string]int{"done": i}); err != nil {
			t.Fatal(err)
		}
	}
	if len(c.events) != 3 || string(c.events[0].payload) != `{"done":2}` || metricValue(t, c.m.dropped) != 2 {
		t.Fatalf("queue %d events, first %s, dropped %v", len(c.events), c.events[0].payload, metricValue(t, c.m.dropped))
	}
}

// TestTLSAndPassword connects with a CA file, a client certificate and a password to a
// mosquitto that requires all three, and delivers verdicts.
func TestTLSAndPassword(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := writeCert(t, dir, "ca", nil, nil)
	writeCert(t, dir, "server", ca, caKey)
	writeCert(t, dir, "client", ca, caKey)
	p := func(n string) string { return filepath.Join(dir, n) }
	b := mosquittotest.StartWith(t, mosquittotest.Options{
		CAFile: p("ca.pem"), CertFile: p("server.pem"), KeyFile: p("server-key.pem"), RequireCertificate: true,
		Users: map[string]string{"diagd": "s3cret"},
	})
	tls := func(c *Config) {
		c.CAFile, c.CertFile, c.KeyFile = p("ca.pem"), p("client.pem"), p("client-key.pem")
		c.Username, c.Password = "diagd", "s3cret"
	}
	f := newClient(t, b.URL(), "line1", t.TempDir(), outbox.Options{}, tls)
	defer f.close(t, context.Background())
	f.c.Start()
	for i := range 3 {
		if _, _, err := f.c.PublishVerdict(sample(i)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for f.ob.Stats().Records > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("verdicts not acknowledged over TLS: %+v", f.ob.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}

	// A wrong password never connects and nothing leaves the outbox.
	g := newClient(t, b.URL(), "line2", t.TempDir(), outbox.Options{}, func(c *Config) { tls(c); c.Password = "wrong" })
	expired, cancel := context.WithCancel(context.Background())
	cancel()
	defer g.close(t, expired)
	g.c.Start()
	if _, _, err := g.c.PublishVerdict(sample(0)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(700 * time.Millisecond)
	if g.c.Connected() || g.ob.Stats().Records != 1 {
		t.Fatalf("wrong password: connected=%v, outbox %+v", g.c.Connected(), g.ob.Stats())
	}
}

// writeCert writes <name>.pem and <name>-key.pem: a self-signed CA when parent is nil,
// else a leaf for 127.0.0.1 signed by parent.
func writeCert(t *testing.T, dir, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "diagd-test-" + name},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	signer, signKey := tmpl, key
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	} else {
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		signer, signKey = parent, parentKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+"-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}
