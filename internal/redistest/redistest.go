// Package redistest runs a real redis-server for tests, on a free loopback
// port, the way net/http/httptest runs HTTP servers: started by the test,
// killed when it ends, and stoppable and restartable on the same port for
// tests of what happens when Redis goes away; and a three-node Redis Cluster
// (StartCluster). It fails the test (never skips it) when redis-server (or,
// for a cluster, redis-cli) is not installed.
package redistest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/storeflow/storeflow/internal/proctest"
)

// notInstalled is the failure (not a skip: CI must not pass without the
// Redis tests) when the Debian package is missing.
const notInstalled = "redis-server not found on PATH, in /usr/bin or in /usr/sbin: install it with apt-get install -y redis-server (see README)"

// startTimeout bounds how long a start or restart waits for PING to answer.
const startTimeout = 10 * time.Second

// Redis is a real redis-server run by a test on a loopback port, without
// persistence: a restart comes back empty, as a crashed cache would.
type Redis struct {
	t        testing.TB
	bin      string
	dir      string
	addr     string // 127.0.0.1:port
	password string
	cluster  bool   // started with --cluster-enabled
	busAddr  string // 127.0.0.1:port of the cluster bus, when cluster
	out      *proctest.SyncBuffer

	mu     sync.Mutex // guards cmd and exited against Stop from a helper goroutine
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
}

// Start starts redis-server on a free loopback port and returns once it
// answers PING. It is killed when the test ends.
func Start(t testing.TB) *Redis {
	t.Helper()
	return StartWithPassword(t, "")
}

// StartWithPassword is Start with requirepass set to password (none when
// empty): clients must AUTH before any other command.
func StartWithPassword(t testing.TB, password string) *Redis {
	t.Helper()
	return launch(t, password, false)
}

// launch starts redis-server, as a cluster node when cluster is set.
func launch(t testing.TB, password string, cluster bool) *Redis {
	t.Helper()
	r := &Redis{t: t, bin: bin(t), password: password, cluster: cluster, out: new(proctest.SyncBuffer)}
	r.dir = t.TempDir() // before the Cleanup below, so it is removed after redis-server stopped
	t.Cleanup(func() {
		r.Stop()
		if t.Failed() {
			t.Logf("redis-server output:\n%s", r.out)
		}
	})
	// The port is free when picked but not held: another process may take it
	// before redis-server binds. Then redis-server exits at once; try another.
	for attempt := 1; ; attempt++ {
		r.addr = proctest.FreeAddr(t)
		if cluster {
			// The bus port is not the default port+10000, which may be
			// taken or above 65535.
			r.busAddr = proctest.FreeAddr(t)
		}
		err := r.start()
		if err == nil {
			return r
		}
		if attempt == 3 || !strings.Contains(r.out.String(), "in use") {
			t.Fatalf("redis-server on %s: %v\n%s", r.addr, err, r.out)
		}
	}
}

// Addr is the server's host:port.
func (r *Redis) Addr() string { return r.addr }

// URL is the server's redis:// URL, database 0, without the password.
func (r *Redis) URL() string { return "redis://" + r.addr + "/0" }

// Password is the server's requirepass, empty when there is none.
func (r *Redis) Password() string { return r.password }

// Stop kills redis-server and waits until it has exited, so that its port
// refuses connections. Stopping a stopped server does nothing.
func (r *Redis) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	select {
	case <-r.exited:
	case <-time.After(startTimeout):
		r.t.Errorf("redis-server (pid %d) did not exit within %v of SIGKILL", r.cmd.Process.Pid, startTimeout)
	}
	r.cmd = nil
}

// Restart stops redis-server (if it runs) and starts it again on the same
// port, empty, and returns once it answers PING.
func (r *Redis) Restart() {
	r.t.Helper()
	r.Stop()
	if err := r.start(); err != nil {
		r.t.Fatalf("restart redis-server on %s: %v\n%s", r.addr, err, r.out)
	}
}

// start runs redis-server and waits until it answers PING (startTimeout at
// most).
func (r *Redis) start() error {
	_, port, _ := net.SplitHostPort(r.addr)
	args := []string{
		"--port", port,
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--protected-mode", "yes",
		"--dir", r.dir,
		"--daemonize", "no",
		"--logfile", "",
	}
	if r.password != "" {
		args = append(args, "--requirepass", r.password)
	}
	if r.cluster {
		_, bus, _ := net.SplitHostPort(r.busAddr)
		args = append(args, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-port", bus)
		if r.password != "" {
			args = append(args, "--masterauth", r.password)
		}
	}
	cmd := exec.Command(r.bin, args...)
	cmd.Stdout, cmd.Stderr = r.out, r.out
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	r.mu.Lock()
	r.cmd, r.exited = cmd, exited
	r.mu.Unlock()

	deadline := time.After(startTimeout)
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for {
		err := r.ping()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			r.mu.Lock()
			r.cmd = nil
			r.mu.Unlock()
			return fmt.Errorf("redis-server exited: %v", cmd.ProcessState)
		case <-deadline:
			r.Stop()
			return fmt.Errorf("no answer to PING within %v: %v", startTimeout, err)
		case <-poll.C:
		}
	}
}

// ping sends AUTH (when there is a password) and PING on a fresh
// connection and checks for PONG.
func (r *Redis) ping() error {
	reply, err := r.do("PING")
	if err == nil && reply != "PONG" {
		err = fmt.Errorf("PING answered %q", reply)
	}
	return err
}

// do sends AUTH (when there is a password) and one command on a fresh
// connection and returns the command's answer: a simple string or a bulk
// string (an error reply is an error).
func (r *Redis) do(args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", r.addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return "", err
	}
	var req bytes.Buffer
	if r.password != "" {
		writeCommand(&req, "AUTH", r.password)
	}
	writeCommand(&req, args...)
	if _, err := c.Write(req.Bytes()); err != nil {
		return "", err
	}
	br := bufio.NewReader(c)
	if r.password != "" {
		if reply, err := readReply(br); err != nil {
			return "", fmt.Errorf("AUTH: %w", err)
		} else if reply != "OK" {
			return "", fmt.Errorf("AUTH answered %q", reply)
		}
	}
	return readReply(br)
}

// readReply reads a RESP simple string, bulk string or error.
func readReply(br *bufio.Reader) (string, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", errors.New("empty reply")
	}
	switch line[0] {
	case '+':
		return line[1:], nil
	case '-':
		return "", errors.New(line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 || n > 1<<20 {
			return "", fmt.Errorf("bulk reply of length %q", line[1:])
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(br, b); err != nil {
			return "", err
		}
		return string(b[:n]), nil
	}
	return "", fmt.Errorf("unexpected reply %q", line)
}

// writeCommand writes args as a RESP array of bulk strings.
func writeCommand(b *bytes.Buffer, args ...string) {
	b.WriteString("*" + strconv.Itoa(len(args)) + "\r\n")
	for _, a := range args {
		b.WriteString("$" + strconv.Itoa(len(a)) + "\r\n" + a + "\r\n")
	}
}

// bin finds redis-server on PATH or where the Debian package puts it.
func bin(t testing.TB) string {
	t.Helper()
	return proctest.FindTool(t, notInstalled, "redis-server", "/usr/bin/redis-server", "/usr/sbin/redis-server")
}
