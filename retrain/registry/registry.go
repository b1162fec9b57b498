// Package registry keeps trained detectors as numbered versions and says which one
// serves:
//
//	<dir>/models/v<N>/      model.onnx, model.json, metrics.json, manifest.json
//	<dir>/current  -> models/v<N>   the serving model (a symlink)
//	<dir>/previous -> models/v<M>   what served before, for rollback
//	<dir>/decisions.jsonl           every promotion decision with its numbers
//
// A version folder appears by renaming a complete staging folder, and the pointers
// change by renaming a temporary symlink over them, each followed by an fsync of the
// parent folder. So a crash or power cut at any moment leaves current naming either
// the old complete model or the new complete model, never a half-written one.
package registry

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/atomicfile"
)

// File and folder names inside the registry.
const (
	ModelsDir     = "models"
	CurrentLink   = "current"
	PreviousLink  = "previous"
	DecisionsFile = "decisions.jsonl"
	MetricsFile   = "metrics.json"
	ManifestFile  = "manifest.json"

	stagingPrefix = ".staging-"
	trashPrefix   = ".trash-"
)

var versionName = regexp.MustCompile(`^v([0-9]+)$`)

// ErrNoCurrent is returned when no version serves yet.
var ErrNoCurrent = errors.New("no current model")

// Options configure a registry.
type Options struct {
	// Keep is how many versions Prune keeps besides current and previous (default 5).
	Keep int
	// CrashHook, when set, is called at each step of a change with the step's name.
	// Tests use it to kill the process there and check what a crash leaves behind.
	CrashHook func(point string)
}

// Registry is a registry folder. Changes (Stage, Commit, Promote, Rollback, Prune,
// Import, LogDecision) must be made while holding Lock; reads need no lock.
type Registry struct {
	Dir  string
	log  *slog.Logger
	o    Options
	hook func(string)
}

// Open opens (creating if needed) a registry folder. Reading needs nothing more;
// changing it needs Lock.
func Open(log *slog.Logger, dir string, o Options) (*Registry, error) {
	if o.Keep <= 0 {
		o.Keep = 5
	}
	r := &Registry{Dir: dir, log: log, o: o, hook: o.CrashHook}
	if r.hook == nil {
		r.hook = func(string) {}
	}
	if err := os.MkdirAll(filepath.Join(dir, ModelsDir), 0o755); err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	return r, nil
}

// ErrLocked is returned by Lock when another process is changing the registry.
var ErrLocked = errors.New("registry is locked by another process")

// Lock takes the registry's exclusive lock (an flock on <dir>/.lock, which the kernel
// releases when the holder dies, so a crash never leaves it stuck) and removes what
// interrupted changes left behind: staging and trash folders, temporary links. Call
// the returned function to release it.
func (r *Registry) Lock() (release func(), err error) {
	f, err := os.OpenFile(filepath.Join(r.Dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w (another diagd train or models command is running)", r.Dir, ErrLocked)
		}
		return nil, fmt.Errorf("registry lock: %w", err)
	}
	release = func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}
	if err := r.recover(); err != nil {
		release()
		return nil, err
	}
	return release, nil
}

func (r *Registry) recover() error {
	ents, err := os.ReadDir(filepath.Join(r.Dir, ModelsDir))
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), stagingPrefix) || strings.HasPrefix(e.Name(), trashPrefix) {
			p := filepath.Join(r.Dir, ModelsDir, e.Name())
			r.log.Info("registry: removing what an interrupted change left", "path", p)
			if err := os.RemoveAll(p); err != nil {
				return fmt.Errorf("registry: %w", err)
			}
		}
	}
	top, err := os.ReadDir(r.Dir)
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	for _, e := range top {
		if strings.HasPrefix(e.Name(), ".link-") {
			os.Remove(filepath.Join(r.Dir, e.Name()))
		}
	}
	return nil
}

// Version is one version folder and what is known about it.
type Version struct {
	Name     string
	Dir      string
	Meta     *detect.Metadata
	Problem  error // why it cannot serve (missing or bad files); nil when complete
	Current  bool
	Previous bool
}

