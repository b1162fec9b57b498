package layout

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/diagd/diagd/internal/testenv"
)

// The picture of the house (README, Layout): who may import whom inside the module.
// Each package's production imports (not its tests') must fall under its rule's "may";
// a package with no rule fails the test, so a new package is placed on purpose.
// Patterns: "x" is that package, "x/..." is x and everything under it.
var rules = []struct {
	pkg string
	may []string
}{
	// The ground floor: no diagd package at all, or only other ground.
	{"internal/atomicfile", nil},
	{"internal/imageio", nil},
	{"internal/imageops", nil},
	{"internal/half", nil},
	{"internal/ortenv", nil},
	{"internal/threadprio", nil},
	{"internal/onnx/onnxpb", nil},
	{"internal/onnx/build", []string{"internal/onnx/onnxpb", "internal/atomicfile"}},
	{"internal/onnx/zoo", []string{"internal/onnx/build", "internal/atomicfile", "internal/half"}},
	// Test helpers.
	{"internal/testenv", []string{"internal/ortenv"}},
	{"internal/mosquittotest", []string{"internal/testenv"}},
	{"internal/layout", nil},
	{"scripts", nil}, // its tests run setup.sh with a fake nvidia-smi
	// The rooms: each does one job and knows only the ground (and retrain the detector
	// it trains). mqtt knows nothing of diagd but its outbox.
	{"mqtt/...", []string{"mqtt/...", "internal/atomicfile"}},
	{"capture", []string{"internal/atomicfile", "internal/imageio"}},
	{"detect", []string{"internal/atomicfile", "internal/half", "internal/imageio", "internal/ortenv"}},
	// augment reads its negatives in the labelled layouts retrain/dataset knows (KSDD2,
	// ok/defect, manifests), so both agree on what is a good image.
	{"augment/...", []string{"augment/...", "retrain/dataset", "internal/atomicfile", "internal/half", "internal/imageio", "internal/imageops", "internal/ortenv",
		"internal/onnx/build", "internal/onnx/onnxpb"}}, // sdxl rewrites an fp16 UNet's timestep input when it opens
	{"retrain/rtest", []string{"detect", "internal/onnx/zoo"}}, // test helpers for retrain's tests
	{"retrain/...", []string{"retrain/...", "detect", "internal/atomicfile", "internal/imageio", "internal/imageops",
		"internal/ortenv", "internal/onnx/build", "internal/onnx/onnxpb"}},
	// The console shows the rooms' data to people (catalogue, data sets, registry); the
	// daemon hands it everything live through an interface the console defines.
	{"console/auth", nil},
	{"console/browsertest", nil}, // its tests drive Chromium against a real daemon
	{"console", []string{"console/auth", "augment/catalogue", "retrain", "retrain/dataset", "retrain/registry",
		"internal/atomicfile", "internal/imageio", "internal/threadprio"}},
	// Settings and the demo: they read or build what the daemon wires.
	{"internal/config", []string{"capture", "console/auth", "internal/ortenv"}},
	{"internal/demo", []string{"detect", "retrain/...", "internal/onnx/zoo", "internal/ortenv"}},
	// The top floor wires the rooms together; only it (and the binary, and the
	// benchmarks) may.
	{"daemon", []string{"capture", "console/...", "detect", "mqtt/...", "augment/...", "retrain/...", "internal/atomicfile",
		"internal/config", "internal/demo", "internal/ortenv", "internal/threadprio"}},
	{"cmd/...", []string{"*"}},
	{"bench", []string{"*"}},
}

// pendingImports are rule breaks another change is removing, with who. The test fails
// when one is gone (take it off) and for any break not listed.
var pendingImports = map[string]string{}

// testOnly are packages only tests, test helpers, the demo and the benchmarks may import.
var testOnly = map[string][]string{
	"internal/onnx/zoo":      {"internal/demo", "bench", "retrain/rtest"},
	"internal/testenv":       {"internal/mosquittotest"},
	"internal/mosquittotest": nil,
	"retrain/rtest":          {"bench"}, // its outside logistic-regression baseline
}

type listedPackage struct {
	ImportPath string
	Imports    []string
}

