package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/capture"
	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/mosquittotest"
	"github.com/diagd/diagd/internal/onnx/zoo"
	"github.com/diagd/diagd/internal/testenv"
)

// Tests of issue 8's defects: each failed before its fix.

// writeSqrtModel writes a model whose logit is sqrt(mean(pixel/255) − 0.25): NaN for
// frames darker than pixel value 64, finite otherwise (zoo.WriteMeanSqrtDetector). Its
// threshold 0.9 makes a bright frame (score 0.675) a pass.
func writeSqrtModel(t testing.TB, dir string) {
	t.Helper()
	os.MkdirAll(dir, 0o755)
	if err := zoo.WriteMeanSqrtDetector(modelSize, modelSize, 0.25, filepath.Join(dir, detect.ModelFile)); err != nil {
		t.Fatal(err)
	}
	meta := detect.DefaultMetadata("sqrt-1")
	meta.Input.Height, meta.Input.Width = modelSize, modelSize
	meta.Input.Mean, meta.Input.Std = [3]float32{}, [3]float32{1, 1, 1}
	meta.Threshold = 0.9
	if err := detect.WriteMetadata(dir, meta); err != nil {
		t.Fatal(err)
	}
}

// writeSolid writes a uniform PNG of grey value v into stage and renames it into dir.
func writeSolid(t testing.TB, stage, dir, name string, v float64) {
	t.Helper()
	m := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(v, v, v, 0), 24, 24, gocv.MatTypeCV8UC3)
	defer m.Close()
	if !gocv.IMWrite(filepath.Join(stage, name), m) {
		t.Fatalf("IMWrite %s", name)
	}
	if err := os.Rename(filepath.Join(stage, name), filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

// A frame on which the model yields NaN gets an unknown verdict with the reason; the
// other verdicts of its batch are stored and published (before, the NaN made the
// whole batch unstorable: every verdict dropped, not counted), and it is never kept as
// a good image.
func TestNonFiniteScoreGivesUnknownVerdict(t *testing.T) {
	testenv.ORT(t)
	b := mosquittotest.Start(t)
	sub := subscribe(t, b.URL(), "plc-1", verdictTopic)
	root := t.TempDir()
	watched, stage := filepath.Join(root, "drop"), filepath.Join(root, "stage")
	os.MkdirAll(watched, 0o755)
	os.MkdirAll(stage, 0o755)
	cfg := testConfig(t, b.URL(), folderSource("cam", watched))
	cfg.NegativesKeep = 1 // every pass is kept: a NaN counted as a pass would be too
	cfg.BatchWait = 50 * time.Millisecond
	writeSqrtModel(t, cfg.ModelDir)
	r := start(t, cfg)
	var names []string
	for i := range 12 {
		v := 200.0
		if i%3 == 0 {
			v = 20 // dark: NaN
		}
		name := fmt.Sprintf("f%02d.png", i)
		writeSolid(t, stage, watched, name, v)
		names = append(names, name)
	}
	ms := sub.WaitFor(t, 30*time.Second, "12 verdicts", countVerdicts(t, verdictTopic, 12))
	vs := dedupe(verdictsOf(t, ms, verdictTopic))
	checkOnePerFile(t, vs, names, 1)
	for _, v := range vs {
		dark := v.FrameID[1:3] == "00" || v.FrameID[1:3] == "03" || v.FrameID[1:3] == "06" || v.FrameID[1:3] == "09"
		if dark && (v.Verdict != "unknown" || !strings.Contains(v.Error, "not a finite number") || v.Score != 0) {
			t.Fatalf("dark frame: %+v, want unknown naming the non-finite score", v)
		}
		if !dark && (v.Verdict != "pass" || v.Error != "") {
			t.Fatalf("bright frame: %+v, want pass", v)
		}
	}
	// Frames are kept after their verdicts are stored, off the judge's path: wait for it.
	var body string
	waitFor(t, 10*time.Second, "the passes kept", func() bool {
		_, body = httpGet(t, "http://"+r.httpAddr(t)+"/metrics")
		return metric(t, body, "diagd_negatives_kept_total") >= 8
	})
	if got := metric(t, body, "diagd_verdicts_not_stored_total"); got != 0 {
		t.Fatalf("diagd_verdicts_not_stored_total = %v", got)
	}
	time.Sleep(200 * time.Millisecond) // a ninth (wrong) frame would be kept by now
	_, body = httpGet(t, "http://"+r.httpAddr(t)+"/metrics")
	if got := metric(t, body, "diagd_negatives_kept_total"); got != 8 {
		t.Fatalf("diagd_negatives_kept_total = %v, want the 8 passes", got)
	}
	kept, _ := filepath.Glob(filepath.Join(cfg.DataDir, "negatives", "cam", "*.png"))
	if len(kept) != 8 {
		t.Fatalf("%d frames in the negatives pool, want the 8 passes", len(kept))
	}
	for _, k := range kept {
		m := gocv.IMRead(k, gocv.IMReadColor)
		mean := m.Mean().Val1
		m.Close()
		if mean < 100 {
			t.Fatalf("%s (mean %v) in the negatives pool: a frame the model could not judge", k, mean)
		}
	}
}

// Holding verdicts for a full outbox is the daemon doing its job: the watchdog goes on
// being petted and /livez says ok (before, the judge loop's heartbeat stopped while it
// waited, and systemd restarted diagd every 30 s during a long broker outage).
func TestWatchdogPetsWhileHoldingVerdictsForAFullOutbox(t *testing.T) {
	testenv.ORT(t)
	b := mosquittotest.Start(t)
	b.Kill()
	nr := newNotifyRecorder(t, 2*time.Second)
	watched := filepath.Join(t.TempDir(), "drop")
	os.MkdirAll(watched, 0o755)
	cfg := testConfig(t, b.URL(), folderSource("cam", watched))
	cfg.OutboxMaxRecords = 100
	cfg.ShutdownTimeout = time.Second
	writeModel(t, cfg.ModelDir, "m1", 1)
	newDropper(t, watched).dropN(130, 0)
	r := start(t, cfg)
	addr := r.httpAddr(t)
	waitFor(t, 30*time.Second, "the outbox full", func() bool { return r.d.outboxFull.Load() })
	pets := nr.count("WATCHDOG=1")
	time.Sleep(4 * time.Second) // two watchdog windows
	if !r.d.outboxFull.Load() {
		t.Fatal("the outbox is no longer full: the test did not hold verdicts")
	}
	if more := nr.count("WATCHDOG=1") - pets; more < 2 {
		t.Fatalf("%d pets in 4 s while holding verdicts for a full outbox (want one per second); %s", more, nr)
	}
	if code, body := httpGet(t, "http://"+addr+"/livez"); code != 200 {
		t.Fatalf("/livez while holding verdicts: %d %q", code, body)
	}
}

// A model that hangs stops the watchdog's pets and makes /livez fail with the reason,
// both when a frame is stuck in it and when only the idle probe finds it.
func TestWatchdogWithholdsPetsWhenTheModelHangs(t *testing.T) {
	for _, tc := range []struct {
		name   string
		frames int
		want   string
	}{
		{"judging a frame", 1, "judge loop stuck"},
		{"idle probe", 0, "model does not answer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testenv.ORT(t)
			b := mosquittotest.Start(t)
			nr := newNotifyRecorder(t, 2*time.Second)
			watched := filepath.Join(t.TempDir(), "drop")
			os.MkdirAll(watched, 0o755)
			cfg := testConfig(t, b.URL(), folderSource("cam", watched))
			writeModel(t, cfg.ModelDir, "m1", 1)
			hang := make(chan struct{})
			var hung atomic.Bool
			r := startWith(t, cfg, func(d *Daemon) {
				real := d.judgeFn
				d.judgeFn = func(m []gocv.Mat, res []detect.Result) error {
					if hung.Load() {
						<-hang
					}
					return real(m, res)
				}
			})
			t.Cleanup(func() { close(hang) }) // runs before the daemon's stop
			addr := r.httpAddr(t)
			waitFor(t, 10*time.Second, "a first pet", func() bool { return nr.count("WATCHDOG=1") > 0 })
			hung.Store(true)
			newDropper(t, watched).dropN(tc.frames, 0)
			time.Sleep(4 * time.Second) // past the window and a probe's wait: the evidence of life is stale
			pets := nr.count("WATCHDOG=1")
			time.Sleep(3 * time.Second)
			if more := nr.count("WATCHDOG=1") - pets; more != 0 {
				t.Fatalf("%d pets in 3 s with the model hung; %s", more, nr)
			}
			if code, body := httpGet(t, "http://"+addr+"/livez"); code != 503 || !strings.Contains(body, tc.want) {
				t.Fatalf("/livez with the model hung: %d %q, want 503 %q", code, body, tc.want)
			}
		})
	}
}

