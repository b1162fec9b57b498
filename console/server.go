package console

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/diagd/diagd/console/auth"
	"github.com/diagd/diagd/retrain/registry"
)

//go:embed web
var webFS embed.FS

// Options configure the console's server.
type Options struct {
	Log    *slog.Logger
	Users  []auth.User  // sign-in with a password (DIAGD_HTTP_USERS)
	Tokens []auth.Token // Authorization: Bearer (DIAGD_HTTP_TOKEN_FILE)
	// Loopback says the listen address is loopback only. Without users or tokens
	// the console then needs no sign-in (whoever is on the box is a technician) but
	// answers only requests addressed to a loopback name.
	Loopback   bool
	SessionTTL time.Duration // idle time before a session ends (default 12h)
	MaxStreams int           // live pages watching at once (default 32)
}

// Server is the console's HTTP handler.
type Server struct {
	o       Options
	b       Backend
	log     *slog.Logger
	signIn  bool
	sess    *sessions
	limiter loginLimiter
	streams chan struct{}
	mux     *http.ServeMux
	static  fs.FS
	// routesTable lists the API routes and the role each needs, so tests can check
	// every one of them.
	routesTable []route
}

type route struct {
	method, path string
	role         auth.Role
}

// Limits on request bodies.
const (
	maxJSONBody = 1 << 20
	maxFormBody = MaxUploadBytes + 64<<10
)

// New builds the console. It refuses to serve a non-loopback address without sign-in
// (configuration validation refuses that too: two locks on the door).
func New(o Options, b Backend) (*Server, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = 12 * time.Hour
	}
	if o.MaxStreams <= 0 {
		o.MaxStreams = 32
	}
	signIn := len(o.Users)+len(o.Tokens) > 0
	if !signIn && !o.Loopback {
		return nil, errors.New("console: a non-loopback address needs users or tokens")
	}
	static, err := fs.Sub(webFS, "web")
	if err != nil {
		return nil, err
	}
	s := &Server{o: o, b: b, log: o.Log, signIn: signIn, sess: newSessions(o.SessionTTL),
		streams: make(chan struct{}, o.MaxStreams), mux: http.NewServeMux(), static: static}
	s.routes()
	return s, nil
}

type handler func(w http.ResponseWriter, r *http.Request, p principal)

func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("GET /{$}", s.page("index.html"))
	m.HandleFunc("GET /login", s.page("login.html"))
	m.HandleFunc("POST /login", s.login)
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(s.static)))
	v, op, tech := auth.Viewer, auth.Operator, auth.Technician
	s.handle("POST /logout", v, s.logout)
	s.handle("GET /api/session", v, s.getSession)
	s.handle("GET /api/status", v, func(w http.ResponseWriter, _ *http.Request, _ principal) { writeJSON(w, s.b.Status()) })
	s.handle("GET /api/events", v, s.events)
	s.handle("GET /api/frames/{camera}", v, s.getFrame)
	s.handle("GET /api/fails", v, func(w http.ResponseWriter, _ *http.Request, _ principal) { writeJSON(w, s.b.Fails()) })
	s.handle("GET /api/fails/{id}/image", v, s.file(func(r *http.Request) (File, error) { return s.b.FailImage(r.PathValue("id")) }))
	s.handle("POST /api/fails/{id}/label", op, s.labelFail)
	s.handle("GET /api/review", v, s.getReview)
	s.handle("GET /api/review/{batch}/{image}/{which}", v, s.file(func(r *http.Request) (File, error) {
		return s.b.ReviewFile(r.PathValue("batch"), r.PathValue("image"), r.PathValue("which"))
	}))
	s.handle("POST /api/review/{batch}/decide", op, s.decide)
	s.handle("GET /api/catalogue", v, s.getCatalogue)
	s.handle("POST /api/catalogue", tech, s.saveCatalogue)
	s.handle("GET /api/catalogue/masks/{kind}/{index}", v, s.file(s.catalogueMask))
	s.handle("POST /api/catalogue/masks", tech, s.addMask)
	s.handle("GET /api/goodframes", v, s.getGoodFrames)
	s.handle("GET /api/goodframes/{camera}/{name}", v, s.file(func(r *http.Request) (File, error) {
		return s.b.GoodFrame(r.PathValue("camera") + "/" + r.PathValue("name"))
	}))
	s.handle("GET /api/models", v, s.getModels)
	s.handle("GET /api/models/{version}/pr_curve.png", v, s.file(func(r *http.Request) (File, error) { return s.b.PRCurve(r.PathValue("version")) }))
	s.handle("POST /api/models/promote", tech, s.promote)
	s.handle("POST /api/models/rollback", tech, s.rollback)
	s.handle("GET /api/jobs", v, func(w http.ResponseWriter, _ *http.Request, _ principal) { writeJSON(w, s.b.Job()) })
	s.handle("POST /api/jobs/start", tech, s.startJob)
	s.handle("POST /api/jobs/cancel", tech, s.cancelJob)
}

