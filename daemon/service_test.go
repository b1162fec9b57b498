package daemon

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/diagd/diagd/internal/demo"
	"github.com/diagd/diagd/internal/mosquittotest"
	"github.com/diagd/diagd/internal/testenv"
)

// A 500-frame MJPG video (no loop) is judged frame by frame: 500 verdicts, frame ids
// 1..500 once each, seqs 1..500, nothing dropped (a video file waits for the consumer).
func TestVideoEveryFrameOneVerdict(t *testing.T) {
	testenv.ORT(t)
	b := mosquittotest.Start(t)
	sub := subscribe(t, b.URL(), "plc-1", "diagd/line1/#")
	video := filepath.Join(t.TempDir(), "line.avi")
	const n = 500
	if err := demo.WriteVideo(video, n, 64, 48, 25, 1); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, b.URL(), "line=video:"+video)
	writeModel(t, cfg.ModelDir, "m1", 1)
	r := start(t, cfg)
	ms := sub.WaitFor(t, 60*time.Second, "500 verdicts", countVerdicts(t, verdictTopic, n))
	vs := verdictsOf(t, ms, verdictTopic)
	if len(vs) != n {
		t.Fatalf("%d verdict messages for %d frames", len(vs), n)
	}
	frames := make([]string, n)
	for i := range frames {
		frames[i] = strconv.Itoa(i + 1)
	}
	checkOnePerFile(t, vs, frames, 1)
	for _, v := range vs {
		if v.SensorID != "line" || v.AnalyticsModule.Version != "m1" || (v.Verdict != "pass" && v.Verdict != "fail") {
			t.Fatalf("verdict %+v", v)
		}
	}
	// The end of the file stops the source (no loop).
	sub.WaitFor(t, 10*time.Second, "camera stopped", func(ms []msg) bool {
		return strings.Contains(last(ms, "diagd/line1/state/camera/line"), `"state":"stopped"`)
	})
	_, body := httpGet(t, "http://"+r.httpAddr(t)+"/metrics")
	if got := metric(t, body, `diagd_frames_dropped_total{camera="line"}`); got != 0 {
		t.Fatalf("diagd_frames_dropped_total = %v for a video file", got)
	}
}

// Under systemd (NOTIFY_SOCKET, WATCHDOG_USEC) the daemon says READY=1 once started,
// pets the watchdog while the judge loop turns and the model answers, and says
// STOPPING=1 on the way out.
func TestSystemdNotifyAndWatchdog(t *testing.T) {
	testenv.ORT(t)
	b := mosquittotest.Start(t)
	// 2.5 s: pets every 1.25 s; the idle judge loop turns every second, within it.
	nr := newNotifyRecorder(t, 2500*time.Millisecond)
	watched := filepath.Join(t.TempDir(), "drop")
	os.MkdirAll(watched, 0o755)
	cfg := testConfig(t, b.URL(), folderSource("cam", watched))
	writeModel(t, cfg.ModelDir, "m1", 1)
	r := start(t, cfg)

	deadline := time.Now().Add(10 * time.Second)
	for nr.index("WATCHDOG=1") < 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no watchdog pet within 10 s; messages %s", nr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if ready := nr.index("READY=1"); ready < 0 || ready > nr.index("WATCHDOG=1") {
		t.Fatalf("READY=1 not sent before the first pet: %s", nr)
	}
	// With no frames for a while (> the window) the model is probed and pets go on.
	pets := nr.count("WATCHDOG=1")
	time.Sleep(3 * time.Second)
	if more := nr.count("WATCHDOG=1") - pets; more < 2 {
		t.Fatalf("%d pets in 3 s without frames; want >= 2 (every 1.25 s)", more)
	}
	if code, body := httpGet(t, "http://"+r.httpAddr(t)+"/livez"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Fatalf("/livez while petting: %d %q", code, body)
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if nr.index("STOPPING=1") < 0 {
		t.Fatalf("no STOPPING=1: %s", nr)
	}
}

// A busy DIAGD_HTTP_ADDR fails the start with an error naming it, before the daemon
// announces itself online.
func TestBusyHTTPPortFailsStart(t *testing.T) {
	testenv.ORT(t)
	b := mosquittotest.Start(t)
	sub := subscribe(t, b.URL(), "plc-1", "diagd/line1/#")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	watched := filepath.Join(t.TempDir(), "drop")
	os.MkdirAll(watched, 0o755)
	cfg := testConfig(t, b.URL(), folderSource("cam", watched))
	cfg.HTTPAddr = l.Addr().String()
	r := start(t, cfg)
	select {
	case err := <-r.done:
		r.done <- err
		if err == nil || !strings.Contains(err.Error(), "DIAGD_HTTP_ADDR") {
			t.Fatalf("Run: %v, want an error naming DIAGD_HTTP_ADDR", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not fail with the HTTP port taken")
	}
	time.Sleep(300 * time.Millisecond)
	if a := last(sub.Snapshot(), availTopic); a != "" {
		t.Fatalf("available=%q published by a daemon that failed to start", a)
	}
}

// With the broker down the outbox fills to its limit; the daemon then holds frames
// (none is dropped), /readyz says "outbox full", and a stop in that state returns
// within the shutdown timeout, leaving unjudged files on disk. After a restart with the
// broker back, every file has exactly one verdict and the seqs have no gap.
func TestFullOutboxHoldsFramesAndLosesNothing(t *testing.T) {
	testenv.ORT(t)
	b := mosquittotest.Start(t)
	sub := subscribe(t, b.URL(), "plc-1", "diagd/line1/#")
	b.Kill()
	watched := filepath.Join(t.TempDir(), "drop")
	os.MkdirAll(watched, 0o755)
	cfg := testConfig(t, b.URL(), folderSource("cam", watched))
	cfg.OutboxMaxRecords = 100 // the smallest the configuration allows
	cfg.ShutdownTimeout = time.Second
	writeModel(t, cfg.ModelDir, "m1", 1)
	const n = 130
	names := newDropper(t, watched).dropN(n, 0)
	r := start(t, cfg)
	addr := r.httpAddr(t)

	// Full: the next batch of verdicts does not fit (batches are stored whole).
	var code int
	var body string
	for deadline := time.Now().Add(30 * time.Second); ; {
		code, body = httpGet(t, "http://"+addr+"/readyz")
		if strings.Contains(body, "outbox full") || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code != 503 || !strings.Contains(body, "outbox full") {
		t.Fatalf("/readyz with the broker down: %d %s; outbox %+v", code, body, r.d.ob.Stats())
	}
	held := r.d.ob.Stats().Records
	if held < 100-cfg.BatchMax || held > 100 {
		t.Fatalf("outbox full at %d records (limit 100, batches of up to %d)", held, cfg.BatchMax)
	}
	stopped := time.Now()
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(stopped); took > 10*time.Second {
		t.Fatalf("stop with a full outbox took %v (shutdown timeout 1s)", took)
	}
	// A smaller batch may still fit while the stop drains the frames in flight; none of
	// what was held may go.
	if st := r.d.ob.Stats(); st.Records < held || st.Records > 100 {
		t.Fatalf("outbox after the stop: %+v, want the %d records it held (and at most 100)", st, held)
	}
	t.Logf("outbox held %d verdicts; %d files waited on disk", held, n-held)

	b.Restart()
	sub.Sync(t, "diagd/line1/probe")
	start(t, cfg)
	ms := sub.WaitFor(t, 60*time.Second, "every verdict", countVerdicts(t, verdictTopic, n))
	checkOnePerFile(t, dedupe(verdictsOf(t, ms, verdictTopic)), names, 1)
}
