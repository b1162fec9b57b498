package retrain

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/diagd/diagd/internal/imageio"
	"github.com/diagd/diagd/retrain/dataset"
)

// An unfinished run keeps its folder, <registry>/training, until it has decided: the data
// it trains and validates on (run.json) and the trainer's checkpoints. A run that resumes
// takes its data from run.json, not from the folders, so images added since (the
// negatives pool grows while the daemon judges) wait for the next run instead of
// discarding hours of training; a run that does not resume, or finds a file of that data
// changed or gone, starts over and says why.
const (
	RunDirName  = "training"
	runFile     = "run.json"
	runFormat   = 1
	maxRunBytes = 256 << 20 // run.json lists every image; beyond this it is not ours
)

// pinnedRun is run.json.
type pinnedRun struct {
	Format  int       `json:"format"`
	Started time.Time `json:"started"`
	// Options are the settings that chose the data; a resume with others starts over.
	Options    runOptions        `json:"options"`
	Mode       dataset.Mode      `json:"mode"`
	ValName    string            `json:"validation"`
	Train      []dataset.Item    `json:"train"`
	Val        []dataset.Item    `json:"val"`
	Skipped    []dataset.Skip    `json:"skipped"`
	Relabelled []string          `json:"relabelled"`
	Digests    map[string]string `json:"digests"` // sha256 of every image and mask file
}

type runOptions struct {
	Data, Synthetic, Val string
	N                    int
	ValFraction          float64
	Seed                 uint64
	Mode                 dataset.Mode
	Rule                 dataset.LabelRule
}

func (o DataDirOptions) runOptions() runOptions {
	return runOptions{Data: o.Data, Synthetic: o.Synthetic, Val: o.Val, N: o.N, ValFraction: o.ValFraction,
		Seed: o.Seed, Mode: o.Mode, Rule: o.Rule}
}

// InterruptedRun says whether the registry holds an unfinished run that a resuming run
// would continue, and describes it ("" and false when there is none).
func InterruptedRun(registry string) (string, bool) {
	p, err := readPinned(filepath.Join(registry, RunDirName))
	if err != nil {
		return "", false
	}
	return fmt.Sprintf("run started %s on %d training and %d validation images", p.Started.Format(time.RFC3339), len(p.Train), len(p.Val)), true
}

func readPinned(dir string) (*pinnedRun, error) {
	path := filepath.Join(dir, runFile)
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Size() > maxRunBytes {
		return nil, fmt.Errorf("%s is %d bytes (at most %d)", path, st.Size(), maxRunBytes)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var p pinnedRun
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if p.Format != runFormat {
		return nil, fmt.Errorf("%s has format %d; this diagd writes %d", path, p.Format, runFormat)
	}
	return &p, nil
}

// resumeData returns the interrupted run's data when it may be continued: same options,
// every file unchanged. why says why not (nil p), "" when there was no run to resume.
func resumeData(dir string, o DataDirOptions) (p *pinnedRun, why string) {
	p, err := readPinned(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ""
	}
	if err != nil {
		return nil, fmt.Sprintf("its record is unreadable (%v)", err)
	}
	if p.Options != o.runOptions() {
		return nil, fmt.Sprintf("the data options changed (was %+v, now %+v)", p.Options, o.runOptions())
	}
	for _, path := range sortedKeys(p.Digests) {
		d, err := imageio.FileDigest(path)
		if err != nil {
			return nil, fmt.Sprintf("%s cannot be read (%v)", path, err)
		}
		if d != p.Digests[path] {
			return nil, fmt.Sprintf("%s changed", path)
		}
	}
	return p, ""
}

// pin writes run.json for the data a run is about to train on.
func pin(dir string, o DataDirOptions, plan Plan, train, val *dataset.Set) error {
	p := pinnedRun{Format: runFormat, Started: time.Now().UTC().Truncate(time.Second), Options: o.runOptions(),
		Mode: plan.Mode, ValName: plan.ValName, Train: train.Items, Val: val.Items, Skipped: plan.Skipped,
		Relabelled: plan.Relabelled, Digests: map[string]string{}}
	for _, it := range append(append([]dataset.Item(nil), train.Items...), val.Items...) {
		for _, path := range []string{it.Path, it.Mask} {
			if path == "" || p.Digests[path] != "" {
				continue
			}
			d, err := imageio.FileDigest(path)
			if err != nil {
				continue // an unreadable image is skipped later, and reported there
			}
			p.Digests[path] = d
		}
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	return writeJSON(filepath.Join(dir, runFile), p)
}

// sets rebuilds the training and validation sets and the plan from run.json.
func (p *pinnedRun) sets(plan *Plan) (train, val *dataset.Set) {
	plan.Mode, plan.ValName, plan.Skipped, plan.Relabelled = p.Mode, p.ValName, p.Skipped, p.Relabelled
	train, val = &dataset.Set{Items: p.Train}, &dataset.Set{Items: p.Val}
	plan.Train, plan.Val = train.Summarize(), val.Summarize()
	return train, val
}

// runData decides where the run's data comes from: the interrupted run's when resuming
// allows it, else the folders (and any interrupted run is discarded, saying why).
func runData(log *slog.Logger, dir string, o DataDirOptions, plan *Plan) (train, val *dataset.Set, err error) {
	if o.Resume {
		p, why := resumeData(dir, o)
		if p != nil {
			log.Info("resuming the interrupted run on its data", "started", p.Started, "train", len(p.Train), "validation", len(p.Val))
			plan.Resumed = true
			train, val = p.sets(plan)
			return train, val, nil
		}
		if why != "" {
			log.Warn("an interrupted run cannot be resumed; starting over", "why", why)
			plan.StartOver = why
		}
	} else if _, err := os.Stat(filepath.Join(dir, runFile)); err == nil {
		log.Info("an interrupted run is discarded (resume not requested); starting over", "dir", dir)
		plan.StartOver = "resume was not requested"
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, nil, fmt.Errorf("removing the interrupted run: %w", err)
	}
	if train, val, err = assemble(o, plan); err != nil {
		return nil, nil, err
	}
	return train, val, pin(dir, o, *plan, train, val)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
