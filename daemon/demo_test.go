package daemon

import (
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/mosquittotest"
	"github.com/diagd/diagd/internal/testenv"
	"github.com/diagd/diagd/retrain/registry"
	"github.com/diagd/diagd/retrain/segdec"
)

// DIAGD_DEMO with no sources and no model: the daemon writes the simulated line's video,
// trains the demo detector (a segdec from random weights), and its verdicts fail exactly
// the scratched frames (every 4th of the looping 40-frame video).
func TestDemoJudgesTheSimulatedLine(t *testing.T) {
	testenv.ORT(t)
	b := mosquittotest.Start(t)
	sub := subscribe(t, b.URL(), "plc-demo", verdictTopic)
	cfg := testConfig(t, b.URL(), "unused=device:0")
	cfg.Demo, cfg.Sources = true, "" // the model folder testConfig names is empty too
	r := start(t, cfg)
	const n = 12
	vs := verdictsOf(t, sub.WaitFor(t, 600*time.Second, "demo verdicts", countVerdicts(t, verdictTopic, n)), verdictTopic)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	for _, v := range vs[:n] {
		seq, err := strconv.Atoi(v.FrameID)
		if err != nil {
			t.Fatalf("frame id %q", v.FrameID)
		}
		scratched := (seq-1)%40%4 == 3
		if (v.Verdict == "fail") != scratched || v.Error != "" {
			t.Errorf("frame %d (scratched %v): verdict %s score %.3f", seq, scratched, v.Verdict, v.Score)
		}
		if scratched && len(v.Defects) == 0 {
			t.Errorf("frame %d: a scratched frame's verdict says nothing of where the scratch is", seq)
		}
	}
	// The trained model serves from DIAGD_REGISTRY, where the console and retraining see it.
	m, err := detect.ReadMetadata(filepath.Join(cfg.Registry, registry.CurrentLink))
	if err != nil || m.Architecture != segdec.Architecture || m.Outputs.Segmentation == "" {
		t.Errorf("the registry's current model: %s %+v, %v; want the trained segdec", m.Architecture, m.Outputs, err)
	}
}