// ServeHTTP answers every console request: security headers, the loopback host rule,
// then the routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "+
		"connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	if strings.HasPrefix(r.URL.Path, "/api/") {
		h.Set("Cache-Control", "no-store")
	}
	if !s.signIn && !loopbackHost(r.Host) {
		httpError(w, http.StatusMisdirectedRequest, "this console answers only on the box itself (http://127.0.0.1:PORT)")
		return
	}
	s.mux.ServeHTTP(w, r)
}

// handle registers a route that needs at least role; state-changing routes (POST)
// also need the session's CSRF token (bearer requests carry no cookie, so none).
func (s *Server) handle(pattern string, role auth.Role, h handler) {
	post := strings.HasPrefix(pattern, "POST ")
	method, path, _ := strings.Cut(pattern, " ")
	s.routesTable = append(s.routesTable, route{method, path, role})
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		p, status, why := s.identify(w, r)
		if status != 0 {
			httpError(w, status, why)
			return
		}
		if p.Role < role {
			httpError(w, http.StatusForbidden, fmt.Sprintf("%s may not do this (needs the %s role)", p.Role, role))
			return
		}
		if post && !p.Bearer {
			if p.sess == nil {
				httpError(w, http.StatusForbidden, "no session: load the page first")
				return
			}
			if !sameOrigin(r) {
				httpError(w, http.StatusForbidden, "cross-site request refused")
				return
			}
			if !equalSecret(r.Header.Get(csrfHeader), p.sess.csrf) {
				httpError(w, http.StatusForbidden, "missing or wrong CSRF token: reload the page")
				return
			}
		}
		h(w, r, p)
	})
}

// identify finds who sends the request: a bearer token, a session cookie, or (without
// sign-in, on loopback) the local technician, to whom a session is issued.
func (s *Server) identify(w http.ResponseWriter, r *http.Request) (principal, int, string) {
	if a := r.Header.Get("Authorization"); a != "" {
		tok, ok := strings.CutPrefix(a, "Bearer ")
		if ok {
			for _, t := range s.o.Tokens {
				if t.Matches(tok) {
					return principal{Name: t.Name, Role: t.Role, Bearer: true}, 0, ""
				}
			}
		}
		return principal{}, http.StatusUnauthorized, "bad bearer token"
	}
	if c, err := r.Cookie(cookieName); err == nil {
		if x := s.sess.get(c.Value); x != nil {
			return principal{Name: x.user, Role: x.role, sess: x}, 0, ""
		}
	}
	if s.signIn {
		return principal{}, http.StatusUnauthorized, "sign in first"
	}
	// Whoever is on the box; a session (for the CSRF token) is issued by /api/session,
	// so requests without a cookie do not fill the session table.
	return principal{Name: localUser, Role: auth.Technician}, 0, ""
}

const localUser = "local"

