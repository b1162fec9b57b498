package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"gocv.io/x/gocv"

	"github.com/diagd/diagd/daemon"
	"github.com/diagd/diagd/internal/config"
	"github.com/diagd/diagd/internal/mosquittotest"
	"github.com/diagd/diagd/internal/testenv"
	"github.com/diagd/diagd/mqtt"
)

// runSub is a PLC-like subscriber: persistent session, QoS 1.
type runSub struct {
	mu   sync.Mutex
	msgs [][2]string // topic, payload
}

func runSubscribe(t *testing.T, url, filter string) *runSub {
	t.Helper()
	s := &runSub{}
	h := func(_ paho.Client, m paho.Message) {
		s.mu.Lock()
		s.msgs = append(s.msgs, [2]string{m.Topic(), string(m.Payload())})
		s.mu.Unlock()
	}
	o := paho.NewClientOptions().AddBroker(url).SetClientID("plc-run-test").SetCleanSession(false).
		SetProtocolVersion(4).SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(100 * time.Millisecond).SetMaxReconnectInterval(300 * time.Millisecond).
		SetDefaultPublishHandler(h).
		SetOnConnectHandler(func(c paho.Client) { c.Subscribe(filter, 1, h) })
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber: %v", tok.Error())
	}
	if tok := c.Subscribe(filter, 1, h); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return s
}

// verdicts returns the distinct verdicts (first of each messageid) and the message count.
func (s *runSub) verdicts(t *testing.T, topic string) ([]mqtt.Verdict, int) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	var out []mqtt.Verdict
	n := 0
	for _, m := range s.msgs {
		if m[0] != topic {
			continue
		}
		n++
		var v mqtt.Verdict
		if err := json.Unmarshal([]byte(m[1]), &v); err != nil {
			t.Fatalf("verdict %q: %v", m[1], err)
		}
		if !seen[v.MessageID] {
			seen[v.MessageID] = true
			out = append(out, v)
		}
	}
	return out, n
}

func (s *runSub) last(topic string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.msgs) - 1; i >= 0; i-- {
		if s.msgs[i][0] == topic {
			return s.msgs[i][1]
		}
	}
	return ""
}

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// daemonProc is `diagd run` as a separate process, so it can be SIGKILLed.
type daemonProc struct {
	cmd  *exec.Cmd
	done chan error
}

func startDaemonProc(t *testing.T, exe string, env []string, logPath string) *daemonProc {
	t.Helper()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "run")
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &daemonProc{cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); logf.Close() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
		p.done <- nil
	})
	return p
}

// wait returns the process's exit code.
func (p *daemonProc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		if err == nil {
			return 0
		}
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		t.Fatal(err)
	case <-time.After(timeout):
		t.Fatalf("diagd did not exit within %s", timeout)
	}
	return -1
}

func buildDiagd(t *testing.T) string {
	t.Helper()
	exe := filepath.Join(t.TempDir(), "diagd")
	build := exec.Command("go", "build", "-o", exe, "./cmd/diagd")
	build.Dir = testenv.ModuleRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return exe
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func metricsValue(t *testing.T, addr, series string) float64 {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1 // not listening (yet)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// cleanEnv is the test process's environment without DIAGD_* settings.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DIAGD_") {
			env = append(env, kv)
		}
	}
	return env
}

