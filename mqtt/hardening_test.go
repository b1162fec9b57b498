package mqtt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/diagd/diagd/internal/mosquittotest"
	"github.com/diagd/diagd/internal/testenv"
	"github.com/diagd/diagd/mqtt/outbox"
)

// waitFor polls cond for up to timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func expiredCtx() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// lastPayload is the payload of the last message on topic, "" if none.
func lastPayload(ms []msg, topic string) string {
	p := ""
	for _, m := range ms {
		if m.Topic == topic {
			p = m.Payload
		}
	}
	return p
}

// Issue 8 item 24: a publish whose PUBACK never comes (lost on a live connection) is
// re-sent from the outbox after AckTimeout, and the verdict leaves the outbox only once
// a PUBACK arrives.
func TestMissingPubackIsResent(t *testing.T) {
	b := mosquittotest.StartWith(t, mosquittotest.Options{SaveOnShutdownOnly: true})
	proxy := mosquittotest.NewProxy(t, b)
	sub := subscribe(t, b.URL(), "plc-1", "diagd/line1/verdict")
	f := newClient(t, proxy.URL(), "line1", t.TempDir(), outbox.Options{}, func(c *Config) { c.AckTimeout = time.Second })
	defer f.close(t, context.Background())
	f.c.Start()
	waitFor(t, 10*time.Second, "connected", f.c.Connected)

	proxy.DropPubacks(true)
	idOf := map[uint64]string{}
	for i := range 3 {
		v, _, err := f.c.PublishVerdict(sample(i))
		if err != nil {
			t.Fatal(err)
		}
		idOf[v.Seq] = v.MessageID
	}
	// The broker delivers each verdict, the client never hears its PUBACK, and sends it
	// again from the outbox.
	sub.WaitFor(t, 15*time.Second, "every verdict twice", func(ms []msg) bool {
		return len(verdicts(t, ms, "diagd/line1/verdict")) >= 6
	})
	if n := metricValue(t, f.c.m.failures); n < 1 {
		t.Fatalf("publish failures %v, want the missing PUBACK counted", n)
	}
	if st := f.ob.Stats(); st.Records != 3 {
		t.Fatalf("outbox holds %d records without any PUBACK, want 3", st.Records)
	}
	if n := proxy.DropPubacks(false); n < 3 {
		t.Fatalf("the proxy swallowed %d PUBACKs", n)
	}
	waitFor(t, 15*time.Second, "the outbox to empty once PUBACKs pass", func() bool { return f.ob.Stats().Records == 0 })
	checkComplete(t, unique(verdicts(t, sub.Snapshot(), "diagd/line1/verdict")), 3, idOf)
}

// Issue 8 item 13: a retained message on cmd/<name> used to run again at every
// reconnect. Retained commands are ignored (logged and counted); sent ones run.
func TestRetainedCommandIsIgnored(t *testing.T) {
	b := mosquittotest.StartWith(t, mosquittotest.Options{SaveOnShutdownOnly: true})
	proxy := mosquittotest.NewProxy(t, b)
	sub := subscribe(t, b.URL(), "plc-1", "diagd/line1/#")
	sub.PublishRetained(t, "diagd/line1/cmd/retrain", `{"id":1}`)
	var runs atomic.Int32
	f := newClient(t, proxy.URL(), "line1", t.TempDir(), outbox.Options{}, nil)
	defer f.close(t, context.Background())
	f.c.HandleCommand("retrain", ScopeModel, func(context.Context, []byte) (any, error) {
		runs.Add(1)
		return "started", nil
	})
	f.c.Start()
	online := func(k int) func([]msg) bool {
		return func(ms []msg) bool { return count(ms, "diagd/line1/available", "online") >= k }
	}
	sub.WaitFor(t, 10*time.Second, "online", online(1))
	proxy.Sever() // reconnect: the broker hands the retained command over again
	sub.WaitFor(t, 15*time.Second, "online again", online(2))
	sub.Publish(t, "diagd/line1/cmd/retrain", `{"id":2}`)
	ms := sub.WaitFor(t, 10*time.Second, "a result", func(ms []msg) bool {
		return countTopic(ms, "diagd/line1/cmd/retrain/result") >= 1
	})
	time.Sleep(200 * time.Millisecond) // a result of the retained command would come first anyway
	ms = sub.Snapshot()
	if n := countTopic(ms, "diagd/line1/cmd/retrain/result"); n != 1 || runs.Load() != 1 {
		t.Fatalf("%d results, %d runs: want only the command that was sent to run", n, runs.Load())
	}
	if r := lastPayload(ms, "diagd/line1/cmd/retrain/result"); !strings.Contains(r, `"id":2`) {
		t.Fatalf("result %s, want the sent command's", r)
	}
	if n := metricValue(t, f.c.m.cmdRefused.WithLabelValues("retained")); n < 2 {
		t.Fatalf("retained commands ignored: %v, want one per connect (2)", n)
	}
}

