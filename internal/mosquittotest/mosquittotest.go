// Package mosquittotest runs a real mosquitto broker for tests, on a free
// loopback port, the way net/http/httptest runs HTTP servers: started by the
// test, killed when it ends. It fails the test (never skips it) when mosquitto
// is not installed.
package mosquittotest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/storeflow/storeflow/internal/proctest"

	"github.com/storeflow/storeflow/internal/certtest"
)

// notInstalled is the failure (not a skip: CI must not pass without the
// external-broker tests) when the Debian packages are missing.
const notInstalled = "mosquitto not found: install it with apt-get install -y mosquitto mosquitto-clients (see README)"

// Mosquitto is a real mosquitto broker run by a test on a loopback port.
type Mosquitto struct {
	t    *testing.T
	bin  string
	conf string // path of the config file
	addr string // 127.0.0.1:port
	out  *proctest.SyncBuffer

	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
}

// Start starts mosquitto on a free loopback port with the caller's
// extra config lines (allow_anonymous, password_file, …) and returns its
// address once it accepts TCP connections. It is killed when the test ends.
func Start(t *testing.T, conf string) string {
	t.Helper()
	return New(t, conf).addr
}

// New is Start for tests that stop and restart the broker.
func New(t *testing.T, conf string) *Mosquitto {
	t.Helper()
	return NewWith(t, Options{Conf: conf})
}

// Options set up a mosquitto for NewWith.
type Options struct {
	// Conf holds extra config lines: allow_anonymous, password_file,
	// acl_file, … (global settings: the broker has one listener).
	Conf string
	// TLS, when set, makes the listener a TLS listener.
	TLS *TLS
	// Persistent keeps sessions, subscriptions and queued QoS 1/2 messages
	// across Stop and Start (saved to the test's temporary directory when
	// mosquitto stops gracefully). Kill and Restart lose them, like a crash.
	Persistent bool
}

// TLS is mosquitto's TLS listener setup.
type TLS struct {
	// CA signs the server certificate (made for 127.0.0.1, ::1, localhost
	// and ServerNames) and is the CA client certificates must come from.
	CA *certtest.CA
	// ServerNames are extra DNS names in the server certificate.
	ServerNames []string
	// RequireCertificate makes clients present a certificate signed by CA.
	RequireCertificate bool
	// UseIdentityAsUsername makes the certificate's common name the user
	// name (for ACLs); the CONNECT user name and password are ignored.
	UseIdentityAsUsername bool
}

// StartTLS starts mosquitto with a TLS listener whose certificate ca signs.
// With requireCert, clients must present a certificate from ca and its
// common name is their user name (use_identity_as_username).
func StartTLS(t *testing.T, ca *certtest.CA, requireCert bool, conf string) string {
	t.Helper()
	return NewWith(t, Options{Conf: conf, TLS: &TLS{CA: ca, RequireCertificate: requireCert, UseIdentityAsUsername: requireCert}}).addr
}

