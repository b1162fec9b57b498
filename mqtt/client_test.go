package mqtt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/diagd/diagd/internal/mosquittotest"
	"github.com/diagd/diagd/internal/testenv"
	"github.com/diagd/diagd/mqtt/outbox"
)

// msg and subscriber are the shared test subscriber (internal/mosquittotest).
type (
	msg        = mosquittotest.Msg
	subscriber = mosquittotest.Subscriber
)

func subscribe(t *testing.T, url, clientID, filter string) *subscriber {
	return mosquittotest.Subscribe(t, url, clientID, filter)
}

func verdicts(t *testing.T, ms []msg, topic string) []Verdict {
	t.Helper()
	var out []Verdict
	for _, m := range ms {
		if m.Topic != topic {
			continue
		}
		var v Verdict
		if err := json.Unmarshal([]byte(m.Payload), &v); err != nil {
			t.Fatalf("verdict payload %q: %v", m.Payload, err)
		}
		out = append(out, v)
	}
	return out
}

func unique(vs []Verdict) map[string]Verdict {
	u := map[string]Verdict{}
	for _, v := range vs {
		u[v.MessageID] = v
	}
	return u
}

type fixture struct {
	ob  *outbox.Outbox
	c   *Client
	reg *prometheus.Registry
}

func newClient(t *testing.T, url, station, dir string, opts outbox.Options, tweak func(*Config)) fixture {
	t.Helper()
	opts.Log = testenv.Logger(t)
	ob, err := outbox.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Broker: url, Station: station, AckTimeout: 5 * time.Second,
		MaxReconnectInterval: 300 * time.Millisecond, KeepAlive: 5 * time.Second, ConnectTimeout: 2 * time.Second}
	if tweak != nil {
		tweak(&cfg)
	}
	reg := prometheus.NewRegistry()
	c, err := New(testenv.Logger(t), cfg, ob, reg)
	if err != nil {
		t.Fatal(err)
	}
	return fixture{ob, c, reg}
}

func (f fixture) close(t *testing.T, ctx context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_ = f.c.Close(ctx)
	if err := f.ob.Close(); err != nil {
		t.Error(err)
	}
}

func sample(i int) Verdict {
	v := Verdict{
		MessageID: fmt.Sprintf("frame-%04d", i), Timestamp: Timestamp(time.Date(2026, 11, 28, 12, 0, 0, i*1e6, time.UTC)),
		SensorID: "cam1", FrameID: fmt.Sprintf("img_%04d.png", i), Verdict: Pass, Score: 0.1, Threshold: 0.5,
		AnalyticsModule: AnalyticsModule{Version: "m1"}, LatencyMs: 12.5,
	}
	if i%7 == 0 {
		v.Verdict, v.Score = Fail, 0.9
	}
	return v
}

// checkComplete asserts that the distinct verdicts are exactly seqs 1..n, each with
// the messageid it was appended with.
func checkComplete(t *testing.T, u map[string]Verdict, n int, idOf map[uint64]string) {
	t.Helper()
	if len(u) != n {
		t.Fatalf("%d distinct verdicts, want %d", len(u), n)
	}
	seen := map[uint64]bool{}
	for id, v := range u {
		if idOf[v.Seq] != id {
			t.Fatalf("verdict %s arrived with seq %d, which was assigned to %q", id, v.Seq, idOf[v.Seq])
		}
		seen[v.Seq] = true
	}
	for s := uint64(1); s <= uint64(n); s++ {
		if !seen[s] {
			t.Fatalf("seq %d missing", s)
		}
	}
}

func publishAll(t *testing.T, c *Client, from, n, workers int, pace time.Duration) map[uint64]string {
	t.Helper()
	var mu sync.Mutex
	idOf := map[uint64]string{}
	var wg sync.WaitGroup
	var next atomic.Int64
	next.Store(int64(from))
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= from+n {
					return
				}
				v, dup, err := c.PublishVerdict(sample(i))
				if err != nil || dup {
					t.Errorf("publish %d: dup=%v err=%v", i, dup, err)
					return
				}
				mu.Lock()
				idOf[v.Seq] = v.MessageID
				mu.Unlock()
				if pace > 0 {
					time.Sleep(pace)
				}
			}
		})
	}
	wg.Wait()
	return idOf
}

var timestampRE = regexp.MustCompile(`"@timestamp":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"`)