// A stop while a job is stuck in work it cannot interrupt (an ONNX Runtime run that
// does not take a context) flushes the outbox and publishes "stopped" without waiting
// for the job, and returns within the shutdown timeout (before, it waited for the job
// first, past systemd's TimeoutStopSec).
func TestStopDoesNotWaitForAJobThatDoesNotStop(t *testing.T) {
	st := newStation(t, "diagd/line1/#")
	sub, watched, cfg := st.sub, st.watched, st.cfg
	cfg.ShutdownTimeout = 2 * time.Second
	release := make(chan struct{})
	defer close(release)
	var entered atomic.Bool
	r := startWith(t, cfg, func(d *Daemon) {
		d.jobs.kinds["stuck"] = jobKind{precheck: func(*jobOptions) error { return nil },
			run: func(context.Context, jobOptions) (string, string) {
				entered.Store(true)
				<-release
				return outcomeOK, ""
			}}
	})
	sub.WaitFor(t, 10*time.Second, "online", func(ms []msg) bool { return last(ms, availTopic) == "online" })
	waitFor(t, 10*time.Second, "the job runner", func() bool {
		_, err := r.d.jobs.start("stuck", jobOptions{})
		return err == nil
	})
	waitFor(t, 10*time.Second, "the job running", entered.Load)
	names := newDropper(t, watched).dropN(20, 0)
	sub.WaitFor(t, 20*time.Second, "20 verdicts", countVerdicts(t, verdictTopic, 20))
	t0 := time.Now()
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(t0); took > cfg.ShutdownTimeout+time.Second {
		t.Fatalf("stop took %v with a stuck job (shutdown timeout %v)", took, cfg.ShutdownTimeout)
	}
	ms := sub.WaitFor(t, 10*time.Second, "stopped", func(ms []msg) bool { return last(ms, availTopic) == "stopped" })
	checkOnePerFile(t, dedupe(verdictsOf(t, ms, verdictTopic)), names, 1)
}

