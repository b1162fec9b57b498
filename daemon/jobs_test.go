package daemon

import (
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/augment"
	"github.com/diagd/diagd/internal/config"
	"github.com/diagd/diagd/internal/mosquittotest"
	"github.com/diagd/diagd/internal/testenv"
	"github.com/diagd/diagd/retrain/registry"
)

// The job tests run the daemon's generation and retraining job on real parts: MemSeg
// painting into real PNG negatives decoded by OpenCV, ONNX Runtime on a small ResNet
// with the detector's real I/O (logit + features), the real registry, and a real
// mosquitto with a PLC-like subscriber that sends the commands.

const (
	cmdTopic        = "diagd/line1/cmd/"
	eventsTopic     = "diagd/line1/events/"
	modelStateTopic = "diagd/line1/state/model"
)

// writeSurface writes a 64×64 grey surface with mild noise: a good part, on which a
// painted defect stands out.
func writeSurface(t testing.TB, path string, r *rand.Rand) {
	t.Helper()
	m := surface(r)
	defer m.Close()
	if !gocv.IMWrite(path, m) {
		t.Fatalf("cannot write %s", path)
	}
}

// surface is a 64×64 grey surface with noise, of random brightness.
func surface(r *rand.Rand) gocv.Mat {
	base := float64(110 + r.IntN(30))
	m := gocv.NewMatWithSize(64, 64, gocv.MatTypeCV8UC3)
	gocv.RandN(&m, gocv.NewScalar(base, base, base, 0), gocv.NewScalar(6, 6, 6, 0))
	return m
}

// writeSpot writes a surface like writeSurface's with a bright spot: a real defect.
func writeSpot(t testing.TB, path string, r *rand.Rand) {
	t.Helper()
	m := surface(r)
	defer m.Close()
	gocv.Circle(&m, image.Pt(16+r.IntN(32), 16+r.IntN(32)), 5+r.IntN(4), color.RGBA{250, 250, 245, 0}, -1)
	os.MkdirAll(filepath.Dir(path), 0o755)
	if !gocv.IMWrite(path, m) {
		t.Fatalf("cannot write %s", path)
	}
}

// writeRegion writes a 64×64 mask, white inside r: where defects may appear.
func writeRegion(t testing.TB, path string, r image.Rectangle) {
	t.Helper()
	m := image.NewGray(image.Rect(0, 0, 64, 64))
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			m.SetGray(x, y, color.Gray{255})
		}
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := png.Encode(f, m); err != nil {
		t.Fatal(err)
	}
}

const goodCatalogue = `generation:
  seed: 7
kinds:
  - name: stain
    prompt: dark stain
    regions: regions/center.png
`

// badCatalogue has a negative weight on line 6 and a kind without prompt (line 7).
const badCatalogue = `generation:
  seed: 7
kinds:
  - name: stain
    prompt: dark stain
    weight: -2
    regions: regions/center.png
`

// jobSetup is a data folder with a negatives pool over two cameras, a defect catalogue
// and a registry serving a small model; MODEL_DIR is the registry's current link.
type jobSetup struct {
	cfg     config.Config
	watched string
	catPath string
	base    string // the first model's folder (imported into the registry as v1)
}

