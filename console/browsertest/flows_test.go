package browsertest

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/bcrypt"

	"github.com/diagd/diagd/augment/catalogue"
	"github.com/diagd/diagd/internal/config"
	"github.com/diagd/diagd/internal/imageio"
)

// maskCovers checks a stored mask: white (255) at the fractions of its size in on,
// black at those in off.
func maskCovers(t *testing.T, path string, w, h int, on, off [][2]float64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := imageio.DecodeGray(path, b)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Cols() != w || m.Rows() != h {
		t.Fatalf("mask %s is %dx%d, want %dx%d", path, m.Cols(), m.Rows(), w, h)
	}
	at := func(f [2]float64) uint8 { return m.GetUCharAt(int(f[1]*float64(h)), int(f[0]*float64(w))) }
	for _, f := range on {
		if v := at(f); v != 255 {
			t.Errorf("mask %s at %v is %d, want 255 (painted)", filepath.Base(path), f, v)
		}
	}
	for _, f := range off {
		if v := at(f); v != 0 {
			t.Errorf("mask %s at %v is %d, want 0 (not painted)", filepath.Base(path), f, v)
		}
	}
}

// paintInDialog paints a stroke across the middle of the painter's picture and uses it.
func (tb *tab) paintInDialog(shot string) {
	tb.t.Helper()
	tb.waitJS(`document.getElementById('painter').open && document.getElementById('paint-bg').complete && document.getElementById('paint-mask').width > 0`)
	tb.paint("#paint-mask", 0.2, 0.5, 0.8, 0.5)
	if shot != "" {
		tb.screenshot(shot)
	}
	tb.click("#paint-done")
	tb.waitJS(`!document.getElementById('painter').open`)
}

var middle = [][2]float64{{0.3, 0.5}, {0.5, 0.5}, {0.7, 0.5}}
var corners = [][2]float64{{0.05, 0.05}, {0.95, 0.95}, {0.5, 0.1}}

func TestLiveVerdictAndFailedFrames(t *testing.T) {
	l := startLine(t, lineOptions{})
	tb := newTab(t, l.base)
	tb.open("live")
	tb.waitJS(`document.getElementById('live-summary').textContent.includes('v1')`) // the stream is up
	first := l.drop()
	v := l.verdict(first)
	if v.Verdict != "fail" || v.AnalyticsModule.Version != "v1" {
		t.Fatalf("verdict over MQTT: %+v (v1 fails every frame)", v)
	}
	// The verdict that reached the PLC is the one on the page: its score to 3 places.
	tb.waitJS(fmt.Sprintf(`(() => { const c = document.querySelector('[data-camera="cam"]'); if (!c) return false;
		const bar = c.querySelector('.verdict-bar');
		return bar.dataset.verdict === 'fail' && bar.querySelector('.score').textContent === %q; })()`, fmt.Sprintf("score %.3f", v.Score)))
	tb.waitJS(`(() => { const i = document.querySelector('[data-camera="cam"] img'); return i && !i.hidden && i.complete && i.naturalWidth === 128 && i.dataset.verdict === 'fail'; })()`)
	if n := js[int](tb, `document.querySelectorAll('#strip li.fail').length`); n != 1 {
		t.Errorf("%d failed verdicts in the strip, want 1", n)
	}
	if state := tb.textOf(`[data-camera="cam"] .badge`); state != "online" {
		t.Errorf("camera state %q", state)
	}
	tb.screenshot("live")
	tb.checkAccessible("live")

	second := l.drop()
	l.verdict(second)
	l.waitFails(2) // the ring writes its PNGs off the judge loop
	tb.open("fails")
	tb.waitJS(`document.querySelectorAll('#fails article').length === 2`)
	ids := js[[]string](tb, `[...document.querySelectorAll('#fails article')].map((a) => a.dataset.id)`)
	tb.screenshot("fails")
	tb.checkAccessible("fails")
	// The newer one was a false alarm; the older one is a defect, painted where it is.
	tb.click(fmt.Sprintf(`article[data-id=%q] button.good`, ids[0]))
	tb.waitJS(fmt.Sprintf(`(document.querySelector('article[data-id=%q] .badge') || {}).textContent === 'Marked good'`, ids[0]))
	tb.click(fmt.Sprintf(`article[data-id=%q] button.bad`, ids[1]))
	tb.paintInDialog("fails-painter")
	tb.waitJS(fmt.Sprintf(`(document.querySelector('article[data-id=%q] .badge') || {}).textContent === 'Confirmed defect'`, ids[1]))
	data := l.cfg.DataDir
	if _, err := os.Stat(filepath.Join(data, "negatives", ids[0]+".png")); err != nil {
		t.Errorf("the good frame is not in negatives/: %v", err)
	}
	if _, err := os.Stat(filepath.Join(data, "defects", ids[1]+".png")); err != nil {
		t.Errorf("the defect is not in defects/: %v", err)
	}
	maskCovers(t, filepath.Join(data, "defects", ids[1]+"_mask.png"), 128, 96, middle, corners)
}

