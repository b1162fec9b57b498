package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"gocv.io/x/gocv"

	"github.com/diagd/diagd/daemon"
	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/config"
	"github.com/diagd/diagd/internal/demo"
	"github.com/diagd/diagd/internal/imageio"
	"github.com/diagd/diagd/internal/onnx/zoo"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/mqtt"
)

func init() { register("daemon", benchDaemon) }

// benchDaemon measures the whole inspection path (folder source → detect → fsynced
// outbox → real mosquitto → a subscriber) against detect alone on the same files in the
// same process:
//   - throughput: N files renamed into the watched folder at once; frames per second
//     from the first rename to the subscriber receiving the last verdict, vs a loop of
//     detect's ScoreFiles (read, batch, logits) in batches of the same size (target ratio ≥ 0.9);
//   - latency: files renamed in one at a time at a modest rate; time from the rename
//     to the subscriber receiving the verdict. The subscriber's receipt stands in for
//     the broker's acknowledgement (the broker forwards a QoS 1 message to subscribers
//     when it takes it; PUBACK to diagd happens at the same moment), so this is the
//     latency a PLC sees. A file renamed into the folder is complete, so it is judged
//     at once; the settle window (polls × settle, by default 2 × 100 ms), which keeps a
//     half-written file from being judged, applies only to files written in place.
//     --inplace writes the paced files in place instead (open, write, close): inotify's
//     close-after-write tells the source they are complete too.
//
// daemonBench holds the flags and the fixture of one run.
type daemonBench struct {
	n, paced, w, h, mw, mh, batch int
	rate                          float64
	settle, after                 string
	inplace                       bool
	tmp, modelDir, stage          string
	names                         []string
}

func benchDaemon(args []string) error {
	b := &daemonBench{}
	fs := flag.NewFlagSet("daemon", flag.ContinueOnError)
	fs.IntVar(&b.n, "n", 1000, "frames for the throughput run")
	fs.IntVar(&b.paced, "paced", 100, "frames for the latency run")
	fs.Float64Var(&b.rate, "rate", 20, "frames per second in the latency run")
	fs.IntVar(&b.w, "width", 256, "frame width")
	fs.IntVar(&b.h, "height", 704, "frame height")
	fs.IntVar(&b.mw, "model-width", 256, "model input width (SmallResNet)")
	fs.IntVar(&b.mh, "model-height", 704, "model input height")
	fs.IntVar(&b.batch, "batch", 8, "DIAGD_BATCH_MAX, and detect's batch in the baseline")
	fs.StringVar(&b.settle, "settle", "100ms", "folder source settle interval (the default is 100ms)")
	fs.StringVar(&b.after, "after", "keep", "folder source after= (keep journals with an fsync per file)")
	fs.BoolVar(&b.inplace, "inplace", false, "latency run: write files in place (open, write, close) instead of renaming them in")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if b.after != "keep" && b.after != "delete" {
		return fmt.Errorf("--after=%q: want keep or delete", b.after)
	}
	log := quietLog()
	if err := initORT(log); err != nil {
		return err
	}
	var err error
	if b.tmp, err = os.MkdirTemp("", "diagd-bench-daemon-"); err != nil {
		return err
	}
	defer os.RemoveAll(b.tmp)
	if err := b.fixture(); err != nil {
		return err
	}
	// Baseline: detect alone on the same files, same batch size, one model session.
	base, judgeOnly, err := baselineDetect(log, b.modelDir, b.stage, b.names[:b.n], b.batch)
	if err != nil {
		return err
	}
	return b.runDaemon(log, base, judgeOnly)
}

