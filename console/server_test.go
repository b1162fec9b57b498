package console

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/diagd/diagd/console/auth"
	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/onnx/zoo"
	"github.com/diagd/diagd/retrain/registry"
)

// The server tests run the real file-backed stores (fails ring, review, catalogue,
// registry, hub) under the real HTTP server; only the daemon's live parts (station
// status, jobs) are a recording stand-in, since the daemon package depends on this one.
// Browser tests with the whole daemon are in console/browsertest.

const secret = "TOP-SECRET-OUTSIDE-THE-DATA-FOLDER"

type testBackend struct {
	*Hub
	*FailRing
	*Review
	*CatalogueFile
	*ModelRegistry
	mu      sync.Mutex
	started []JobRequest
	cancels int
}

func (b *testBackend) Status() Status {
	return Status{Station: "line1", Ready: true, NotReady: []string{}, Model: "v1", Cameras: []Camera{{Name: "cam", State: "online", FPS: 5}}}
}
func (b *testBackend) CatalogueInForce() CatalogueState { return CatalogueState{} }
func (b *testBackend) StartJob(r JobRequest) (JobState, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.started = append(b.started, r)
	return JobState{Running: r.Kind}, nil
}
func (b *testBackend) CancelJob() error { b.mu.Lock(); b.cancels++; b.mu.Unlock(); return nil }
func (b *testBackend) Job() JobState    { return JobState{} }

// station is a console over a temp folder: root/data is DATA_DIR (with a registry of
// two versions, a kept failed frame, a pending batch, a pooled good frame), root/etc
// holds the catalogue, and root/secret.txt must never be served.
type station struct {
	root, data, catPath string
	b                   *testBackend
	srv                 *httptest.Server
	s                   *Server
	failID              string
}

var users = map[string]string{"ann": "technician", "oli": "operator", "vic": "viewer"}

const (
	password    = "correct horse battery"
	viewerToken = "viewer-token-0123456789abcdef0123456789"
	techToken   = "technician-token-0123456789abcdef012345"
)

func writeModelVersion(t testing.TB, reg *registry.Registry, dir string, threshold float64) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := zoo.WriteResNet(zoo.SmallResNet(16, 16, 1), filepath.Join(dir, detect.ModelFile)); err != nil {
		t.Fatal(err)
	}
	md := detect.DefaultMetadata("m")
	md.Architecture, md.Input.Height, md.Input.Width, md.Threshold = "small-resnet", 16, 16, threshold
	if err := detect.WriteMetadata(dir, md); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "pr_curve.png"), maskPNG(t, 8, 8, rect(0, 0, 4, 4)))
	v, err := reg.Import(dir)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func newStation(t *testing.T, signIn bool) *station {
	t.Helper()
	root := t.TempDir()
	st := &station{root: root, data: filepath.Join(root, "data"), catPath: filepath.Join(root, "etc", "catalogue.yaml")}
	writeFile(t, filepath.Join(root, "secret.txt"), []byte(secret))
	writeFile(t, filepath.Join(root, "etc", "masks", "a.png"), maskPNG(t, 16, 16, rect(4, 4, 12, 12)))
	writeFile(t, st.catPath, []byte(catYAML))
	writeFile(t, filepath.Join(st.data, "negatives", "cam", "20260501T120000.000-000001-v1.png"), maskPNG(t, 16, 16, rect(0, 0, 2, 2)))
	pendingBatch(t, st.data, "b1", 2, filepath.Join(st.data, "negatives", "cam", "20260501T120000.000-000001-v1.png"))

	log := slog.New(slog.DiscardHandler)
	reg, err := registry.Open(log, filepath.Join(st.data, "models"), registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	release, err := reg.Lock()
	if err != nil {
		t.Fatal(err)
	}
	v1 := writeModelVersion(t, reg, filepath.Join(root, "m1"), 0.5)
	writeModelVersion(t, reg, filepath.Join(root, "m2"), 0.6)
	if err := reg.Promote(v1); err != nil {
		t.Fatal(err)
	}
	release()

	b := &testBackend{Hub: NewHub(log, HubOptions{}), ModelRegistry: NewModelRegistry(log, filepath.Join(st.data, "models"))}
	if b.FailRing, err = OpenFailRing(log, st.data, 10); err != nil {
		t.Fatal(err)
	}
	if b.Review, err = OpenReview(st.data); err != nil {
		t.Fatal(err)
	}
	if b.CatalogueFile, err = OpenCatalogueFile(st.catPath, st.data); err != nil {
		t.Fatal(err)
	}
	m := testFrame(32, 24, 1)
	runRing(t, b.FailRing, func() { b.FailRing.Offer(m, failVerdict("cam", time.Now(), 0.9)) }, 1)
	m.Close()
	st.failID = b.FailRing.Fails()[0].ID
	st.b = b

	o := Options{Log: log, Loopback: true}
	if signIn {
		var lines strings.Builder
		for u, role := range users {
			h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&lines, "%s:%s:%s\n", u, role, h)
		}
		up := filepath.Join(root, "users")
		writeFile(t, up, []byte(lines.String()))
		if o.Users, err = auth.LoadUsers(up); err != nil {
			t.Fatal(err)
		}
		tp := filepath.Join(root, "tokens")
		writeFile(t, tp, []byte("kiosk:viewer:"+viewerToken+"\nbot:technician:"+techToken+"\n"))
		os.Chmod(tp, 0o600)
		if o.Tokens, err = auth.LoadTokens(tp); err != nil {
			t.Fatal(err)
		}
		o.Loopback = false
	}
	if st.s, err = New(o, b); err != nil {
		t.Fatal(err)
	}
	st.srv = httptest.NewServer(st.s)
	ctx, cancel := context.WithCancel(context.Background())
	go b.Hub.Run(ctx)
	t.Cleanup(func() {
		cancel()
		st.srv.Close()
		b.FailRing.Close()
		b.Review.Close()
		b.CatalogueFile.Close()
	})
	return st
}

