package daemon

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/detect"
)

// notify sends a message to systemd's notification socket (Type=notify). Without
// NOTIFY_SOCKET (not under systemd) it does nothing.
func notify(state string) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return
	}
	if path[0] == '@' {
		path = "\x00" + path[1:] // abstract socket
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return
	}
	defer conn.Close()
	conn.Write([]byte(state))
}

// watchdogInterval is half of systemd's WatchdogSec, or 0 when the watchdog is off.
func watchdogInterval() time.Duration {
	usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 {
		return 0
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0
	}
	return time.Duration(usec) * time.Microsecond / 2
}

// maxProbeWait bounds how long a health check waits for the model's answer to a probe.
const maxProbeWait = 10 * time.Second

// defaultLivenessWindow is how fresh the evidence of life must be for /livez when
// systemd's watchdog is off: the unit's WatchdogSec.
const defaultLivenessWindow = 30 * time.Second

// livenessWindow is how fresh the evidence of life must be: systemd's WatchdogSec when
// it runs the watchdog, else defaultLivenessWindow. /livez and the watchdog use it
// alike, so /livez says "not live" exactly when systemd would restart diagd.
func livenessWindow() time.Duration {
	if every := watchdogInterval(); every > 0 {
		return 2 * every
	}
	return defaultLivenessWindow
}

// watchdog pets systemd's watchdog only while the daemon does its job (see healthy). A
// hung judge loop or a wedged GPU stops the pets and systemd restarts the service.
func (d *Daemon) watchdog(ctx context.Context) {
	every := watchdogInterval()
	if every == 0 {
		return
	}
	periodically(ctx, every, func() {
		if ok, why := d.healthy(); ok {
			notify("WATCHDOG=1")
		} else {
			d.log.Error("watchdog not petted", "reason", why)
		}
	})
}

// healthCache holds the last health verdict briefly, so /livez polled often does not
// run the model each time, and the one probe allowed in flight.
type healthCache struct {
	mu      sync.Mutex
	at      time.Time
	ok      bool
	why     string
	probing atomic.Bool // a probe is running (it may hang with the model)
	probeAt atomic.Int64
}

// healthy is the one test of life, for the watchdog and /livez: the judge loop turns
// (it ticks every second even without frames, and while it holds verdicts for a full
// outbox), and the model answers (a model call succeeded within the window, or a probe
// on a grey frame does, within half of it).
func (d *Daemon) healthy() (bool, string) {
	h := &d.health
	h.mu.Lock()
	defer h.mu.Unlock()
	if time.Since(h.at) < time.Second && !h.at.IsZero() {
		return h.ok, h.why
	}
	h.ok, h.why = d.checkHealth(livenessWindow())
	h.at = time.Now()
	return h.ok, h.why
}

func (d *Daemon) checkHealth(window time.Duration) (bool, string) {
	if since := time.Since(time.Unix(0, d.beat.Load())); since > window {
		return false, fmt.Sprintf("judge loop stuck (no turn for %s)", since.Round(time.Second))
	}
	if _, ok := d.det.Metadata(); !ok {
		return true, "" // no model yet: nothing to wedge
	}
	if time.Since(time.Unix(0, d.lastJudge.Load())) <= window {
		return true, ""
	}
	if err := d.probeModel(min(window/2, maxProbeWait)); err != nil {
		return false, "model does not answer: " + err.Error()
	}
	return true, ""
}

// probeModel runs the model on a small grey frame to see that it still answers within
// timeout. Only one probe runs at a time: a model that hangs holds one, not one per
// check.
func (d *Daemon) probeModel(timeout time.Duration) error {
	h := &d.health
	if !h.probing.CompareAndSwap(false, true) {
		return fmt.Errorf("a probe has been waiting since %s", time.Unix(0, h.probeAt.Load()).UTC().Format(time.RFC3339))
	}
	h.probeAt.Store(time.Now().UnixNano())
	done := make(chan error, 1)
	go func() {
		defer h.probing.Store(false)
		m := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(128, 128, 128, 0), 64, 64, gocv.MatTypeCV8UC3)
		defer m.Close()
		res := make([]detect.Result, 1)
		err := d.callModel([]gocv.Mat{m}, res)
		if err == nil {
			err = res[0].Err
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			d.lastJudge.Store(time.Now().UnixNano())
		}
		return err
	case <-time.After(timeout):
		return fmt.Errorf("no answer within %s", timeout)
	}
}