// fixture writes the model and the frames.
func (b *daemonBench) fixture() error {
	b.modelDir = filepath.Join(b.tmp, "model")
	os.MkdirAll(b.modelDir, 0o755)
	if err := zoo.WriteResNet(zoo.SmallResNet(b.mh, b.mw, 1), filepath.Join(b.modelDir, detect.ModelFile)); err != nil {
		return err
	}
	meta := detect.DefaultMetadata("bench")
	meta.Architecture = "small-resnet"
	meta.Input.Height, meta.Input.Width = b.mh, b.mw
	if err := detect.WriteMetadata(b.modelDir, meta); err != nil {
		return err
	}
	total := b.n + b.paced
	b.stage = filepath.Join(b.tmp, "stage")
	os.MkdirAll(b.stage, 0o755)
	fmt.Printf("writing %d PNG frames %dx%d ...\n", total, b.w, b.h)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range total {
		m := demo.Frame(b.w, b.h, r, i%4 == 3)
		name := fmt.Sprintf("frame-%05d.png", i)
		ok := gocv.IMWrite(filepath.Join(b.stage, name), m)
		m.Close()
		if !ok {
			return fmt.Errorf("cannot write %s", name)
		}
		b.names = append(b.names, name)
	}
	return nil
}

// runDaemon runs the daemon with a real mosquitto and a subscriber: a warm-up frame,
// the throughput run, then the latency run.
func (b *daemonBench) runDaemon(log *slog.Logger, base, judgeOnly float64) error {
	broker, err := startMosquitto(b.tmp)
	if err != nil {
		return err
	}
	defer broker.stop()
	sub, err := newBenchSub(broker.url, "diagd/bench/verdict")
	if err != nil {
		return err
	}
	defer sub.pc.Disconnect(100)
	cfg := config.Defaults()
	watched := filepath.Join(b.tmp, "drop")
	os.MkdirAll(watched, 0o755)
	cfg.Station, cfg.DataDir, cfg.ModelDir, cfg.MQTTBroker, cfg.HTTPAddr = "bench", filepath.Join(b.tmp, "data"), b.modelDir, broker.url, ""
	cfg.Provider, cfg.BatchMax = "cpu", b.batch
	cfg.Sources = fmt.Sprintf("cam=folder:%s,settle=%s,after=%s", watched, b.settle, b.after)
	if err := cfg.Validate(); err != nil {
		return err
	}
	d, err := daemon.New(log, cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- d.Run(ctx) }()
	defer func() { cancel(); <-runDone }()
	// Warm up: one frame through the whole path (connect, first inference).
	if err := os.Rename(filepath.Join(b.stage, b.names[b.n]), filepath.Join(watched, b.names[b.n])); err != nil {
		return err
	}
	if !sub.wait(1, 30*time.Second) {
		return fmt.Errorf("no verdict for the warm-up frame within 30 s")
	}
	fps, burst, err := b.throughput(sub, watched)
	if err != nil {
		return err
	}
	paceArrived, err := b.latency(sub, watched)
	if err != nil {
		return err
	}
	b.report(sub, base, judgeOnly, fps, burst, paceArrived)
	return nil
}

// throughput renames all files in at once: frames/s to the last verdict, and latencies.
func (b *daemonBench) throughput(sub *benchSub, watched string) (float64, []float64, error) {
	arrived := make(map[string]time.Time, b.n)
	start := time.Now()
	for _, name := range b.names[:b.n] {
		if err := os.Rename(filepath.Join(b.stage, name), filepath.Join(watched, name)); err != nil {
			return 0, nil, err
		}
		arrived[name] = time.Now()
	}
	if !sub.wait(1+b.n, 5*time.Minute) {
		return 0, nil, fmt.Errorf("only %d of %d verdicts arrived", sub.count()-1, b.n)
	}
	return float64(b.n) / sub.lastAt().Sub(start).Seconds(), sub.latencies(arrived), nil
}

// latency puts one file at a time into the folder at --rate.
func (b *daemonBench) latency(sub *benchSub, watched string) (map[string]time.Time, error) {
	paceArrived := map[string]time.Time{}
	every := time.Duration(float64(time.Second) / b.rate)
	for _, name := range b.names[b.n+1:] {
		if err := arrive(filepath.Join(b.stage, name), filepath.Join(watched, name), b.inplace, paceArrived); err != nil {
			return nil, err
		}
		time.Sleep(every)
	}
	if !sub.wait(b.n+b.paced, time.Minute) {
		return nil, fmt.Errorf("paced run: only %d of %d verdicts arrived", sub.count(), b.n+b.paced)
	}
	return paceArrived, nil
}

