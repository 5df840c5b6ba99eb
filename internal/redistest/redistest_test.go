package redistest

import (
	"net"
	"strings"
	"testing"
	"time"
)

func TestStartStopRestart(t *testing.T) {
	tests := []struct {
		name     string
		password string
	}{
		{name: "no password"},
		{name: "password", password: "s3cret pass"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := StartWithPassword(t, tt.password)
			if !strings.HasPrefix(r.URL(), "redis://127.0.0.1:") || !strings.HasSuffix(r.URL(), "/0") {
				t.Errorf("URL() = %q, want redis://127.0.0.1:N/0", r.URL())
			}
			if err := r.ping(); err != nil {
				t.Fatalf("ping after Start: %v", err)
			}
			addr := r.Addr()

			r.Stop()
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				c.Close()
				t.Fatalf("%s accepts connections after Stop", addr)
			}
			r.Stop() // a second Stop does nothing

			r.Restart()
			if r.Addr() != addr {
				t.Errorf("Addr() after Restart = %s, want %s", r.Addr(), addr)
			}
			if err := r.ping(); err != nil {
				t.Fatalf("ping after Restart: %v", err)
			}
		})
	}
}

func TestPasswordRequired(t *testing.T) {
	r := StartWithPassword(t, "pw")
	wrong := &Redis{addr: r.Addr(), password: "not the password"}
	if err := wrong.ping(); err == nil {
		t.Fatal("ping with the wrong password succeeded")
	}
	none := &Redis{addr: r.Addr()}
	if err := none.ping(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Fatalf("ping without a password: %v, want NOAUTH", err)
	}
}

func TestCluster(t *testing.T) {
	for _, password := range []string{"", "s3cret"} {
		t.Run("password="+password, func(t *testing.T) {
			c := StartClusterWithPassword(t, password)
			if len(c.Addrs()) != ClusterNodes {
				t.Fatalf("Addrs() = %v, want %d nodes", c.Addrs(), ClusterNodes)
			}
			if want := "redis://" + c.Addrs()[0] + "?addr=" + c.Addrs()[1] + "&addr=" + c.Addrs()[2]; c.URL() != want {
				t.Errorf("URL() = %q, want %q", c.URL(), want)
			}
			// The slots are split: each node serves a share and redirects
			// a key of another node's slot.
			for _, n := range c.Nodes() {
				info, err := n.do("CLUSTER", "INFO")
				if err != nil || !strings.Contains(info, "cluster_slots_assigned:16384") || !strings.Contains(info, "cluster_size:3") {
					t.Errorf("CLUSTER INFO of %s = %q, %v; want every slot assigned to 3 primaries", n.Addr(), info, err)
				}
			}
			moved := 0
			for _, n := range c.Nodes() {
				if _, err := n.do("GET", "some-key"); err != nil && strings.HasPrefix(err.Error(), "MOVED ") {
					moved++
				}
			}
			if moved != ClusterNodes-1 {
				t.Errorf("%d nodes answered MOVED for one key, want %d: the others'", moved, ClusterNodes-1)
			}
		})
	}
}
