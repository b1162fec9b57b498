package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/config"
	"github.com/diagd/diagd/internal/mosquittotest"
	"github.com/diagd/diagd/internal/onnx/zoo"
	"github.com/diagd/diagd/internal/testenv"
	"github.com/diagd/diagd/mqtt"
)

// The tests run the whole daemon on real parts: a mosquitto started on a free loopback
// port, PNG files decoded by OpenCV from a watched folder, and ONNX Runtime on a small
// generated ResNet with the detector's real I/O names and shapes.

const modelSize = 32 // the test model's input is modelSize×modelSize

// writeModel writes a model folder (SmallResNet + metadata) into dir.
func writeModel(t testing.TB, dir, version string, seed uint64) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := zoo.WriteResNet(zoo.SmallResNet(modelSize, modelSize, seed), filepath.Join(dir, detect.ModelFile)); err != nil {
		t.Fatal(err)
	}
	meta := detect.DefaultMetadata(version)
	meta.Architecture = "small-resnet"
	meta.Input.Height, meta.Input.Width = modelSize, modelSize
	if err := detect.WriteMetadata(dir, meta); err != nil {
		t.Fatal(err)
	}
}

// writePNG writes a small random-noise PNG (each file differs).
func writePNG(t testing.TB, path string, r *rand.Rand) {
	t.Helper()
	m := gocv.NewMatWithSize(30, 40, gocv.MatTypeCV8UC3)
	defer m.Close()
	gocv.RandU(&m, gocv.NewScalar(0, 0, 0, 0), gocv.NewScalar(float64(64+r.IntN(192)), 255, 255, 0))
	if !gocv.IMWrite(path, m) {
		t.Fatalf("cannot write %s", path)
	}
}

// dropper writes frames into a staging folder beside the watched one and renames them
// into it, as a camera uploading over FTP/SMB would (the rename makes them appear whole).
type dropper struct {
	t       testing.TB
	stage   string
	watched string
	r       *rand.Rand
	n       int
}

func newDropper(t testing.TB, watched string) *dropper {
	stage := filepath.Join(filepath.Dir(watched), "stage-"+filepath.Base(watched))
	if err := os.MkdirAll(stage, 0o755); err != nil {
		t.Fatal(err)
	}
	return &dropper{t: t, stage: stage, watched: watched, r: rand.New(rand.NewPCG(1, 2))}
}

// drop puts the next frame, named frame-NNNNN.png, into the watched folder and returns
// its name.
func (d *dropper) drop() string {
	name := fmt.Sprintf("frame-%05d.png", d.n)
	d.n++
	tmp := filepath.Join(d.stage, name)
	writePNG(d.t, tmp, d.r)
	if err := os.Rename(tmp, filepath.Join(d.watched, name)); err != nil {
		d.t.Fatal(err)
	}
	return name
}

// dropN drops n frames, pausing every between them (0: no pause).
func (d *dropper) dropN(n int, every time.Duration) []string {
	var names []string
	for range n {
		names = append(names, d.drop())
		if every > 0 {
			time.Sleep(every)
		}
	}
	return names
}