func (r *Registry) versionDir(name string) string { return filepath.Join(r.Dir, ModelsDir, name) }

// Check says why a model folder cannot serve: model.json missing or invalid, model.onnx
// missing or empty, external weight files missing.
func Check(dir string) (*detect.Metadata, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("model folder %s: %w", dir, err)
	}
	m, err := detect.ReadMetadata(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("model folder %s has no %s; a model without its metadata cannot be served (restore it, or delete the folder)", dir, detect.MetadataFile)
		}
		return nil, err
	}
	st, err := os.Stat(filepath.Join(dir, detect.ModelFile))
	switch {
	case err != nil:
		return &m, fmt.Errorf("model folder %s has no %s", dir, detect.ModelFile)
	case st.Size() == 0:
		return &m, fmt.Errorf("model folder %s: %s is empty (0 bytes)", dir, detect.ModelFile)
	}
	return &m, nil
}

// link reads a pointer; "" when it does not exist.
func (r *Registry) link(name string) (string, error) {
	t, err := os.Readlink(filepath.Join(r.Dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("registry %s: %s is not a symlink to a version (%w); fix it with 'diagd models promote VERSION'", r.Dir, name, err)
	}
	v := filepath.Base(t)
	if filepath.Clean(t) != filepath.Join(ModelsDir, v) || !versionName.MatchString(v) {
		return "", fmt.Errorf("registry %s: %s points to %q, not to %s/v<N>; fix it with 'diagd models promote VERSION'", r.Dir, name, t, ModelsDir)
	}
	return v, nil
}

// Current returns the serving version, checked complete. ErrNoCurrent when none was
// promoted yet; a dangling or broken pointer is a clear error.
func (r *Registry) Current() (Version, error) {
	v, err := r.link(CurrentLink)
	if err != nil {
		return Version{}, err
	}
	if v == "" {
		return Version{}, fmt.Errorf("registry %s: %w (promote one with 'diagd models promote VERSION')", r.Dir, ErrNoCurrent)
	}
	dir := r.versionDir(v)
	if _, err := os.Stat(dir); err != nil {
		return Version{}, fmt.Errorf("registry %s: current points to %s/%s, which does not exist (deleted by hand?); promote an existing version with 'diagd models promote VERSION'", r.Dir, ModelsDir, v)
	}
	m, err := Check(dir)
	if err != nil {
		return Version{}, fmt.Errorf("registry %s: current version %s is broken: %w", r.Dir, v, err)
	}
	return Version{Name: v, Dir: dir, Meta: m, Current: true}, nil
}

// CurrentDir resolves current to its version folder (models/v<N>), which is what the
// daemon should load: the folder's files never change, while the link may switch
// under a loaded model.
func (r *Registry) CurrentDir() (string, error) {
	v, err := r.Current()
	if err != nil {
		return "", err
	}
	return v.Dir, nil
}

// List returns every version, oldest first, and problems found in the folder (unknown
// entries, broken versions, dangling pointers), worded for a person.
func (r *Registry) List() ([]Version, []string, error) {
	ents, err := os.ReadDir(filepath.Join(r.Dir, ModelsDir))
	if err != nil {
		return nil, nil, fmt.Errorf("registry: %w", err)
	}
	var problems []string
	cur, cerr := r.link(CurrentLink)
	if cerr != nil {
		problems = append(problems, cerr.Error())
	}
	prev, perr := r.link(PreviousLink)
	if perr != nil {
		problems = append(problems, perr.Error())
	}
	var vs []Version
	names := map[string]bool{}
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		if !e.IsDir() || !versionName.MatchString(name) {
			problems = append(problems, fmt.Sprintf("%s: not a version folder (want v<N>); left alone", filepath.Join(r.Dir, ModelsDir, name)))
			continue
		}
		names[name] = true
		v := Version{Name: name, Dir: r.versionDir(name), Current: name == cur, Previous: name == prev}
		v.Meta, v.Problem = Check(v.Dir)
		if v.Problem != nil {
			problems = append(problems, v.Problem.Error())
		}
		vs = append(vs, v)
	}
	for _, l := range []struct{ link, v string }{{CurrentLink, cur}, {PreviousLink, prev}} {
		if l.v != "" && !names[l.v] {
			problems = append(problems, fmt.Sprintf("%s points to %s/%s, which does not exist", l.link, ModelsDir, l.v))
		}
	}
	sort.Slice(vs, func(i, j int) bool { return seq(vs[i].Name) < seq(vs[j].Name) })
	return vs, problems, nil
}