func (b *daemonBench) report(sub *benchSub, base, judgeOnly, fps float64, burst []float64, paceArrived map[string]time.Time) {
	pacedLat := sub.latencies(paceArrived)
	fmt.Printf("\nmodel SmallResNet %dx%d (HxW), frames %dx%d PNG, batch %d, folder settle %s × 2 polls, after=%s, CPU\n",
		b.mh, b.mw, b.h, b.w, b.batch, b.settle, b.after)
	fmt.Printf("detect alone, decoded frames (Judge only):   %8.1f frames/s (the model's ceiling)\n", judgeOnly)
	fmt.Printf("detect alone (ScoreFiles: read + logits):    %8.1f frames/s\n", base)
	fmt.Printf("whole daemon (folder→detect→outbox→MQTT→sub): %8.1f frames/s\n", fps)
	fmt.Printf("ratio daemon / detect alone:                  %8.3f (target ≥ 0.9; the daemon decodes the next files while the model runs)\n", fps/base)
	fmt.Printf("ratio daemon / Judge only:                    %8.3f\n", fps/judgeOnly)
	fmt.Printf("verdict latency, arrival → subscriber (stands in for the broker's ack):\n")
	how := "renamed in"
	if b.inplace {
		how = "written in place"
	}
	fmt.Printf("  paced %d frames at %.0f/s, %s:   p50 %7.1f ms  p99 %7.1f ms (target p50 ≤ 30 ms)\n", b.paced-1, b.rate, how, pct(pacedLat, 50), pct(pacedLat, 99))
	src, jdg, mq := sub.stages(paceArrived)
	fmt.Printf("    p50 by stage: arrival → frame %.1f ms, frame → durable %.1f ms, durable → subscriber %.1f ms\n",
		pct(src, 50), pct(jdg, 50), pct(mq, 50))
	fmt.Printf("  for scale: the model alone takes %.1f ms a frame (Judge only, batches of %d)\n", 1000/judgeOnly, b.batch)
	fmt.Printf("  burst of %d (queueing):    p50 %7.1f ms  p99 %7.1f ms\n", b.n, pct(burst, 50), pct(burst, 99))
}

// arrive puts a staged file into the watched folder, renamed in or written in place, and
// notes when it became visible.
func arrive(src, dst string, inplace bool, at map[string]time.Time) error {
	if !inplace {
		at[filepath.Base(dst)] = time.Now()
		return os.Rename(src, dst)
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	at[filepath.Base(dst)] = time.Now()
	return os.WriteFile(dst, b, 0o644)
}

// baselineDetect reads and scores the files in batches with detect's ScoreFiles, one
// batch after the other (frames/s), then judges already decoded frames only on the
// Detector (frames/s).
func baselineDetect(log *slog.Logger, modelDir, dir string, names []string, batch int) (float64, float64, error) {
	det := detect.New(log, detect.Options{Session: ortenv.Options{Provider: ortenv.CPU}, MaxBatch: batch, Workers: 1})
	defer det.Close()
	if err := det.LoadAndSwap(modelDir); err != nil {
		return 0, 0, err
	}
	res := make([]detect.Result, batch)
	warm, err := imageio.Read(filepath.Join(dir, names[0]))
	if err != nil {
		return 0, 0, err
	}
	det.Judge([]gocv.Mat{warm}, res[:1])
	warm.Close()
	// Read + judge: detect's ScoreFiles loop on the detector's own model.
	m, err := detect.LoadModel(log, modelDir, detect.Options{Session: ortenv.Options{Provider: ortenv.CPU}, MaxBatch: batch, Workers: 1})
	if err != nil {
		return 0, 0, err
	}
	defer m.Close()
	paths := make([]string, len(names))
	for i, name := range names {
		paths[i] = filepath.Join(dir, name)
	}
	if _, err := m.ScoreFiles(context.Background(), paths[:1], nil); err != nil { // warm-up
		return 0, 0, err
	}
	start := time.Now()
	scored, err := m.ScoreFiles(context.Background(), paths, nil)
	if err != nil {
		return 0, 0, err
	}
	for _, r := range scored {
		if r.Err != nil {
			return 0, 0, r.Err
		}
	}
	withRead := float64(len(names)) / time.Since(start).Seconds()

	decoded := make([]gocv.Mat, min(len(names), 25*batch))
	for i := range decoded {
		if decoded[i], err = imageio.Read(filepath.Join(dir, names[i])); err != nil {
			return 0, 0, err
		}
		defer decoded[i].Close()
	}
	start = time.Now()
	for i := 0; i < len(decoded); i += batch {
		part := decoded[i:min(i+batch, len(decoded))]
		if err := det.Judge(part, res[:len(part)]); err != nil {
			return 0, 0, err
		}
	}
	return withRead, float64(len(decoded)) / time.Since(start).Seconds(), nil
}

func pct(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(v))
	return s[min(len(s)-1, int(float64(len(s))*p/100))]
}

