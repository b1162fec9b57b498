package daemon

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/mosquittotest"
	"github.com/diagd/diagd/internal/testenv"
	"github.com/diagd/diagd/mqtt"
)

const (
	verdictTopic = "diagd/line1/verdict"
	availTopic   = "diagd/line1/available"
)

// Every one of 500 files gets exactly one verdict, with seqs 1..500 and no gaps; with no
// fault nothing is sent twice. Then a graceful stop publishes "stopped" and leaves the
// outbox empty.
func TestEveryFrameGetsExactlyOneVerdict(t *testing.T) {
	testenv.ORT(t)
	b := mosquittotest.Start(t)
	sub := subscribe(t, b.URL(), "plc-1", "diagd/line1/#")
	watched := filepath.Join(t.TempDir(), "drop")
	os.MkdirAll(watched, 0o755)
	cfg := testConfig(t, b.URL(), folderSource("cam", watched))
	writeModel(t, cfg.ModelDir, "m1", 1)
	const n = 500
	names := newDropper(t, watched).dropN(n, 0)

	r := start(t, cfg)
	ms := sub.WaitFor(t, 60*time.Second, "500 verdicts", countVerdicts(t, verdictTopic, n))
	vs := verdictsOf(t, ms, verdictTopic)
	if len(vs) != n {
		t.Fatalf("%d verdict messages for %d files: duplicates without any fault", len(vs), n)
	}
	checkOnePerFile(t, vs, names, 1)
	fails := 0
	for _, v := range vs {
		if v.SensorID != "cam" || v.Station != "line1" || v.AnalyticsModule != (mqtt.AnalyticsModule{ID: "diagd", Version: "m1"}) ||
			v.PartID != strings.TrimSuffix(v.FrameID, ".png") || v.Threshold != 0.5 || v.Error != "" {
			t.Fatalf("verdict fields: %+v", v)
		}
		// The verdict is the model's score against its threshold.
		if want := map[bool]string{true: "fail", false: "pass"}[v.Score >= v.Threshold]; v.Verdict != want {
			t.Fatalf("score %v threshold %v gives %q, want %q", v.Score, v.Threshold, v.Verdict, want)
		}
		if v.Verdict == "fail" {
			fails++
		}
	}
	t.Logf("500 files: %d fail, %d pass (random weights)", fails, n-fails)

	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if st := r.d.ob.Stats(); st.Records != 0 || st.Acked != n {
		t.Fatalf("outbox after a graceful stop: %+v", st)
	}
	ms = sub.WaitFor(t, 10*time.Second, "available=stopped", func(ms []msg) bool { return last(ms, availTopic) == "stopped" })
	if len(verdictsOf(t, ms, verdictTopic)) != n {
		t.Fatal("verdicts after the stop")
	}
}

// The broker is SIGKILLed and restarted twice while files keep arriving and verdicts
// flow: after dedupe on messageid every file's verdict arrives, seqs without gaps.
func TestBrokerKilledTwiceDuringRun(t *testing.T) {
	testenv.ORT(t)
	b := mosquittotest.Start(t)
	sub := subscribe(t, b.URL(), "plc-1", verdictTopic)
	watched := filepath.Join(t.TempDir(), "drop")
	os.MkdirAll(watched, 0o755)
	cfg := testConfig(t, b.URL(), folderSource("cam", watched))
	writeModel(t, cfg.ModelDir, "m1", 1)
	r := start(t, cfg)
	dr := newDropper(t, watched)

	// A camera dropping a file every 4 ms for the whole test.
	stop := make(chan struct{})
	dropped := make(chan []string)
	go func() {
		var names []string
		for {
			select {
			case <-stop:
				dropped <- names
				return
			default:
			}
			names = append(names, dr.drop())
			time.Sleep(4 * time.Millisecond)
		}
	}()
	seen := 20
	sub.WaitFor(t, 30*time.Second, "first verdicts", countVerdicts(t, verdictTopic, seen))
	for range 2 {
		t.Logf("broker SIGKILL at %s", time.Now().UTC().Format("15:04:05.000"))
		b.Kill() // SIGKILL: no clean shutdown, no last save
		time.Sleep(200 * time.Millisecond)
		b.Restart()
		// Verdicts flow again (the daemon reconnected) before the next kill.
		seen = len(dedupe(verdictsOf(t, sub.Snapshot(), verdictTopic))) + 20
		sub.WaitFor(t, 30*time.Second, "verdicts after the restart", countVerdicts(t, verdictTopic, seen))
	}
	close(stop)
	names := <-dropped
	// On a timeout, checkOnePerFile names the first file without a verdict (its seq and
	// the kill times are in the log) instead of only a count.
	ms := sub.Snapshot()
	for end := time.Now().Add(60 * time.Second); !countVerdicts(t, verdictTopic, len(names))(ms) && time.Now().Before(end); {
		time.Sleep(100 * time.Millisecond)
		ms = sub.Snapshot()
	}
	vs := verdictsOf(t, ms, verdictTopic)
	checkOnePerFile(t, dedupe(vs), names, 1)
	_, body := httpGet(t, "http://"+r.httpAddr(t)+"/metrics")
	if got := metric(t, body, "diagd_mqtt_reconnects_total"); got < 2 {
		t.Fatalf("diagd_mqtt_reconnects_total = %v after 2 broker kills", got)
	}
	t.Logf("%d files, %d verdict messages (%d re-sent after 2 broker kills)", len(names), len(vs), len(vs)-len(names))
}

