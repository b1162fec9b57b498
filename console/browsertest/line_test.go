package browsertest

import (
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/console"
	"github.com/diagd/diagd/daemon"
	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/config"
	"github.com/diagd/diagd/internal/mosquittotest"
	"github.com/diagd/diagd/internal/onnx/zoo"
	"github.com/diagd/diagd/internal/testenv"
	"github.com/diagd/diagd/mqtt"
	"github.com/diagd/diagd/retrain/registry"
)

const modelSize = 32

// line is a running daemon on real parts: a mosquitto broker, a watched folder, a
// registry serving a small generated ResNet, a catalogue and a pool of good frames.
type line struct {
	t       *testing.T
	cfg     config.Config
	d       *daemon.Daemon
	base    string // the console's URL
	watched string
	stage   string
	sub     *mosquittotest.Subscriber
	catPath string
	r       *rand.Rand
	n       int
	stop    func() time.Duration // stops the daemon (once) and says how long it took
}

const catalogueYAML = `# Defect catalogue of the test line
generation:
  seed: 7 # reproducible batches
kinds:
  # the only kind so far
  - name: stain
    prompts: ["dark stain"]
    regions: regions/center.png   # where stains may appear
`

// writeModel writes a model folder whose verdicts are all fail (threshold 0) or all
// pass (threshold 1: a sigmoid score never reaches it).
func writeModel(t *testing.T, dir string, threshold float64) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := zoo.WriteResNet(zoo.SmallResNet(modelSize, modelSize, 1), filepath.Join(dir, detect.ModelFile)); err != nil {
		t.Fatal(err)
	}
	md := detect.DefaultMetadata("m")
	md.Architecture, md.Input.Height, md.Input.Width, md.Threshold = "small-resnet", modelSize, modelSize, threshold
	if err := detect.WriteMetadata(dir, md); err != nil {
		t.Fatal(err)
	}
}

func writeSurface(t *testing.T, path string, r *rand.Rand) {
	t.Helper()
	base := float64(110 + r.IntN(30))
	m := gocv.NewMatWithSize(96, 128, gocv.MatTypeCV8UC3)
	defer m.Close()
	gocv.RandN(&m, gocv.NewScalar(base, base, base, 0), gocv.NewScalar(6, 6, 6, 0))
	if !gocv.IMWrite(path, m) {
		t.Fatalf("cannot write %s", path)
	}
}

