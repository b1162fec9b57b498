package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func consoleBase() Config {
	c := Defaults()
	c.Station, c.Demo = "s1", true
	return c
}

func TestConsoleNeedsSignInOffLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:9410", ":9410", "10.1.2.3:9410", "line3.local:9410", "[::]:9410"} {
		c := consoleBase()
		c.HTTPAddr = addr
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "DIAGD_HTTP_ADDR") {
			t.Errorf("HTTP_ADDR %s without users: %v", addr, err)
		}
		c.Console = false // health and metrics only: no console to protect
		if err := c.Validate(); err != nil {
			t.Errorf("HTTP_ADDR %s with the console off: %v", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:9410", "localhost:0", "[::1]:9410", ""} {
		c := consoleBase()
		c.HTTPAddr = addr
		if err := c.Validate(); err != nil {
			t.Errorf("HTTP_ADDR %q: %v", addr, err)
		}
	}
}

func TestConsoleUsersAndTokenFiles(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	// bcrypt of "correct horse", cost 4.
	if err := os.WriteFile(users, []byte("# console users\nann:technician:$2a$04$vyXjmW1XhN7r5ExctS0lEOjZIO4KM6Ww.UlsuSk0XNjH8WQws75Ye\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	c := consoleBase()
	c.HTTPAddr, c.HTTPUsers = "0.0.0.0:9410", users
	if err := c.Validate(); err != nil {
		t.Errorf("with a users file: %v", err)
	}
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("ann:admin:$2a$04$x\nbob:viewer:secret\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	c.HTTPUsers = bad
	err := c.Validate()
	for _, want := range []string{"DIAGD_HTTP_USERS", "bad:1", "unknown role", "bad:2", "not a bcrypt hash"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("bad users file: %v does not say %q", err, want)
		}
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte("kiosk:viewer:0123456789abcdef0123456789abcdef\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c = consoleBase()
	c.HTTPAddr, c.HTTPTokenFile = "0.0.0.0:9410", tokens
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "readable by every user") {
		t.Errorf("world-readable token file: %v", err)
	}
	if err := os.Chmod(tokens, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("private token file: %v", err)
	}
	c.KeepFails = -1
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "DIAGD_KEEP_FAILS") {
		t.Errorf("KEEP_FAILS -1: %v", err)
	}
}
