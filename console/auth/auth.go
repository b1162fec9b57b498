// Package auth holds who may use the console and what they may do: the users file
// (bcrypt password hashes), the bearer token file, the roles, and the rule that decides
// when a listen address needs them. It is small so that configuration validation can
// use it without pulling in the console.
package auth

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// Role says what a user may do. Each role may do what the ones below it may.
type Role int

// Roles, lowest first.
const (
	// Viewer sees every page and changes nothing.
	Viewer Role = iota + 1
	// Operator also labels failed frames and reviews synthetic defects.
	Operator
	// Technician also edits the catalogue, promotes and rolls back models, and runs jobs.
	Technician
)

var roleNames = map[Role]string{Viewer: "viewer", Operator: "operator", Technician: "technician"}

func (r Role) String() string {
	if s, ok := roleNames[r]; ok {
		return s
	}
	return "none"
}

// ParseRole reads a role name.
func ParseRole(s string) (Role, error) {
	for r, n := range roleNames {
		if n == s {
			return r, nil
		}
	}
	return 0, fmt.Errorf("unknown role %q (want viewer, operator or technician)", s)
}

// Limits on the files, so a wrong path (a log, a disk image) is refused quickly.
const (
	maxFileBytes = 1 << 20
	maxEntries   = 1000
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_.@-]{1,64}$`)

// CheckName says what is wrong with a user or token name, if anything.
func CheckName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("name %q: use 1..64 letters, digits, '.', '_', '@', '-'", name)
	}
	return nil
}

// User is one line of the users file.
type User struct {
	Name string
	Role Role
	hash []byte
}

// CheckPassword reports whether password is the user's (bcrypt, constant time).
func (u User) CheckPassword(password string) bool {
	return bcrypt.CompareHashAndPassword(u.hash, []byte(password)) == nil
}

// Token is one line of the token file. Only its sha256 is kept in memory.
type Token struct {
	Name string
	Role Role
	sum  [32]byte
}

// Matches reports whether a presented bearer token is this one (constant time).
func (t Token) Matches(presented string) bool {
	s := sha256.Sum256([]byte(presented))
	return subtle.ConstantTimeCompare(s[:], t.sum[:]) == 1
}

// lines reads a small "name:role:secret" file, skipping blank lines and # comments.
// It refuses a file that others may read when secret is true.
func lines(path string, private bool, each func(n int, name string, role Role, secret string) error) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if st.Size() > maxFileBytes {
		return fmt.Errorf("%s is %d bytes (at most %d)", path, st.Size(), maxFileBytes)
	}
	if private && st.Mode().Perm()&0o004 != 0 {
		return fmt.Errorf("%s is readable by every user (mode %v): chmod o-r it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	var errs []error
	n, seen := 0, map[string]int{}
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		where := fmt.Sprintf("%s:%d", path, line)
		name, rest, ok1 := strings.Cut(text, ":")
		role, secret, ok2 := strings.Cut(rest, ":")
		if !ok1 || !ok2 {
			errs = append(errs, fmt.Errorf("%s: want NAME:ROLE:SECRET", where))
			continue
		}
		if err := CheckName(name); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			continue
		}
		if prev, dup := seen[name]; dup {
			errs = append(errs, fmt.Errorf("%s: %s is already defined on line %d", where, name, prev))
			continue
		}
		seen[name] = line
		r, err := ParseRole(role)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			continue
		}
		if n++; n > maxEntries {
			return fmt.Errorf("%s: more than %d entries", path, maxEntries)
		}
		if err := each(line, name, r, secret); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
		}
	}
	return errors.Join(errs...)
}

// LoadUsers reads a users file: lines "name:role:bcrypt-hash" (htpasswd -nbB's hash,
// $2y$, works too), # comments. Every problem is named with its line.
func LoadUsers(path string) ([]User, error) {
	var out []User
	err := lines(path, false, func(_ int, name string, role Role, secret string) error {
		if _, err := bcrypt.Cost([]byte(secret)); err != nil {
			return fmt.Errorf("%s: the password is not a bcrypt hash (%v); make one with 'diagd console-user'", name, err)
		}
		out = append(out, User{Name: name, Role: role, hash: []byte(secret)})
		return nil
	})
	if err == nil && len(out) == 0 {
		err = fmt.Errorf("%s defines no user", path)
	}
	return out, err
}

// MinTokenLen is the shortest bearer token accepted (as hex, 128 bits).
const MinTokenLen = 32

// LoadTokens reads a bearer token file: lines "name:role:token", # comments. The file
// holds secrets in clear, so one readable by every user is refused.
func LoadTokens(path string) ([]Token, error) {
	var out []Token
	err := lines(path, true, func(_ int, name string, role Role, secret string) error {
		if len(secret) < MinTokenLen {
			return fmt.Errorf("%s: the token has %d characters (at least %d; e.g. openssl rand -hex 32)", name, len(secret), MinTokenLen)
		}
		out = append(out, Token{Name: name, Role: role, sum: sha256.Sum256([]byte(secret))})
		return nil
	})
	if err == nil && len(out) == 0 {
		err = fmt.Errorf("%s defines no token", path)
	}
	return out, err
}

// HashPassword makes the bcrypt hash of a users file line.
func HashPassword(password string) (string, error) {
	if len(password) < 8 {
		return "", errors.New("a password needs at least 8 characters")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	return string(h), err
}

// IsLoopback reports whether a listen address (host:port) binds only the loopback
// interface: an IP in 127.0.0.0/8 or ::1, or "localhost". An empty host binds every
// interface, so it is not loopback; so is any other name.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