// client is a browser-like client: a cookie jar, and the CSRF token of its session.
type client struct {
	t     *testing.T
	base  string
	hc    *http.Client
	csrf  string
	token string // bearer, instead of a session
}

func (st *station) anon(t *testing.T) *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: t, base: st.srv.URL, hc: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// signIn signs in through the form and reads the session's CSRF token.
func (st *station) signIn(t *testing.T, user string) *client {
	c := st.anon(t)
	resp := c.do("POST", "/login", "application/x-www-form-urlencoded", strings.NewReader(url.Values{"user": {user}, "password": {password}}.Encode()), nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("sign-in of %s: %d %s", user, resp.StatusCode, resp.Header.Get("Location"))
	}
	c.loadCSRF()
	return c
}

func (c *client) loadCSRF() {
	var s sessionInfo
	if code := c.getJSON("/api/session", &s); code != 200 {
		c.t.Fatalf("session: %d", code)
	}
	c.csrf = s.CSRF
}

func (c *client) do(method, path, ctype string, body io.Reader, hdr map[string]string) *http.Response {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp
}

func (c *client) getJSON(path string, v any) int {
	resp := c.do("GET", path, "", nil, nil)
	defer resp.Body.Close()
	if resp.StatusCode == 200 && v != nil {
		json.NewDecoder(resp.Body).Decode(v)
	}
	return resp.StatusCode
}

// post sends a request the way the page does: JSON (or a form) with the CSRF header.
func (c *client) post(path string, body []byte, ctype string) (int, string) {
	c.t.Helper()
	hdr := map[string]string{}
	if c.csrf != "" {
		hdr[csrfHeader] = c.csrf
	}
	resp := c.do("POST", path, ctype, bytes.NewReader(body), hdr)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// rawPost sends only the head of a request that announces n bytes of body, as a client
// about to upload that much would, and returns the status the server answers with.
func (c *client) rawPost(path, ctype string, n int) int {
	c.t.Helper()
	u, _ := url.Parse(c.base)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		c.t.Fatal(err)
	}
	defer conn.Close()
	cookies := ""
	for _, k := range c.hc.Jar.Cookies(u) {
		cookies += k.Name + "=" + k.Value + "; "
	}
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nCookie: %s\r\n%s: %s\r\n\r\n--x\r\n",
		path, u.Host, ctype, n, cookies, csrfHeader, c.csrf)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		c.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// multipartBody builds a form with text fields and one file.