type result struct {
	OK     bool            `json:"ok"`
	Error  string          `json:"error"`
	ID     json.RawMessage `json:"id"`
	Result json.RawMessage `json:"result"`
}

// Issue 8 items 7 and 14: a command's payload and id are bounded (a huge id is not
// echoed back), a command outside the allow-list is refused, the id is the client's and
// not the handler's, and the retained state "commands" names each command's scope.
func TestCommandLimitsScopesAndAllowList(t *testing.T) {
	b := mosquittotest.StartWith(t, mosquittotest.Options{SaveOnShutdownOnly: true})
	sub := subscribe(t, b.URL(), "plc-1", "diagd/line1/#")
	f := newClient(t, b.URL(), "line1", t.TempDir(), outbox.Options{}, func(c *Config) { c.Commands = []string{"echo"} })
	defer f.close(t, context.Background())
	var reloads atomic.Int32
	f.c.HandleCommand("echo", ScopeRead, func(_ context.Context, p []byte) (any, error) { return json.RawMessage(p), nil })
	f.c.HandleCommand("reload", ScopeModel, func(context.Context, []byte) (any, error) {
		reloads.Add(1)
		return nil, nil
	})
	f.c.Start()
	sub.WaitFor(t, 10*time.Second, "online", func(ms []msg) bool { return count(ms, "diagd/line1/available", "online") >= 1 })

	hugeID := `{"id":"` + strings.Repeat("x", 100<<10) + `"}` // over the 64 KiB payload limit
	longID := `{"id":"` + strings.Repeat("y", 200) + `","x":1}`
	for _, tc := range []struct{ cmd, payload, wantErr, wantID, wantResult string }{
		{"echo", `{"x":1,"id":"a","y":[2]}`, "", `"a"`, `{"x":1,"y":[2]}`},
		{"reload", `{"id":2}`, `command "reload" (scope model) is not allowed on this station`, `2`, ``},
		{"echo", hugeID, "command echo: payload is 102409 bytes, limit 65536", ``, ``},
		{"echo", longID, `command echo: "id" is a 200-byte string, limit 128`, ``, ``},
		{"echo", `[1,2]`, "command echo: payload must be a JSON object", ``, ``},
		{"echo", `{"id":{"a":1}}`, `command echo: "id" must be a string or a number`, ``, ``},
	} {
		topic := "diagd/line1/cmd/" + tc.cmd + "/result"
		before := countTopic(sub.Snapshot(), topic)
		sub.Publish(t, "diagd/line1/cmd/"+tc.cmd, tc.payload)
		ms := sub.WaitFor(t, 10*time.Second, "result of "+tc.cmd, func(ms []msg) bool { return countTopic(ms, topic) > before })
		raw := lastPayload(ms, topic)
		var r result
		if err := json.Unmarshal([]byte(raw), &r); err != nil {
			t.Fatalf("result %q: %v", raw, err)
		}
		if r.Error != tc.wantErr || r.OK != (tc.wantErr == "") || string(r.ID) != tc.wantID || string(r.Result) != tc.wantResult {
			t.Errorf("%s %.60s: result %.300s, want error %q id %s result %s", tc.cmd, tc.payload, raw, tc.wantErr, tc.wantID, tc.wantResult)
		}
		if len(raw) > 1024 {
			t.Errorf("%s: a %d-byte result echoes what came in", tc.cmd, len(raw))
		}
	}
	if reloads.Load() != 0 {
		t.Fatal("a command outside the allow-list ran")
	}
	want := `[{"name":"echo","scope":"read","allowed":true},{"name":"reload","scope":"model","allowed":false}]`
	if got := lastPayload(sub.Snapshot(), "diagd/line1/state/commands"); got != want {
		t.Fatalf("state/commands %s, want %s", got, want)
	}
	if n := metricValue(t, f.c.m.cmdRefused.WithLabelValues("not_allowed")); n != 1 {
		t.Fatalf("not_allowed refusals %v, want 1", n)
	}
}