// A stop with a broker that accepts the connection but answers nothing returns within
// the shutdown timeout, leaving the unacknowledged verdicts in the outbox (before, it
// took the timeout plus 10 s or more, waiting on the broker).
func TestStopWithAHungBrokerIsBounded(t *testing.T) {
	st := newStation(t, verdictTopic)
	b, sub, watched, cfg := st.b, st.sub, st.watched, st.cfg
	cfg.ShutdownTimeout = 2 * time.Second
	r := start(t, cfg)
	dr := newDropper(t, watched)
	dr.dropN(5, 0)
	sub.WaitFor(t, 20*time.Second, "5 verdicts", countVerdicts(t, verdictTopic, 5))
	b.Pause()
	t.Cleanup(b.Resume)
	dr.dropN(5, 0)
	// All ten stored, five of them (the ones after the pause) unacknowledged: Records
	// alone can count the first five while their PUBACKs are still on the way.
	waitFor(t, 20*time.Second, "verdicts held for the hung broker", func() bool {
		st := r.d.ob.Stats()
		return st.NextSeq > 10 && st.Records >= 5
	})
	t0 := time.Now()
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(t0); took > cfg.ShutdownTimeout+time.Second {
		t.Fatalf("stop with a hung broker took %v (shutdown timeout %v)", took, cfg.ShutdownTimeout)
	}
	if st := r.d.ob.Stats(); st.Records < 5 {
		t.Fatalf("outbox after the stop: %+v, want the held verdicts kept for the next start", st)
	}
}

