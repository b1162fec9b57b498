package daemon

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/mosquittotest"
	"github.com/diagd/diagd/internal/testenv"
	"github.com/diagd/diagd/retrain"
	"github.com/diagd/diagd/retrain/fullnet"
	"github.com/diagd/diagd/retrain/registry"
)

// DIAGD_TRAINABLE=all trains every layer in the daemon's retraining job, with epoch,
// step, loss and ETA in its progress events. A daemon stopped in the middle of that run
// (a restart) continues it at its next cycle: generation is skipped, so no new images
// change the data, and training picks up after the last checkpointed epoch.
func TestCycleResumesInterruptedRetraining(t *testing.T) {
	testenv.ORT(t)
	b := mosquittotest.Start(t)
	sub := subscribe(t, b.URL(), "plc-1", "diagd/line1/#")
	s := newJobSetup(t, b.URL(), 24, goodCatalogue)
	r0 := rand.New(rand.NewPCG(5, 6))
	for i := range 24 {
		writeSpot(t, filepath.Join(s.cfg.DataDir, "defects", fmt.Sprintf("spot-%03d.png", i)), r0)
	}
	s.cfg.Trainable, s.cfg.PromoteTolerance, s.cfg.PromoteMinDefects = "all", 1, 5

	reached, proceed := make(chan struct{}), make(chan struct{})
	var once sync.Once
	r := startWith(t, s.cfg, func(d *Daemon) {
		d.jobs.retrainProgress = func(p retrain.Progress) {
			if p.Epoch == 3 {
				once.Do(func() { close(reached); <-proceed }) // paused in epoch 3: epochs 1 and 2 are checkpointed
			}
		}
	})
	sub.WaitFor(t, 20*time.Second, "model v1 served", func(ms []msg) bool { return strings.Contains(last(ms, modelStateTopic), `"version":"v1"`) })
	sub.Publish(t, cmdTopic+"retrain", `{}`)
	select {
	case <-reached:
	case <-time.After(60 * time.Second):
		t.Fatal("retraining did not reach epoch 3")
	}
	r.cancel()
	close(proceed)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	checkEpochProgress(t, sub.Snapshot()) // the stopped daemon's last events may not have gone out
	if _, ok := retrain.InterruptedRun(s.cfg.Registry); !ok {
		t.Fatal("the stop left no run to continue")
	}
	before := len(sub.Snapshot())

	start(t, s.cfg)
	loaded := catalogueApplied(t)
	sub.WaitFor(t, 10*time.Second, "catalogue loaded", func(ms []msg) bool { return loaded(ms[before:]) })
	sub.Publish(t, cmdTopic+"cycle", `{"n":4,"generator":"memseg"}`)
	ms := sub.WaitFor(t, 90*time.Second, "cycle finished", func(ms []msg) bool { return finishOf(t, ms[before:], "cycle") != nil })[before:]
	if len(events(t, ms, "augment")) != 0 {
		t.Errorf("the cycle generated images instead of finishing the interrupted run: %v", events(t, ms, "augment"))
	}
	rf := finishOf(t, ms, "retrain")
	if rf == nil || rf["version"] != "v2" {
		t.Fatalf("resumed retraining: %v", rf)
	}
	m, err := detect.ReadMetadata(filepath.Join(s.cfg.Registry, registry.ModelsDir, "v2"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Training["trainable"] != "all" || m.Training["resumed_after_epoch"] != float64(2) {
		t.Errorf("v2 trained %v, resumed after epoch %v; want all, 2", m.Training["trainable"], m.Training["resumed_after_epoch"])
	}
	if _, err := os.Stat(filepath.Join(s.cfg.Registry, retrain.RunDirName)); !os.IsNotExist(err) {
		t.Errorf("the finished run left its folder (%v)", err)
	}
}

// checkEpochProgress: training progress events carry the epoch of 30 (the paper's
// recipe), the loss and an ETA; the choice of what to train is an event too.
func checkEpochProgress(t *testing.T, ms []msg) {
	t.Helper()
	var train, choose int
	for _, e := range events(t, ms, "retrain") {
		switch e["phase"] {
		case "train":
			if _, ok := e["epoch"]; !ok {
				continue
			}
			train++
			if e["epochs"] != float64(fullnet.Config{}.WithDefaults().Epochs) || e["loss"] == nil || e["eta_s"] == nil {
				t.Errorf("training progress event without epochs, loss or ETA: %v", e)
			}
		case "choose":
			if strings.Contains(fmt.Sprint(e["message"]), "trainable all: as asked") {
				choose++
			}
		}
	}
	if train == 0 || choose == 0 {
		t.Errorf("%d training progress events with epochs, %d choice events", train, choose)
	}
}