// syncBuffer is a log sink for assertions on what was logged.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Issue 8 item 12: connection failures were logged with no reason. Each now says what
// the broker or the TLS layer answered: a wrong password, a CA that did not sign the
// broker's certificate, a missing client certificate, plain TCP to the TLS port.
func TestConnectFailureReasons(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := writeCert(t, dir, "ca", nil, nil)
	writeCert(t, dir, "server", ca, caKey)
	writeCert(t, dir, "client", ca, caKey)
	writeCert(t, dir, "other-ca", nil, nil)
	p := func(n string) string { return filepath.Join(dir, n) }
	b := mosquittotest.StartWith(t, mosquittotest.Options{
		CAFile: p("ca.pem"), CertFile: p("server.pem"), KeyFile: p("server-key.pem"), RequireCertificate: true,
		Users: map[string]string{"diagd": "s3cret"},
	})
	good := func(c *Config) {
		c.CAFile, c.CertFile, c.KeyFile = p("ca.pem"), p("client.pem"), p("client-key.pem")
		c.Username, c.Password = "diagd", "s3cret"
	}
	plain := strings.Replace(b.URL(), "ssl://", "tcp://", 1)
	for _, tc := range []struct {
		name, url string
		tweak     func(*Config)
		want      string
	}{
		{"wrong password", b.URL(), func(c *Config) { good(c); c.Password = "wrong" }, "the broker refused the connection: not authorised (CONNACK 5)"},
		{"wrong CA", b.URL(), func(c *Config) { good(c); c.CAFile = p("other-ca.pem") }, "not signed by a trusted CA"},
		{"no client certificate", b.URL(), func(c *Config) { good(c); c.CertFile, c.KeyFile = "", "" }, "client certificate"},
		{"plain TCP to the TLS port", plain, func(c *Config) { good(c); c.CAFile, c.CertFile, c.KeyFile = "", "", "" }, "closed the connection without answering"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncBuffer
			f := newClient(t, tc.url, "line1", t.TempDir(), outbox.Options{}, tc.tweak)
			f.c.log = slogTo(&logs)
			defer f.close(t, expiredCtx())
			f.c.Start()
			waitFor(t, 10*time.Second, "two failed attempts", func() bool { return metricValue(t, f.c.m.connectFailures) >= 2 })
			if st := f.c.Status(); !strings.Contains(st.LastError, tc.want) || st.Connected {
				t.Fatalf("status %+v: want a last error containing %q", st, tc.want)
			}
			// Logged with the reason, once (the same reason is repeated at most once a minute).
			if n := strings.Count(logs.String(), "cannot connect to the broker"); n != 1 || !strings.Contains(logs.String(), tc.want) {
				t.Fatalf("log (%d connect failure lines):\n%s", n, logs.String())
			}
		})
	}
}

// The reason of a connection failure is published (retained state/mqtt) once the
// client gets through.
func TestConnectFailureIsPublished(t *testing.T) {
	b := mosquittotest.StartWith(t, mosquittotest.Options{SaveOnShutdownOnly: true})
	proxy := mosquittotest.NewProxy(t, b)
	proxy.SetDown(true) // accepts and hangs up before CONNACK
	sub := subscribe(t, b.URL(), "plc-1", "diagd/line1/state/mqtt")
	f := newClient(t, proxy.URL(), "line1", t.TempDir(), outbox.Options{}, nil)
	defer f.close(t, context.Background())
	f.c.Start()
	waitFor(t, 10*time.Second, "a failed attempt", func() bool { return metricValue(t, f.c.m.connectFailures) >= 1 })
	proxy.SetDown(false)
	ms := sub.WaitFor(t, 15*time.Second, "state/mqtt", func(ms []msg) bool { return len(ms) > 0 })
	var s connectionState
	if err := json.Unmarshal([]byte(ms[len(ms)-1].Payload), &s); err != nil {
		t.Fatal(err)
	}
	if !s.Connected || s.ConnectFailures < 1 || !strings.Contains(s.LastError, "closed the connection without answering") ||
		s.LastErrorAt == nil || s.Broker != proxy.URL() {
		t.Fatalf("state/mqtt %s", ms[len(ms)-1].Payload)
	}
}

