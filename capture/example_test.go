package capture_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/diagd/diagd/capture"
)

// How the daemon drives the sources: one channel for all cameras; Done after the
// verdict is durable.
func Example() {
	ctx := context.Background()
	log := slog.Default()
	cfgs, err := capture.ParseSources(os.Getenv("DIAGD_SOURCES"))
	if err != nil {
		log.Error("DIAGD_SOURCES", "err", err)
		return
	}
	frames := make(chan capture.Frame, 16)
	sources := map[string]capture.Source{}
	for _, c := range cfgs {
		if c.StateDir == "" {
			c.StateDir = filepath.Join("/var/lib/diagd", "capture") // keep-mode journals
		}
		src, err := capture.New(log, c, capture.Hooks{
			OnState: func(s capture.Status) { /* publish <prefix>/state/camera/<name> retained */ },
		})
		if err != nil {
			log.Error("camera", "err", err)
			return
		}
		sources[c.Name] = src
		go src.Run(ctx, frames)
	}
	// A PLC's {camera, partId} on <prefix>/cmd/trigger: sources[camera].Trigger(partId).
	for f := range frames {
		// judge f.Mat, write the verdict to the outbox (messageid from f.Key when set) ...
		f.Mat.Close()
		if f.Done != nil {
			f.Done(true)
		}
	}
}
