// Package proctest holds what the test harnesses that run real servers
// (mosquitto, redis-server) share: finding the program, a free loopback port,
// and a buffer their output can be written to while a test reads it.
package proctest

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"sync"
	"testing"
)

// FindTool returns name from PATH or the first executable of paths (where
// the Debian package puts it), or fails the test with notInstalled, which
// should say what to install.
func FindTool(t testing.TB, notInstalled, name string, paths ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	t.Fatal(notInstalled)
	return ""
}

// FreeAddr returns a loopback address with a port that was free just now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers (a child process,
// a logger's goroutines) and a test reading it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