func TestVerdictsArriveExactlyOnceInOrder(t *testing.T) {
	// Nothing kills this broker: let it skip its per-message database save, so the
	// logged rate is diagd's, not mosquitto's persistence.
	b := mosquittotest.StartWith(t, mosquittotest.Options{SaveOnShutdownOnly: true})
	sub := subscribe(t, b.URL(), "plc-1", "diagd/line1/verdict")
	f := newClient(t, b.URL(), "line1", t.TempDir(), outbox.Options{}, nil)
	defer f.close(t, context.Background())
	f.c.Start()

	const n = 500
	start := time.Now()
	idOf := publishAll(t, f.c, 0, n, 4, 0)
	ms := sub.WaitFor(t, 30*time.Second, "500 verdicts", func(ms []msg) bool { return len(ms) >= n })
	// Information only (timings are not asserted in tests): fsync + publish + PUBACK +
	// delivery, 4 appenders.
	t.Logf("%d verdicts appended, published and received in %s (%.0f/s)", n, time.Since(start), n/time.Since(start).Seconds())
	vs := verdicts(t, ms, "diagd/line1/verdict")
	checkComplete(t, unique(vs), n, idOf)
	// Without faults nothing is re-sent, and order of publication is seq order.
	if len(vs) != n {
		t.Fatalf("%d verdict messages for %d verdicts: duplicates without any fault", len(vs), n)
	}
	for i, v := range vs {
		if v.Seq != uint64(i+1) {
			t.Fatalf("message %d has seq %d: out of order", i, v.Seq)
		}
	}
	if !timestampRE.MatchString(ms[0].Payload) || ms[0].Retained {
		t.Fatalf("verdict payload %q (retained %v): want RFC 3339 UTC ms @timestamp, not retained", ms[0].Payload, ms[0].Retained)
	}
	want := sample(0)
	got := vs[0]
	if got.MessageID != "frame-0000" && idOf[1] != got.MessageID {
		t.Fatalf("first verdict %+v", got)
	}
	if got.Station != "line1" || got.AnalyticsModule != (AnalyticsModule{"diagd", "m1"}) || got.SensorID != want.SensorID {
		t.Fatalf("verdict fields %+v", got)
	}
	// The outbox empties as PUBACKs arrive; metrics follow.
	deadline := time.Now().Add(5 * time.Second)
	for f.ob.Stats().Records > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if st := f.ob.Stats(); st.Records != 0 || st.Acked != n {
		t.Fatalf("outbox after all PUBACKs: %+v", st)
	}
	if p := metricValue(t, f.c.m.published); p != n {
		t.Fatalf("published counter %v, want %d", p, n)
	}
	if g := metricValue(t, f.c.m.connected); g != 1 {
		t.Fatalf("connected gauge %v", g)
	}

	// Re-judging frame 7 (a deterministic id) returns the original and publishes nothing.
	v, dup, err := f.c.PublishVerdict(sample(7))
	if err != nil || !dup || v.MessageID != "frame-0007" || idOf[v.Seq] != "frame-0007" {
		t.Fatalf("re-publish of frame-0007: %+v dup=%v err=%v", v, dup, err)
	}
	last, _, err := f.c.PublishVerdict(sample(n))
	if err != nil || last.Seq != n+1 {
		t.Fatalf("next verdict: seq %d err %v, want %d", last.Seq, err, n+1)
	}
	// Publication is in seq order, so once seq n+1 arrives a re-send of frame-0007
	// would have arrived before it.
	ms = sub.WaitFor(t, 10*time.Second, "verdict n+1", func(ms []msg) bool { return len(ms) >= n+1 })
	if vs := verdicts(t, ms, "diagd/line1/verdict"); len(vs) != n+1 || vs[n].Seq != n+1 {
		t.Fatalf("after re-judging frame 7: %d messages, last seq %d", len(vs), vs[len(vs)-1].Seq)
	}
}