// diagd is SIGKILLed mid-run while the broker is down, so verdicts are waiting in its
// outbox; files keep arriving while it is dead. After a restart the outbox's verdicts
// are delivered, the files that arrived meanwhile are judged, and no file is judged
// twice: one messageid per file, seqs 1..N without gaps or extras. A SIGTERM then
// stops it cleanly (exit 0, available=stopped).
func TestRunKilledAndRestarted(t *testing.T) {
	exe := buildDiagd(t)
	root := testenv.ModuleRoot(t)
	b := mosquittotest.Start(t)
	sub := runSubscribe(t, b.URL(), "diagd/t1/#")
	dir := t.TempDir()
	watched, stage := filepath.Join(dir, "drop"), filepath.Join(dir, "stage")
	os.MkdirAll(watched, 0o755)
	os.MkdirAll(stage, 0o755)
	httpAddr := freeAddr(t)
	env := append(cleanEnv(),
		"DIAGD_STATION=t1",
		"DIAGD_SOURCES=cam=folder:"+watched+",settle=10ms,polls=2",
		"DIAGD_DATA_DIR="+filepath.Join(dir, "data"),
		"DIAGD_MODEL_DIR="+writeTestModel(t),
		"DIAGD_MQTT_BROKER="+b.URL(),
		"DIAGD_HTTP_ADDR="+httpAddr,
		"DIAGD_PROVIDER=cpu", "DIAGD_THREADS=1",
		"DIAGD_ORT_LIB="+filepath.Join(root, "bin", "libonnxruntime.so"),
		"DIAGD_LOG_FORMAT=text",
	)
	logPath := filepath.Join(dir, "diagd.log")
	t.Cleanup(func() {
		if t.Failed() {
			log, _ := os.ReadFile(logPath)
			t.Logf("diagd log:\n%s", log)
		}
	})

	r := rand.New(rand.NewPCG(3, 4))
	var names []string
	drop := func(n int) {
		for range n {
			name := fmt.Sprintf("part-%04d.png", len(names))
			m := gocv.NewMatWithSize(48, 40, gocv.MatTypeCV8UC3)
			gocv.RandU(&m, gocv.NewScalar(0, 0, 0, 0), gocv.NewScalar(float64(64+r.IntN(192)), 255, 255, 0))
			ok := gocv.IMWrite(filepath.Join(stage, name), m)
			m.Close()
			if !ok {
				t.Fatal("IMWrite")
			}
			if err := os.Rename(filepath.Join(stage, name), filepath.Join(watched, name)); err != nil {
				t.Fatal(err)
			}
			names = append(names, name)
			time.Sleep(3 * time.Millisecond)
		}
	}
	const topic = "diagd/t1/verdict"
	count := func() int { vs, _ := sub.verdicts(t, topic); return len(vs) }

	p := startDaemonProc(t, exe, env, logPath)
	drop(60)
	waitUntil(t, 30*time.Second, "the first verdicts", func() bool { return count() >= 30 })
	b.Kill() // verdicts made from now on wait in the outbox
	drop(40)
	waitUntil(t, 20*time.Second, "verdicts waiting in the outbox", func() bool {
		return metricsValue(t, httpAddr, "diagd_outbox_records") >= 20
	})
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.wait(t, 10*time.Second)
	delivered := count()
	drop(40) // arrive while diagd is dead
	b.Restart()
	p = startDaemonProc(t, exe, env, logPath)
	drop(40)
	waitUntil(t, 60*time.Second, "every file's verdict", func() bool { return count() >= len(names) })
	vs, msgs := sub.verdicts(t, topic)
	t.Logf("%d files; %d delivered before the kill; %d verdict messages (%d re-sent)", len(names), delivered, msgs, msgs-len(vs))
	if delivered >= 100 {
		t.Fatalf("all 100 verdicts made before the kill were delivered with the broker down?")
	}
	checkOneVerdictPerFile(t, vs, names, logPath)
	checkSIGHUPReloads(t, p, logPath, httpAddr)
	// Graceful stop of the process: exit 0 and "stopped" retained.
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("diagd exit code %d after SIGTERM, want 0", code)
	}
	waitUntil(t, 10*time.Second, "available=stopped", func() bool { return sub.last("diagd/t1/available") == "stopped" })
}

// checkOneVerdictPerFile: one messageid per file, seqs 1..N without gaps or extras, and
// at most one batch judged again after the restart.
func checkOneVerdictPerFile(t *testing.T, vs []mqtt.Verdict, names []string, logPath string) {
	t.Helper()
	byFile := map[string]bool{}
	seqs := map[uint64]bool{}
	for _, v := range vs {
		if byFile[v.FrameID] {
			t.Fatalf("file %s judged twice (a second messageid)", v.FrameID)
		}
		byFile[v.FrameID] = true
		seqs[v.Seq] = true
	}
	for _, n := range names {
		if !byFile[n] {
			t.Fatalf("file %s has no verdict", n)
		}
	}
	for s := uint64(1); s <= uint64(len(names)); s++ {
		if !seqs[s] {
			t.Fatalf("seq %d missing", s)
		}
	}
	if len(vs) != len(names) {
		t.Fatalf("%d distinct verdicts for %d files", len(vs), len(names))
	}
	// Files journaled before the kill are skipped at the restart; only batches whose
	// verdicts were durable but whose files were not yet journaled when the SIGKILL came
	// may be judged again (and their repeats are recognised by messageid, published
	// never): the after stage's queue, the batch it works on and the one waiting to
	// enter it.
	log, _ := os.ReadFile(logPath)
	limit := (daemon.AfterQueueBatches + 2) * 8
	if again := strings.Count(string(log), "frame judged again after a restart"); again > limit {
		t.Fatalf("%d files judged again after the restart; at most %d batches (%d) may be", again, daemon.AfterQueueBatches+2, limit)
	} else {
		t.Logf("%d files judged again (their verdicts were durable, their journal entries not yet)", again)
	}
}