func TestReviewAndJobs(t *testing.T) {
	l := startLine(t, lineOptions{})
	tb := newTab(t, l.base)
	tb.open("models")
	tb.waitJS(`document.getElementById('job-now').textContent.startsWith('Idle')`)
	start := time.Now()
	tb.do(chromedp.SetValue(chromedp.CSS("#job-kind"), "augment"), chromedp.SetValue(chromedp.CSS("#job-gen"), "memseg"))
	tb.setValue("#job-n", "3")
	tb.click("#job-start")
	tb.waitJS(`document.getElementById('job-now').textContent.startsWith('Idle. Last: augment')`)
	ev := l.finished("augment", start)
	if ev["outcome"] != "ok" || ev["written"] != float64(3) || ev["accepted"] != false {
		t.Fatalf("augment job: %v", ev)
	}
	batch := filepath.Base(ev["dir"].(string))

	tb.open("review")
	tb.waitJS(fmt.Sprintf(`document.querySelectorAll('[data-batch=%q] .rimage').length === 3`, batch))
	tb.waitJS(`[...document.querySelectorAll('#batches img')].every((i) => i.complete && i.naturalWidth > 0)`)
	tb.screenshot("review")
	tb.checkAccessible("review")
	tb.click(`[data-image="00000"] button.good`)
	tb.waitJS(`!document.querySelector('[data-image="00000"]') && document.querySelectorAll('.rimage').length === 2`)
	tb.click(`[data-image="00001"] button.bad`)
	tb.waitJS(`!document.querySelector('[data-image="00001"]') && document.querySelectorAll('.rimage').length === 1`)
	data := l.cfg.DataDir
	for _, c := range []struct{ dir, im string }{{"accepted", "00000"}, {"rejected", "00001"}, {"pending", "00002"}} {
		for _, suffix := range []string{".png", "_mask.png", ".json"} {
			p := filepath.Join(data, "synthetic", c.dir, batch, c.im+suffix)
			if _, err := os.Stat(p); err != nil {
				t.Errorf("%s: %v", p, err)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(data, "synthetic", "pending", batch, "00000.png")); err == nil {
		t.Error("the accepted image is still pending")
	}

	// A long job is followed and cancelled from the page.
	tb.open("models")
	start = time.Now()
	tb.do(chromedp.SetValue(chromedp.CSS("#job-kind"), "augment"))
	tb.setValue("#job-n", "100000")
	tb.click("#job-start")
	tb.waitJS(`document.getElementById('job-now').textContent.startsWith('Running: augment') && document.getElementById('job-progress').value > 0`)
	tb.screenshot("models-job")
	tb.click("#job-cancel")
	tb.waitJS(`document.getElementById('job-now').textContent.startsWith('Idle. Last: augment')`)
	if ev := l.finished("augment", start); ev["outcome"] != "cancelled" {
		t.Errorf("cancelled job's outcome: %v", ev)
	}
}

func TestCatalogueEdit(t *testing.T) {
	l := startLine(t, lineOptions{})
	tb := newTab(t, l.base)
	tb.open("catalogue")
	tb.waitJS(`document.getElementById('cat-status').textContent.includes('(this file, loaded)')`)
	tb.screenshot("catalogue")
	tb.checkAccessible("catalogue")

	tb.click(`article[data-kind="0"] button.paint-mask`)
	tb.paintInDialog("catalogue-painter")
	tb.waitJS(`document.querySelectorAll('article[data-kind="0"] .masks li').length === 1`)
	tb.setValue(`article[data-kind="0"] input[type=number]`, "2.5")
	tb.click("#save-cat")
	tb.waitJS(`!!document.getElementById('cat-status').dataset.reloaded`)
	saved, err := os.ReadFile(l.catPath)
	if err != nil {
		t.Fatal(err)
	}
	cat, err := catalogue.Load(l.catPath)
	if err != nil {
		t.Fatalf("the saved catalogue does not validate: %v\n%s", err, saved)
	}
	if got := js[string](tb, `document.getElementById('cat-status').dataset.reloaded`); got != cat.Digest {
		t.Errorf("the page says the daemon loaded %s; the file is %s", got, cat.Digest)
	}
	if st := l.retained("state/catalogue"); !strings.Contains(st, cat.Digest) {
		t.Errorf("the daemon's retained catalogue state %s is not the saved file %s", st, cat.Digest)
	}
	for _, c := range []string{"# Defect catalogue of the test line", "# reproducible batches", "# the only kind so far", "# where stains may appear"} {
		if !strings.Contains(string(saved), c) {
			t.Errorf("comment %q lost:\n%s", c, saved)
		}
	}
	k := cat.Kinds[0]
	if k.Weight != 2.5 || len(k.Masks) != 1 || len(k.Regions) != 1 || !strings.HasPrefix(k.Masks[0].Path, filepath.Join(l.cfg.DataDir, "masks", "stain")) {
		t.Fatalf("saved kind: %+v", k)
	}
	maskCovers(t, k.Masks[0].Path, 128, 96, middle, corners)
	tb.screenshot("catalogue-saved")

	// An invalid edit is shown with file:line:col and changes nothing.
	tb.setValue(`article[data-kind="0"] input[type=number]`, "-1")
	tb.click("#save-cat")
	tb.waitJS(`!document.getElementById('cat-problems').hidden && document.querySelector('article[data-kind="0"]').classList.contains('invalid')`)
	problems := tb.textOf("#cat-problems")
	if !regexp.MustCompile(regexp.QuoteMeta(l.catPath) + `:\d+:\d+: weight must be in \(0, 1e\+06\], got -1`).MatchString(problems) {
		t.Errorf("problems shown: %q", problems)
	}
	if now, _ := os.ReadFile(l.catPath); string(now) != string(saved) {
		t.Error("an invalid edit changed the file")
	}
	tb.screenshot("catalogue-invalid")
}

func TestPromoteAndRollback(t *testing.T) {
	l := startLine(t, lineOptions{})
	tb := newTab(t, l.base)
	tb.open("models")
	tb.waitJS(`!!document.querySelector('tr[data-version="v2"] button.primary')`)
	tb.waitJS(`document.querySelector('tr[data-version="v1"]').classList.contains('current')`)
	tb.screenshot("models")
	tb.checkAccessible("models")

	tb.click(`tr[data-version="v2"] button.primary`)
	tb.waitJS(`document.querySelector('tr[data-version="v2"]').classList.contains('current')`)
	if v := l.servingAfterSwap("v2"); v.Verdict != "pass" {
		t.Errorf("v2 (threshold 1) judged %s", v.Verdict)
	}
	tb.waitJS(`document.querySelector('#decisions tbody tr td:nth-child(2)').textContent === 'manual-promote'`)
	if r := tb.textOf("#decisions tbody tr td:last-child"); r != "promoted from the console by local" {
		t.Errorf("decision reason %q", r)
	}
	tb.click(`tr[data-version="v2"] td:last-child button`) // roll back, on the serving row
	tb.waitJS(`document.querySelector('tr[data-version="v1"]').classList.contains('current')`)
	if v := l.servingAfterSwap("v1"); v.Verdict != "fail" {
		t.Errorf("v1 (threshold 0) judged %s", v.Verdict)
	}
	tb.screenshot("models-rolled-back")

	// A live page's open stream does not hold up a stop: the daemon ends it.
	tb.open("live")
	tb.waitJS(`document.getElementById('live-summary').textContent.includes('v1')`)
	if took := l.stop(); took > 5*time.Second {
		t.Errorf("stopping with a live page open took %v", took)
	}
	tb.waitJS(`document.getElementById('live-summary').textContent.includes('reconnecting')`)
}

// servingAfterSwap drops frames until one is judged by version (the watcher swaps
// within a poll) and returns that verdict.
func (l *line) servingAfterSwap(version string) (v struct{ Verdict, Version string }) {
	l.t.Helper()
	for range 50 {
		got := l.verdict(l.drop())
		if got.AnalyticsModule.Version == version {
			return struct{ Verdict, Version string }{got.Verdict, version}
		}
		time.Sleep(100 * time.Millisecond)
	}
	l.t.Fatalf("the daemon never served %s", version)
	return
}

// retained is the last payload on diagd/line1/<topic>.
func (l *line) retained(topic string) string {
	l.t.Helper()
	ms := l.sub.Snapshot()
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].Topic == "diagd/line1/"+topic {
			return ms[i].Payload
		}
	}
	return ""
}