func TestBrokerKilledTwiceLosesNothing(t *testing.T) {
	b := mosquittotest.Start(t)
	sub := subscribe(t, b.URL(), "plc-1", "diagd/line1/verdict")
	f := newClient(t, b.URL(), "line1", t.TempDir(), outbox.Options{}, nil)
	defer f.close(t, context.Background())
	f.c.Start()

	const n = 600
	done := make(chan map[uint64]string)
	go func() { done <- publishAll(t, f.c, 0, n, 2, 4*time.Millisecond) }()
	for range 2 {
		time.Sleep(400 * time.Millisecond)
		b.Kill() // SIGKILL: no clean shutdown, no last save
		time.Sleep(300 * time.Millisecond)
		b.Restart()
	}
	idOf := <-done
	ms := sub.WaitFor(t, 40*time.Second, "every verdict after dedupe", func(ms []msg) bool {
		return len(unique(verdicts(t, ms, "diagd/line1/verdict"))) >= n
	})
	vs := verdicts(t, ms, "diagd/line1/verdict")
	checkComplete(t, unique(vs), n, idOf)
	if r := metricValue(t, f.c.m.reconnects); r < 2 {
		t.Fatalf("reconnects counter %v, want >= 2", r)
	}
	t.Logf("%d verdicts, %d messages (%d duplicates after 2 broker kills)", n, len(vs), len(vs)-n)
}

func TestPublisherRestartDeliversPending(t *testing.T) {
	b := mosquittotest.Start(t)
	sub := subscribe(t, b.URL(), "plc-1", "diagd/line1/verdict")
	dir := t.TempDir()
	// First run: the broker is unreachable (a port nobody listens on), so everything
	// stays in the outbox; Close with an expired context does not wait for a flush.
	dead := mosquittotest.NewProxy(t, b)
	dead.SetDown(true)
	f := newClient(t, dead.URL(), "line1", dir, outbox.Options{}, nil)
	f.c.Start()
	idOf := publishAll(t, f.c, 0, 100, 2, 0)
	expired, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.c.Close(expired); !errors.Is(err, context.Canceled) {
		t.Fatalf("close without flush: %v, want the context error", err)
	}
	if err := f.ob.Close(); err != nil {
		t.Fatal(err)
	}
	if got := len(sub.Snapshot()); got != 0 {
		t.Fatalf("%d messages delivered through a dead link", got)
	}

	// Second run, broker reachable: the pending 100 are delivered, and seqs continue.
	f = newClient(t, b.URL(), "line1", dir, outbox.Options{}, nil)
	if st := f.ob.Stats(); st.Records != 100 {
		t.Fatalf("reopened outbox holds %d records, want 100", st.Records)
	}
	f.c.Start()
	// The daemon judges frames in batches: 4 batches of 5, one fsync each; a frame
	// re-judged within the batch (frame 0100 twice) and one from the first run (frame
	// 0003) come back as duplicates with their original seqs.
	for k := range 4 {
		batch := []Verdict{}
		for i := 100 + 5*k; i < 105+5*k; i++ {
			batch = append(batch, sample(i))
		}
		if k == 0 {
			batch = append(batch, sample(100), sample(3))
		}
		vs, dups, err := f.c.PublishVerdicts(batch)
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range vs {
			if dups[i] {
				if idOf[v.Seq] != v.MessageID || i < 5 {
					t.Fatalf("duplicate %d in batch: %+v", i, v)
				}
				continue
			}
			if want := uint64(101 + 5*k + i); v.Seq != want {
				t.Fatalf("batch %d verdict %d has seq %d, want %d", k, i, v.Seq, want)
			}
			idOf[v.Seq] = v.MessageID
		}
	}
	ms := sub.WaitFor(t, 20*time.Second, "120 verdicts", func(ms []msg) bool { return len(unique(verdicts(t, ms, "diagd/line1/verdict"))) >= 120 })
	checkComplete(t, unique(verdicts(t, ms, "diagd/line1/verdict")), 120, idOf)
	// A flushing Close empties the outbox.
	ctx, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if err := f.c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if st := f.ob.Stats(); st.Records != 0 {
		t.Fatalf("%d records left after a flushing close", st.Records)
	}
	f.ob.Close()
}