// Issue 8 item 7: a verdict larger than the broker's max_packet_size made an endless
// reconnect loop that held back every later verdict. The client now finds that the
// broker refuses it, sets it aside in the dead-letter file (reported and counted), and
// the verdicts after it are delivered.
func TestOversizedVerdictIsSetAside(t *testing.T) {
	for _, tc := range []struct {
		name      string
		maxPacket int // the client's setting; 0: learn it from the broker
	}{{"learned", 0}, {"configured", 1024}} {
		t.Run(tc.name, func(t *testing.T) {
			b := mosquittotest.StartWith(t, mosquittotest.Options{SaveOnShutdownOnly: true, MaxPacketSize: 1024})
			sub := subscribe(t, b.URL(), "plc-1", "diagd/line1/#")
			dir := t.TempDir()
			f := newClient(t, b.URL(), "line1", dir, outbox.Options{}, func(c *Config) { c.MaxPacket = tc.maxPacket })
			defer f.close(t, context.Background())
			f.c.Start()
			idOf := map[uint64]string{}
			for i := range 10 {
				v := sample(i)
				if i == 3 {
					v.Verdict, v.Error = Unknown, "decoder: "+strings.Repeat("corrupt JPEG data; ", 50) // ~1.3 KB verdict
				}
				out, _, err := f.c.PublishVerdict(v)
				if err != nil {
					t.Fatal(err)
				}
				if i != 3 {
					idOf[out.Seq] = out.MessageID
				}
			}
			waitFor(t, 30*time.Second, "the outbox to empty", func() bool { return f.ob.Stats().Records == 0 })
			ms := sub.WaitFor(t, 10*time.Second, "9 verdicts", func(ms []msg) bool {
				return len(unique(verdicts(t, ms, "diagd/line1/verdict"))) >= 9
			})
			got := unique(verdicts(t, ms, "diagd/line1/verdict"))
			if _, ok := got[sample(3).MessageID]; ok || len(got) != 9 {
				t.Fatalf("%d verdicts delivered (oversized one among them: %v), want the 9 others", len(got), ok)
			}
			for seq, id := range idOf {
				if got[id].Seq != seq {
					t.Fatalf("verdict %s: seq %d, want %d", id, got[id].Seq, seq)
				}
			}
			if st := f.ob.Stats(); st.DeadLetters != 1 {
				t.Fatalf("outbox %+v, want one dead letter", st)
			}
			dl, err := os.ReadFile(filepath.Join(dir, outbox.DeadLetterFile))
			if err != nil || !strings.Contains(string(dl), `"seq":4`) || !strings.Contains(string(dl), "corrupt JPEG data") {
				t.Fatalf("dead-letter file %q: %v", dl, err)
			}
			if metricValue(t, f.c.m.tooLarge) != 1 {
				t.Fatalf("too-large counter %v", metricValue(t, f.c.m.tooLarge))
			}
			sub.WaitFor(t, 10*time.Second, "events/dead_letter", func(ms []msg) bool {
				return strings.Contains(lastPayload(ms, "diagd/line1/events/dead_letter"), `"seq":4`)
			})
			if tc.maxPacket > 0 && metricValue(t, f.c.m.reconnects) != 0 {
				t.Fatalf("%v reconnects with the broker's limit configured, want none", metricValue(t, f.c.m.reconnects))
			}
		})
	}
}

// Issue 8 item 7: a 1.1 MB partId made a record no outbox could hold ("outbox full" on
// an empty one) and wedged the judge loop. Over-long identifying fields are cut to
// their limits and make the verdict unknown, with the reason; the verdict is stored
// and delivered.
func TestHugePartIDIsCutNotWedged(t *testing.T) {
	b := mosquittotest.StartWith(t, mosquittotest.Options{SaveOnShutdownOnly: true})
	sub := subscribe(t, b.URL(), "plc-1", "diagd/line1/verdict")
	f := newClient(t, b.URL(), "line1", t.TempDir(), outbox.Options{MaxBytes: 1 << 20}, nil)
	defer f.close(t, context.Background())
	f.c.Start()
	v := sample(0)
	v.Verdict, v.PartID = Fail, strings.Repeat("P", 1_100_000)
	out, _, err := f.c.PublishVerdict(v)
	if err != nil {
		t.Fatalf("a verdict with a 1.1 MB partId: %v", err)
	}
	if len(out.PartID) != MaxPartIDLen || out.Verdict != Unknown ||
		out.Error != "partId was 1100000 bytes, cut to the limit of 256" {
		t.Fatalf("stored verdict: verdict %s, partId %d bytes, error %q", out.Verdict, len(out.PartID), out.Error)
	}
	if _, _, err := f.c.PublishVerdict(sample(1)); err != nil {
		t.Fatalf("the next verdict: %v", err)
	}
	ms := sub.WaitFor(t, 10*time.Second, "2 verdicts", func(ms []msg) bool { return len(ms) >= 2 })
	if len(ms[0].Payload) > 1500 {
		t.Fatalf("published verdict is %d bytes", len(ms[0].Payload))
	}
}

