package daemon

// The defect catalogue in force for the jobs: loaded at start, reloaded on edit (and on
// SIGHUP or the reload command), the last good version kept when an edit is invalid.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/diagd/diagd/augment/catalogue"
)

// watchCatalogue keeps the last good catalogue in force. An invalid (or missing)
// catalogue at start does not stop the daemon: it is reported and retried every few
// seconds (or at once on a reload) until it loads, then watched for edits.
func (j *jobs) watchCatalogue(ctx context.Context) {
	path := j.d.cfg.Catalogue
	if path == "" {
		return
	}
	lastBad := ""
	for {
		w, err := catalogue.Watch(ctx, path, catalogue.WatchOptions{Log: j.d.log, OnEvent: j.onCatalogueEvent})
		if err == nil {
			j.watcher.Store(w)
			j.onCatalogueEvent(catalogue.Event{Time: time.Now(), File: path, Catalogue: w.Current()})
			<-ctx.Done()
			j.watcher.Store(nil)
			w.Close()
			return
		}
		if msg := err.Error(); msg != lastBad {
			lastBad = msg
			j.d.log.Error("defect catalogue not loaded; frames are still judged, jobs that need it wait", "file", path, "err", err)
			j.onCatalogueEvent(catalogue.Event{Time: time.Now(), File: path, Err: err})
		}
		select {
		case <-ctx.Done():
			return
		case <-j.catKick:
		case <-time.After(2 * time.Second):
		}
	}
}

// reloadCatalogue re-reads the catalogue now (SIGHUP, the reload command), even when no
// file event says it changed (a file on a network share, a missed event).
func (j *jobs) reloadCatalogue() {
	if j.d.cfg.Catalogue == "" {
		return
	}
	if w := j.watcher.Load(); w != nil {
		w.Reload()
		return
	}
	select {
	case j.catKick <- struct{}{}:
	default:
	}
}

// onCatalogueEvent publishes an applied edit (retained state + event) or a rejected one
// (event with file:line:col problems; the last good catalogue stays).
func (j *jobs) onCatalogueEvent(e catalogue.Event) {
	if e.Applied() {
		c := e.Catalogue
		j.cat.Store(c)
		prompts := 0
		kinds := make([]string, 0, len(c.Kinds))
		for _, k := range c.Kinds {
			kinds = append(kinds, k.Name)
			prompts += len(k.Prompts)
		}
		j.d.log.Info("defect catalogue in force", "file", c.Path, "kinds", kinds, "digest", c.Digest)
		j.d.client.SetState("catalogue", catalogueState{File: c.Path, Kinds: kinds, Prompts: prompts,
			Digest: c.Digest, LoadedAt: e.Time.UTC()})
		j.d.client.Event("config", configEvent{File: c.Path, OK: true, Kinds: kinds, Digest: c.Digest})
		return
	}
	if e.Err == nil {
		return
	}
	var problems []string
	for _, p := range e.Problems() {
		problems = append(problems, p.Error())
	}
	if len(problems) == 0 {
		problems = []string{e.Err.Error()}
	}
	if j.cat.Load() == nil {
		j.setCatProblem(fmt.Sprintf("the defect catalogue %s is invalid and none was loaded before: %s", e.File, e.Err))
	} else {
		j.d.log.Error("defect catalogue edit rejected; the last good catalogue stays in force", "file", e.File, "err", e.Err)
	}
	kept := j.cat.Load() != nil
	j.d.client.Event("config", configEvent{File: e.File, OK: false, Problems: problems, KeptLastGood: &kept})
}

// catalogue returns the catalogue in force, or why there is none.
func (j *jobs) catalogue() (*catalogue.Catalogue, error) {
	if c := j.cat.Load(); c != nil {
		return c, nil
	}
	return nil, errors.New(*j.catProblem.Load())
}

func (j *jobs) setCatProblem(why string) { j.catProblem.Store(&why) }