func seq(name string) int {
	m := versionName.FindStringSubmatch(name)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// NextVersion is v<N+1> for the highest N present (v1 in an empty registry).
func (r *Registry) NextVersion() (string, error) {
	ents, err := os.ReadDir(filepath.Join(r.Dir, ModelsDir))
	if err != nil {
		return "", fmt.Errorf("registry: %w", err)
	}
	top := 0
	for _, e := range ents {
		top = max(top, seq(strings.TrimPrefix(e.Name(), stagingPrefix)))
	}
	return "v" + strconv.Itoa(top+1), nil
}

// Stage creates an empty staging folder for a new version; fill it and call Commit.
func (r *Registry) Stage(version string) (string, error) {
	if !versionName.MatchString(version) {
		return "", fmt.Errorf("registry: version %q is not v<N>", version)
	}
	if _, err := os.Stat(r.versionDir(version)); err == nil {
		return "", fmt.Errorf("registry: version %s already exists", version)
	}
	dir := filepath.Join(r.Dir, ModelsDir, stagingPrefix+version)
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", fmt.Errorf("registry: %w", err)
	}
	return dir, nil
}

// Commit checks a staging folder is a complete model and renames it into place.
func (r *Registry) Commit(staging, version string) (string, error) {
	if filepath.Base(staging) != stagingPrefix+version {
		return "", fmt.Errorf("registry: %s is not the staging folder of %s", staging, version)
	}
	if _, err := Check(staging); err != nil {
		return "", fmt.Errorf("registry: candidate %s is incomplete: %w", version, err)
	}
	if err := r.shareBlobs(staging); err != nil {
		return "", err
	}
	if err := atomicfile.SyncDir(staging); err != nil {
		return "", err
	}
	r.hook("staged")
	dst := r.versionDir(version)
	if err := os.Rename(staging, dst); err != nil {
		return "", fmt.Errorf("registry: %w", err)
	}
	r.hook("renamed")
	if err := atomicfile.SyncDir(filepath.Join(r.Dir, ModelsDir)); err != nil {
		return "", err
	}
	r.hook("committed")
	return dst, nil
}

// setLink points name at models/<version> by renaming a fresh temporary symlink over it.
func (r *Registry) setLink(name, version string) error {
	tmp := filepath.Join(r.Dir, fmt.Sprintf(".link-%s-%d", name, time.Now().UnixNano()))
	if err := os.Symlink(filepath.Join(ModelsDir, version), tmp); err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	r.hook(name + "-link-created")
	if err := os.Rename(tmp, filepath.Join(r.Dir, name)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("registry: %w", err)
	}
	r.hook(name + "-renamed")
	if err := atomicfile.SyncDir(r.Dir); err != nil {
		return err
	}
	r.hook(name + "-synced")
	return nil
}

// Promote makes version serve. The version must be complete; previous is set to what
// served before (unless that is the same version).
func (r *Registry) Promote(version string) error {
	dir := r.versionDir(version)
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("registry: version %s does not exist in %s", version, filepath.Join(r.Dir, ModelsDir))
	}
	if _, err := Check(dir); err != nil {
		return fmt.Errorf("registry: refusing to promote %s: %w", version, err)
	}
	old, err := r.link(CurrentLink)
	if err != nil {
		r.log.Warn("registry: replacing a broken current pointer", "err", err.Error())
		old = ""
	}
	if old == version {
		return nil
	}
	// current first: a crash between the two leaves previous stale, never current wrong.
	if err := r.setLink(CurrentLink, version); err != nil {
		return err
	}
	if old != "" {
		if _, err := os.Stat(r.versionDir(old)); err == nil {
			if err := r.setLink(PreviousLink, old); err != nil {
				return err
			}
		}
	}
	r.hook("promoted")
	return nil
}

