// Package mosquittotest runs a real mosquitto broker for tests: on a free 127.0.0.1
// port, with a temporary config and persistence folder, anonymous access, and a large
// queue for offline persistent sessions. The broker can be SIGKILLed and restarted on
// the same port with its persistence, to test what survives a broker crash. StartWith
// adds TLS, passwords, an ACL and a packet size limit; NewProxy puts a cuttable TCP link in
// front of the broker, to make a client vanish without DISCONNECT (last will) while the
// broker keeps running, or to swallow the broker's PUBACKs.
//
//	b := mosquittotest.Start(t)          // b.URL() = tcp://127.0.0.1:<port>
//	b.Kill(); b.Restart()                // crash and come back with its persistence
//	p := mosquittotest.NewProxy(t, b)    // p.URL(); p.Sever(); p.SetDown(true); p.DropPubacks(true)
package mosquittotest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/diagd/diagd/internal/testenv"
)

// Binary is where Debian installs mosquitto; DIAGD_MOSQUITTO overrides it.
const Binary = "/usr/sbin/mosquitto"

// Broker is one mosquitto process (or its restarts) owned by a test.
type Broker struct {
	Port int
	Dir  string // config, persistence and log
	t    testing.TB
	tls  bool

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Options add security to the test broker. Zero value: plain TCP, anonymous.
type Options struct {
	// CAFile, CertFile, KeyFile make the listener TLS-only (PEM files).
	CAFile, CertFile, KeyFile string
	// RequireCertificate demands a client certificate signed by CAFile.
	RequireCertificate bool
	// SaveOnShutdownOnly: persist only on a clean stop (and every 30 min), not after
	// every change. Much faster (mosquitto rewrites its whole database on each save),
	// but a Kill loses what the broker had not delivered: for tests that do not kill.
	SaveOnShutdownOnly bool
	// Users, when not empty, turns anonymous access off and accepts these
	// user → password pairs (hashed with mosquitto_passwd).
	Users map[string]string
	// MaxPacketSize, when > 0, is mosquitto's max_packet_size: it drops a client that
	// sends a larger packet.
	MaxPacketSize int
	// ACL, when not empty, is the content of mosquitto's acl_file (use with Users).
	ACL string
}

// Start starts mosquitto and returns once it accepts connections. The broker is
// killed when the test ends; its log is printed if the test failed. Without the binary
// the test fails under CI and is skipped elsewhere, with a clear message (testenv.Missing).
func Start(t testing.TB) *Broker { t.Helper(); return StartWith(t, Options{}) }

// StartWith is Start with TLS and/or passwords.
func StartWith(t testing.TB, opts Options) *Broker {
	t.Helper()
	bin := os.Getenv("DIAGD_MOSQUITTO")
	if bin == "" {
		bin = Binary
	}
	if _, err := os.Stat(bin); err != nil {
		testenv.Missing(t, "mosquittotest: mosquitto binary %s is absent (%v): apt-get install mosquitto", bin, err)
	}
	b := &Broker{Port: freePort(t), Dir: t.TempDir(), t: t}
	// Save after every change, so a SIGKILL loses (almost) nothing: tests kill the broker.
	autosave := "autosave_interval 1\nautosave_on_changes true"
	if opts.SaveOnShutdownOnly {
		autosave = "autosave_interval 1800"
	}
	conf := fmt.Sprintf(`listener %d 127.0.0.1
persistence true
persistence_location %s/
%s
max_queued_messages 1000000
max_inflight_messages 0
log_dest file %s
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
`, b.Port, b.Dir, autosave, filepath.Join(b.Dir, "mosquitto.log"))
	if opts.MaxPacketSize > 0 {
		conf += fmt.Sprintf("max_packet_size %d\n", opts.MaxPacketSize)
	}
	if opts.ACL != "" {
		acl := filepath.Join(b.Dir, "acl")
		if err := os.WriteFile(acl, []byte(opts.ACL), 0o644); err != nil {
			t.Fatal(err)
		}
		conf += "acl_file " + acl + "\n"
	}
	if len(opts.Users) == 0 {
		conf += "allow_anonymous true\n"
	} else {
		pw := filepath.Join(b.Dir, "passwd")
		for u, p := range opts.Users {
			args := []string{"-b", pw, u, p}
			if _, err := os.Stat(pw); err != nil {
				args = append([]string{"-c"}, args...)
			}
			if out, err := exec.Command("mosquitto_passwd", args...).CombinedOutput(); err != nil {
				t.Fatalf("mosquittotest: mosquitto_passwd: %v: %s", err, out)
			}
		}
		conf += "allow_anonymous false\npassword_file " + pw + "\n"
	}
	if opts.CertFile != "" {
		conf += fmt.Sprintf("cafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate %v\n",
			opts.CAFile, opts.CertFile, opts.KeyFile, opts.RequireCertificate)
		b.tls = true
	}
	if os.Geteuid() == 0 {
		// Running as root mosquitto would switch to user "mosquitto", which cannot write
		// the test's temp folder.
		if u, err := user.Current(); err == nil {
			conf += "user " + u.Username + "\n"
		}
	}
	if err := os.WriteFile(filepath.Join(b.Dir, "mosquitto.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		b.Kill()
		if t.Failed() {
			if log, err := os.ReadFile(filepath.Join(b.Dir, "mosquitto.log")); err == nil {
				t.Logf("mosquitto log:\n%s", log)
			}
		}
	})
	b.start(bin)
	return b
}

// URL is the broker's address for paho: tcp://127.0.0.1:<port>.
// With TLS it is ssl://127.0.0.1:<port>.
func (b *Broker) URL() string {
	if b.tls {
		return "ssl://127.0.0.1:" + strconv.Itoa(b.Port)
	}
	return "tcp://127.0.0.1:" + strconv.Itoa(b.Port)
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (b *Broker) start(bin string) {
	b.t.Helper()
	cmd := exec.Command(bin, "-c", filepath.Join(b.Dir, "mosquitto.conf"))
	out, err := os.OpenFile(filepath.Join(b.Dir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		b.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		b.t.Fatalf("mosquittotest: start %s: %v", bin, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		out.Close()
		close(done)
	}()
	b.mu.Lock()
	b.cmd, b.done = cmd, done
	b.mu.Unlock()

	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", b.addr(), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(b.Dir, "stdout.log"))
			b.t.Fatalf("mosquittotest: mosquitto exited at start: %s", log)
		default:
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("mosquittotest: mosquitto not accepting on %s after 10 s: %v", b.addr(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (b *Broker) addr() string { return "127.0.0.1:" + strconv.Itoa(b.Port) }

// Kill SIGKILLs the broker (a crash: it saves nothing more) and waits for it to exit.
func (b *Broker) Kill() { b.signal(syscall.SIGKILL) }

// Stop ends the broker with SIGTERM (it saves its persistence) and waits.
func (b *Broker) Stop() { b.signal(syscall.SIGTERM) }

// Pause SIGSTOPs the broker: its connections stay open and nothing is answered, as
// with a hung broker or a half-open connection. Resume continues it; Kill and Restart
// work on a paused broker.
func (b *Broker) Pause() { b.raise(syscall.SIGSTOP) }

// Resume SIGCONTs a paused broker.
func (b *Broker) Resume() { b.raise(syscall.SIGCONT) }

// raise sends sig without waiting for the broker to exit.
func (b *Broker) raise(sig syscall.Signal) {
	b.mu.Lock()
	cmd := b.cmd
	b.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Signal(sig)
	}
}

func (b *Broker) signal(sig syscall.Signal) {
	b.mu.Lock()
	cmd, done := b.cmd, b.done
	b.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Restart starts the broker again on the same port with the same persistence (after
// Kill or Stop; a running broker is killed first).
func (b *Broker) Restart() {
	b.t.Helper()
	b.Kill()
	bin := os.Getenv("DIAGD_MOSQUITTO")
	if bin == "" {
		bin = Binary
	}
	b.start(bin)
}