// modulePackages runs `go list -json ./...` and returns each package's module imports,
// as paths relative to the module ("daemon", "mqtt/outbox").
func modulePackages(t *testing.T) (string, map[string][]string) {
	t.Helper()
	root := testenv.ModuleRoot(t)
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	modCmd := exec.Command(goBin, "list", "-m")
	modCmd.Dir = root
	modOut, err := modCmd.Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	module := strings.TrimSpace(string(modOut))
	cmd := exec.Command(goBin, "list", "-json", "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -json ./...: %v\n%s", err, stderr.String())
	}
	pkgs := map[string][]string{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listedPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		rel := relPath(module, p.ImportPath)
		pkgs[rel] = nil
		for _, imp := range p.Imports {
			if r := relPath(module, imp); r != "" && (imp == module || strings.HasPrefix(imp, module+"/")) {
				pkgs[rel] = append(pkgs[rel], r)
			}
		}
	}
	return module, pkgs
}

func relPath(module, p string) string {
	if p == module {
		return "."
	}
	return strings.TrimPrefix(p, module+"/")
}

func matches(pattern, pkg string) bool {
	if pattern == "*" || pattern == pkg {
		return true
	}
	base, ok := strings.CutSuffix(pattern, "/...")
	return ok && (pkg == base || strings.HasPrefix(pkg, base+"/"))
}

// ruleFor returns the first rule whose pattern matches pkg.
func ruleFor(pkg string) ([]string, bool) {
	for _, r := range rules {
		if matches(r.pkg, pkg) {
			return r.may, true
		}
	}
	return nil, false
}

// Every package's imports follow the picture of the house.
func TestImportRules(t *testing.T) {
	_, pkgs := modulePackages(t)
	if len(pkgs) < 20 {
		t.Fatalf("go list found %d packages", len(pkgs))
	}
	var breaks []string
	for pkg, imps := range pkgs {
		may, ok := ruleFor(pkg)
		if !ok {
			t.Errorf("package %s has no import rule: place it in the house (internal/layout and README's Layout)", pkg)
			continue
		}
		for _, imp := range imps {
			allowed := false
			for _, m := range may {
				allowed = allowed || matches(m, imp)
			}
			if !allowed {
				breaks = append(breaks, pkg+" -> "+imp)
			}
		}
	}
	checkBreaks(t, breaks)
}

// checkBreaks fails for every break not pending and for every pending one now gone.
func checkBreaks(t *testing.T, breaks []string) {
	t.Helper()
	sort.Strings(breaks)
	seen := map[string]bool{}
	for _, b := range breaks {
		seen[b] = true
		if who, ok := pendingImports[b]; ok {
			t.Logf("pending (%s): %s", who, b)
			continue
		}
		t.Errorf("import against the rules: %s", b)
	}
	for b, who := range pendingImports {
		if !seen[b] {
			t.Errorf("%s is gone (%s): take it off pendingImports", b, who)
		}
	}
}

// Test-only packages are imported by tests (and their listed helpers) only; the
// daemon is imported by the binary and the benchmarks only.
func TestImportedOnlyBy(t *testing.T) {
	_, pkgs := modulePackages(t)
	only := map[string][]string{"daemon": {"cmd/diagd", "bench"}}
	for p, by := range testOnly {
		only[p] = by
	}
	var breaks []string
	for pkg, imps := range pkgs {
		for _, imp := range imps {
			by, ok := only[imp]
			if !ok {
				continue
			}
			allowed := false
			for _, b := range by {
				allowed = allowed || matches(b, pkg)
			}
			if !allowed {
				breaks = append(breaks, pkg+" -> "+imp)
			}
		}
	}
	checkBreaks(t, breaks)
}

// The matcher itself.
func TestMatches(t *testing.T) {
	for _, tc := range []struct {
		pattern, pkg string
		want         bool
	}{
		{"mqtt/...", "mqtt", true}, {"mqtt/...", "mqtt/outbox", true}, {"mqtt/...", "mqttx", false},
		{"detect", "detect", true}, {"detect", "detect/x", false}, {"*", "anything", true},
	} {
		if got := matches(tc.pattern, tc.pkg); got != tc.want {
			t.Errorf("matches(%q, %q) = %v", tc.pattern, tc.pkg, got)
		}
	}
}