type benchSub struct {
	pc   paho.Client
	mu   sync.Mutex
	at   map[string]time.Time    // frameId -> first receipt
	v    map[string]mqtt.Verdict // frameId -> its verdict (capture time, latency to durable)
	last time.Time
}

func newBenchSub(url, topic string) (*benchSub, error) {
	s := &benchSub{at: map[string]time.Time{}, v: map[string]mqtt.Verdict{}}
	h := func(_ paho.Client, m paho.Message) {
		now := time.Now()
		var v mqtt.Verdict
		if json.Unmarshal(m.Payload(), &v) != nil {
			return
		}
		s.mu.Lock()
		if _, ok := s.at[v.FrameID]; !ok {
			s.at[v.FrameID], s.v[v.FrameID] = now, v
			s.last = now
		}
		s.mu.Unlock()
	}
	o := paho.NewClientOptions().AddBroker(url).SetClientID("bench-sub").SetCleanSession(true).SetProtocolVersion(4)
	s.pc = paho.NewClient(o)
	if tok := s.pc.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("subscriber: %v", tok.Error())
	}
	if tok := s.pc.Subscribe(topic, 1, h); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("subscriber: %v", tok.Error())
	}
	return s, nil
}

func (s *benchSub) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.at)
}

func (s *benchSub) lastAt() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

func (s *benchSub) wait(n int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for s.count() < n {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// latencies in ms from each file's arrival to its verdict's receipt.
func (s *benchSub) latencies(arrived map[string]time.Time) []float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []float64
	for name, t := range arrived {
		if got, ok := s.at[name]; ok {
			out = append(out, float64(got.Sub(t).Microseconds())/1000)
		}
	}
	return out
}

// stages splits each file's latency (ms) into arrival → frame (the folder source: event,
// header, read, decode), frame → durable (batching, the model, the outbox's fsync) and
// durable → subscriber (MQTT); the verdict's @timestamp has millisecond resolution.
func (s *benchSub) stages(arrived map[string]time.Time) (source, judge, mqttLeg []float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, t := range arrived {
		v, ok := s.v[name]
		if !ok {
			continue
		}
		captured := v.Timestamp.Time()
		source = append(source, float64(captured.Sub(t).Microseconds())/1000)
		judge = append(judge, v.LatencyMs)
		mqttLeg = append(mqttLeg, float64(s.at[name].Sub(captured).Microseconds())/1000-v.LatencyMs)
	}
	return source, judge, mqttLeg
}

type mosquitto struct {
	cmd *exec.Cmd
	url string
}

// startMosquitto runs the broker as a line would (persistence on) on a free port.
func startMosquitto(dir string) (*mosquitto, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	bdir := filepath.Join(dir, "mosquitto")
	os.MkdirAll(bdir, 0o755)
	conf := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\nmax_queued_messages 1000000\n", port, bdir)
	if os.Geteuid() == 0 {
		conf += "user root\n"
	}
	confPath := filepath.Join(bdir, "mosquitto.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	bin := os.Getenv("DIAGD_MOSQUITTO")
	if bin == "" {
		bin = "/usr/sbin/mosquitto"
	}
	cmd := exec.Command(bin, "-c", confPath)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("mosquitto: %w", err)
	}
	m := &mosquitto{cmd: cmd, url: "tcp://127.0.0.1:" + strconv.Itoa(port)}
	for range 200 {
		if c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
			c.Close()
			return m, nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	m.stop()
	return nil, fmt.Errorf("mosquitto did not start on port %d", port)
}

func (m *mosquitto) stop() {
	m.cmd.Process.Kill()
	m.cmd.Wait()
}