func newJobSetup(t *testing.T, brokerURL string, negatives int, catalogue string) jobSetup {
	t.Helper()
	root := t.TempDir()
	watched := filepath.Join(root, "drop")
	os.MkdirAll(watched, 0o755)
	cfg := testConfig(t, brokerURL, folderSource("cam", watched))
	r := rand.New(rand.NewPCG(3, 4))
	for i := range negatives {
		cam := []string{"cam", "cam2"}[i%2]
		dir := filepath.Join(cfg.DataDir, "negatives", cam)
		os.MkdirAll(dir, 0o755)
		writeSurface(t, filepath.Join(dir, fmt.Sprintf("neg-%03d.png", i)), r)
	}
	cdir := filepath.Join(root, "catalogue")
	os.MkdirAll(filepath.Join(cdir, "regions"), 0o755)
	writeRegion(t, filepath.Join(cdir, "regions", "center.png"), image.Rect(16, 16, 48, 48))
	catPath := filepath.Join(cdir, "defects.yaml")
	if catalogue != "" {
		if err := os.WriteFile(catPath, []byte(catalogue), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg.Catalogue = catPath
	cfg.Registry = filepath.Join(cfg.DataDir, "models")
	cfg.ModelDir = filepath.Join(cfg.Registry, registry.CurrentLink)
	cfg.Generator = "auto"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Generator != "memseg" {
		t.Fatalf("auto generator without SDXL_DIR is %q, want memseg", cfg.Generator)
	}
	// The installer's step: the first model goes into the registry and serves.
	base := filepath.Join(root, "base")
	writeModel(t, base, "m1", 1)
	reg, err := registry.Open(testenv.Logger(t), cfg.Registry, registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	release, err := reg.Lock()
	if err != nil {
		t.Fatal(err)
	}
	v, err := reg.Import(base)
	if err == nil {
		err = reg.Promote(v)
	}
	release()
	if err != nil {
		t.Fatal(err)
	}
	return jobSetup{cfg: cfg, watched: watched, catPath: catPath, base: base}
}

// events decodes the JSON events on one events topic.
func events(t testing.TB, ms []msg, kind string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, m := range ms {
		if m.Topic != eventsTopic+kind {
			continue
		}
		var e map[string]any
		if err := json.Unmarshal([]byte(m.Payload), &e); err != nil {
			t.Fatalf("event %s %q: %v", kind, m.Payload, err)
		}
		out = append(out, e)
	}
	return out
}

// finished is a waitFor condition: a "finish" event on topic kind.
func finished(t testing.TB, kind string) func([]msg) bool {
	return func(ms []msg) bool { return finishOf(t, ms, kind) != nil }
}

func finishOf(t testing.TB, ms []msg, kind string) map[string]any {
	for _, e := range events(t, ms, kind) {
		if e["phase"] == "finish" {
			return e
		}
	}
	return nil
}

// catalogueApplied is a waitFor condition: an events/config with ok:true.
func catalogueApplied(t testing.TB) func([]msg) bool {
	return func(ms []msg) bool {
		for _, e := range events(t, ms, "config") {
			if e["ok"] == true {
				return true
			}
		}
		return false
	}
}

// result decodes the last command result on cmd/<name>/result.
func result(t testing.TB, ms []msg, name string) map[string]any {
	t.Helper()
	p := last(ms, cmdTopic+name+"/result")
	if p == "" {
		return nil
	}
	var r map[string]any
	if err := json.Unmarshal([]byte(p), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// A "cycle" command generates synthetic defects, retrains, evaluates and promotes;
// progress and outcome arrive as events, the registry gets v2, and the model watcher
// swaps it in while frames keep being judged, every one exactly once. A second
// request during the cycle is refused as busy.
func TestJobCycleEndToEnd(t *testing.T) {
	testenv.ORT(t)
	b := mosquittotest.Start(t)
	sub := subscribe(t, b.URL(), "plc-1", "diagd/line1/#")
	s := newJobSetup(t, b.URL(), 24, goodCatalogue)
	// This test is about the swap, not the score: real defects the stand-in backbone
	// tells apart (bright spots) make a candidate the promotion gate can accept (better
	// than chance on 5 held-out defects, the minimum lowered to match), and a tolerance
	// of 1 accepts any AP difference from the random base.
	r0 := rand.New(rand.NewPCG(5, 6))
	for i := range 24 {
		writeSpot(t, filepath.Join(s.cfg.DataDir, "defects", fmt.Sprintf("spot-%03d.png", i)), r0)
	}
	s.cfg.PromoteTolerance, s.cfg.PromoteMinDefects = 1, 5
	r := start(t, s.cfg)
	sub.WaitFor(t, 20*time.Second, "model v1 served", func(ms []msg) bool { return strings.Contains(last(ms, modelStateTopic), `"version":"v1"`) })
	sub.WaitFor(t, 10*time.Second, "catalogue loaded", catalogueApplied(t))
	drops := dropEvery(t, newDropper(t, s.watched), 20*time.Millisecond) // frames keep arriving during the whole job

	const n = 24
	sub.Publish(t, cmdTopic+"cycle", fmt.Sprintf(`{"n":%d,"generator":"memseg"}`, n))
	ms := sub.WaitFor(t, 10*time.Second, "cycle accepted", func(ms []msg) bool { return result(t, ms, "cycle") != nil })
	if res := result(t, ms, "cycle"); res["ok"] != true {
		t.Fatalf("cycle refused: %v", res)
	}
	sub.Publish(t, cmdTopic+"retrain", `{}`)
	ms = sub.WaitFor(t, 10*time.Second, "retrain answered", func(ms []msg) bool { return result(t, ms, "retrain") != nil })
	if res := result(t, ms, "retrain"); res["ok"] != false || !strings.HasPrefix(fmt.Sprint(res["error"]), "busy: cycle running since ") {
		t.Fatalf("a retrain during the cycle: %v, want ok:false busy: cycle running since ...", res)
	}

	ms = sub.WaitFor(t, 60*time.Second, "cycle finished", finished(t, "cycle"))
	if cyc := finishOf(t, ms, "cycle"); cyc["outcome"] != "promoted" {
		t.Fatalf("cycle outcome: %v", cyc)
	}
	checkAugmentEvents(t, ms, s, n)
	rf := checkRetrainPromoted(t, ms, s)
	// The model watcher swaps v2 in; frames judged after that carry v2.
	sub.WaitFor(t, 20*time.Second, "model v2 served", func(ms []msg) bool { return strings.Contains(last(ms, modelStateTopic), `"version":"v2"`) })
	time.Sleep(300 * time.Millisecond)
	all := drops.stop()
	ms = sub.WaitFor(t, 30*time.Second, "a verdict for every frame", countVerdicts(t, verdictTopic, len(all)))
	vs := dedupe(verdictsOf(t, ms, verdictTopic))
	checkOnePerFile(t, vs, all, 1)
	byVersion := map[string]int{}
	for _, v := range vs {
		byVersion[v.AnalyticsModule.Version]++
	}
	if byVersion["v1"] == 0 || byVersion["v2"] == 0 {
		t.Fatalf("verdicts by model version %v: want frames judged by v1 before and v2 after the swap", byVersion)
	}
	t.Logf("%d frames judged during the cycle: %v; candidate AP %.3f vs serving AP %.3f", len(all), byVersion, rf["candidate_ap"], rf["serving_ap"])

	_, body := httpGet(t, "http://"+r.httpAddr(t)+"/metrics")
	for series, want := range map[string]float64{
		`diagd_jobs_total{job="cycle",outcome="promoted"}`:   1,
		`diagd_jobs_total{job="augment",outcome="ok"}`:       1,
		`diagd_jobs_total{job="retrain",outcome="promoted"}`: 1,
		`diagd_job_running{job="cycle"}`:                     0,
	} {
		if got := metric(t, body, series); got != want {
			t.Fatalf("%s = %v, want %v", series, got, want)
		}
	}
}

// backgroundDrops drops a frame every interval until stop, which returns their names.
type backgroundDrops struct {
	mu    sync.Mutex
	names []string
	quit  chan struct{}
	done  chan struct{}
}

func dropEvery(t *testing.T, dr *dropper, every time.Duration) *backgroundDrops {
	bd := &backgroundDrops{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(bd.done)
		for {
			select {
			case <-bd.quit:
				return
			case <-time.After(every):
			}
			n := dr.drop()
			bd.mu.Lock()
			bd.names = append(bd.names, n)
			bd.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		select {
		case <-bd.quit:
		default:
			bd.stop()
		}
	})
	return bd
}

func (bd *backgroundDrops) stop() []string {
	close(bd.quit)
	<-bd.done
	bd.mu.Lock()
	defer bd.mu.Unlock()
	return append([]string(nil), bd.names...)
}

// checkAugmentEvents: generation progress with fraction and total, then the outcome with
// n images, the contact sheet, and the batch under DATA_DIR/synthetic/accepted.
func checkAugmentEvents(t *testing.T, ms []msg, s jobSetup, n int) {
	t.Helper()
	progress := 0
	for _, e := range events(t, ms, "augment") {
		if e["phase"] == "generate" {
			progress++
			if f, ok := e["fraction"].(float64); !ok || f < 0 || f > 1 || e["total"] != float64(n) {
				t.Fatalf("augment progress event: %v", e)
			}
		}
	}
	af := finishOf(t, ms, "augment")
	if progress == 0 || af["outcome"] != "ok" || af["written"] != float64(n) {
		t.Fatalf("augment: %d progress events, finish %v", progress, af)
	}
	sheet, _ := af["contact_sheet"].(string)
	if st, err := os.Stat(sheet); err != nil || st.Size() == 0 {
		t.Fatalf("contact sheet %q: %v", sheet, err)
	}
	batch, _ := af["dir"].(string)
	if filepath.Dir(batch) != filepath.Join(s.cfg.DataDir, "synthetic", "accepted") {
		t.Fatalf("batch written to %s, want under DATA_DIR/synthetic/accepted (AUTO_ACCEPT default)", batch)
	}
	if imgs, _ := filepath.Glob(filepath.Join(batch, "[0-9][0-9][0-9][0-9][0-9].png")); len(imgs) != n {
		t.Fatalf("%d images in %s, want %d", len(imgs), batch, n)
	}
}

// checkRetrainPromoted: stage progress, then the comparison and the promotion of v2 over
// v1, in the registry too. It returns the finish event.
func checkRetrainPromoted(t *testing.T, ms []msg, s jobSetup) map[string]any {
	t.Helper()
	stages := map[string]bool{}
	for _, e := range events(t, ms, "retrain") {
		stages[fmt.Sprint(e["phase"])] = true
	}
	for _, st := range []string{"start", "features", "train", "finish"} {
		if !stages[st] {
			t.Fatalf("no retrain %q event (saw %v)", st, stages)
		}
	}
	rf := finishOf(t, ms, "retrain")
	if rf["outcome"] != "promoted" || rf["version"] != "v2" || rf["promoted"] != true || rf["serving_version"] != "v1" {
		t.Fatalf("retrain outcome: %v", rf)
	}
	for _, k := range []string{"candidate_ap", "serving_ap"} {
		if ap, ok := rf[k].(float64); !ok || ap <= 0 || ap > 1 {
			t.Fatalf("%s = %v, want an AP in (0,1]", k, rf[k])
		}
	}
	reg, err := registry.Open(testenv.Logger(t), s.cfg.Registry, registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if cur, err := reg.Current(); err != nil || cur.Name != "v2" {
		t.Fatalf("registry current: %v %v, want v2", cur.Name, err)
	}
	return rf
}

// An invalid catalogue edit is reported with file:line:col problems, and the next job
// still uses the last good catalogue.
func TestCatalogueInvalidEditKeepsLastGood(t *testing.T) {
	testenv.ORT(t)
	b := mosquittotest.Start(t)
	sub := subscribe(t, b.URL(), "plc-1", "diagd/line1/#")
	s := newJobSetup(t, b.URL(), 12, goodCatalogue)
	s.cfg.AutoAccept = false // batches wait for review in synthetic/pending
	start(t, s.cfg)
	ms := sub.WaitFor(t, 10*time.Second, "catalogue loaded", catalogueApplied(t))
	good := events(t, ms, "config")[0]
	digest, _ := good["digest"].(string)
	if good["ok"] != true || digest == "" || fmt.Sprint(good["kinds"]) != "[stain]" {
		t.Fatalf("config event at start: %v", good)
	}

	if err := os.WriteFile(s.catPath, []byte(badCatalogue), 0o644); err != nil {
		t.Fatal(err)
	}
	ms = sub.WaitFor(t, 10*time.Second, "rejected edit event", func(ms []msg) bool {
		for _, e := range events(t, ms, "config") {
			if e["ok"] == false {
				return true
			}
		}
		return false
	})
	var rej map[string]any
	for _, e := range events(t, ms, "config") {
		if e["ok"] == false {
			rej = e
		}
	}
	probs := fmt.Sprint(rej["problems"])
	if !strings.Contains(probs, s.catPath+":6:") || !strings.Contains(probs, "weight") || rej["kept_last_good"] != true {
		t.Fatalf("rejected edit event %v: want a problem at %s:6 about weight", rej, s.catPath)
	}

	sub.Publish(t, cmdTopic+"augment", `{"n":3}`)
	ms = sub.WaitFor(t, 30*time.Second, "augment finished", finished(t, "augment"))
	af := finishOf(t, ms, "augment")
	if af["outcome"] != "ok" || af["written"] != float64(3) {
		t.Fatalf("augment after a rejected edit: %v", af)
	}
	if filepath.Dir(fmt.Sprint(af["dir"])) != filepath.Join(s.cfg.DataDir, "synthetic", "pending") || af["accepted"] != false {
		t.Fatalf("with AUTO_ACCEPT=false the batch went to %v (accepted %v), want DATA_DIR/synthetic/pending", af["dir"], af["accepted"])
	}
	var sc augment.Sidecar
	b0, err := os.ReadFile(filepath.Join(fmt.Sprint(af["dir"]), "00000.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b0, &sc); err != nil {
		t.Fatal(err)
	}
	if sc.CatalogueDigest != digest {
		t.Fatalf("image made with catalogue %s, want the last good one %s", sc.CatalogueDigest, digest)
	}
}

// An invalid catalogue at start does not stop judging; jobs that need it refuse with
// the reason; fixing the file brings it in force. Too few negatives refuse a retrain.
func TestInvalidCatalogueAtStart(t *testing.T) {
	testenv.ORT(t)
	b := mosquittotest.Start(t)
	sub := subscribe(t, b.URL(), "plc-1", "diagd/line1/#")
	s := newJobSetup(t, b.URL(), 4, badCatalogue)
	s.cfg.RetrainEvery = 200 * time.Millisecond
	start(t, s.cfg)
	ms := sub.WaitFor(t, 10*time.Second, "config event", func(ms []msg) bool { return len(events(t, ms, "config")) > 0 })
	if e := events(t, ms, "config")[0]; e["ok"] != false || !strings.Contains(fmt.Sprint(e["problems"]), s.catPath+":6:") {
		t.Fatalf("config event for an invalid catalogue at start: %v", e)
	}
	names := newDropper(t, s.watched).dropN(3, 0)
	ms = sub.WaitFor(t, 20*time.Second, "verdicts", countVerdicts(t, verdictTopic, 3))
	checkOnePerFile(t, dedupe(verdictsOf(t, ms, verdictTopic)), names, 1)

	sub.Publish(t, cmdTopic+"augment", `{}`)
	ms = sub.WaitFor(t, 10*time.Second, "augment answered", func(ms []msg) bool { return result(t, ms, "augment") != nil })
	if res := result(t, ms, "augment"); res["ok"] != false || !strings.Contains(fmt.Sprint(res["error"]), "invalid") {
		t.Fatalf("augment with an invalid catalogue: %v", res)
	}
	sub.Publish(t, cmdTopic+"retrain", `{}`)
	ms = sub.WaitFor(t, 10*time.Second, "retrain answered", func(ms []msg) bool { return result(t, ms, "retrain") != nil })
	if res := result(t, ms, "retrain"); res["ok"] != false || !strings.Contains(fmt.Sprint(res["error"]), "only 4 good images") {
		t.Fatalf("retrain with 4 negatives: %v", res)
	}
	sub.Publish(t, cmdTopic+"cycle", `{"generator":"sdxl"}`)
	ms = sub.WaitFor(t, 10*time.Second, "cycle answered", func(ms []msg) bool { return result(t, ms, "cycle") != nil })
	if res := result(t, ms, "cycle"); res["ok"] != false || !strings.Contains(fmt.Sprint(res["error"]), `generator "sdxl"`) {
		t.Fatalf("cycle with an unknown generator: %v", res)
	}

	// The schedule's cycles are skipped, each with its reason.
	ms = sub.WaitFor(t, 10*time.Second, "a scheduled cycle skipped", finished(t, "cycle"))
	if e := finishOf(t, ms, "cycle"); e["outcome"] != "skipped" || e["scheduled"] != true || !strings.Contains(fmt.Sprint(e["reason"]), "invalid") {
		t.Fatalf("scheduled cycle with an invalid catalogue: %v", e)
	}

	if err := os.WriteFile(s.catPath, []byte(goodCatalogue), 0o644); err != nil {
		t.Fatal(err)
	}
	sub.WaitFor(t, 15*time.Second, "fixed catalogue in force", func(ms []msg) bool {
		return strings.Contains(last(ms, "diagd/line1/state/catalogue"), `"kinds":["stain"]`)
	})
}

// The job settings are validated, naming the variable.
func TestJobConfigValidation(t *testing.T) {
	base := testConfig(t, "tcp://127.0.0.1:1", folderSource("cam", t.TempDir()))
	if base.Registry != filepath.Join(base.DataDir, "models") || base.Generator != "memseg" || base.AugmentN != 100 ||
		!base.AutoAccept || base.RetrainEvery != 0 || base.RetrainMode != "auto" || base.JobThreads != 1 {
		t.Fatalf("job defaults: registry %q generator %q n %d accept %v every %v mode %q threads %d", base.Registry, base.Generator,
			base.AugmentN, base.AutoAccept, base.RetrainEvery, base.RetrainMode, base.JobThreads)
	}
	for _, tc := range []struct {
		set  func(*config.Config)
		want string
	}{
		{func(c *config.Config) { c.Generator = "dalle" }, "DIAGD_GENERATOR"},
		{func(c *config.Config) { c.Generator = "diag" }, "DIAGD_GENERATOR: diag needs DIAGD_SDXL_DIR"},
		{func(c *config.Config) { c.SDXLDir = "/nonexistent/sdxl" }, "DIAGD_SDXL_DIR"},
		{func(c *config.Config) { c.AugmentN = 0 }, "DIAGD_AUGMENT_N"},
		{func(c *config.Config) { c.RetrainEvery = -time.Second }, "DIAGD_RETRAIN_EVERY"},
		{func(c *config.Config) { c.RetrainMode = "few-shot" }, "DIAGD_RETRAIN_MODE"},
		{func(c *config.Config) { c.PromoteTolerance = 1.5 }, "DIAGD_PROMOTE_TOLERANCE"},
		{func(c *config.Config) { c.Catalogue = t.TempDir() }, "DIAGD_CATALOGUE"},
	} {
		c := base
		c.Generator = "auto"
		tc.set(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want an error naming %s, got %v", tc.want, err)
		}
	}
	// A catalogue that does not exist yet is not fatal (the daemon waits for it).
	c := base
	c.Catalogue = filepath.Join(t.TempDir(), "later.yaml")
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

// Separate augment and retrain commands on an empty registry: the serving model
// (MODEL_DIR, outside the registry) is imported as v1 and the candidate becomes v2;
// the outcome follows the promotion gate's decision, and a model that is not promoted
// changes nothing that serves.
func TestJobAugmentThenRetrainFromEmptyRegistry(t *testing.T) {
	testenv.ORT(t)
	b := mosquittotest.Start(t)
	sub := subscribe(t, b.URL(), "plc-1", "diagd/line1/#")
	s := newJobSetup(t, b.URL(), 20, goodCatalogue)
	if err := os.RemoveAll(s.cfg.Registry); err != nil {
		t.Fatal(err)
	}
	s.cfg.ModelDir = s.base
	start(t, s.cfg)
	sub.WaitFor(t, 20*time.Second, "model m1 served", func(ms []msg) bool { return strings.Contains(last(ms, modelStateTopic), `"version":"m1"`) })

	sub.Publish(t, cmdTopic+"augment", `{"n":20}`)
	ms := sub.WaitFor(t, 30*time.Second, "augment finished", finished(t, "augment"))
	if af := finishOf(t, ms, "augment"); af["outcome"] != "ok" || af["written"] != float64(20) {
		t.Fatalf("augment: %v", af)
	}
	sub.Publish(t, cmdTopic+"retrain", ``)
	ms = sub.WaitFor(t, 60*time.Second, "retrain finished", finished(t, "retrain"))
	rf := finishOf(t, ms, "retrain")
	if rf["imported_base"] != "v1" || rf["version"] != "v2" || rf["serving_version"] != "v1" || rf["mode"] != "zero-shot" {
		t.Fatalf("retrain from an empty registry: %v", rf)
	}
	cand, serv := rf["candidate_ap"].(float64), rf["serving_ap"].(float64)
	promoted := rf["decision"] == "promote"
	if want := map[bool]string{true: "promoted", false: "rejected"}[promoted]; rf["outcome"] != want || rf["promoted"] != promoted || rf["reason"] == "" {
		t.Fatalf("candidate AP %v, serving AP %v, decision %v: outcome %v (%v), want %s", cand, serv, rf["decision"], rf["outcome"], rf["reason"], want)
	}
	reg, err := registry.Open(testenv.Logger(t), s.cfg.Registry, registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cur, err := reg.Current()
	if err != nil {
		t.Fatal(err)
	}
	if want := map[bool]string{true: "v2", false: "v1"}[promoted]; cur.Name != want {
		t.Fatalf("registry current %s, want %s", cur.Name, want)
	}
	if promoted && !strings.Contains(fmt.Sprint(rf["served"]), "not served") {
		t.Fatalf("a promotion MODEL_DIR does not follow must say so: %v", rf["served"])
	}
	// MODEL_DIR is not the registry's link: what serves does not change either way.
	time.Sleep(3 * s.cfg.ModelPoll)
	if got := last(sub.Snapshot(), modelStateTopic); !strings.Contains(got, `"version":"m1"`) {
		t.Fatalf("serving model changed: %s", got)
	}
	t.Logf("candidate AP %.3f vs serving AP %.3f: %v", cand, serv, rf["outcome"])
}

// A stop during a generation batch ends the job promptly; what it wrote is complete
// (every image has its mask and sidecar) and lands in accepted/, nothing is left in
// the work folder.
func TestStopDuringJob(t *testing.T) {
	testenv.ORT(t)
	b := mosquittotest.Start(t)
	sub := subscribe(t, b.URL(), "plc-1", "diagd/line1/#")
	s := newJobSetup(t, b.URL(), 12, goodCatalogue)
	r := start(t, s.cfg)
	sub.WaitFor(t, 10*time.Second, "catalogue loaded", catalogueApplied(t))
	sub.Publish(t, cmdTopic+"augment", `{"n":100000}`)
	sub.WaitFor(t, 20*time.Second, "generation under way", func(ms []msg) bool {
		for _, e := range events(t, ms, "augment") {
			if e["phase"] == "generate" && e["done"].(float64) >= 5 {
				return true
			}
		}
		return false
	})
	t0 := time.Now()
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(t0); el > 10*time.Second {
		t.Fatalf("stop took %v with a job running", el)
	}
	if left, _ := filepath.Glob(filepath.Join(s.cfg.DataDir, "synthetic", ".incoming", "*")); len(left) != 0 {
		t.Fatalf("work folder left behind: %v", left)
	}
	batches, _ := filepath.Glob(filepath.Join(s.cfg.DataDir, "synthetic", "accepted", "*"))
	if len(batches) != 1 {
		t.Fatalf("accepted batches %v, want the one partial batch", batches)
	}
	imgs, _ := filepath.Glob(filepath.Join(batches[0], "[0-9][0-9][0-9][0-9][0-9].png"))
	if len(imgs) < 5 || len(imgs) >= 100000 {
		t.Fatalf("%d images in the partial batch", len(imgs))
	}
	for _, img := range imgs {
		stem := strings.TrimSuffix(img, ".png")
		for _, f := range []string{stem + "_mask.png", stem + ".json"} {
			if _, err := os.Stat(f); err != nil {
				t.Fatalf("%s has no %s: %v", img, filepath.Base(f), err)
			}
		}
	}
	t.Logf("stopped after %d images in %v", len(imgs), time.Since(t0))
}