func multipartBody(t testing.TB, fields map[string]string, file string, content []byte) ([]byte, string) {
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for k, v := range fields {
		w.WriteField(k, v)
	}
	if file != "" {
		fw, err := w.CreateFormFile(file, "upload.png")
		if err != nil {
			t.Fatal(err)
		}
		fw.Write(content)
	}
	w.Close()
	return buf.Bytes(), w.FormDataContentType()
}

// postRoute is one state-changing route with a valid request for it.
type postRoute struct {
	path  string
	body  []byte
	ctype string
	role  auth.Role
}

var paramRE = regexp.MustCompile(`\{[a-z]+\}`)

// postRoutes is every POST route the server registered, filled in with a request
// that would succeed for the right role.
func (st *station) postRoutes(t *testing.T) []postRoute {
	t.Helper()
	catDoc, _ := st.b.Catalogue()
	edit, _ := json.Marshal(editOf(catDoc))
	mask, mctype := multipartBody(t, map[string]string{"kind": "scratch"}, "mask", maskPNG(t, 16, 16, rect(2, 2, 8, 8)))
	label, lctype := multipartBody(t, map[string]string{"label": "good"}, "", nil)
	bodies := map[string]postRoute{
		"/logout":                    {body: nil},
		"/api/fails/{id}/label":      {body: label, ctype: lctype},
		"/api/review/{batch}/decide": {body: []byte(`{"images":["00000"],"accept":true}`), ctype: "application/json"},
		"/api/catalogue":             {body: edit, ctype: "application/json"},
		"/api/catalogue/masks":       {body: mask, ctype: mctype},
		"/api/models/promote":        {body: []byte(`{"version":"v2"}`), ctype: "application/json"},
		"/api/models/rollback":       {body: nil},
		"/api/jobs/start":            {body: []byte(`{"kind":"augment","n":5}`), ctype: "application/json"},
		"/api/jobs/cancel":           {body: nil},
	}
	var out []postRoute
	for _, r := range st.s.routesTable {
		if r.method != "POST" {
			continue
		}
		pr, ok := bodies[r.path]
		if !ok {
			t.Fatalf("POST %s has no request in this test: add one", r.path)
		}
		pr.path = strings.NewReplacer("{id}", st.failID, "{batch}", "b1").Replace(r.path)
		pr.role = r.role
		out = append(out, pr)
	}
	if len(out) != len(bodies) {
		t.Fatalf("%d POST routes registered, %d known to the test", len(out), len(bodies))
	}
	return out
}

func (st *station) hasGET(path string) bool {
	for _, r := range st.s.routesTable {
		if r.method == "GET" && strings.NewReplacer("{id}", st.failID, "{batch}", "b1").Replace(r.path) == path {
			return true
		}
	}
	return false
}

// unchanged checks that no request changed anything: the failed frame is unlabelled,
// the batch pending, the catalogue as written, v1 current, no job started, no mask.
func (st *station) unchanged(t *testing.T) {
	t.Helper()
	if f := st.b.FailRing.Fails()[0]; f.Label != "" {
		t.Errorf("the failed frame was labelled %q", f.Label)
	}
	if !exists(filepath.Join(st.data, PendingDir, "b1", "00000.png")) {
		t.Error("a pending image moved")
	}
	if b, _ := os.ReadFile(st.catPath); string(b) != catYAML {
		t.Error("the catalogue changed")
	}
	if l, _ := os.Readlink(filepath.Join(st.data, "models", "current")); filepath.Base(l) != "v1" {
		t.Errorf("current is %s", l)
	}
	if exists(filepath.Join(st.data, MasksDir)) {
		t.Error("a mask was stored")
	}
	st.b.mu.Lock()
	defer st.b.mu.Unlock()
	if len(st.b.started) > 0 || st.b.cancels > 0 {
		t.Errorf("jobs started %v, cancels %d", st.b.started, st.b.cancels)
	}
}