func TestSignInAndHealth(t *testing.T) {
	users := filepath.Join(t.TempDir(), "users")
	h, err := bcrypt.GenerateFromPassword([]byte("line3 secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(users, []byte("# console users\nvic:viewer:"+string(h)+"\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	l := startLine(t, lineOptions{mutate: func(c *config.Config) { c.HTTPUsers = users }})
	// Prometheus and systemd need no session; the console does.
	for path, want := range map[string]int{"/livez": 200, "/readyz": 200, "/metrics": 200, "/api/status": 401, "/api/fails": 401} {
		resp, err := http.Get(l.base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want && !(path == "/readyz" && resp.StatusCode == 503) {
			t.Errorf("GET %s without a session: %d, want %d", path, resp.StatusCode, want)
		}
	}
	tb := newTab(t, l.base)
	tb.do(chromedp.Navigate(l.base + "/"))
	tb.waitJS(`location.pathname === '/login' && !!document.getElementById('password')`)
	tb.checkAccessible("login")
	tb.setValue("#user", "vic")
	tb.setValue("#password", "wrong")
	tb.submit("button[type=submit]")
	tb.waitJS(`location.search.includes('failed') && !document.getElementById('login-msg').hidden`)
	tb.screenshot("login-failed")
	tb.setValue("#user", "vic")
	tb.setValue("#password", "line3 secret")
	tb.submit("button[type=submit]")
	tb.waitJS(`location.pathname === '/' && document.getElementById('who').textContent === 'vic (viewer)'`)
	// A viewer sees the pages with every changing control off.
	tb.open("models")
	tb.waitJS(`!!document.querySelector('tr[data-version="v2"] button.primary')`)
	if n := js[int](tb, `[...document.querySelectorAll('#page-models button')].filter((b) => !b.disabled).length`); n != 0 {
		t.Errorf("%d buttons enabled for a viewer on the models page", n)
	}
}