// Rollback makes previous serve again (and the rolled-back version previous).
func (r *Registry) Rollback() (from, to string, err error) {
	prev, err := r.link(PreviousLink)
	if err != nil {
		return "", "", err
	}
	if prev == "" {
		return "", "", fmt.Errorf("registry %s: nothing to roll back to (no previous version recorded)", r.Dir)
	}
	cur, _ := r.link(CurrentLink)
	if prev == cur {
		return "", "", fmt.Errorf("registry %s: previous is the current version %s; nothing to roll back to", r.Dir, cur)
	}
	if err := r.Promote(prev); err != nil {
		return "", "", err
	}
	return cur, prev, nil
}

// Prune deletes the oldest versions beyond Keep, never current, previous, or a folder
// that is not v<N>. Each goes to a trash name first so a crash leaves no half-deleted
// version in the listing.
func (r *Registry) Prune() ([]string, error) {
	vs, _, err := r.List()
	if err != nil {
		return nil, err
	}
	cur, _ := r.link(CurrentLink)
	prev, _ := r.link(PreviousLink)
	var removed []string
	kept := 0
	for i := len(vs) - 1; i >= 0; i-- {
		v := vs[i]
		if v.Name == cur || v.Name == prev {
			continue
		}
		if kept < r.o.Keep {
			kept++
			continue
		}
		trash := filepath.Join(r.Dir, ModelsDir, trashPrefix+v.Name)
		if err := os.Rename(v.Dir, trash); err != nil {
			return removed, fmt.Errorf("registry: %w", err)
		}
		if err := atomicfile.SyncDir(filepath.Join(r.Dir, ModelsDir)); err != nil {
			return removed, err
		}
		r.hook("pruning")
		if err := os.RemoveAll(trash); err != nil {
			return removed, fmt.Errorf("registry: %w", err)
		}
		removed = append(removed, v.Name)
		r.log.Info("registry: pruned old version", "version", v.Name)
	}
	return removed, nil
}

// Decision is one promotion decision, logged with its numbers.
type Decision struct {
	Time time.Time `json:"time"`
	// Action: promote, reject, no-decision (too few validation defects), hold (passes
	// but promotion was not requested), rollback, manual-promote.
	Action        string   `json:"action"`
	Candidate     string   `json:"candidate,omitempty"`
	Serving       string   `json:"serving,omitempty"` // the version serving when decided
	CandidateAP   *float64 `json:"candidate_ap,omitempty"`
	ServingAP     *float64 `json:"serving_ap,omitempty"`
	Tolerance     float64  `json:"tolerance"`
	Validation    string   `json:"validation,omitempty"`
	ValImages     int      `json:"validation_images,omitempty"`
	ValPositives  int      `json:"validation_positives,omitempty"`
	RealDefects   int      `json:"validation_real_defects"`
	Threshold     float64  `json:"threshold,omitempty"`
	ThresholdRule string   `json:"threshold_rule,omitempty"`
	// The gate's settings and numbers (see retrain/gate): its confidence, the fewest
	// validation defects it decides on, AP(candidate) − AP(serving) with its bootstrap
	// interval, the upper end of the candidate AP's chance band, the share of validation
	// goods the candidate's threshold fails, and the health flags that refused it.
	Confidence    float64   `json:"confidence,omitempty"`
	MinDefects    int       `json:"min_defects,omitempty"`
	APDiff        *Interval `json:"ap_diff,omitempty"`
	ChanceAPUpper *float64  `json:"chance_ap_upper,omitempty"`
	GoodFail      *float64  `json:"good_fail_share,omitempty"`
	Flags         []string  `json:"flags,omitempty"`
	// NotConverged says why the trainer's optimiser stopped short of convergence.
	NotConverged string `json:"not_converged,omitempty"`
	Reason       string `json:"reason"`
}

