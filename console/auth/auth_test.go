package auth

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestUsersAndTokens(t *testing.T) {
	dir := t.TempDir()
	// The lowest cost keeps the test fast under -race; the check is the same.
	hb, err := bcrypt.GenerateFromPassword([]byte("correct horse"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	h := string(hb)
	if _, err := HashPassword("short"); err == nil {
		t.Error("a 5-character password was hashed")
	}
	// htpasswd -B writes $2y$; Go's bcrypt reads it.
	y := "$2y$" + strings.TrimPrefix(h, "$2a$")
	p := filepath.Join(dir, "users")
	os.WriteFile(p, []byte("# people\nann:technician:"+h+"\n\nbob:viewer:"+y+"\n"), 0o640)
	us, err := LoadUsers(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(us) != 2 || us[0].Role != Technician || us[1].Role != Viewer {
		t.Fatalf("users %+v", us)
	}
	if !us[0].CheckPassword("correct horse") || us[0].CheckPassword("correct horsE") || !us[1].CheckPassword("correct horse") {
		t.Error("password check")
	}
	os.WriteFile(p, []byte("ann:technician:"+h+"\nann:viewer:"+h+"\nbad name:viewer:"+h+"\nnocolons\n"), 0o640)
	_, err = LoadUsers(p)
	for _, want := range []string{"users:2: ann is already defined on line 1", "users:3: name", "users:4: want NAME:ROLE:SECRET"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v does not say %q", err, want)
		}
	}
	tp := filepath.Join(dir, "tokens")
	tok := strings.Repeat("ab", 20)
	os.WriteFile(tp, []byte("kiosk:viewer:"+tok+"\nbot:operator:short\n"), 0o600)
	if _, err := LoadTokens(tp); err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Errorf("short token: %v", err)
	}
	os.WriteFile(tp, []byte("kiosk:viewer:"+tok+"\n"), 0o600)
	ts, err := LoadTokens(tp)
	if err != nil {
		t.Fatal(err)
	}
	if !ts[0].Matches(tok) || ts[0].Matches(tok+"x") || ts[0].Matches("") {
		t.Error("token match")
	}
	if _, err := LoadUsers(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing users file accepted")
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1:9410": true, "127.1.2.3:1": true, "[::1]:9410": true, "localhost:80": true,
		":9410": false, "0.0.0.0:9410": false, "[::]:1": false, "10.0.0.1:80": false, "box.local:80": false, "nonsense": false} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v", addr, got)
		}
	}
}