func TestEveryMutationNeedsRightsAndCSRF(t *testing.T) {
	st := newStation(t, true)
	routes := st.postRoutes(t)
	anon := st.anon(t)
	viewer := st.signIn(t, "vic")
	operator := st.signIn(t, "oli")
	tech := st.signIn(t, "ann")
	viewerBearer := &client{t: t, base: st.srv.URL, hc: http.DefaultClient, token: viewerToken}
	noCSRF := &client{t: t, base: st.srv.URL, hc: tech.hc}
	wrongCSRF := &client{t: t, base: st.srv.URL, hc: tech.hc, csrf: strings.Repeat("0", 64)}
	for _, r := range routes {
		if r.path == "/logout" {
			continue // ending one's own session needs a session and CSRF, checked below
		}
		cases := []struct {
			who  string
			c    *client
			want int
		}{
			{"anonymous", anon, http.StatusUnauthorized},
			{"bad bearer", &client{t: t, base: st.srv.URL, hc: http.DefaultClient, token: "nope"}, http.StatusUnauthorized},
			{"viewer", viewer, http.StatusForbidden},
			{"viewer bearer", viewerBearer, http.StatusForbidden},
			{"no CSRF token", noCSRF, http.StatusForbidden},
			{"wrong CSRF token", wrongCSRF, http.StatusForbidden},
		}
		if r.role == auth.Technician {
			cases = append(cases, struct {
				who  string
				c    *client
				want int
			}{"operator", operator, http.StatusForbidden})
		}
		for _, c := range cases {
			if code, body := c.c.post(r.path, r.body, r.ctype); code != c.want {
				t.Errorf("POST %s as %s: %d %s, want %d", r.path, c.who, code, body, c.want)
			}
		}
		// A form posted from another site, with the victim's cookie and even a token.
		for _, h := range []map[string]string{{"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}} {
			h[csrfHeader] = tech.csrf
			resp := tech.do("POST", r.path, r.ctype, bytes.NewReader(r.body), h)
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("POST %s cross-site %v: %d, want 403", r.path, h, resp.StatusCode)
			}
		}
		// A state change never rides a GET.
		if !st.hasGET(r.path) {
			resp := tech.do("GET", r.path, "", nil, nil)
			resp.Body.Close()
			if resp.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("GET %s: %d, want 405", r.path, resp.StatusCode)
			}
		}
	}
	st.unchanged(t)
	// The same requests with the right role and token succeed: the refusals above were
	// the gates, not bad requests.
	for _, r := range routes {
		c := tech
		if r.role == auth.Operator {
			c = operator
		}
		if r.path == "/logout" {
			c = st.signIn(t, "vic")
		}
		if code, body := c.post(r.path, r.body, r.ctype); code != 200 {
			t.Errorf("POST %s as %s: %d %s", r.path, r.role, code, body)
		}
	}
	botCode, _ := (&client{t: t, base: st.srv.URL, hc: http.DefaultClient, token: techToken}).post("/api/jobs/cancel", nil, "")
	if botCode != 200 {
		t.Errorf("technician bearer without CSRF (no cookie, none needed): %d", botCode)
	}
	if code := viewer.getJSON("/api/status", nil); code != 200 {
		t.Errorf("viewer reading: %d", code)
	}
	if code := viewerBearer.getJSON("/api/models", nil); code != 200 {
		t.Errorf("viewer bearer reading: %d", code)
	}
}

func TestSignIn(t *testing.T) {
	st := newStation(t, true)
	c := st.anon(t)
	resp := c.do("GET", "/", "", nil, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Errorf("the page without a session: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if code := c.getJSON("/api/status", nil); code != http.StatusUnauthorized {
		t.Errorf("API without a session: %d", code)
	}
	bad := url.Values{"user": {"ann"}, "password": {"wrong"}}.Encode()
	for i := range freeAttempts {
		resp := c.do("POST", "/login", "application/x-www-form-urlencoded", strings.NewReader(bad), nil)
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); loc != "/login?failed=1" {
			t.Fatalf("wrong password %d: %s", i, loc)
		}
	}
	// Locked now, even with the right password.
	resp = c.do("POST", "/login", "application/x-www-form-urlencoded", strings.NewReader(url.Values{"user": {"ann"}, "password": {password}}.Encode()), nil)
	resp.Body.Close()
	if !strings.HasPrefix(resp.Header.Get("Location"), "/login?locked=") {
		t.Errorf("after %d failures: %s", freeAttempts, resp.Header.Get("Location"))
	}
	// Another user is not locked out by ann's failures.
	oli := st.signIn(t, "oli")
	var s sessionInfo
	oli.getJSON("/api/session", &s)
	if s.User != "oli" || s.Role != "operator" || len(s.CSRF) != 64 || !s.SignIn {
		t.Errorf("session %+v", s)
	}
	if code, _ := oli.post("/logout", nil, ""); code != 200 {
		t.Errorf("logout: %d", code)
	}
	if code := oli.getJSON("/api/status", nil); code != http.StatusUnauthorized {
		t.Errorf("after logout: %d", code)
	}
}