// Interval is a difference with its confidence interval.
type Interval struct {
	Diff       float64 `json:"diff"`
	Lower      float64 `json:"lower"`
	Upper      float64 `json:"upper"`
	Confidence float64 `json:"confidence"`
	Replicates int     `json:"replicates"`
	Method     string  `json:"method"`
}

// LogDecision appends d to decisions.jsonl (fsynced) and to the log.
func (r *Registry) LogDecision(d Decision) error {
	if d.Time.IsZero() {
		d.Time = time.Now().UTC()
	}
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	attrs := []any{"action", d.Action, "candidate", d.Candidate, "serving", d.Serving, "tolerance", d.Tolerance,
		"validation_images", d.ValImages, "validation_positives", d.ValPositives, "reason", d.Reason}
	if len(d.Flags) > 0 {
		attrs = append(attrs, "flags", d.Flags)
	}
	if d.APDiff != nil {
		attrs = append(attrs, "ap_diff", d.APDiff.Diff, "ap_diff_lower", d.APDiff.Lower, "ap_diff_upper", d.APDiff.Upper)
	}
	if d.CandidateAP != nil {
		attrs = append(attrs, "candidate_ap", *d.CandidateAP)
	}
	if d.ServingAP != nil {
		attrs = append(attrs, "serving_ap", *d.ServingAP)
	}
	r.log.Info("model promotion decision", attrs...)
	f, err := os.OpenFile(filepath.Join(r.Dir, DecisionsFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("registry: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("registry: %w", err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	r.hook("decision-logged")
	return atomicfile.SyncDir(r.Dir)
}

// Decisions reads the decision log; a torn last line (a crash mid-append) is skipped.
func (r *Registry) Decisions() ([]Decision, error) {
	f, err := os.Open(filepath.Join(r.Dir, DecisionsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ds []Decision
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for line := 1; sc.Scan(); line++ {
		var d Decision
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			r.log.Warn("registry: skipping unreadable decision line", "file", DecisionsFile, "line", line, "err", err.Error())
			continue
		}
		ds = append(ds, d)
	}
	return ds, sc.Err()
}

// Import copies a model folder (model.onnx, model.json and any side files) into the
// registry as a new version, recording where it came from. It does not promote it.
func (r *Registry) Import(src string) (string, error) {
	return r.ImportFunc(src, nil)
}

// ImportFunc is Import with the model files written by writeModel into the staging
// folder (nil copies every file of src but model.json); model.json is written here.
// retrain uses it to store imported models in the shared-backbone form.
func (r *Registry) ImportFunc(src string, writeModel func(stagingDir string) error) (string, error) {
	meta, err := Check(src)
	if err != nil {
		return "", err
	}
	v, err := r.NextVersion()
	if err != nil {
		return "", err
	}
	st, err := r.Stage(v)
	if err != nil {
		return "", err
	}
	if writeModel == nil {
		writeModel = func(dst string) error { return copyModelFiles(src, dst) }
	}
	if err := writeModel(st); err != nil {
		os.RemoveAll(st)
		return "", err
	}
	m := *meta
	if m.Training == nil {
		m.Training = map[string]any{}
	}
	m.Training["imported_from"] = map[string]any{"dir": src, "model_version": meta.ModelVersion}
	m.ModelVersion = v
	if err := detect.WriteMetadata(st, m); err != nil {
		return "", err
	}
	if _, err := r.Commit(st, v); err != nil {
		return "", err
	}
	return v, nil
}

// copyModelFiles copies a model folder's files but model.json (and hidden ones).
func copyModelFiles(src, dst string) error {
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.IsDir() || e.Name() == detect.MetadataFile || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if err := copyFile(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	b, err := os.Open(src)
	if err != nil {
		return err
	}
	defer b.Close()
	return atomicfile.Write(dst, 0o644, func(w io.Writer) error {
		_, err := io.Copy(w, b)
		return err
	})
}