// NewWith starts mosquitto on a free loopback port as o says and returns
// once it accepts TCP connections. It is killed when the test ends.
func NewWith(t *testing.T, o Options) *Mosquitto {
	t.Helper()
	m := &Mosquitto{t: t, bin: bin(t), out: new(proctest.SyncBuffer)}
	dir := t.TempDir() // before the Cleanup below, so it is removed after mosquitto stopped
	t.Cleanup(func() {
		m.stop()
		if t.Failed() {
			t.Logf("mosquitto output:\n%s", m.out)
		}
	})
	var tlsConf string
	if o.TLS != nil {
		if o.TLS.CA == nil {
			t.Fatal("mosquittotest: TLS without a CA")
		}
		server := o.TLS.CA.Server("mosquitto", o.TLS.ServerNames...)
		tlsConf = fmt.Sprintf("cafile %s\ncertfile %s\nkeyfile %s\n",
			o.TLS.CA.CertFile, server.CertFile, server.KeyFile)
		if o.TLS.RequireCertificate {
			tlsConf += "require_certificate true\n"
		}
		if o.TLS.UseIdentityAsUsername {
			tlsConf += "use_identity_as_username true\n"
		}
	}
	persistence := "persistence false\n"
	if o.Persistent {
		persistence = fmt.Sprintf("persistence true\npersistence_location %s%c\nautosave_interval 0\n", dir, filepath.Separator)
	}
	// The port is free when picked but not held: another process may take it
	// before mosquitto binds. Then mosquitto exits at once; try another port.
	for attempt := 1; ; attempt++ {
		m.addr = proctest.FreeAddr(t)
		_, port, _ := net.SplitHostPort(m.addr)
		var c strings.Builder
		fmt.Fprintf(&c, "listener %s 127.0.0.1\n%s%slog_dest stderr\n", port, tlsConf, persistence)
		if os.Geteuid() == 0 {
			// As root mosquitto switches to the mosquitto user, who cannot
			// read files in the test's private temporary directory.
			c.WriteString("user root\n")
		}
		c.WriteString(o.Conf)
		c.WriteString("\n")
		m.conf = filepath.Join(dir, "mosquitto-"+port+".conf")
		if err := os.WriteFile(m.conf, []byte(c.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		err := m.start()
		if err == nil {
			return m
		}
		if attempt == 3 || !strings.Contains(m.out.String(), "in use") {
			t.Fatalf("mosquitto on %s: %v\n%s", m.addr, err, m.out)
		}
	}
}

// start runs mosquitto with the config and waits until its port accepts
// connections (10 s at most).
func (m *Mosquitto) start() error {
	m.t.Helper()
	m.cmd = exec.Command(m.bin, "-c", m.conf)
	m.cmd.Stdout, m.cmd.Stderr = m.out, m.out
	if err := m.cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	m.exited = exited
	go func(cmd *exec.Cmd) {
		_ = cmd.Wait()
		close(exited)
	}(m.cmd)

	deadline := time.After(10 * time.Second)
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for {
		c, err := net.DialTimeout("tcp", m.addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("mosquitto exited: %v", m.cmd.ProcessState)
		case <-deadline:
			m.stop()
			return fmt.Errorf("port not accepting connections within 10s: %v", err)
		case <-poll.C:
		}
	}
}

// stop kills mosquitto and waits until it has exited (its port is closed).
func (m *Mosquitto) stop() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	_ = m.cmd.Process.Kill()
	select {
	case <-m.exited:
	case <-time.After(10 * time.Second):
		m.t.Errorf("mosquitto (pid %d) did not exit within 10s of SIGKILL", m.cmd.Process.Pid)
	}
}

// Restart kills mosquitto (a crash: nothing saved) and starts it again on
// the same port and config.
func (m *Mosquitto) Restart() {
	m.t.Helper()
	m.stop()
	if err := m.start(); err != nil {
		m.t.Fatalf("restart mosquitto on %s: %v\n%s", m.addr, err, m.out)
	}
}

// Stop stops mosquitto gracefully (SIGTERM: a Persistent broker saves its
// sessions) and waits until it has exited and its port is closed.
func (m *Mosquitto) Stop() {
	m.t.Helper()
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
		return
	case <-time.After(10 * time.Second):
		m.t.Errorf("mosquitto (pid %d) did not exit within 10s of SIGTERM; killing it", m.cmd.Process.Pid)
	}
	m.stop()
}

// Start starts a stopped mosquitto again on the same port and config.
func (m *Mosquitto) Start() {
	m.t.Helper()
	select {
	case <-m.exited:
	default:
		m.t.Fatal("mosquittotest: Start while mosquitto runs; Stop it first")
	}
	if err := m.start(); err != nil {
		m.t.Fatalf("start mosquitto again on %s: %v\n%s", m.addr, err, m.out)
	}
}

// ACLFile writes a mosquitto ACL file (acl_file) with the given lines, e.g.
// "user storeflow\ntopic readwrite customer/#", and returns its path.
func ACLFile(t *testing.T, rules string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "acl")
	if err := os.WriteFile(path, []byte(rules+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// PasswordFile writes a mosquitto password file with mosquitto_passwd for
// the given user, password pairs, and returns its path.
func PasswordFile(t *testing.T, userPassword ...string) string {
	t.Helper()
	if len(userPassword) == 0 || len(userPassword)%2 != 0 {
		t.Fatal("PasswordFile: want user, password pairs")
	}
	bin := proctest.FindTool(t, notInstalled, "mosquitto_passwd", "/usr/bin/mosquitto_passwd")
	path := filepath.Join(t.TempDir(), "passwd")
	for i := 0; i < len(userPassword); i += 2 {
		args := []string{"-b", path, userPassword[i], userPassword[i+1]}
		if i == 0 {
			args = append([]string{"-c"}, args...) // create (and overwrite) the file
		}
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_passwd -b %s %s: %v\n%s", path, userPassword[i], err, out)
		}
	}
	return path
}

func bin(t *testing.T) string {
	t.Helper()
	return proctest.FindTool(t, notInstalled, "mosquitto", "/usr/sbin/mosquitto")
}

// Addr is the broker's host:port.
func (m *Mosquitto) Addr() string { return m.addr }