func TestFullOutboxRefusesVerdicts(t *testing.T) {
	b := mosquittotest.Start(t)
	dead := mosquittotest.NewProxy(t, b)
	dead.SetDown(true)
	f := newClient(t, dead.URL(), "line1", t.TempDir(), outbox.Options{MaxRecords: 5}, nil)
	expired, cancel := context.WithCancel(context.Background())
	cancel()
	defer f.close(t, expired) // nothing can flush through a dead link
	f.c.Start()
	for i := range 5 {
		if _, _, err := f.c.PublishVerdict(sample(i)); err != nil {
			t.Fatal(err)
		}
	}
	_, _, err := f.c.PublishVerdict(sample(5))
	if !errors.Is(err, outbox.ErrOutboxFull) {
		t.Fatalf("6th verdict into a 5-record outbox: %v, want ErrOutboxFull", err)
	}
	if v := gauge(t, f.reg, "diagd_outbox_records"); v != 5 {
		t.Fatalf("diagd_outbox_records %v, want 5", v)
	}
	// Unknown verdicts need no score; a bad verdict value is refused naming the field.
	if _, _, err := f.c.PublishVerdict(Verdict{Verdict: "maybe", Timestamp: Timestamp(time.Now())}); err == nil {
		t.Fatal("verdict \"maybe\" accepted")
	}
}

func metricValue(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}