func TestLoopbackWithoutSignIn(t *testing.T) {
	st := newStation(t, false)
	c := st.anon(t)
	c.loadCSRF()
	if c.csrf == "" {
		t.Fatal("no CSRF token for the local session")
	}
	if code, body := c.post("/api/jobs/cancel", nil, ""); code != 200 {
		t.Errorf("local technician: %d %s", code, body)
	}
	// Requests without a cookie (scripts, curl) are served but fill no session table.
	for range 20 {
		if code := (&client{t: t, base: st.srv.URL, hc: http.DefaultClient}).getJSON("/api/status", nil); code != 200 {
			t.Fatalf("status without a cookie: %d", code)
		}
	}
	if n := len(st.s.sess.m); n != 1 {
		t.Errorf("%d sessions after one page and 20 cookie-less requests, want 1", n)
	}
	noToken := &client{t: t, base: st.srv.URL, hc: c.hc}
	if code, _ := noToken.post("/api/jobs/cancel", nil, ""); code != http.StatusForbidden {
		t.Errorf("local session without the CSRF token: %d", code)
	}
	// A page elsewhere that points a DNS name at 127.0.0.1 gets nothing.
	req, _ := http.NewRequest("GET", st.srv.URL+"/api/status", nil)
	req.Host = "attacker.example:80"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("foreign Host: %d, want 421", resp.StatusCode)
	}
	if _, err := New(Options{}, st.b); err == nil {
		t.Error("a non-loopback console without users was built")
	}
}

// traversal are ids that try to leave their folder, as the browser would send them
// (escaped, so the router does not clean them away).
var traversal = []string{"..", "...", "..%2F..%2Fsecret.txt", "%2E%2E%2F%2E%2E%2F%2E%2E%2Fsecret.txt", "..%5C..%5Csecret.txt",
	"%2Fetc%2Fpasswd", "x%00.png", "cam%2F..%2F..%2F..%2Fsecret.txt", "-%2F..%2F..%2Fsecret.txt", "evil.png"}

func TestPathTraversalInEveryID(t *testing.T) {
	st := newStation(t, false)
	// Symlinks inside DATA_DIR that point out of it: the names are valid ids, the
	// targets are not served (os.Root refuses to follow them out).
	for _, p := range []string{filepath.Join(st.data, "negatives", "cam", "evil.png"), filepath.Join(st.data, PendingDir, "b1", "99999.png"),
		filepath.Join(st.data, FailsDir, "20260501T120000.000Z-cam-0001.png")} {
		if err := os.Symlink(filepath.Join(st.root, "secret.txt"), p); err != nil {
			t.Fatal(err)
		}
	}
	c := st.anon(t)
	c.loadCSRF()
	for _, r := range st.s.routesTable {
		if !strings.Contains(r.path, "{") {
			continue
		}
		for _, param := range paramRE.FindAllString(r.path, -1) {
			for _, bad := range append(cloneStrings(traversal), "99999", "20260501T120000.000Z-cam-0001") {
				path := r.path
				for _, other := range paramRE.FindAllString(r.path, -1) {
					val := map[string]string{"{id}": st.failID, "{batch}": "b1", "{image}": "00000", "{which}": "image",
						"{camera}": "cam", "{name}": "20260501T120000.000-000001-v1.png", "{kind}": "0", "{index}": "0", "{version}": "v1"}[other]
					if other == param {
						val = bad
					}
					path = strings.Replace(path, other, val, 1)
				}
				var code int
				var body string
				if r.method == "POST" {
					code, body = c.post(path, []byte(`{"images":[],"accept":true}`), "application/json")
				} else {
					resp := c.do("GET", path, "", nil, nil)
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					code, body = resp.StatusCode, string(b)
				}
				if strings.Contains(body, secret) {
					t.Errorf("%s %s served the secret", r.method, path)
				}
				if code == 200 && strings.Contains(bad, ".") && bad != "evil.png" {
					t.Errorf("%s %s: 200", r.method, path)
				}
			}
		}
	}
	st.unchanged(t)
}