// failingDisk makes the outbox's segment writes fail with ENOSPC while full is set.
type failingDisk struct{ full atomic.Bool }

func (d *failingDisk) open(path string, flag int, perm os.FileMode) (outbox.File, error) {
	f, err := os.OpenFile(path, flag, perm)
	if err != nil {
		return nil, err
	}
	return &failingFile{f, d}, nil
}

type failingFile struct {
	*os.File
	d *failingDisk
}

func (f *failingFile) Write(p []byte) (int, error) {
	if f.d.full.Load() {
		return 0, syscall.ENOSPC
	}
	return f.File.Write(p)
}

// Issue 8 item 4, as the client reports it: while the disk refuses writes a verdict is
// refused with outbox.ErrStorage (so the caller holds it), the outbox is reported
// unhealthy (Status, metrics, retained state/outbox, an events/outbox alarm), and all
// of it clears with the first verdict stored after space returns.
func TestOutboxDiskFaultIsReported(t *testing.T) {
	b := mosquittotest.StartWith(t, mosquittotest.Options{SaveOnShutdownOnly: true})
	sub := subscribe(t, b.URL(), "plc-1", "diagd/line1/#")
	disk := &failingDisk{}
	f := newClient(t, b.URL(), "line1", t.TempDir(), outbox.Options{OpenFile: disk.open}, nil)
	defer f.close(t, context.Background())
	f.c.Start()
	sub.WaitFor(t, 10*time.Second, "online", func(ms []msg) bool { return count(ms, "diagd/line1/available", "online") >= 1 })

	disk.full.Store(true)
	_, _, err := f.c.PublishVerdict(sample(0))
	if !errors.Is(err, outbox.ErrStorage) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("verdict on a full disk: %v, want outbox.ErrStorage (ENOSPC)", err)
	}
	if st := f.c.Status(); !strings.Contains(st.Outbox.Fault, "no space left on device") {
		t.Fatalf("status on a full disk: %+v", st)
	}
	if gauge(t, f.reg, "diagd_outbox_healthy") != 0 || counter(t, f.reg, "diagd_outbox_write_errors_total") != 1 {
		t.Fatal("metrics do not show the disk fault")
	}
	alarm := func(ok bool) func([]msg) bool {
		return func(ms []msg) bool {
			var s outboxState
			return json.Unmarshal([]byte(lastPayload(ms, "diagd/line1/events/outbox")), &s) == nil && s.OK == ok &&
				json.Unmarshal([]byte(lastPayload(ms, "diagd/line1/state/outbox")), &s) == nil && s.OK == ok
		}
	}
	ms := sub.WaitFor(t, 10*time.Second, "the outbox alarm", alarm(false))
	if s := lastPayload(ms, "diagd/line1/state/outbox"); !strings.Contains(s, "no space left on device") || !strings.Contains(s, `"writeErrors":1`) {
		t.Fatalf("state/outbox %s", s)
	}

	disk.full.Store(false)
	if _, _, err := f.c.PublishVerdict(sample(0)); err != nil {
		t.Fatalf("verdict after space returned: %v", err)
	}
	sub.WaitFor(t, 10*time.Second, "the all-clear and the verdict", func(ms []msg) bool {
		return alarm(true)(ms) && countTopic(ms, "diagd/line1/verdict") == 1
	})
	if f.c.Status().Outbox.Fault != "" || gauge(t, f.reg, "diagd_outbox_healthy") != 1 {
		t.Fatal("still unhealthy after a verdict was stored")
	}
}

