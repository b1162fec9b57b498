package daemon

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/diagd/diagd/capture"
	"github.com/diagd/diagd/mqtt"
)

var errBadCommand = errors.New("bad command")

// registerCommands wires the MQTT commands the daemon answers. Each handler runs with a
// panic turned into its error result.
func (d *Daemon) registerCommands() {
	d.registerJobCommands() // augment, retrain, cycle
	d.handle("trigger", mqtt.ScopeOperate, d.cmdTrigger)
	d.handle("reload", mqtt.ScopeModel, d.cmdReload)
	d.handle("status", mqtt.ScopeRead, d.cmdStatus)
}

// handle registers h for the command name, recovering its panics.
func (d *Daemon) handle(name string, scope mqtt.Scope, h mqtt.CommandHandler) {
	d.client.HandleCommand(name, scope, func(ctx context.Context, payload []byte) (out any, err error) {
		defer d.recovered("command "+name, &err)
		return h(ctx, payload)
	})
}

func (d *Daemon) cmdReload(context.Context, []byte) (any, error) {
	if err := d.loadModel(false); err != nil {
		return nil, err
	}
	d.jobs.reloadCatalogue()
	md, _ := d.det.Metadata()
	return reloadResult{ModelVersion: md.ModelVersion}, nil
}

func (d *Daemon) cmdStatus(context.Context, []byte) (any, error) {
	ready, why := d.Ready()
	res := statusResult{Ready: ready, NotReady: why, Cameras: []capture.Status{}, Outbox: d.ob.Stats()}
	for _, s := range d.sources {
		res.Cameras = append(res.Cameras, s.Status())
	}
	if md, ok := d.det.Metadata(); ok {
		res.Model = &md.ModelVersion
	}
	return res, nil
}

func (d *Daemon) cmdTrigger(_ context.Context, payload []byte) (any, error) {
	var req struct {
		Camera string `json:"camera"`
		PartID string `json:"partId"`
	}
	if err := decodeStrict(payload, &req); err != nil {
		return nil, fmt.Errorf("%w: trigger wants {\"camera\": NAME, \"partId\": ID}: %v", errBadCommand, err)
	}
	s, ok := d.byName[req.Camera]
	if !ok {
		names := make([]string, 0, len(d.byName))
		for n := range d.byName {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, fmt.Errorf("%w: unknown camera %q (cameras: %s)", errBadCommand, clip(req.Camera, 64), strings.Join(names, ", "))
	}
	if err := s.Trigger(req.PartID); err != nil {
		return nil, err
	}
	return triggerResult{Camera: req.Camera, PartID: req.PartID, Queued: true}, nil
}

// clip shortens a string from outside before it is echoed in an answer or a log line.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
