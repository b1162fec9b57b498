// Package browsertest drives the console in a real browser (Debian's chromium,
// headless, through chromedp) against a real daemon: a real mosquitto, frames from a
// watched folder decoded by OpenCV, verdicts from ONNX Runtime. One browser serves all
// the package's tests; each test opens its own tab. Chromium missing is a failure, not
// a skip: DIAGD_CHROMIUM names another binary. Screenshots of every page go to
// DIAGD_CONSOLE_SCREENSHOTS when set, else to the test's temporary folder.
package browsertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

var browser struct {
	once   sync.Once
	ctx    context.Context
	cancel context.CancelFunc
	err    error
	dir    string
}

func TestMain(m *testing.M) {
	code := m.Run()
	if browser.cancel != nil {
		browser.cancel()
		os.RemoveAll(browser.dir)
	}
	os.Exit(code)
}

// chromiumPath is the browser binary: DIAGD_CHROMIUM, else Debian's chromium.
func chromiumPath() (string, error) {
	if p := os.Getenv("DIAGD_CHROMIUM"); p != "" {
		return p, nil
	}
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("chromium is not installed (apt-get install chromium, as scripts/setup.sh does; or set DIAGD_CHROMIUM)")
}

// startBrowser starts the package's one browser: headless, with a new empty profile
// and the background services off (the closed network here refuses their
// connections, and they would only slow the tests down).
func startBrowser() {
	path, err := chromiumPath()
	if err != nil {
		browser.err = err
		return
	}
	if browser.dir, err = os.MkdirTemp("", "diagd-chromium-"); err != nil {
		browser.err = err
		return
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.UserDataDir(browser.dir), chromedp.WindowSize(1400, 1000),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, bcancel := chromedp.NewContext(actx)
	// Start it now, so the first test's timeout does not include the browser's start.
	if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil {
		bcancel()
		acancel()
		browser.err = fmt.Errorf("starting %s: %w", path, err)
		return
	}
	browser.ctx = bctx
	browser.cancel = func() { bcancel(); acancel() }
}

// tab is one browser tab of a test, with the page's script errors collected.
type tab struct {
	t    *testing.T
	ctx  context.Context
	base string
	shot string // screenshot folder
	mu   sync.Mutex
	errs []string
}

func screenshotDir(t *testing.T) string {
	if d := os.Getenv("DIAGD_CONSOLE_SCREENSHOTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

func newTab(t *testing.T, base string) *tab {
	t.Helper()
	browser.once.Do(startBrowser)
	if browser.err != nil {
		t.Fatalf("the browser tests need Chromium: %v", browser.err)
	}
	ctx, cancel := chromedp.NewContext(browser.ctx)
	t.Cleanup(cancel)
	ctx, cancelT := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(cancelT)
	tb := &tab{t: t, ctx: ctx, base: base, shot: screenshotDir(t)}
	if err := chromedp.Listen(ctx, func(ev any) {
		var msg string
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			msg = "exception: " + e.ExceptionDetails.Text
			if e.ExceptionDetails.Exception != nil {
				msg += " " + e.ExceptionDetails.Exception.Description
			}
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError {
				for _, a := range e.Args {
					msg += " " + string(a.Value) + a.Description
				}
				msg = "console.error:" + msg
			}
		}
		if msg != "" {
			tb.mu.Lock()
			tb.errs = append(tb.errs, msg)
			tb.mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		tb.mu.Lock()
		defer tb.mu.Unlock()
		for _, e := range tb.errs {
			t.Errorf("page script error: %s", e)
		}
	})
	return tb
}

// open shows a console page (live, fails, review, catalogue, models).
func (tb *tab) open(page string) {
	tb.t.Helper()
	tb.do(chromedp.Navigate(tb.base + "/#" + page))
	tb.waitJS(fmt.Sprintf(`!document.getElementById('page-%s').hidden`, page))
}

func (tb *tab) do(actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	if err := chromedp.Do(tb.ctx, actions...); err != nil {
		tb.t.Fatal(err)
	}
}

// js evaluates an expression and returns its value.
func js[T any](tb *tab, expr string) T {
	tb.t.Helper()
	v, err := chromedp.Run(tb.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		tb.t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// waitJS waits until a JavaScript expression is true (30 s at most).
func (tb *tab) waitJS(expr string) {
	tb.t.Helper()
	if _, err := chromedp.Run(tb.ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(30*time.Second),
		chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		tb.t.Fatalf("waiting for %s: %v", expr, err)
	}
}

func (tb *tab) click(sel string) {
	tb.t.Helper()
	tb.do(chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
}

// submit clicks a control that loads a new page, and waits for that page.
func (tb *tab) submit(sel string) {
	tb.t.Helper()
	if _, err := chromedp.RunResponse(tb.ctx, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible)); err != nil {
		tb.t.Fatal(err)
	}
}

// setValue types into an input as a person would: focus, select all, type.
func (tb *tab) setValue(sel, value string) {
	tb.t.Helper()
	tb.do(chromedp.Focus(chromedp.CSS(sel)),
		chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`document.querySelector(%q).select()`, sel)),
		chromedp.KeyEvent("\b"), chromedp.KeyEvent(value))
}

// screenshot writes the visible page as NAME.png.
func (tb *tab) screenshot(name string) {
	tb.t.Helper()
	b, err := chromedp.Run(tb.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		tb.t.Fatal(err)
	}
	p := filepath.Join(tb.shot, name+".png")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		tb.t.Fatal(err)
	}
	tb.t.Logf("screenshot %s", p)
}

// paint drags the mouse across an element from (fx0,fy0) to (fx1,fy1), fractions of
// its box, with the left button down.
func (tb *tab) paint(sel string, fx0, fy0, fx1, fy1 float64) {
	tb.t.Helper()
	box := js[[]float64](tb, fmt.Sprintf(`(() => { const r = document.querySelector(%q).getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()`, sel))
	at := func(fx, fy float64) (float64, float64) { return box[0] + fx*box[2], box[1] + fy*box[3] }
	down := func(p *input.DispatchMouseEventParams) {
		p.Button, p.Buttons, p.ClickCount = input.MouseButtonLeft, 1, 1
	}
	x, y := at(fx0, fy0)
	steps := []chromedp.Action[chromedp.Void]{chromedp.MouseEvent(chromedp.MousePressed, x, y, down)}
	for i := 1; i <= 10; i++ {
		f := float64(i) / 10
		x, y = at(fx0+(fx1-fx0)*f, fy0+(fy1-fy0)*f)
		steps = append(steps, chromedp.MouseEvent(chromedp.MouseMoved, x, y, down))
	}
	steps = append(steps, chromedp.MouseEvent(chromedp.MouseReleased, x, y, down))
	tb.do(steps...)
}

// checkAccessible checks the basics on the page as it is: every input has a label,
// every button and image a name, and every control can be reached with the Tab key.
func (tb *tab) checkAccessible(page string) {
	tb.t.Helper()
	unlabelled := js[[]string](tb, `[...document.querySelectorAll('input, select, textarea')]
		.filter((e) => e.type !== 'hidden' && e.getClientRects().length > 0)
		.filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.getAttribute('aria-labelledby'))
		.map((e) => e.outerHTML.slice(0, 120))`)
	for _, u := range unlabelled {
		tb.t.Errorf("%s: input without a label: %s", page, u)
	}
	nameless := js[[]string](tb, `[...document.querySelectorAll('button, img, a[href]')]
		.filter((e) => e.getClientRects().length > 0)
		.filter((e) => e.tagName === 'IMG' ? !e.hasAttribute('alt') : !(e.textContent.trim() || e.getAttribute('aria-label')))
		.map((e) => e.outerHTML.slice(0, 120))`)
	for _, u := range nameless {
		tb.t.Errorf("%s: control or image without a name: %s", page, u)
	}
	// Mark every control a person could operate, then press Tab until each had focus.
	n := js[int](tb, `(() => {
		const cs = [...document.querySelectorAll('a[href], button, input, select, textarea, [tabindex]')]
			.filter((e) => !e.disabled && e.tabIndex >= 0 && e.getClientRects().length > 0 && !e.closest('[hidden], dialog:not([open])'));
		window.__a11y = new Set();
		cs.forEach((e, i) => { e.dataset.a11y = i; });
		document.addEventListener('focusin', (ev) => { if (ev.target.dataset && ev.target.dataset.a11y !== undefined) window.__a11y.add(ev.target.dataset.a11y); });
		document.activeElement && document.activeElement.blur();
		return cs.length;
	})()`)
	if n == 0 {
		tb.t.Fatalf("%s: no controls found", page)
	}
	for range n + 8 {
		tb.do(chromedp.KeyEvent(kbTab))
	}
	missed := js[[]string](tb, `[...document.querySelectorAll('[data-a11y]')].filter((e) => !window.__a11y.has(e.dataset.a11y)).map((e) => e.outerHTML.slice(0, 120))`)
	for _, m := range missed {
		tb.t.Errorf("%s: not reachable with the Tab key: %s", page, m)
	}
	tb.t.Logf("%s: %d controls, all labelled and reachable by keyboard", page, n)
	js[bool](tb, `(() => { document.querySelectorAll('[data-a11y]').forEach((e) => delete e.dataset.a11y); return true; })()`)
}

const kbTab = "\t"

// textOf is an element's visible text.
func (tb *tab) textOf(sel string) string {
	tb.t.Helper()
	return strings.TrimSpace(js[string](tb, fmt.Sprintf(`(document.querySelector(%q) || {}).textContent || ''`, sel)))
}