// checkSIGHUPReloads: SIGHUP reloads the model (and the catalogue) instead of killing
// the daemon.
func checkSIGHUPReloads(t *testing.T, p *daemonProc, logPath, httpAddr string) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitUntil(t, 10*time.Second, "the SIGHUP reload", func() bool {
		log, _ := os.ReadFile(logPath)
		return strings.Contains(string(log), "SIGHUP: reloading the model and the defect catalogue") &&
			strings.Count(string(log), "detector model installed") >= 3 // two starts and the reload
	})
	select {
	case err := <-p.done:
		t.Fatalf("diagd exited on SIGHUP: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	if metricsValue(t, httpAddr, "diagd_model_load_failures_total") != 0 {
		t.Fatal("the SIGHUP reload failed")
	}
}

// Bad DIAGD_* values make `diagd validate` exit non-zero and `diagd run` exit 78 (the
// unit's RestartPreventExitStatus: restarting cannot fix them), both naming the
// variable. That covers what run needs beyond the values themselves (a writable data
// folder, a free HTTP port, a broker URL the client takes, a CA file that holds a
// certificate), so nothing validate passes makes run fail and restart forever.
func TestRunAndValidateRejectBadEnvironment(t *testing.T) {
	dir := t.TempDir()
	good := map[string]string{
		"DIAGD_STATION": "t1", "DIAGD_SOURCES": "cam=folder:" + dir, "DIAGD_DATA_DIR": filepath.Join(dir, "data"),
		"DIAGD_MQTT_BROKER": "tcp://127.0.0.1:1", "DIAGD_HTTP_ADDR": "",
	}
	notPEM := filepath.Join(dir, "ca.pem")
	os.WriteFile(notPEM, []byte("-----BEGIN NOTHING-----\n"), 0o644)
	aFile := filepath.Join(dir, "a-file")
	os.WriteFile(aFile, nil, 0o644)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct {
		name, value, want string
	}{
		{"DIAGD_BATCH_MAX", "0", "DIAGD_BATCH_MAX: 0 is outside 1..256"},
		{"DIAGD_BATCH_MAX", "many", "DIAGD_BATCH_MAX"},
		{"DIAGD_MODEL_POLL", "soon", "DIAGD_MODEL_POLL"},
		{"DIAGD_MODEL_POLL", "1ns", "DIAGD_MODEL_POLL"},
		{"DIAGD_RETRAIN_EVERY", "1ns", "DIAGD_RETRAIN_EVERY"},
		{"DIAGD_SOURCES", "cam=floppy:/a", "DIAGD_SOURCES"},
		{"DIAGD_SOURCES", "", "DIAGD_SOURCES: no camera sources configured"},
		{"DIAGD_STATION", "line 3/a", "DIAGD_STATION"},
		{"DIAGD_MQTT_BROKER", "localhost", "DIAGD_MQTT_BROKER"},
		{"DIAGD_MQTT_BROKER", "amqp://127.0.0.1:5672", "DIAGD_MQTT_BROKER"},
		{"DIAGD_MQTT_PREFIX", "plant/#", "DIAGD_MQTT_PREFIX"},
		{"DIAGD_MQTT_CA_FILE", notPEM, "DIAGD_MQTT_CA_FILE"},
		{"DIAGD_MQTT_CA_FILE", filepath.Join(dir, "missing.pem"), "DIAGD_MQTT_CA_FILE"},
		{"DIAGD_PROVIDER", "tpu", "DIAGD_PROVIDER"},
		{"DIAGD_HTTP_ADDR", "9410", "DIAGD_HTTP_ADDR"},
		{"DIAGD_HTTP_ADDR", busy.Addr().String(), "DIAGD_HTTP_ADDR"},
		{"DIAGD_DATA_DIR", filepath.Join(aFile, "data"), "DIAGD_DATA_DIR"},
		{"DIAGD_OUTBOX_MAX_BYTES", "1000", "DIAGD_OUTBOX_MAX_BYTES"},
		{"DIAGD_SHUTDOWN_TIMEOUT", "0s", "DIAGD_SHUTDOWN_TIMEOUT"},
		{"DIAGD_LOG_LEVEL", "verbose", "DIAGD_LOG_LEVEL"},
		{"DIAGD_LOG_FORMAT", "yaml", "DIAGD_LOG_FORMAT"},
		{"DIAGD_ORT_LIB", filepath.Join(dir, "libonnxruntime.so"), "DIAGD_ORT_LIB"},
	} {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			for k, v := range good {
				t.Setenv(k, v)
			}
			t.Setenv(tc.name, tc.value)
			code, _, stderr := runCLI(t, "run")
			if code != exitConfig || !strings.Contains(stderr, tc.want) {
				t.Errorf("run: exit %d, stderr %q; want %d naming %q", code, stderr, exitConfig, tc.want)
			}
			code, _, stderr = runCLI(t, "validate")
			if code == 0 || !strings.Contains(stderr, tc.want) {
				t.Errorf("validate: exit %d, stderr %q; want non-zero naming %q", code, stderr, tc.want)
			}
		})
	}
	// Several problems are reported together.
	for k, v := range good {
		t.Setenv(k, v)
	}
	t.Setenv("DIAGD_BATCH_MAX", "0")
	t.Setenv("DIAGD_DEVICE_ID", "-1")
	if code, _, stderr := runCLI(t, "validate"); code == 0 || !contains(stderr, "DIAGD_BATCH_MAX", "DIAGD_DEVICE_ID") {
		t.Errorf("two bad values: exit %d, stderr %q", code, stderr)
	}
	// A batch bigger than the outbox could never be stored.
	t.Setenv("DIAGD_DEVICE_ID", "0")
	t.Setenv("DIAGD_BATCH_MAX", "200")
	t.Setenv("DIAGD_OUTBOX_MAX_RECORDS", "100")
	if code, _, stderr := runCLI(t, "validate"); code == 0 || !strings.Contains(stderr, "DIAGD_OUTBOX_MAX_RECORDS: 100 is below DIAGD_BATCH_MAX (200)") {
		t.Errorf("batch bigger than the outbox: exit %d, stderr %q", code, stderr)
	}
	t.Setenv("DIAGD_OUTBOX_MAX_RECORDS", "1000000")
	// The good configuration passes the environment check.
	t.Setenv("DIAGD_BATCH_MAX", "8")
	t.Setenv("DIAGD_DEVICE_ID", "0")
	if _, stdout, stderr := runCLI(t, "validate"); !strings.Contains(stdout, "validate: environment ok (station t1") {
		t.Errorf("good environment: stdout %q stderr %q", stdout, stderr)
	}
	// Only DIAGD_* variables count: unprefixed ones of the same names (which envconfig
	// would fall back to) are someone else's.
	t.Setenv("BATCH_MAX", "0")
	t.Setenv("SOURCES", "cam=floppy:/a")
	t.Setenv("THREADS", "many")
	if _, stdout, stderr := runCLI(t, "validate"); !strings.Contains(stdout, "validate: environment ok (station t1") {
		t.Errorf("unprefixed variables were read: stdout %q stderr %q", stdout, stderr)
	}
	// A misspelled variable is a warning naming the one meant.
	t.Setenv("DIAGD_NEGATIVE_KEEP", "10")
	if _, stdout, stderr := runCLI(t, "validate"); !strings.Contains(stdout, "environment ok") ||
		!strings.Contains(stderr, "DIAGD_NEGATIVE_KEEP is not a diagd setting and is ignored (did you mean DIAGD_NEGATIVES_KEEP?)") {
		t.Errorf("misspelled variable: stdout %q stderr %q", stdout, stderr)
	}
	// A password in the broker URL is not printed.
	t.Setenv("DIAGD_MQTT_BROKER", "tcp://plc:hunter2@127.0.0.1:1")
	if _, stdout, stderr := runCLI(t, "validate"); strings.Contains(stdout+stderr, "hunter2") || !strings.Contains(stdout, "broker tcp://127.0.0.1:1") {
		t.Errorf("password in the broker URL: stdout %q stderr %q", stdout, stderr)
	}
	t.Setenv("DIAGD_MQTT_BROKER", "ftp://plc:hunter2@127.0.0.1:1")
	if _, stdout, stderr := runCLI(t, "validate"); strings.Contains(stdout+stderr, "hunter2") || !strings.Contains(stderr, "plc:xxxxx@") {
		t.Errorf("password in a bad broker URL: stdout %q stderr %q", stdout, stderr)
	}
	// run takes no arguments: the unit's ExecStart is wrong, which a restart cannot fix.
	if code, _, stderr := runCLI(t, "run", "--model", "x"); code != exitConfig || !strings.Contains(stderr, "configured by DIAGD_* variables") {
		t.Errorf("run with arguments: exit %d, stderr %q", code, stderr)
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

// The unit passes systemd's own checker. verify insists that ExecStart's binary
// exists, so a copy of the unit points it at an executable that does (this test's).
func TestSystemdUnitVerifies(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		testenv.Missing(t, "systemd-analyze is not installed (apt-get install systemd): the unit is not verified")
	}
	root := testenv.ModuleRoot(t)
	unit, err := os.ReadFile(filepath.Join(root, "systemd", "diagd.service"))
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	text := string(unit)
	if !strings.Contains(text, "\nExecStart=/opt/diagd/bin/diagd run\n") {
		t.Fatal("unit: ExecStart is not /opt/diagd/bin/diagd run")
	}
	copyPath := filepath.Join(t.TempDir(), "diagd.service")
	os.WriteFile(copyPath, []byte(strings.Replace(text, "/opt/diagd/bin/diagd", exe, 1)), 0o644)
	cmd := exec.Command(sa, "verify", copyPath)
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The settings the service depends on.
	for _, want := range []string{"Type=notify", "WatchdogSec=", "Restart=on-failure", "NoNewPrivileges=yes",
		"ProtectSystem=strict", "ReadWritePaths=/var/lib/diagd", "PrivateTmp=yes", "ProtectHome=yes",
		"DevicePolicy=closed", "DeviceAllow=char-video4linux rw", "DeviceAllow=char-nvidia-frontend rw",
		"DeviceAllow=char-nvidia-uvm rw", "DeviceAllow=char-drm rw", "User=diagd", "Group=diagd",
		"SupplementaryGroups=video render", "EnvironmentFile=/etc/diagd/diagd.env", "StateDirectory=diagd"} {
		if !strings.Contains(text, "\n"+want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	// A bad configuration is not restarted; anything else is, a Go crash (status 2)
	// included.
	if m := regexp.MustCompile(`\nRestartPreventExitStatus=(.*)\n`).FindStringSubmatch(text); m == nil || m[1] != strconv.Itoa(exitConfig) {
		t.Errorf("unit: RestartPreventExitStatus %q, want exactly %d (diagd run's configuration error)", m, exitConfig)
	}
	// The stop timeout leaves room above the outbox flush deadline.
	stop, err := time.ParseDuration(regexp.MustCompile(`\nTimeoutStopSec=(\S+)`).FindStringSubmatch(text)[1])
	if err != nil {
		t.Fatal(err)
	}
	field, _ := reflect.TypeOf(config.Config{}).FieldByName("ShutdownTimeout")
	flush, _ := time.ParseDuration(field.Tag.Get("default"))
	if stop <= flush {
		t.Errorf("TimeoutStopSec=%v is not longer than DIAGD_SHUTDOWN_TIMEOUT's default %v", stop, flush)
	}
}

// Every DIAGD_* variable the daemon reads is documented in the env example, with its
// default.
func TestEnvExampleDocumentsEveryVariable(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(testenv.ModuleRoot(t), "systemd", "diagd.env.example"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	ty := reflect.TypeOf(config.Config{})
	for i := range ty.NumField() {
		f := ty.Field(i)
		name := f.Tag.Get("envconfig")
		line := regexp.MustCompile(`(?m)^#?` + name + `=(.*)$`).FindStringSubmatch(text)
		if line == nil {
			t.Errorf("%s is not in systemd/diagd.env.example", name)
			continue
		}
		// The example line shows the default as its value.
		if def := f.Tag.Get("default"); def != "" && strings.Trim(line[1], `"`) != def {
			t.Errorf("%s: the example shows %q, the default is %q", name, line[1], def)
		}
	}
}

// crashChild is run by TestGoCrashExitStatus in a child process.
func TestCrashChild(t *testing.T) {
	if os.Getenv("DIAGD_TEST_CRASH_CHILD") != "1" {
		return // only meaningful in the child process
	}
	done := make(chan struct{})
	go func() { defer close(done); panic("a bug in a goroutine") }()
	<-done
}

// The premise of the exit statuses: an unrecovered panic exits with status 2, so a
// configuration error must use another status (exitConfig) for the unit to restart
// crashes and only crashes.
func TestGoCrashExitStatus(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$")
	cmd.Env = append(os.Environ(), "DIAGD_TEST_CRASH_CHILD=1")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "a bug in a goroutine") {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if exitConfig == 2 || exitConfig == exitFailure {
		t.Fatalf("exitConfig %d collides with a crash or a failure", exitConfig)
	}
}