func writeRegion(t *testing.T, path string) {
	t.Helper()
	m := image.NewGray(image.Rect(0, 0, 128, 96))
	for y := 24; y < 72; y++ {
		for x := 32; x < 96; x++ {
			m.SetGray(x, y, color.Gray{255})
		}
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := png.Encode(f, m); err != nil {
		t.Fatal(err)
	}
}

// lineOptions change the test line.
type lineOptions struct {
	mutate func(*config.Config)
}

func startLine(t *testing.T, o lineOptions) *line {
	t.Helper()
	testenv.ORT(t)
	broker := mosquittotest.Start(t)
	root := t.TempDir()
	l := &line{t: t, watched: filepath.Join(root, "drop"), stage: filepath.Join(root, "stage"), r: rand.New(rand.NewPCG(1, 2))}
	os.MkdirAll(l.watched, 0o755)
	os.MkdirAll(l.stage, 0o755)
	cfg := config.Defaults()
	cfg.Station, cfg.DataDir = "line1", filepath.Join(root, "data")
	cfg.Sources = "cam=folder:" + l.watched + ",settle=10ms,polls=2,retry=50ms,retrymax=200ms"
	cfg.MQTTBroker, cfg.HTTPAddr = broker.URL(), "127.0.0.1:0"
	cfg.ModelPoll, cfg.Provider, cfg.Threads, cfg.ShutdownTimeout = 100*time.Millisecond, "cpu", 1, 10*time.Second
	cfg.Registry = filepath.Join(cfg.DataDir, "models")
	cfg.ModelDir = filepath.Join(cfg.Registry, registry.CurrentLink)
	cfg.KeepFails, cfg.AutoAccept, cfg.Generator = 20, false, "memseg"
	cdir := filepath.Join(root, "etc")
	os.MkdirAll(filepath.Join(cdir, "regions"), 0o755)
	writeRegion(t, filepath.Join(cdir, "regions", "center.png"))
	l.catPath = filepath.Join(cdir, "catalogue.yaml")
	if err := os.WriteFile(l.catPath, []byte(catalogueYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.Catalogue = l.catPath
	for i := range 12 {
		dir := filepath.Join(cfg.DataDir, "negatives", "cam")
		os.MkdirAll(dir, 0o755)
		writeSurface(t, filepath.Join(dir, fmt.Sprintf("20260501T1200%02d.000-%06d-v1.png", i, i)), l.r)
	}
	// The registry: v1 fails everything, v2 passes everything; v1 serves.
	reg, err := registry.Open(testenv.Logger(t), cfg.Registry, registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	release, err := reg.Lock()
	if err != nil {
		t.Fatal(err)
	}
	writeModel(t, filepath.Join(root, "m1"), 0)
	writeModel(t, filepath.Join(root, "m2"), 1)
	v1, err := reg.Import(filepath.Join(root, "m1"))
	if err == nil {
		_, err = reg.Import(filepath.Join(root, "m2"))
	}
	if err == nil {
		err = reg.Promote(v1)
	}
	release()
	if err != nil {
		t.Fatal(err)
	}
	if o.mutate != nil {
		o.mutate(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	l.cfg = cfg
	l.sub = mosquittotest.Subscribe(t, broker.URL(), "plc", "diagd/line1/#")
	if l.d, err = daemon.New(testenv.Logger(t), cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.d.Run(ctx) }()
	var once sync.Once
	l.stop = func() time.Duration {
		start := time.Now()
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("daemon: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("the daemon did not stop within 30 s")
			}
		})
		return time.Since(start)
	}
	t.Cleanup(func() { l.stop() })
	deadline := time.Now().Add(10 * time.Second)
	for l.d.HTTPAddr() == "" {
		if time.Now().After(deadline) {
			t.Fatal("HTTP server not started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	l.base = "http://" + l.d.HTTPAddr()
	return l
}

// drop puts one frame into the watched folder (renamed in whole, as a camera's
// upload would appear) and returns its name.
func (l *line) drop() string {
	l.t.Helper()
	name := fmt.Sprintf("frame-%05d.png", l.n)
	l.n++
	tmp := filepath.Join(l.stage, name)
	writeSurface(l.t, tmp, l.r)
	if err := os.Rename(tmp, filepath.Join(l.watched, name)); err != nil {
		l.t.Fatal(err)
	}
	return name
}

// verdict waits for the PLC-side subscriber to receive the verdict of frame name.
func (l *line) verdict(name string) mqtt.Verdict {
	l.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range l.sub.Snapshot() {
			if m.Topic != "diagd/line1/verdict" {
				continue
			}
			var v mqtt.Verdict
			if json.Unmarshal([]byte(m.Payload), &v) == nil && v.FrameID == name {
				return v
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	l.t.Fatalf("no verdict for %s over MQTT", name)
	return mqtt.Verdict{}
}

// event waits for an events/<kind> message with phase finish and returns it.
func (l *line) finished(kind string, after time.Time) map[string]any {
	l.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range l.sub.Snapshot() {
			if m.Topic != "diagd/line1/events/"+kind || m.At.Before(after) {
				continue
			}
			var ev map[string]any
			if json.Unmarshal([]byte(m.Payload), &ev) == nil && ev["phase"] == "finish" {
				return ev
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	l.t.Fatalf("no finished %s event", kind)
	return nil
}

// waitFails waits until the console lists n kept failed frames.
func (l *line) waitFails(n int) {
	l.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var fs []console.Fail
		if resp, err := http.Get(l.base + "/api/fails"); err == nil {
			json.NewDecoder(resp.Body).Decode(&fs)
			resp.Body.Close()
		}
		if len(fs) >= n {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	l.t.Fatalf("the console never listed %d failed frames", n)
}
