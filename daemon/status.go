package daemon

import (
	"context"
	"strings"
	"sync/atomic"
	"time"

	"github.com/diagd/diagd/capture"
)

// publishStatusLoop refreshes the retained per-camera state (fps, counters).
// It also logs a one-line summary, so whoever watches the terminal or the journal sees
// the station working without subscribing to MQTT.
func (d *Daemon) publishStatusLoop(ctx context.Context) {
	const every = 10 * time.Second
	periodically(ctx, every, func() {
		for _, s := range d.sources {
			d.publishCamera(s.Status())
		}
		pass, fail, unknown := d.tally.take()
		md, _ := d.det.Metadata()
		d.log.Info("verdicts in the last "+every.String(), "pass", pass, "fail", fail, "unknown", unknown,
			"outbox", d.ob.Stats().Records, "mqtt_connected", d.client.Connected(), "model_version", md.ModelVersion)
	})
}

// periodically calls fn every interval until ctx ends (the daemon's polling loops).
func periodically(ctx context.Context, interval time.Duration, fn func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

// tally counts verdicts between two summary lines.
type tally struct{ pass, fail, unknown atomic.Int64 }

func (t *tally) add(verdict string) {
	switch verdict {
	case "pass":
		t.pass.Add(1)
	case "fail":
		t.fail.Add(1)
	default:
		t.unknown.Add(1)
	}
}

func (t *tally) take() (pass, fail, unknown int64) {
	return t.pass.Swap(0), t.fail.Swap(0), t.unknown.Swap(0)
}

// Ready reports whether the station can do its job, and why not (never nil: /readyz
// says "reasons":[] when ready).
func (d *Daemon) Ready() (bool, []string) {
	why := []string{}
	if _, ok := d.det.Metadata(); !ok {
		why = append(why, "no detector model loaded ("+d.cfg.ModelDir+")")
	}
	streaming := false
	for _, s := range d.sources {
		if s.Status().State == capture.StateOnline {
			streaming = true
		}
	}
	if !streaming {
		why = append(why, "no camera online")
	}
	st := d.client.Status()
	if st.Outbox.Fault != "" {
		why = append(why, "outbox cannot store verdicts: "+st.Outbox.Fault)
	}
	if d.outboxFull.Load() {
		why = append(why, "outbox full")
	} else if !st.Connected && st.Outbox.NearFull {
		why = append(why, strings.TrimSuffix("MQTT down: "+st.LastError, ": ")+"; the outbox is near its limit")
	}
	if d.stopping.Load() {
		why = append(why, "stopping")
	}
	return len(why) == 0, why
}
