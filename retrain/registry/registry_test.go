package registry

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/internal/testenv"
	"github.com/diagd/diagd/retrain/head"
	"github.com/diagd/diagd/retrain/rtest"
)

// Environment of the crash helper: the test binary re-executed as a separate process
// that runs one promotion and SIGKILLs itself at the named step.
const (
	envCrashAt  = "DIAGD_TEST_CRASH_AT"
	envRegistry = "DIAGD_TEST_REGISTRY"
	envModel    = "DIAGD_TEST_MODEL"
)

func TestMain(m *testing.M) {
	if point := os.Getenv(envCrashAt); point != "" {
		os.Exit(crashHelper(point))
	}
	os.Exit(m.Run())
}

// crashHelper does what retraining does to the registry (add a version, log the
// decision, promote, prune) and kills itself with SIGKILL at point: no deferred code,
// no flushing, as in a crash.
func crashHelper(point string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	hook := func(p string) {
		if p == point {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
	}
	r, err := Open(log, os.Getenv(envRegistry), Options{Keep: 1, CrashHook: hook})
	if err == nil {
		_, err = r.Lock() // released by the kernel when the process dies
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	v, err := r.Import(os.Getenv(envModel))
	if err == nil {
		err = r.LogDecision(Decision{Action: "promote", Candidate: v, Reason: "crash test"})
	}
	if err == nil {
		err = r.Promote(v)
	}
	if err == nil {
		_, err = r.Prune()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func open(t *testing.T, dir string) *Registry {
	t.Helper()
	r, err := Open(testenv.Logger(t), dir, Options{Keep: 1})
	if err != nil {
		t.Fatal(err)
	}
	release, err := r.Lock()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	return r
}

func TestLockIsExclusive(t *testing.T) {
	dir := t.TempDir()
	open(t, dir)
	r2, _ := Open(testenv.Logger(t), dir, Options{})
	if _, err := r2.Lock(); !errors.Is(err, ErrLocked) {
		t.Errorf("second lock: %v; want ErrLocked", err)
	}
}

// The crash points, in the order a promotion passes them. Before current's rename the
// old model must serve; from it on, the new one.
var crashPoints = []struct {
	point string
	isNew bool
}{
	{"blobs-shared", false}, {"staged", false}, {"renamed", false}, {"committed", false}, {"decision-logged", false},
	{"current-link-created", false}, {"current-renamed", true}, {"current-synced", true},
	{"previous-link-created", true}, {"previous-renamed", true}, {"previous-synced", true},
	{"promoted", true}, {"pruning", true},
}

func TestCrashAtEveryStepLeavesAServableModel(t *testing.T) {
	testenv.ORT(t)
	src := storedModel(t) // with a backbone side file, so versions share it
	for _, cp := range crashPoints {
		t.Run(cp.point, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "reg")
			r, err := Open(testenv.Logger(t), dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			release, err := r.Lock()
			if err != nil {
				t.Fatal(err)
			}
			for range 3 { // v1 serves; v2 and v3 are older candidates, one to prune
				if _, err := r.Import(src); err != nil {
					t.Fatal(err)
				}
			}
			if err := r.Promote("v1"); err != nil {
				t.Fatal(err)
			}
			release()
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), envCrashAt+"="+cp.point, envRegistry+"="+dir, envModel+"="+src)
			outb, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("helper was not killed at %s: %v\n%s", cp.point, err, outb)
			}
			r = open(t, dir) // locks again: the dead helper's lock is gone, its leftovers cleaned
			cur, err := r.Current()
			if err != nil {
				t.Fatalf("after a crash at %s: %v", cp.point, err)
			}
			want := "v1"
			if cp.isNew {
				want = "v4"
			}
			if cur.Name != want {
				t.Errorf("after a crash at %s current is %s; want %s", cp.point, cur.Name, want)
			}
			// Load through the link itself, as anything following "current" would.
			m, err := detect.LoadModel(testenv.Logger(t), filepath.Join(dir, CurrentLink), detect.Options{Session: ortenv.Options{Provider: ortenv.CPU}})
			if err != nil {
				t.Fatalf("after a crash at %s the current model does not load: %v", cp.point, err)
			}
			m.Close()
			vs, problems, err := r.List()
			if err != nil || len(problems) > 0 {
				t.Errorf("after a crash at %s: list problems %q, err %v", cp.point, problems, err)
			}
			for _, v := range vs {
				if v.Problem != nil {
					t.Errorf("after a crash at %s version %s is broken: %v", cp.point, v.Name, v.Problem)
				}
			}
			// The registry keeps working: a rerun of the same change completes.
			if _, err := r.Import(src); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// storedModel writes a stand-in detector in the storage form retraining writes: the
// backbone in a content-addressed side file.
func storedModel(t *testing.T) string {
	t.Helper()
	src := rtest.Model(t, filepath.Join(t.TempDir(), "model"), "stand-in", 3)
	dst := filepath.Join(t.TempDir(), "stored")
	os.MkdirAll(dst, 0o755)
	if err := head.Store(filepath.Join(src, detect.ModelFile), filepath.Join(dst, detect.ModelFile), "logit", "features"); err != nil {
		t.Fatal(err)
	}
	m, _ := detect.ReadMetadata(src)
	if err := detect.WriteMetadata(dst, m); err != nil {
		t.Fatal(err)
	}
	return dst
}

func blobOf(t *testing.T, dir string) os.FileInfo {
	t.Helper()
	b, _ := filepath.Glob(filepath.Join(dir, "backbone-*.bin"))
	if len(b) != 1 {
		t.Fatalf("%s holds side files %v; want one backbone", dir, b)
	}
	st, err := os.Stat(b[0])
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// Versions with the same backbone store it once (hard links), a pruned version takes
// none of the others' weights with it, and a hand-damaged copy is never linked.
func TestVersionsShareTheBackbone(t *testing.T) {
	testenv.ORT(t)
	src := storedModel(t)
	r := open(t, t.TempDir()) // Keep 1
	for range 3 {
		if _, err := r.Import(src); err != nil {
			t.Fatal(err)
		}
	}
	b1, b2, b3 := blobOf(t, r.versionDir("v1")), blobOf(t, r.versionDir("v2")), blobOf(t, r.versionDir("v3"))
	if !os.SameFile(b1, b2) || !os.SameFile(b1, b3) {
		t.Fatal("three versions of one backbone hold separate copies")
	}
	if err := r.Promote("v3"); err != nil {
		t.Fatal(err)
	}
	if removed, err := r.Prune(); err != nil || len(removed) != 1 || removed[0] != "v1" {
		t.Fatalf("prune: %v %v", removed, err)
	}
	m, err := detect.LoadModel(testenv.Logger(t), r.versionDir("v3"), detect.Options{Session: ortenv.Options{Provider: ortenv.CPU}})
	if err != nil {
		t.Fatalf("v3 after v1 was pruned: %v", err)
	}
	m.Close()
	// Damage v3's copy (all versions share it, so write a fresh, wrong file there):
	// the next import keeps its own copy rather than link to bad bytes.
	p := filepath.Join(r.versionDir("v3"), b3.Name())
	os.Remove(p)
	os.Remove(filepath.Join(r.versionDir("v2"), b3.Name()))
	os.WriteFile(p, make([]byte, b3.Size()), 0o644)
	if _, err := r.Import(src); err != nil {
		t.Fatal(err)
	}
	if os.SameFile(blobOf(t, r.versionDir("v4")), blobOf(t, r.versionDir("v3"))) {
		t.Error("a damaged side file was linked into a new version")
	}
}

func TestPromoteRollbackPrune(t *testing.T) {
	src := rtest.Model(t, filepath.Join(t.TempDir(), "model"), "stand-in", 3)
	r := open(t, filepath.Join(t.TempDir(), "reg"))
	if _, err := r.Current(); !errors.Is(err, ErrNoCurrent) {
		t.Fatalf("empty registry: %v; want ErrNoCurrent", err)
	}
	if _, _, err := r.Rollback(); err == nil {
		t.Fatal("rollback with no previous succeeded")
	}
	for range 4 {
		if _, err := r.Import(src); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range []string{"v1", "v3"} {
		if err := r.Promote(v); err != nil {
			t.Fatal(err)
		}
	}
	from, to, err := r.Rollback()
	if err != nil || from != "v3" || to != "v1" {
		t.Fatalf("rollback %s -> %s, %v; want v3 -> v1", from, to, err)
	}
	if cur, _ := r.Current(); cur.Name != "v1" {
		t.Fatalf("current %s after rollback", cur.Name)
	}
	removed, err := r.Prune()
	if err != nil {
		t.Fatal(err)
	}
	// Keep 1 besides current (v1) and previous (v3): v4 stays, v2 goes.
	if strings.Join(removed, ",") != "v2" {
		t.Errorf("pruned %v; want [v2]", removed)
	}
	vs, _, _ := r.List()
	var names []string
	for _, v := range vs {
		names = append(names, v.Name)
	}
	if strings.Join(names, ",") != "v1,v3,v4" {
		t.Errorf("versions %v; want v1,v3,v4", names)
	}
	if m, _ := detect.ReadMetadata(vs[2].Dir); m.ModelVersion != "v4" {
		t.Errorf("imported model_version %q; want v4", m.ModelVersion)
	}
}

// A decision with the gate's numbers survives the round trip through decisions.jsonl.
func TestDecisionRoundTrip(t *testing.T) {
	r := open(t, t.TempDir())
	ap, up, gf := 0.31, 0.35, 0.5
	d := Decision{Action: "reject", Candidate: "v2", Serving: "v1", CandidateAP: &ap, Confidence: 0.95, MinDefects: 10,
		APDiff:        &Interval{Diff: 0.02, Lower: -0.03, Upper: 0.07, Confidence: 0.95, Replicates: 2000, Method: "paired stratified bootstrap of AP"},
		ChanceAPUpper: &up, GoodFail: &gf, Flags: []string{"chance-level", "fails-good-parts"}, NotConverged: "iteration limit",
		Reason: "candidate AP is no better than chance"}
	if err := r.LogDecision(d); err != nil {
		t.Fatal(err)
	}
	ds, err := r.Decisions()
	if err != nil || len(ds) != 1 {
		t.Fatalf("%v %v", ds, err)
	}
	got := ds[0]
	if got.APDiff == nil || *got.APDiff != *d.APDiff || *got.ChanceAPUpper != up || *got.GoodFail != gf ||
		len(got.Flags) != 2 || got.NotConverged != d.NotConverged || got.MinDefects != 10 {
		t.Errorf("read back %+v", got)
	}
}

// Hand edits produce messages that say what is wrong and what to do.
func TestHandEditedRegistry(t *testing.T) {
	src := rtest.Model(t, filepath.Join(t.TempDir(), "model"), "stand-in", 3)
	dir := filepath.Join(t.TempDir(), "reg")
	r := open(t, dir)
	for range 3 {
		if _, err := r.Import(src); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Promote("v2"); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, ModelsDir, "v1", detect.MetadataFile))
	os.Mkdir(filepath.Join(dir, ModelsDir, "best-model"), 0o755)
	_, problems, err := r.List()
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(problems, "\n")
	for _, want := range []string{"v1 has no model.json", "best-model: not a version folder"} {
		if !strings.Contains(joined, want) {
			t.Errorf("problems %q lack %q", joined, want)
		}
	}
	if err := r.Promote("v1"); err == nil || !strings.Contains(err.Error(), "refusing to promote v1") {
		t.Errorf("promoting a version without model.json: %v", err)
	}
	// Current deleted by hand: dangling pointer.
	os.RemoveAll(filepath.Join(dir, ModelsDir, "v2"))
	if _, err := r.Current(); err == nil || !strings.Contains(err.Error(), "current points to models/v2, which does not exist") {
		t.Errorf("dangling current: %v", err)
	}
	// Current replaced by a plain folder.
	os.Remove(filepath.Join(dir, CurrentLink))
	os.Mkdir(filepath.Join(dir, CurrentLink), 0o755)
	if _, err := r.Current(); err == nil || !strings.Contains(err.Error(), "current is not a symlink") {
		t.Errorf("current as a folder: %v", err)
	}
	// Empty model file.
	os.Remove(filepath.Join(dir, CurrentLink))
	os.WriteFile(filepath.Join(dir, ModelsDir, "v3", detect.ModelFile), nil, 0o644)
	if err := r.Promote("v3"); err == nil || !strings.Contains(err.Error(), "model.onnx is empty") {
		t.Errorf("empty model: %v", err)
	}
	// A torn last decision line is skipped.
	r.LogDecision(Decision{Action: "reject", Reason: "x"})
	f, _ := os.OpenFile(filepath.Join(dir, DecisionsFile), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"action":"prom`)
	f.Close()
	ds, err := r.Decisions()
	if err != nil || len(ds) != 1 || ds[0].Action != "reject" {
		t.Errorf("decisions %v %v", ds, err)
	}
}
