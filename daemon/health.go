package daemon

import (
	"context"
	"net"
	"os"
	"strconv"
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

// watchdog pets systemd's watchdog only while the daemon does its job: the judge loop
// turns (it ticks every second even when no frame comes), and the model answers (a
// model call succeeded recently, or a probe on a blank frame succeeds). A hung judge
// loop or a wedged GPU stops the pets and systemd restarts the service.
func (d *Daemon) watchdog(ctx context.Context) {
	every := watchdogInterval()
	if every == 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if ok, why := d.healthy(2 * every); ok {
			notify("WATCHDOG=1")
		} else {
			d.log.Error("watchdog not petted", "reason", why)
		}
	}
}

// healthy is the watchdog's test; window is how fresh the evidence must be.
func (d *Daemon) healthy(window time.Duration) (bool, string) {
	if time.Since(time.Unix(0, d.beat.Load())) > window {
		return false, "judge loop stuck"
	}
	if _, ok := d.det.Metadata(); !ok {
		return true, "" // no model yet: nothing to wedge
	}
	if time.Since(time.Unix(0, d.lastJudge.Load())) <= window {
		return true, ""
	}
	if err := d.probeModel(); err != nil {
		return false, "model does not answer: " + err.Error()
	}
	return true, ""
}

// probeModel runs the model on a small grey frame to see that it still answers.
func (d *Daemon) probeModel() error {
	m := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(128, 128, 128, 0), 64, 64, gocv.MatTypeCV8UC3)
	defer m.Close()
	res := make([]detect.Result, 1)
	if err := d.det.Judge([]gocv.Mat{m}, res); err != nil {
		return err
	}
	d.lastJudge.Store(time.Now().UnixNano())
	return res[0].Err
}