// A corrupt file and a half-written file that never completes are counted in
// diagd_bad_files_total and skipped; a file written in two halves is judged once
// whole; the daemon goes on. A folder that vanishes makes the camera offline (retained
// state), and online again when it returns.
func TestBadFilesAndVanishingFolder(t *testing.T) {
	testenv.ORT(t)
	b := mosquittotest.Start(t)
	sub := subscribe(t, b.URL(), "plc-1", "diagd/line1/#")
	root := t.TempDir()
	watched := filepath.Join(root, "drop")
	os.MkdirAll(watched, 0o755)
	cfg := testConfig(t, b.URL(), folderSource("cam", watched, "incomplete=400ms", "rejected="+filepath.Join(root, "rejected")))
	writeModel(t, cfg.ModelDir, "m1", 1)
	r := start(t, cfg)
	addr := r.httpAddr(t)
	dr := newDropper(t, watched)
	camTopic := "diagd/line1/state/camera/cam"
	sub.WaitFor(t, 10*time.Second, "camera online", func(ms []msg) bool { return strings.Contains(last(ms, camTopic), `"state":"online"`) })

	good1 := dr.drop()
	// Corrupt: a PNG signature and then garbage (complete by size, undecodable).
	os.WriteFile(filepath.Join(watched, "corrupt.png"), []byte("\x89PNG\r\n\x1a\nthis is not really a png"), 0o644)
	// Half-written: the first half of a real PNG, never finished.
	whole := filepath.Join(root, "whole.png")
	writePNG(t, whole, dr.r)
	png, _ := os.ReadFile(whole)
	os.WriteFile(filepath.Join(watched, "half.png"), png[:len(png)/2], 0o644)
	// Written in two halves with a pause longer than the settle window: judged once whole.
	slow := filepath.Join(watched, "slow.png")
	os.WriteFile(slow, png[:len(png)/2], 0o644)
	time.Sleep(150 * time.Millisecond)
	f, err := os.OpenFile(slow, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(png[len(png)/2:])
	f.Close()
	good2 := dr.drop()

	sub.WaitFor(t, 20*time.Second, "3 verdicts", countVerdicts(t, verdictTopic, 3))
	deadline := time.Now().Add(10 * time.Second)
	var body string
	for {
		_, body = httpGet(t, "http://"+addr+"/metrics")
		if metric(t, body, `diagd_bad_files_total{camera="cam"}`) == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := metric(t, body, `diagd_bad_files_total{camera="cam"}`); got != 2 {
		t.Fatalf("diagd_bad_files_total = %v, want 2 (corrupt.png, half.png)", got)
	}
	for _, bad := range []string{"corrupt.png", "half.png"} {
		if _, err := os.Stat(filepath.Join(root, "rejected", bad)); err != nil {
			t.Errorf("%s not moved to the rejected folder: %v", bad, err)
		}
	}

	// The folder vanishes (an unmounted share) and comes back.
	gone := filepath.Join(root, "drop-away")
	if err := os.Rename(watched, gone); err != nil {
		t.Fatal(err)
	}
	sub.WaitFor(t, 10*time.Second, "camera offline", func(ms []msg) bool {
		return contains(last(ms, camTopic), `"state":"offline"`, `"reason":"folder missing"`)
	})
	if code, body := httpGet(t, "http://"+addr+"/readyz"); code != 503 || !strings.Contains(body, "no camera online") {
		t.Fatalf("/readyz with the camera offline: %d %s", code, body)
	}
	if err := os.Rename(gone, watched); err != nil {
		t.Fatal(err)
	}
	sub.WaitFor(t, 10*time.Second, "camera online again", func(ms []msg) bool { return strings.Contains(last(ms, camTopic), `"state":"online"`) })
	good3 := dr.drop()
	ms := sub.WaitFor(t, 20*time.Second, "4 verdicts", countVerdicts(t, verdictTopic, 4))
	vs := verdictsOf(t, ms, verdictTopic)
	checkOnePerFile(t, vs, []string{good1, "slow.png", good2, good3}, 1)
	_, body = httpGet(t, "http://"+addr+"/metrics")
	if got := metric(t, body, `diagd_camera_reconnects_total{camera="cam"}`); got < 1 {
		t.Fatalf("diagd_camera_reconnects_total = %v after the folder came back", got)
	}
}

// commandResult mirrors the JSON on <prefix>/cmd/<name>/result.
type commandResult struct {
	OK     bool            `json:"ok"`
	Error  string          `json:"error"`
	Result json.RawMessage `json:"result"`
}

func resultOf(t *testing.T, payload string) commandResult {
	t.Helper()
	var r commandResult
	if err := json.Unmarshal([]byte(payload), &r); err != nil {
		t.Fatalf("command result %q: %v", payload, err)
	}
	return r
}

// A PLC's trigger with a part id makes the next file's verdict carry it; malformed and
// unknown commands are answered with an error on their result topic.
func TestTriggerAndCommands(t *testing.T) {
	testenv.ORT(t)
	b := mosquittotest.Start(t)
	sub := subscribe(t, b.URL(), "plc-1", "diagd/line1/#")
	root := t.TempDir()
	gate, free := filepath.Join(root, "gate"), filepath.Join(root, "free")
	os.MkdirAll(gate, 0o755)
	os.MkdirAll(free, 0o755)
	cfg := testConfig(t, b.URL(), folderSource("gate", gate, "mode=trigger")+";"+folderSource("free", free))
	writeModel(t, cfg.ModelDir, "m1", 1)
	start(t, cfg)
	sub.WaitFor(t, 10*time.Second, "online", func(ms []msg) bool { return last(ms, availTopic) == "online" })

	// The file lands first and waits on disk for its trigger.
	name := newDropper(t, gate).drop()
	time.Sleep(200 * time.Millisecond)
	if vs := verdictsOf(t, sub.Snapshot(), verdictTopic); len(vs) != 0 {
		t.Fatalf("verdict without a trigger: %+v", vs)
	}
	sub.Publish(t, "diagd/line1/cmd/trigger", `{"camera":"gate","partId":"P-778"}`)
	ms := sub.WaitFor(t, 20*time.Second, "triggered verdict", countVerdicts(t, verdictTopic, 1))
	v := verdictsOf(t, ms, verdictTopic)[0]
	if v.PartID != "P-778" || v.SensorID != "gate" || v.FrameID != name {
		t.Fatalf("triggered verdict %+v: want partId P-778 for %s", v, name)
	}
	if r := resultOf(t, last(ms, "diagd/line1/cmd/trigger/result")); !r.OK || !strings.Contains(string(r.Result), `"partId":"P-778"`) {
		t.Fatalf("trigger result %+v", r)
	}

	for _, tc := range []struct {
		cmd, payload, want string
	}{
		// A typo in a field name (Go's JSON matches names case-insensitively, so not partID).
		{"trigger", `{"camera":"gate","part_id":"x"}`, `unknown field "part_id"`},
		{"trigger", `{"camera":5}`, "trigger wants"},
		{"trigger", `{"camera":"nope","partId":"x"}`, `unknown camera "nope"`},
		{"trigger", `{"camera":"free","partId":"x"}`, "not in trigger mode"},
		{"trigger", `not json`, "not valid JSON"},
		{"frobnicate", `{}`, `unknown command "frobnicate"`},
	} {
		topic := "diagd/line1/cmd/" + tc.cmd + "/result"
		before := len(sub.Snapshot())
		sub.Publish(t, "diagd/line1/cmd/"+tc.cmd, tc.payload)
		ms := sub.WaitFor(t, 10*time.Second, tc.cmd+" result", func(ms []msg) bool { return last(ms[before:], topic) != "" })
		if r := resultOf(t, last(ms[before:], topic)); r.OK || !strings.Contains(r.Error, tc.want) {
			t.Errorf("%s %s: result %+v, want an error containing %q", tc.cmd, tc.payload, r, tc.want)
		}
	}
	// status answers with the cameras and the model.
	before := len(sub.Snapshot())
	sub.Publish(t, "diagd/line1/cmd/status", "")
	ms = sub.WaitFor(t, 10*time.Second, "status result", func(ms []msg) bool { return last(ms[before:], "diagd/line1/cmd/status/result") != "" })
	if r := resultOf(t, last(ms[before:], "diagd/line1/cmd/status/result")); !r.OK || !contains(string(r.Result), `"model":"m1"`, `"name":"gate"`, `"name":"free"`) {
		t.Fatalf("status result %+v", r)
	}
}

// With no model verdicts are "unknown" and /readyz says why; a model installed in
// MODEL_DIR is hot-swapped (state/model retained updated), later verdicts are pass or
// fail, and no file is lost across the swap.
func TestNoModelThenHotSwap(t *testing.T) {
	testenv.ORT(t)
	b := mosquittotest.Start(t)
	sub := subscribe(t, b.URL(), "plc-1", "diagd/line1/#")
	root := t.TempDir()
	watched := filepath.Join(root, "drop")
	os.MkdirAll(watched, 0o755)
	cfg := testConfig(t, b.URL(), folderSource("cam", watched))
	r := start(t, cfg)
	addr := r.httpAddr(t)
	dr := newDropper(t, watched)

	modelTopic := "diagd/line1/state/model"
	sub.WaitFor(t, 10*time.Second, "model state", func(ms []msg) bool { return strings.Contains(last(ms, modelTopic), `"loaded":false`) })
	names := dr.dropN(20, 5*time.Millisecond)
	ms := sub.WaitFor(t, 20*time.Second, "20 verdicts", countVerdicts(t, verdictTopic, 20))
	for _, v := range verdictsOf(t, ms, verdictTopic) {
		if v.Verdict != "unknown" || v.Error != "no detector model loaded" || v.AnalyticsModule.Version != "" {
			t.Fatalf("verdict without a model: %+v", v)
		}
	}
	code, body := httpGet(t, "http://"+addr+"/readyz")
	if code != 503 || !strings.Contains(body, "no detector model loaded") {
		t.Fatalf("/readyz without a model: %d %s", code, body)
	}
	if code, body := httpGet(t, "http://"+addr+"/livez"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Fatalf("/livez: %d %q", code, body)
	}

	// Install a model while files keep coming: written beside MODEL_DIR, renamed into
	// place (as the registry does), so the daemon never sees half a model.
	stopDrop := make(chan []string)
	go func() {
		var more []string
		for range 60 {
			more = append(more, dr.drop())
			time.Sleep(5 * time.Millisecond)
		}
		stopDrop <- more
	}()
	staging := filepath.Join(root, "model-staging")
	writeModel(t, staging, "m2", 2)
	if err := os.Rename(staging, cfg.ModelDir); err != nil {
		t.Fatal(err)
	}
	names = append(names, <-stopDrop...)
	sub.WaitFor(t, 20*time.Second, "model state m2", func(ms []msg) bool {
		return contains(last(ms, modelTopic), `"loaded":true`, `"version":"m2"`)
	})
	// Files after the swap are judged by m2.
	names = append(names, dr.dropN(20, 5*time.Millisecond)...)
	ms = sub.WaitFor(t, 30*time.Second, "every verdict", countVerdicts(t, verdictTopic, len(names)))
	vs := verdictsOf(t, ms, verdictTopic)
	checkOnePerFile(t, vs, names, 1)
	judged := 0
	for _, v := range vs {
		switch {
		case v.Verdict == "unknown" && v.AnalyticsModule.Version == "":
		case (v.Verdict == "pass" || v.Verdict == "fail") && v.AnalyticsModule.Version == "m2" && v.Error == "":
			judged++
		default:
			t.Fatalf("verdict across the swap: %+v", v)
		}
	}
	for _, v := range vs[len(vs)-20:] {
		if v.AnalyticsModule.Version != "m2" {
			t.Fatalf("file %s dropped after the swap was judged by %q", v.FrameID, v.AnalyticsModule.Version)
		}
	}
	if thr := last(ms, "diagd/line1/state/threshold"); thr != "0.5" {
		t.Fatalf("state/threshold %q", thr)
	}
	t.Logf("%d files: %d unknown before the model, %d judged by m2", len(names), len(names)-judged, judged)

	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body = httpGet(t, "http://"+addr+"/readyz")
		if code == 200 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code != 200 || !strings.Contains(body, `"ready":true`) {
		t.Fatalf("/readyz with model, camera and broker: %d %s", code, body)
	}
	checkHotSwapMetrics(t, addr, len(names)-judged)
}

// checkHotSwapMetrics: every series is there, the unknown verdicts are counted, the
// camera is up and MQTT connected.
func checkHotSwapMetrics(t *testing.T, addr string, unknown int) {
	t.Helper()
	_, body := httpGet(t, "http://"+addr+"/metrics")
	for _, series := range []string{
		`diagd_verdicts_total{verdict="unknown"}`, `diagd_inference_seconds_count`, `diagd_verdict_latency_seconds_count`,
		`diagd_camera_up{camera="cam"}`, `diagd_camera_fps{camera="cam"}`, `diagd_model_info{version="m2"}`,
		`diagd_mqtt_connected`, `diagd_outbox_records`, `diagd_outbox_bytes`, `diagd_outbox_usage_ratio`,
		`diagd_mqtt_verdicts_published_total`, `diagd_bad_files_total{camera="cam"}`, `diagd_model_load_failures_total`,
		`diagd_verdicts_not_stored_total`, `diagd_outbox_near_full`,
	} {
		if metric(t, body, series) < 0 {
			t.Errorf("/metrics lacks %s", series)
		}
	}
	if got := metric(t, body, `diagd_verdicts_total{verdict="unknown"}`); int(got) != unknown {
		t.Errorf("diagd_verdicts_total{unknown} = %v, want %d", got, unknown)
	}
	if got := metric(t, body, `diagd_camera_up{camera="cam"}`); got != 1 {
		t.Errorf("diagd_camera_up = %v", got)
	}
	if got := metric(t, body, `diagd_mqtt_connected`); got != 1 {
		t.Errorf("diagd_mqtt_connected = %v", got)
	}
}

// A stop while files are being judged finishes the frames in flight, flushes the
// outbox, publishes "stopped"; the files not taken yet are judged after a restart, and
// none twice.
func TestGracefulShutdownAndRestart(t *testing.T) {
	testenv.ORT(t)
	b := mosquittotest.Start(t)
	sub := subscribe(t, b.URL(), "plc-1", "diagd/line1/#")
	watched := filepath.Join(t.TempDir(), "drop")
	os.MkdirAll(watched, 0o755)
	cfg := testConfig(t, b.URL(), folderSource("cam", watched))
	writeModel(t, cfg.ModelDir, "m1", 1)
	const n = 300
	names := newDropper(t, watched).dropN(n, 0)

	// Each batch takes at least 20 ms, so the stop comes while files are still waiting
	// however fast the machine is.
	r := startWith(t, cfg, func(d *Daemon) {
		real := d.judgeFn
		d.judgeFn = func(m []gocv.Mat, res []detect.Result) error { time.Sleep(20 * time.Millisecond); return real(m, res) }
	})
	sub.WaitFor(t, 30*time.Second, "first verdicts", countVerdicts(t, verdictTopic, 10))
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	// Every verdict made is in the broker: the outbox is empty, and "stopped" came after
	// the last verdict.
	st := r.d.ob.Stats()
	if st.Records != 0 {
		t.Fatalf("outbox after a graceful stop: %+v", st)
	}
	ms := sub.WaitFor(t, 10*time.Second, "stopped", func(ms []msg) bool { return last(ms, availTopic) == "stopped" })
	judged := len(verdictsOf(t, ms, verdictTopic))
	if uint64(judged) != st.NextSeq-1 {
		t.Fatalf("%d verdicts arrived, %d were stored", judged, st.NextSeq-1)
	}
	if judged >= n {
		t.Fatalf("all %d files were judged before the stop took effect", n)
	}
	t.Logf("stopped after %d of %d files", judged, n)

	// The restart judges the rest, continuing the seq.
	start(t, cfg)
	ms = sub.WaitFor(t, 60*time.Second, "every verdict", countVerdicts(t, verdictTopic, n))
	vs := verdictsOf(t, ms, verdictTopic)
	if len(vs) != n {
		t.Fatalf("%d verdict messages for %d files", len(vs), n)
	}
	checkOnePerFile(t, vs, names, 1)
}
