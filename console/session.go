package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/diagd/diagd/console/auth"
)

// Session cookie and CSRF header names.
const (
	cookieName  = "diagd_session"
	csrfHeader  = "X-CSRF-Token"
	maxSessions = 1000
)

// principal is who makes a request.
type principal struct {
	Name   string
	Role   auth.Role
	Bearer bool     // a bearer token: no cookie, so no CSRF token needed
	sess   *session // nil for bearer requests
}

type session struct {
	id, csrf string
	user     string
	role     auth.Role
	expires  time.Time
}

// sessions are kept in memory: a restart signs everyone out, which is acceptable for a
// line-side box and keeps no secrets on disk.
type sessions struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[string]*session
}

func newSessions(ttl time.Duration) *sessions {
	return &sessions{ttl: ttl, m: map[string]*session{}}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *sessions) create(user string, role auth.Role) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for id, x := range s.m {
		if now.After(x.expires) {
			delete(s.m, id)
		}
	}
	for len(s.m) >= maxSessions { // drop the one closest to expiry
		var oldest *session
		for _, x := range s.m {
			if oldest == nil || x.expires.Before(oldest.expires) {
				oldest = x
			}
		}
		delete(s.m, oldest.id)
	}
	x := &session{id: randomHex(32), csrf: randomHex(32), user: user, role: role, expires: now.Add(s.ttl)}
	s.m[x.id] = x
	return x
}

// get returns the live session of id, extending it.
func (s *sessions) get(id string) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	x, ok := s.m[id]
	if !ok {
		return nil
	}
	if time.Now().After(x.expires) {
		delete(s.m, id)
		return nil
	}
	x.expires = time.Now().Add(s.ttl)
	return x
}

func (s *sessions) remove(id string) {
	s.mu.Lock()
	delete(s.m, id)
	s.mu.Unlock()
}

func setCookie(w http.ResponseWriter, r *http.Request, x *session) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: x.id, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
}

func clearCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

// loginLimiter slows password guessing: after 5 failures for a name, each attempt
// waits out a lock that doubles up to 5 minutes. The lock is per name, so one person
// mistyping does not lock out the others.
type loginLimiter struct {
	mu   sync.Mutex
	fail map[string]*failures
}

type failures struct {
	n     int
	until time.Time
}

const (
	freeAttempts = 5
	maxLock      = 5 * time.Minute
	maxTracked   = 10000
)

func (l *loginLimiter) locked(name string) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if f, ok := l.fail[name]; ok && time.Now().Before(f.until) {
		return time.Until(f.until), true
	}
	return 0, false
}

func (l *loginLimiter) failed(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fail == nil || len(l.fail) > maxTracked {
		l.fail = map[string]*failures{}
	}
	f := l.fail[name]
	if f == nil {
		f = &failures{}
		l.fail[name] = f
	}
	f.n++
	if f.n >= freeAttempts {
		f.until = time.Now().Add(min(maxLock, time.Second<<min(f.n-freeAttempts, 9)))
	}
}

func (l *loginLimiter) succeeded(name string) {
	l.mu.Lock()
	delete(l.fail, name)
	l.mu.Unlock()
}

func equalSecret(a, b string) bool {
	return len(a) == len(b) && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// loopbackHost reports whether a Host header names this box by a loopback name. A
// console without sign-in answers only to those, so a web page elsewhere cannot reach
// it by pointing a DNS name at 127.0.0.1 (DNS rebinding).
func loopbackHost(host string) bool {
	h := host
	if sh, _, err := net.SplitHostPort(host); err == nil {
		h = sh
	}
	h = strings.Trim(h, "[]")
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// sameOrigin reports whether a request comes from the console's own pages: a form or
// script on another site cannot post here. Browsers say so in Sec-Fetch-Site; older
// ones in Origin; a client that sends neither is not a browser, so it carries no
// ambient cookie it did not mean to (and still needs the CSRF token).
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin", "none":
		return true
	case "cross-site", "same-site":
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	_, rest, ok := strings.Cut(o, "://")
	return ok && strings.EqualFold(rest, r.Host)
}