// Two generation jobs started within one second get two batches (before, the second
// shared the first's name, failed to move its batch and left its images stranded).
func TestJobsInOneSecondGetTheirOwnBatches(t *testing.T) {
	testenv.ORT(t)
	b := mosquittotest.Start(t)
	sub := subscribe(t, b.URL(), "plc-1", "diagd/line1/#")
	s := newJobSetup(t, b.URL(), 12, goodCatalogue)
	fixed := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	startWith(t, s.cfg, func(d *Daemon) { d.jobs.now = func() time.Time { return fixed } })
	sub.WaitFor(t, 10*time.Second, "catalogue loaded", catalogueApplied(t))
	for i := range 2 {
		before := len(sub.Snapshot())
		sub.Publish(t, cmdTopic+"augment", `{"n":2}`)
		ms := sub.WaitFor(t, 30*time.Second, "augment finished", func(ms []msg) bool { return finishOf(t, ms[before:], "augment") != nil })
		if f := finishOf(t, ms[before:], "augment"); f["outcome"] != "ok" {
			t.Fatalf("job %d: %v", i+1, f)
		}
	}
	batches, _ := filepath.Glob(filepath.Join(s.cfg.DataDir, "synthetic", "accepted", "*"))
	want := []string{"20260301T120000Z-memseg", "20260301T120000Z-memseg-2"}
	if len(batches) != 2 || filepath.Base(batches[0]) != want[0] || filepath.Base(batches[1]) != want[1] {
		t.Fatalf("batches %v, want %v", batches, want)
	}
	for _, bd := range batches {
		if imgs, _ := filepath.Glob(filepath.Join(bd, "[0-9][0-9][0-9][0-9][0-9].png")); len(imgs) != 2 {
			t.Fatalf("%d images in %s, want 2", len(imgs), bd)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(s.cfg.DataDir, "synthetic", ".incoming", "*")); len(left) != 0 {
		t.Fatalf("stranded work folders: %v", left)
	}
}

// A model that fails to load (a broken model.onnx, then a folder without model.json)
// is reported on events/model and counted, each problem once, while the serving model
// goes on judging; a good model then loads.
func TestModelLoadFailuresReported(t *testing.T) {
	testenv.ORT(t)
	b := mosquittotest.Start(t)
	sub := subscribe(t, b.URL(), "plc-1", "diagd/line1/#")
	root := t.TempDir()
	watched := filepath.Join(root, "drop")
	os.MkdirAll(watched, 0o755)
	cfg := testConfig(t, b.URL(), folderSource("cam", watched))
	cfg.ModelDir = filepath.Join(root, "current") // a symlink, switched as the registry does
	writeModel(t, filepath.Join(root, "m1"), "m1", 1)
	os.Symlink("m1", cfg.ModelDir)
	r := start(t, cfg)
	addr := r.httpAddr(t)
	sub.WaitFor(t, 10*time.Second, "m1 served", func(ms []msg) bool {
		return contains(last(ms, "diagd/line1/state/model"), `"version":"m1"`)
	})
	switchTo := func(dir string) {
		tmp := cfg.ModelDir + ".new"
		os.Symlink(dir, tmp)
		if err := os.Rename(tmp, cfg.ModelDir); err != nil {
			t.Fatal(err)
		}
	}
	failures := func(ms []msg) []modelEvent {
		var out []modelEvent
		for _, m := range ms {
			var e modelEvent
			if m.Topic == "diagd/line1/events/model" && json.Unmarshal([]byte(m.Payload), &e) == nil && e.Event == "load_failed" {
				out = append(out, e)
			}
		}
		return out
	}
	// 1. model.onnx is garbage.
	broken := filepath.Join(root, "broken")
	writeModel(t, broken, "m2", 2)
	os.WriteFile(filepath.Join(broken, detect.ModelFile), []byte("not an onnx model"), 0o644)
	switchTo("broken")
	ms := sub.WaitFor(t, 10*time.Second, "load_failed", func(ms []msg) bool { return len(failures(ms)) >= 1 })
	if e := failures(ms)[0]; e.Dir != cfg.ModelDir || e.Error == "" {
		t.Fatalf("load_failed event %+v", e)
	}
	// 2. A folder without model.json (copied without its metadata).
	nometa := filepath.Join(root, "nometa")
	writeModel(t, nometa, "m3", 3)
	os.Remove(filepath.Join(nometa, detect.MetadataFile))
	switchTo("nometa")
	ms = sub.WaitFor(t, 10*time.Second, "second load_failed", func(ms []msg) bool { return len(failures(ms)) >= 2 })
	if e := failures(ms)[1]; !strings.Contains(e.Error, "has no model.json") {
		t.Fatalf("load_failed event for a folder without model.json: %+v", e)
	}
	// The serving model still judges; each problem was reported once.
	names := newDropper(t, watched).dropN(3, 0)
	ms = sub.WaitFor(t, 20*time.Second, "verdicts", countVerdicts(t, verdictTopic, 3))
	for _, v := range dedupe(verdictsOf(t, ms, verdictTopic)) {
		if v.AnalyticsModule.Version != "m1" {
			t.Fatalf("verdict by %q while the new models failed to load", v.AnalyticsModule.Version)
		}
	}
	checkOnePerFile(t, dedupe(verdictsOf(t, ms, verdictTopic)), names, 1)
	if n := len(failures(sub.Snapshot())); n != 2 {
		t.Fatalf("%d load_failed events for two problems (each must be reported once)", n)
	}
	_, body := httpGet(t, "http://"+addr+"/metrics")
	if got := metric(t, body, "diagd_model_load_failures_total"); got != 2 {
		t.Fatalf("diagd_model_load_failures_total = %v, want 2", got)
	}
	if got := metric(t, body, `diagd_model_info{version="m1"}`); got != 1 {
		t.Fatalf("diagd_model_info{m1} = %v", got)
	}
	// 3. A good model loads.
	writeModel(t, filepath.Join(root, "m4"), "m4", 4)
	switchTo("m4")
	sub.WaitFor(t, 10*time.Second, "m4 served", func(ms []msg) bool {
		return contains(last(ms, "diagd/line1/state/model"), `"version":"m4"`)
	})
}

// A panic in the detector gives its batch unknown verdicts naming it, is counted, and
// the station goes on judging.
func TestPanicInTheDetectorGivesUnknownVerdicts(t *testing.T) {
	st := newStation(t, verdictTopic)
	sub, watched, cfg := st.sub, st.watched, st.cfg
	cfg.BatchMax = 1
	var calls atomic.Int32
	r := startWith(t, cfg, func(d *Daemon) {
		real := d.judgeFn
		d.judgeFn = func(m []gocv.Mat, res []detect.Result) error {
			if len(m) == 1 && m[0].Rows() == 30 && calls.Add(1) == 1 { // the first frame, not a probe
				var nilMap map[string]int
				nilMap["boom"]++ // a bug: assignment to a nil map
			}
			return real(m, res)
		}
	})
	names := newDropper(t, watched).dropN(3, 50*time.Millisecond)
	ms := sub.WaitFor(t, 20*time.Second, "3 verdicts", countVerdicts(t, verdictTopic, 3))
	vs := dedupe(verdictsOf(t, ms, verdictTopic))
	checkOnePerFile(t, vs, names, 1)
	if v := vs[0]; v.Verdict != "unknown" || !strings.Contains(v.Error, "internal error in detector") {
		t.Fatalf("verdict of the frame that panicked: %+v", v)
	}
	for _, v := range vs[1:] {
		if v.Verdict == "unknown" {
			t.Fatalf("verdict after the panic: %+v", v)
		}
	}
	_, body := httpGet(t, "http://"+r.httpAddr(t)+"/metrics")
	if got := metric(t, body, `diagd_panics_recovered_total{where="detector"}`); got != 1 {
		t.Fatalf("diagd_panics_recovered_total{detector} = %v", got)
	}
}

// A panic in a job fails the job (finish event, metric); the runner takes the next one.
func TestPanicInAJobFailsTheJob(t *testing.T) {
	testenv.ORT(t)
	b := mosquittotest.Start(t)
	sub := subscribe(t, b.URL(), "plc-1", "diagd/line1/#")
	cfg := testConfig(t, b.URL(), folderSource("cam", t.TempDir()))
	r := startWith(t, cfg, func(d *Daemon) {
		d.jobs.kinds["buggy"] = jobKind{precheck: func(*jobOptions) error { return nil },
			run: func(context.Context, jobOptions) (string, string) { panic("index out of range") }}
	})
	waitFor(t, 10*time.Second, "the job runner", func() bool { _, err := r.d.jobs.start("buggy", jobOptions{}); return err == nil })
	ms := sub.WaitFor(t, 10*time.Second, "the job's finish", finished(t, "buggy"))
	if f := finishOf(t, ms, "buggy"); f["outcome"] != "failed" || !strings.Contains(fmt.Sprint(f["reason"]), "index out of range") {
		t.Fatalf("finish of a job that panicked: %v", f)
	}
	waitFor(t, 10*time.Second, "the runner free again", func() bool { _, err := r.d.jobs.start("buggy", jobOptions{}); return err == nil })
	_, body := httpGet(t, "http://"+r.httpAddr(t)+"/metrics")
	if got := metric(t, body, `diagd_jobs_total{job="buggy",outcome="failed"}`); got < 1 {
		t.Fatalf(`diagd_jobs_total{job="buggy",outcome="failed"} = %v`, got)
	}
}

// stuckKeeper is a negatives pool on a disk that does not answer until released.
type stuckKeeper struct {
	release chan struct{}
	kept    atomic.Int32
}

func (k *stuckKeeper) offer(capture.Frame, detect.Result) (bool, error) {
	<-k.release
	k.kept.Add(1)
	return true, nil
}

// Keeping frames (PNG encode and fsync) and the folder after-actions happen after the
// verdicts are durable, off the judge's goroutine: a disk that does not answer does not
// hold the next verdicts (before, the judge kept the frame itself and waited).
func TestStuckNegativesDiskDoesNotHoldVerdicts(t *testing.T) {
	testenv.ORT(t)
	b := mosquittotest.Start(t)
	sub := subscribe(t, b.URL(), "plc-1", verdictTopic)
	watched := filepath.Join(t.TempDir(), "drop")
	os.MkdirAll(watched, 0o755)
	cfg := testConfig(t, b.URL(), folderSource("cam", watched))
	cfg.BatchMax = 1                // five batches: one held by the keeper, four queued behind it
	writeSqrtModel(t, cfg.ModelDir) // bright frames pass
	k := &stuckKeeper{release: make(chan struct{})}
	released := false
	defer func() {
		if !released {
			close(k.release)
		}
	}()
	startWith(t, cfg, func(d *Daemon) { d.negatives = k })
	stage := filepath.Join(t.TempDir(), "stage")
	os.MkdirAll(stage, 0o755)
	var names []string
	for i := range 5 {
		names = append(names, fmt.Sprintf("b%02d.png", i))
		writeSolid(t, stage, watched, names[i], 200)
	}
	ms := sub.WaitFor(t, 20*time.Second, "5 verdicts while the pool's disk hangs", countVerdicts(t, verdictTopic, 5))
	checkOnePerFile(t, dedupe(verdictsOf(t, ms, verdictTopic)), names, 1)
	if n := k.kept.Load(); n != 0 {
		t.Fatalf("%d frames kept before the disk answered", n)
	}
	close(k.release)
	released = true
	waitFor(t, 10*time.Second, "every frame kept", func() bool { return k.kept.Load() == 5 })
}

// Rejected files are published on events/rejected, at most one per camera per second
// with the number held back; /readyz lists no reasons as [] rather than null.
func TestRejectedFilesPublishedAndReadyzList(t *testing.T) {
	testenv.ORT(t)
	b := mosquittotest.Start(t)
	sub := subscribe(t, b.URL(), "plc-1", "diagd/line1/#")
	root := t.TempDir()
	watched := filepath.Join(root, "drop")
	os.MkdirAll(watched, 0o755)
	cfg := testConfig(t, b.URL(), folderSource("cam", watched, "incomplete=200ms", "rejected="+filepath.Join(root, "rejected")))
	writeModel(t, cfg.ModelDir, "m1", 1)
	r := start(t, cfg)
	sub.WaitFor(t, 10*time.Second, "online", func(ms []msg) bool { return last(ms, availTopic) == "online" })
	for i := range 5 {
		os.WriteFile(filepath.Join(watched, fmt.Sprintf("junk%d.png", i)), []byte("\x89PNG\r\n\x1a\nnot a png"), 0o644)
	}
	waitFor(t, 20*time.Second, "5 files rejected", func() bool {
		_, body := httpGet(t, "http://"+r.httpAddr(t)+"/metrics")
		return metric(t, body, `diagd_bad_files_total{camera="cam"}`) == 5
	})
	time.Sleep(1100 * time.Millisecond)
	os.WriteFile(filepath.Join(watched, "junk9.png"), []byte("\x89PNG\r\n\x1a\nnot a png"), 0o644)
	ms := sub.WaitFor(t, 10*time.Second, "a second rejected event", func(ms []msg) bool {
		return countTopic(ms, "diagd/line1/events/rejected") >= 2
	})
	var evs []rejectedEvent
	for _, m := range ms {
		if m.Topic == "diagd/line1/events/rejected" {
			var e rejectedEvent
			if err := json.Unmarshal([]byte(m.Payload), &e); err != nil {
				t.Fatal(err)
			}
			evs = append(evs, e)
		}
	}
	if len(evs) != 2 || evs[0].Camera != "cam" || !strings.HasPrefix(evs[0].File, "junk") || evs[0].Reason == "" ||
		evs[1].File != "junk9.png" || evs[1].Suppressed != 4 {
		t.Fatalf("rejected events %+v: want one for the burst and one for junk9.png with 4 held back", evs)
	}
	waitFor(t, 10*time.Second, "ready", func() bool { code, _ := httpGet(t, "http://"+r.httpAddr(t)+"/readyz"); return code == 200 })
	if _, body := httpGet(t, "http://"+r.httpAddr(t)+"/readyz"); strings.TrimSpace(body) != `{"ready":true,"reasons":[]}` {
		t.Fatalf("/readyz when ready: %s", body)
	}
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

// waitFor polls cond every 20 ms until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// syncBuffer is a log sink safe for the daemon's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
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

// A password in the broker URL reaches the broker (the daemon connects with it) and
// nothing else: not the log, not the retained state/config every subscriber reads.
func TestBrokerPasswordNeverLoggedOrPublished(t *testing.T) {
	testenv.ORT(t)
	b := mosquittotest.StartWith(t, mosquittotest.Options{Users: map[string]string{"plc": "s3cr3t-pw"}})
	withUser := strings.Replace(b.URL(), "tcp://", "tcp://plc:s3cr3t-pw@", 1)
	sub := subscribe(t, withUser, "plc-1", "diagd/line1/#")
	watched := filepath.Join(t.TempDir(), "drop")
	os.MkdirAll(watched, 0o755)
	cfg := testConfig(t, withUser, folderSource("cam", watched)) // validated: the credentials leave the URL
	writeModel(t, cfg.ModelDir, "m1", 1)
	var logs syncBuffer
	d, err := New(slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	names := newDropper(t, watched).dropN(2, 0)
	ms := sub.WaitFor(t, 20*time.Second, "verdicts and state/config", func(ms []msg) bool {
		return countVerdicts(t, verdictTopic, 2)(ms) && last(ms, "diagd/line1/state/config") != ""
	})
	checkOnePerFile(t, dedupe(verdictsOf(t, ms, verdictTopic)), names, 1)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	conf := last(ms, "diagd/line1/state/config")
	if !strings.Contains(conf, `"mqttAuth":true`) || !strings.Contains(conf, `"mqttBroker":"tcp://127.0.0.1:`) {
		t.Fatalf("state/config %s", conf)
	}
	for _, m := range ms {
		if strings.Contains(m.Payload, "s3cr3t") {
			t.Fatalf("the password was published on %s: %s", m.Topic, m.Payload)
		}
	}
	if l := logs.String(); strings.Contains(l, "s3cr3t") || !strings.Contains(l, "diagd starting") {
		t.Fatalf("the password is in the log (or the log is empty):\n%s", l)
	}
}

// /livez answers 200 from the first moment it is served: a daemon whose judge loop has
// not yet turned is starting, not stuck (before, the first checks said "judge loop
// stuck" for about the first second).
func TestLivezAtStart(t *testing.T) {
	st := newStation(t, verdictTopic)
	r := start(t, st.cfg)
	code, body := httpGet(t, "http://"+r.httpAddr(t)+"/livez")
	if code != 200 {
		t.Fatalf("/livez just after start: %d %q", code, body)
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
}