func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// Issue 8 item 14: the ACL README recommends (testdata/mosquitto.acl, quoted there) lets
// diagd do its job, lets a PLC read verdicts and send only trigger and status, and
// lets an HMI send every command.
func TestRecommendedACL(t *testing.T) {
	acl, err := os.ReadFile("testdata/mosquitto.acl")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(testenv.ModuleRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), string(acl)) {
		t.Fatal("README.md does not quote mqtt/testdata/mosquitto.acl as it is")
	}
	b := mosquittotest.StartWith(t, mosquittotest.Options{SaveOnShutdownOnly: true, ACL: string(acl),
		Users: map[string]string{"diagd-line3": "d", "plc-line3": "p", "hmi": "h"}})
	plc := mosquittotest.SubscribeAs(t, b.URL(), "plc-1", "plc-line3", "p", "diagd/line3/#")
	hmi := mosquittotest.SubscribeAs(t, b.URL(), "hmi-1", "hmi", "h", "diagd/#")
	f := newClient(t, b.URL(), "line3", t.TempDir(), outbox.Options{}, func(c *Config) { c.Username, c.Password = "diagd-line3", "d" })
	defer f.close(t, context.Background())
	var mu sync.Mutex
	ran := map[string]int{}
	for name, scope := range map[string]Scope{"status": ScopeRead, "trigger": ScopeOperate, "retrain": ScopeModel} {
		f.c.HandleCommand(name, scope, func(context.Context, []byte) (any, error) {
			mu.Lock()
			ran[name]++
			mu.Unlock()
			return "ok", nil
		})
	}
	f.c.Start()
	if _, _, err := f.c.PublishVerdict(sample(0)); err != nil {
		t.Fatal(err)
	}
	plc.WaitFor(t, 10*time.Second, "the verdict and online at the PLC", func(ms []msg) bool {
		return countTopic(ms, "diagd/line3/verdict") == 1 && count(ms, "diagd/line3/available", "online") == 1
	})
	plc.Publish(t, "diagd/line3/cmd/retrain", `{}`) // denied: the broker drops it
	plc.Publish(t, "diagd/line3/cmd/trigger", `{}`)
	plc.WaitFor(t, 10*time.Second, "the trigger's result at the PLC", func(ms []msg) bool {
		return countTopic(ms, "diagd/line3/cmd/trigger/result") == 1
	})
	hmi.Publish(t, "diagd/line3/cmd/retrain", `{}`)
	hmi.WaitFor(t, 10*time.Second, "the HMI's retrain result", func(ms []msg) bool {
		return countTopic(ms, "diagd/line3/cmd/retrain/result") == 1
	})
	mu.Lock()
	defer mu.Unlock()
	if ran["trigger"] != 1 || ran["retrain"] != 1 {
		t.Fatalf("commands run %v: want the PLC's trigger and the HMI's retrain, not the PLC's retrain", ran)
	}
	if countTopic(plc.Snapshot(), "diagd/line3/cmd/retrain/result") != 0 {
		t.Fatal("the PLC sees results of commands it may not send")
	}
}

// Commands of one name run in the order they arrive (two triggers sent a millisecond
// apart must queue their parts in that order), one at a time; paho hands them over in
// order, and a goroutine per command would lose it.
func TestCommandsOfOneNameRunInArrivalOrder(t *testing.T) {
	b := mosquittotest.StartWith(t, mosquittotest.Options{SaveOnShutdownOnly: true})
	sub := subscribe(t, b.URL(), "plc-1", "diagd/line1/#")
	const n = 30
	f := newClient(t, b.URL(), "line1", t.TempDir(), outbox.Options{}, func(c *Config) { c.MaxCommandsInFlight = n })
	defer f.close(t, context.Background())
	var mu sync.Mutex
	var got []int
	f.c.HandleCommand("trigger", ScopeOperate, func(_ context.Context, p []byte) (any, error) {
		var v struct{ N int }
		if err := json.Unmarshal(p, &v); err != nil {
			return nil, err
		}
		time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond) // a goroutine per command would reorder
		mu.Lock()
		got = append(got, v.N)
		mu.Unlock()
		return v.N, nil
	})
	f.c.Start()
	sub.WaitFor(t, 10*time.Second, "online", func(ms []msg) bool { return count(ms, "diagd/line1/available", "online") >= 1 })
	for i := range n {
		sub.Publish(t, "diagd/line1/cmd/trigger", fmt.Sprintf(`{"n":%d}`, i))
	}
	sub.WaitFor(t, 20*time.Second, "every result", func(ms []msg) bool {
		return countTopic(ms, "diagd/line1/cmd/trigger/result") >= n
	})
	mu.Lock()
	defer mu.Unlock()
	for i, v := range got {
		if v != i {
			t.Fatalf("commands ran in the order %v, want 0..%d", got, n-1)
		}
	}
}