// testConfig is the configuration every test starts from: the documented defaults
// (no environment read), then the test's broker, folders and
// fast timings, validated as the daemon would be.
func testConfig(t testing.TB, brokerURL, sources string) config.Config {
	t.Helper()
	c := config.Defaults()
	dir := t.TempDir()
	c.Station = "line1"
	c.Sources = sources
	c.DataDir = filepath.Join(dir, "data")
	c.ModelDir = filepath.Join(dir, "model")
	c.MQTTBroker = brokerURL
	c.HTTPAddr = "127.0.0.1:0"
	c.ModelPoll = 100 * time.Millisecond
	c.Provider = "cpu"
	c.Threads = 1
	c.ShutdownTimeout = 10 * time.Second
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

// folderSource is a DIAGD_SOURCES entry for a watched folder with fast settle timings.
func folderSource(name, dir string, extra ...string) string {
	s := name + "=folder:" + dir + ",settle=10ms,polls=2,retry=50ms,retrymax=200ms"
	for _, e := range extra {
		s += "," + e
	}
	return s
}

// running is a daemon running in the test's process.
type running struct {
	d      *Daemon
	cancel context.CancelFunc
	done   chan error
}

func start(t testing.TB, cfg config.Config) *running {
	t.Helper()
	return startWith(t, cfg, nil)
}

// startWith is start with a change to the daemon between New and Run (a fault to
// inject, a job kind, a clock).
func startWith(t testing.TB, cfg config.Config, tweak func(*Daemon)) *running {
	t.Helper()
	d, err := New(testenv.Logger(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if tweak != nil {
		tweak(d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{d: d, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- d.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels the daemon and waits for Run to return (graceful shutdown).
func (r *running) stop(t testing.TB) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err // later calls see it too
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("daemon did not stop within 30 s")
		return nil
	}
}

// httpAddr waits for the daemon's HTTP server and returns its address.
func (r *running) httpAddr(t testing.TB) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for r.d.HTTPAddr() == "" {
		if time.Now().After(deadline) {
			t.Fatal("HTTP server not started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return r.d.HTTPAddr()
}

func httpGet(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// metric returns the value of one sample line of /metrics (name with its labels as
// Prometheus writes them, e.g. `diagd_bad_files_total{camera="cam"}`), or -1.
func metric(t testing.TB, body, series string) float64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindStringSubmatch(body)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatalf("metric %s: %v", series, err)
	}
	return v
}

// msg and subscriber are the shared test subscriber (internal/mosquittotest).
type (
	msg        = mosquittotest.Msg
	subscriber = mosquittotest.Subscriber
)

func subscribe(t testing.TB, url, clientID, filter string) *subscriber {
	return mosquittotest.Subscribe(t, url, clientID, filter)
}

// last returns the payload of the last message on topic, or "".
func last(ms []msg, topic string) string {
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].Topic == topic {
			return ms[i].Payload
		}
	}
	return ""
}

func verdictsOf(t testing.TB, ms []msg, topic string) []mqtt.Verdict {
	t.Helper()
	var out []mqtt.Verdict
	for _, m := range ms {
		if m.Topic != topic {
			continue
		}
		var v mqtt.Verdict
		if err := json.Unmarshal([]byte(m.Payload), &v); err != nil {
			t.Fatalf("verdict payload %q: %v", m.Payload, err)
		}
		out = append(out, v)
	}
	return out
}

// dedupe keeps the first verdict of each messageid, as a consumer does.
func dedupe(vs []mqtt.Verdict) []mqtt.Verdict {
	seen := map[string]bool{}
	var out []mqtt.Verdict
	for _, v := range vs {
		if !seen[v.MessageID] {
			seen[v.MessageID] = true
			out = append(out, v)
		}
	}
	return out
}

// countVerdicts is a waitFor condition: at least n distinct verdicts on topic.
func countVerdicts(t testing.TB, topic string, n int) func([]msg) bool {
	return func(ms []msg) bool { return len(dedupe(verdictsOf(t, ms, topic))) >= n }
}

// checkOnePerFile asserts that the distinct verdicts are exactly one per file in names
// (by frameId) and carry seqs from..from+len(names)-1 without gaps.
func checkOnePerFile(t testing.TB, vs []mqtt.Verdict, names []string, from uint64) {
	t.Helper()
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	byFile := map[string]string{}
	seqs := map[uint64]string{}
	for _, v := range vs {
		if prev, ok := byFile[v.FrameID]; ok {
			t.Fatalf("file %s judged twice: messageids %s and %s", v.FrameID, prev, v.MessageID)
		}
		if !want[v.FrameID] {
			t.Fatalf("verdict for unexpected frame %q", v.FrameID)
		}
		byFile[v.FrameID] = v.MessageID
		if prev, ok := seqs[v.Seq]; ok {
			t.Fatalf("seq %d used by %s and %s", v.Seq, prev, v.FrameID)
		}
		seqs[v.Seq] = v.FrameID
	}
	for _, n := range names {
		if _, ok := byFile[n]; !ok {
			t.Fatalf("file %s has no verdict (%d of %d files have one)", n, len(byFile), len(names))
		}
	}
	for s := from; s < from+uint64(len(names)); s++ {
		if _, ok := seqs[s]; !ok {
			t.Fatalf("seq %d missing: seqs have a gap", s)
		}
	}
}

func contains(s string, subs ...string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}

// notifyRecorder is systemd's notification socket for a test: it sets NOTIFY_SOCKET and
// WATCHDOG_USEC (so the daemon pets every watchdog/2) and records what the daemon sends.
type notifyRecorder struct {
	mu  sync.Mutex
	got []string
}

func newNotifyRecorder(t testing.TB, watchdog time.Duration) *notifyRecorder {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	r := &notifyRecorder{}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			r.mu.Lock()
			r.got = append(r.got, string(buf[:n]))
			r.mu.Unlock()
		}
	}()
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", strconv.FormatInt(watchdog.Microseconds(), 10))
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	return r
}

// index is the position of the first message with prefix, or -1.
func (r *notifyRecorder) index(prefix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, m := range r.got {
		if strings.HasPrefix(m, prefix) {
			return i
		}
	}
	return -1
}

// count is the number of messages with prefix.
func (r *notifyRecorder) count(prefix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.got {
		if strings.HasPrefix(m, prefix) {
			n++
		}
	}
	return n
}

func (r *notifyRecorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprintf("%q", r.got)
}

// station is the common setup of a daemon test: ONNX Runtime, a broker, a PLC-like
// subscriber on filter, a watched folder "cam" and the configuration for it, with the
// small test model m1 in MODEL_DIR.
type station struct {
	b       *mosquittotest.Broker
	sub     *subscriber
	watched string
	cfg     config.Config
}

func newStation(t testing.TB, filter string) station {
	t.Helper()
	testenv.ORT(t)
	b := mosquittotest.Start(t)
	sub := subscribe(t, b.URL(), "plc-1", filter)
	watched := filepath.Join(t.TempDir(), "drop")
	if err := os.MkdirAll(watched, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, b.URL(), folderSource("cam", watched))
	writeModel(t, cfg.ModelDir, "m1", 1)
	return station{b: b, sub: sub, watched: watched, cfg: cfg}
}