// cloneStrings copies a list (so appends never share the array).
func cloneStrings(s []string) []string { return append([]string(nil), s...) }

func TestUploadLimits(t *testing.T) {
	st := newStation(t, false)
	c := st.anon(t)
	c.loadCSRF()
	// A 9 MiB upload is refused from its Content-Length, before its body is read.
	for _, path := range []string{"/api/catalogue/masks", "/api/fails/" + st.failID + "/label"} {
		if code := c.rawPost(path, "multipart/form-data; boundary=x", MaxUploadBytes+1<<20); code != http.StatusRequestEntityTooLarge {
			t.Errorf("9 MiB upload to %s: %d", path, code)
		}
	}
	// A tiny PNG whose header claims 30000×30000 pixels (a decompression bomb).
	bomb := maskPNG(t, 4, 4, rect(0, 0, 2, 2))
	copy(bomb[16:24], []byte{0, 0, 0x75, 0x30, 0, 0, 0x75, 0x30})
	binary.BigEndian.PutUint32(bomb[29:33], crc32.ChecksumIEEE(bomb[12:29])) // IHDR's CRC
	body, ct := multipartBody(t, map[string]string{"kind": "k"}, "mask", bomb)
	if code, msg := c.post("/api/catalogue/masks", body, ct); code != http.StatusBadRequest || !strings.Contains(msg, "30000") {
		t.Errorf("PNG claiming 30000²: %d %s", code, msg)
	}
	body, ct = multipartBody(t, map[string]string{"kind": "k"}, "mask", []byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;"))
	if code, msg := c.post("/api/catalogue/masks", body, ct); code != http.StatusBadRequest {
		t.Errorf("a GIF: %d %s", code, msg)
	}
	huge := append([]byte(`{"hash":"`), bytes.Repeat([]byte("a"), maxJSONBody)...)
	huge = append(huge, `"}`...)
	if code, msg := c.post("/api/catalogue", huge, "application/json"); code != http.StatusRequestEntityTooLarge {
		t.Errorf("1 MiB JSON: %d %s", code, msg)
	}
	// Without a length (chunked), the body is cut at the limit while it is read.
	resp := c.do("POST", "/api/catalogue", "application/json", io.MultiReader(bytes.NewReader(huge)), map[string]string{csrfHeader: c.csrf})
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("1 MiB chunked JSON: %d", resp.StatusCode)
	}
	if code, msg := c.post("/api/catalogue", []byte(`{"hash":"x","kinds":[],"extra":1}`), "application/json"); code != http.StatusBadRequest {
		t.Errorf("unknown field: %d %s", code, msg)
	}
	st.unchanged(t)
}

type fileState struct {
	size int64
	mod  time.Time
}

// tree lists every file under root except those below skip.
func tree(t *testing.T, root, skip string) map[string]fileState {
	out := map[string]fileState{}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if p == skip {
			return filepath.SkipDir
		}
		if info, err := d.Info(); err == nil {
			out[p] = fileState{info.Size(), info.ModTime()}
		}
		return nil
	})
	return out
}

func TestNothingOutsideTheDataFolderIsWritten(t *testing.T) {
	st := newStation(t, false)
	before := tree(t, st.root, st.data)
	c := st.anon(t)
	c.loadCSRF()
	for _, r := range st.postRoutes(t) {
		if r.path == "/logout" {
			continue
		}
		if code, body := c.post(r.path, r.body, r.ctype); code != 200 {
			t.Fatalf("POST %s: %d %s", r.path, code, body)
		}
	}
	// The edits landed in DATA_DIR...
	if f := st.b.FailRing.Fails()[0]; f.Label != LabelGood || !exists(filepath.Join(st.data, f.Filed[0])) {
		t.Errorf("label not filed in DATA_DIR: %+v", f)
	}
	if !exists(filepath.Join(st.data, "synthetic", "accepted", "b1", "00000.png")) {
		t.Error("accepted image not in DATA_DIR/synthetic/accepted")
	}
	// ...and outside it only the catalogue file itself may change (it was saved).
	after := tree(t, st.root, st.data)
	for p, s := range after {
		if b, ok := before[p]; (!ok || b != s) && p != st.catPath && p != filepath.Dir(st.catPath) {
			t.Errorf("%s changed outside DATA_DIR", p)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			t.Errorf("%s removed outside DATA_DIR", p)
		}
	}
}