// page serves an HTML page; the app page sends people who are not signed in to the
// sign-in page.
func (s *Server) page(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if name == "index.html" && s.signIn {
			if _, status, _ := s.identify(w, r); status != 0 {
				http.Redirect(w, r, "/login", http.StatusSeeOther)
				return
			}
		}
		if name == "login.html" && !s.signIn {
			http.Redirect(w, r, "/", http.StatusSeeOther)
			return
		}
		b, err := fs.ReadFile(s.static, name)
		if err != nil {
			httpError(w, http.StatusInternalServerError, err.Error())
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(b)
	}
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if !s.signIn || !sameOrigin(r) {
		httpError(w, http.StatusForbidden, "sign-in is not used here")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	name, password := r.PostFormValue("user"), r.PostFormValue("password")
	if wait, locked := s.limiter.locked(name); locked {
		http.Redirect(w, r, fmt.Sprintf("/login?locked=%d", int(wait.Seconds())+1), http.StatusSeeOther)
		return
	}
	var user *auth.User
	for i := range s.o.Users {
		if s.o.Users[i].Name == name {
			user = &s.o.Users[i]
		}
	}
	if user == nil || !user.CheckPassword(password) {
		s.limiter.failed(name)
		s.log.Warn("console: sign-in failed", "user", name, "remote", r.RemoteAddr)
		http.Redirect(w, r, "/login?failed=1", http.StatusSeeOther)
		return
	}
	s.limiter.succeeded(name)
	x := s.sess.create(user.Name, user.Role)
	setCookie(w, r, x)
	s.log.Info("console: signed in", "user", user.Name, "role", user.Role.String(), "remote", r.RemoteAddr)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, _ *http.Request, p principal) {
	if p.sess != nil {
		s.sess.remove(p.sess.id)
	}
	clearCookie(w)
	writeJSON(w, struct {
		OK bool `json:"ok"`
	}{true})
}

type sessionInfo struct {
	User    string `json:"user"`
	Role    string `json:"role"`
	CSRF    string `json:"csrf"`
	SignIn  bool   `json:"signIn"`
	Station string `json:"station"`
}

func (s *Server) getSession(w http.ResponseWriter, r *http.Request, p principal) {
	if p.sess == nil && !p.Bearer && !s.signIn {
		p.sess = s.sess.create(localUser, auth.Technician)
		setCookie(w, r, p.sess)
	}
	info := sessionInfo{User: p.Name, Role: p.Role.String(), SignIn: s.signIn, Station: s.b.Status().Station}
	if p.sess != nil {
		info.CSRF = p.sess.csrf
	}
	writeJSON(w, info)
}

// file serves a file the backend opened by id.
func (s *Server) file(open func(r *http.Request) (File, error)) handler {
	return func(w http.ResponseWriter, r *http.Request, _ principal) {
		f, err := open(r)
		if err != nil {
			s.writeErr(w, err)
			return
		}
		defer f.Content.Close()
		ct := mime.TypeByExtension(strings.ToLower(path.Ext(f.Name)))
		if !strings.HasPrefix(ct, "image/") {
			ct = "application/octet-stream"
		}
		w.Header().Set("Content-Type", ct)
		w.Header().Set("Content-Disposition", "inline")
		http.ServeContent(w, r, "", f.ModTime, f.Content)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		slog.Debug("console: response not written", "err", err)
	}
}

// apiError is every error the API answers with.
type apiError struct {
	Error    string           `json:"error"`
	Problems []string         `json:"problems,omitempty"`
	ByKind   map[int][]string `json:"byKind,omitempty"`
}

func httpError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(apiError{Error: msg})
}

// ErrBusy is returned by a JobRunner while a job runs; ErrRefused when a job cannot
// run now (too few good frames, no valid catalogue).
var (
	ErrBusy    = errors.New("busy")
	ErrRefused = errors.New("refused")
)

// writeErr answers an error with the status that says what kind it is.
func (s *Server) writeErr(w http.ResponseWriter, err error) {
	var inv *InvalidCatalogue
	var tooBig *http.MaxBytesError
	status := http.StatusInternalServerError
	switch {
	case errors.As(err, &inv):
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnprocessableEntity)
		json.NewEncoder(w).Encode(apiError{Error: err.Error(), Problems: inv.Problems, ByKind: inv.ByKind})
		return
	case errors.As(err, &tooBig):
		status = http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrBadID), errors.Is(err, ErrBadInput):
		status = http.StatusBadRequest
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrNotConfigured), errors.Is(err, fs.ErrNotExist):
		status = http.StatusNotFound
	case errors.Is(err, ErrConflict), errors.Is(err, ErrBusy), errors.Is(err, ErrRefused), errors.Is(err, registry.ErrLocked):
		status = http.StatusConflict
	default:
		s.log.Warn("console: request failed", "err", err)
	}
	httpError(w, status, err.Error())
}

// readJSON decodes a bounded JSON body, refusing unknown fields.
func readJSON(w http.ResponseWriter, r *http.Request, v any) error {
	if r.ContentLength > maxJSONBody { // refused before reading; chunked bodies meet the reader's limit
		return &http.MaxBytesError{Limit: maxJSONBody}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return err
		}
		return fmt.Errorf("%w: %v", ErrBadInput, err)
	}
	return nil
}

// readUpload reads one file field of a bounded multipart form.
func readUpload(w http.ResponseWriter, r *http.Request, field string, required bool) ([]byte, error) {
	if r.ContentLength > maxFormBody {
		return nil, &http.MaxBytesError{Limit: maxFormBody}
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	if err := r.ParseMultipartForm(maxFormBody); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: want a multipart form: %v", ErrBadInput, err)
	}
	f, _, err := r.FormFile(field)
	if errors.Is(err, http.ErrMissingFile) && !required {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadInput, field, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxUploadBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxUploadBytes {
		return nil, &http.MaxBytesError{Limit: MaxUploadBytes}
	}
	return b, nil
}