func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func TestAvailabilityStateAndCommands(t *testing.T) {
	b := mosquittotest.Start(t)
	proxy := mosquittotest.NewProxy(t, b)
	sub := subscribe(t, b.URL(), "plc-1", "diagd/line1/#")
	f := newClient(t, proxy.URL(), "line1", t.TempDir(), outbox.Options{}, func(c *Config) { c.KeepAlive = 2 * time.Second })
	defer f.close(t, context.Background())
	if err := f.c.SetState("model", map[string]string{"version": "m1"}); err != nil {
		t.Fatal(err)
	}
	if err := f.c.SetState("threshold", "0.5"); err != nil {
		t.Fatal(err)
	}
	f.c.HandleCommand("echo", ScopeRead, func(ctx context.Context, p []byte) (any, error) {
		var v map[string]any
		if err := json.Unmarshal(p, &v); err != nil {
			return nil, err
		}
		return v, nil
	})
	f.c.HandleCommand("fail", ScopeModel, func(ctx context.Context, p []byte) (any, error) { return nil, errors.New("no model to retrain") })
	f.c.Start()

	checkOnlineAcrossReconnect(t, f.c, proxy, sub)
	checkCommandResults(t, sub)

	// A state change while connected is published at once and is what a late
	// subscriber gets; events go out best effort.
	if err := f.c.SetState("threshold", "0.6"); err != nil {
		t.Fatal(err)
	}
	if err := f.c.Event("reload", map[string]any{"ok": true}); err != nil {
		t.Fatal(err)
	}
	sub.WaitFor(t, 10*time.Second, "event", func(ms []msg) bool { return countTopic(ms, "diagd/line1/events/reload") == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	checkRetainedAfterStop(t, b.URL())
}

// checkOnlineAcrossReconnect checks that online comes after the retained state, on the
// first connect and again after the link through proxy dies.
func checkOnlineAcrossReconnect(t *testing.T, c *Client, proxy *mosquittotest.Proxy, sub *subscriber) {
	t.Helper()
	online := func(k int) func([]msg) bool {
		return func(ms []msg) bool { return count(ms, "diagd/line1/available", "online") >= k }
	}
	ms := sub.WaitFor(t, 10*time.Second, "online", online(1))
	checkStateBeforeOnline(t, ms, 1)

	// The link dies without DISCONNECT: the broker publishes the last will, then the
	// client reconnects, republishes state, and is online again. (Cut it only once the
	// client has its PUBACK for online: a PUBLISH still in flight is re-sent first on
	// reconnect, and would arrive ahead of the republished state.)
	waitFor(t, 10*time.Second, "connected", c.Connected)
	proxy.Sever()
	ms = sub.WaitFor(t, 15*time.Second, "offline then online", func(ms []msg) bool {
		return count(ms, "diagd/line1/available", "offline") >= 1 && online(2)(ms)
	})
	checkStateBeforeOnline(t, ms, 2)
	if i, j := index(ms, "diagd/line1/available", "offline", 1), index(ms, "diagd/line1/available", "online", 2); i > j {
		t.Fatalf("offline (message %d) after the second online (message %d)", i, j)
	}
}

// checkCommandResults sends a good command, an unknown one, malformed JSON and one whose
// handler fails, and checks the result each gets.
func checkCommandResults(t *testing.T, sub *subscriber) {
	t.Helper()
	pub := func(topic, payload string) { sub.Publish(t, topic, payload) }
	pub("diagd/line1/cmd/echo", `{"id":7,"x":1}`)
	pub("diagd/line1/cmd/nope", `{}`)
	pub("diagd/line1/cmd/echo", `{"id":8,`)
	pub("diagd/line1/cmd/fail", ``)
	ms := sub.WaitFor(t, 10*time.Second, "4 command results", func(ms []msg) bool {
		return countTopic(ms, "diagd/line1/cmd/echo/result")+countTopic(ms, "diagd/line1/cmd/nope/result")+countTopic(ms, "diagd/line1/cmd/fail/result") >= 4
	})
	results := commandResults(t, ms)
	echo := results["diagd/line1/cmd/echo/result"]
	var good, bad map[string]any
	for _, r := range echo {
		if r["ok"] == true {
			good = r
		} else {
			bad = r
		}
	}
	if good == nil || good["id"] != float64(7) || good["result"].(map[string]any)["x"] != float64(1) {
		t.Fatalf("echo results %v", echo)
	}
	if bad == nil || bad["error"] != "command echo: payload is not valid JSON" {
		t.Fatalf("malformed command results %v", echo)
	}
	if r := results["diagd/line1/cmd/nope/result"]; len(r) != 1 || r[0]["ok"] != false || r[0]["error"] != `unknown command "nope"` {
		t.Fatalf("unknown command results %v", r)
	}
	if r := results["diagd/line1/cmd/fail/result"]; len(r) != 1 || r[0]["ok"] != false || r[0]["error"] != "no model to retrain" {
		t.Fatalf("failing command results %v", r)
	}
}

// commandResults decodes the command results among ms, by topic.
func commandResults(t *testing.T, ms []msg) map[string][]map[string]any {
	t.Helper()
	results := map[string][]map[string]any{}
	for _, m := range ms {
		if len(m.Topic) > 7 && m.Topic[len(m.Topic)-7:] == "/result" {
			var r map[string]any
			if err := json.Unmarshal([]byte(m.Payload), &r); err != nil {
				t.Fatalf("result %s %q: %v", m.Topic, m.Payload, err)
			}
			results[m.Topic] = append(results[m.Topic], r)
		}
	}
	return results
}

// checkRetainedAfterStop checks what a late subscriber gets after a clean stop: the
// retained availability "stopped" and the last state values.
func checkRetainedAfterStop(t *testing.T, url string) {
	t.Helper()
	late := subscribe(t, url, "late-1", "diagd/line1/#")
	lm := late.WaitFor(t, 10*time.Second, "retained values", func(ms []msg) bool {
		return countTopic(ms, "diagd/line1/available")+countTopic(ms, "diagd/line1/state/threshold")+
			countTopic(ms, "diagd/line1/state/model") == 3
	})
	got := map[string]string{}
	for _, m := range lm {
		if !m.Retained {
			t.Fatalf("late subscriber got non-retained %v", m)
		}
		got[m.Topic] = m.Payload
	}
	if got["diagd/line1/available"] != "stopped" || got["diagd/line1/state/threshold"] != "0.6" || got["diagd/line1/state/model"] != `{"version":"m1"}` {
		t.Fatalf("retained after clean stop: %v", got)
	}
}

func count(ms []msg, topic, payload string) int {
	n := 0
	for _, m := range ms {
		if m.Topic == topic && m.Payload == payload {
			n++
		}
	}
	return n
}

func countTopic(ms []msg, topic string) int {
	n := 0
	for _, m := range ms {
		if m.Topic == topic {
			n++
		}
	}
	return n
}

// index returns the position of the k-th (1-based) message with topic and payload.
func index(ms []msg, topic, payload string, k int) int {
	for i, m := range ms {
		if m.Topic == topic && m.Payload == payload {
			k--
			if k == 0 {
				return i
			}
		}
	}
	return -1
}

// checkStateBeforeOnline asserts that before the k-th online both states were
// published k times (the first time possibly as retained on subscribe).
func checkStateBeforeOnline(t *testing.T, ms []msg, k int) {
	t.Helper()
	at := index(ms, "diagd/line1/available", "online", k)
	before := ms[:at]
	if n := countTopic(before, "diagd/line1/state/model"); n < k {
		t.Fatalf("state/model published %d times before online #%d", n, k)
	}
	if n := countTopic(before, "diagd/line1/state/threshold"); n < k {
		t.Fatalf("state/threshold published %d times before online #%d", n, k)
	}
}
