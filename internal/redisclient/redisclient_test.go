package redisclient

import (
	"cmp"
	"context"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/storeflow/storeflow/internal/proctest"
	"github.com/storeflow/storeflow/internal/redistest"
)

func TestNewSingle(t *testing.T) {
	tests := []struct {
		name     string
		url      string
		password string
		check    func(t *testing.T, o *redis.Options)
	}{
		{"defaults", "redis://cache:6380/2", "envpw", func(t *testing.T, o *redis.Options) {
			if o.Addr != "cache:6380" || o.DB != 2 || o.Password != "envpw" || o.TLSConfig != nil {
				t.Errorf("Addr %s DB %d Password %q TLS %v", o.Addr, o.DB, o.Password, o.TLSConfig)
			}
			// go-redis reads MaxRetries -1 (none) as 0 once the client is built.
			if o.DialTimeout != dialTimeout || o.ReadTimeout != ioTimeout || o.WriteTimeout != ioTimeout || o.MaxRetries != 0 {
				t.Errorf("timeouts %v/%v/%v, MaxRetries %d: want the short defaults and no retries", o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.MaxRetries)
			}
		}},
		{"password in the URL", "redis://user:urlpw@cache/0", "envpw", func(t *testing.T, o *redis.Options) {
			if o.Username != "user" || o.Password != "urlpw" || o.Addr != "cache:6379" {
				t.Errorf("Username %q Password %q Addr %s", o.Username, o.Password, o.Addr)
			}
		}},
		{"TLS", "rediss://cache.example:6380/0", "", func(t *testing.T, o *redis.Options) {
			if o.TLSConfig == nil || o.TLSConfig.ServerName != "cache.example" {
				t.Errorf("TLSConfig = %+v, want ServerName cache.example", o.TLSConfig)
			}
		}},
		{"options from the URL", "redis://cache/0?dial_timeout=3s&pool_size=7&max_retries=2", "", func(t *testing.T, o *redis.Options) {
			if o.DialTimeout != 3*time.Second || o.PoolSize != 7 || o.MaxRetries != 2 {
				t.Errorf("DialTimeout %v PoolSize %d MaxRetries %d, want the URL's", o.DialTimeout, o.PoolSize, o.MaxRetries)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(Config{URL: tt.url, Password: tt.password})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			client, ok := c.(*redis.Client)
			if !ok {
				t.Fatalf("New = %T, want *redis.Client", c)
			}
			tt.check(t, client.Options())
		})
	}
}

func TestNewCluster(t *testing.T) {
	tests := []struct {
		name     string
		url      string
		password string
		check    func(t *testing.T, o *redis.ClusterOptions)
	}{
		{"defaults", "redis://n1:7000?addr=n2:7001&addr=n3:7002", "envpw", func(t *testing.T, o *redis.ClusterOptions) {
			if strings.Join(o.Addrs, " ") != "n1:7000 n2:7001 n3:7002" || o.Password != "envpw" || o.TLSConfig != nil {
				t.Errorf("Addrs %v Password %q TLS %v", o.Addrs, o.Password, o.TLSConfig)
			}
			if o.DialTimeout != dialTimeout || o.ReadTimeout != ioTimeout || o.WriteTimeout != ioTimeout || o.MaxRetries != -1 || o.MaxRedirects != 3 {
				t.Errorf("timeouts %v/%v/%v, MaxRetries %d, MaxRedirects %d: want the short defaults, no retries, redirects followed",
					o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.MaxRetries, o.MaxRedirects)
			}
		}},
		{"one seed node, database 0", "redis://user:urlpw@config.example/0", "envpw", func(t *testing.T, o *redis.ClusterOptions) {
			if o.Username != "user" || o.Password != "urlpw" || strings.Join(o.Addrs, " ") != "config.example:6379" {
				t.Errorf("Username %q Password %q Addrs %v", o.Username, o.Password, o.Addrs)
			}
		}},
		{"TLS", "rediss://n1.example:7000?addr=n2.example:7000", "", func(t *testing.T, o *redis.ClusterOptions) {
			if o.TLSConfig == nil || o.TLSConfig.ServerName != "n1.example" {
				t.Errorf("TLSConfig = %+v, want ServerName n1.example", o.TLSConfig)
			}
		}},
		{"options from the URL", "redis://n1:7000?dial_timeout=3s&pool_size=7&max_redirects=5", "", func(t *testing.T, o *redis.ClusterOptions) {
			if o.DialTimeout != 3*time.Second || o.PoolSize != 7 || o.MaxRedirects != 5 {
				t.Errorf("DialTimeout %v PoolSize %d MaxRedirects %d, want the URL's", o.DialTimeout, o.PoolSize, o.MaxRedirects)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(Config{URL: tt.url, Password: tt.password, Cluster: true})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			client, ok := c.(*redis.ClusterClient)
			if !ok {
				t.Fatalf("New = %T, want *redis.ClusterClient", c)
			}
			tt.check(t, client.Options())
		})
	}
}

func TestNewBadURL(t *testing.T) {
	const secret = "hunter2"
	tests := []struct {
		name    string
		url     string
		cluster bool
		secret  string // what must not show; secret when empty
		also    string // a second setting the error must name
	}{
		{name: "empty", url: ""},
		{name: "not a URL", url: "redis://:" + secret + "@host:6379/0\x7f"},
		{name: "password with a slash", url: "redis://:" + secret + "/x@host:6379/0"},
		{name: "numeric password with a slash", url: "redis://:6543/21@host:6379/0", secret: "6543"},
		{name: "password with a question mark", url: "redis://:ab?" + secret + "@host:6379/0"},
		{name: "wrong scheme", url: "http://:" + secret + "@host:6379/0"},
		{name: "unix socket", url: "unix://:" + secret + "@/tmp/redis.sock"},
		{name: "no host", url: "redis://"},
		{name: "bad database", url: "redis://:" + secret + "@host:6379/zero"},
		{name: "unknown option", url: "redis://:" + secret + "@host:6379/0?colour=blue"},
		{name: "bad option value", url: "redis://:" + secret + "@host:6379/0?dial_timeout=soon"},
		{name: "bare word", url: secret},
		{name: "scheme-like password", url: secret + ":x"},
		{name: "several nodes without REDIS_CLUSTER", url: "redis://:" + secret + "@n1:7000?addr=n2:7001", also: "REDIS_CLUSTER=true"},
		{name: "cluster: database other than 0", url: "redis://:" + secret + "@n1:7000/3?addr=n2:7001", cluster: true, also: "REDIS_CLUSTER"},
		{name: "cluster: bad addr", url: "redis://:" + secret + "@n1:7000?addr=n2", cluster: true},
		{name: "cluster: unknown option", url: "redis://:" + secret + "@n1:7000?colour=blue", cluster: true},
		{name: "cluster: wrong scheme", url: "http://:" + secret + "@n1:7000", cluster: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(Config{URL: tt.url, Password: secret, Cluster: tt.cluster})
			if err == nil {
				c.Close()
				t.Fatalf("New(%q) succeeded", tt.url)
			}
			hidden := cmp.Or(tt.secret, secret)
			msg := err.Error()
			if !strings.Contains(msg, "REDIS_URL") || strings.Contains(msg, hidden) || !strings.Contains(msg, tt.also) {
				t.Errorf("error = %q, want one naming REDIS_URL %s without the password", msg, tt.also)
			}
		})
	}
}

// TestOpenCluster: Open reaches a cluster given any one node, refuses a
// wrong password naming the settings, and Ping asks every primary.
func TestOpenCluster(t *testing.T) {
	const pw = "p@ss/w:rd"
	cl := redistest.StartClusterWithPassword(t, pw)
	seedOnly := "redis://:" + url.QueryEscape(pw) + "@" + cl.Addrs()[1]

	for _, tt := range []struct {
		name, url, password string
		wantErr             bool
	}{
		{name: "every node, REDIS_PASSWORD", url: cl.URL(), password: pw},
		{name: "one seed node, password in the URL", url: seedOnly},
		{name: "wrong password", url: cl.URL(), password: "wrong-secret", wantErr: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Open(Config{URL: tt.url, Password: tt.password, Cluster: true}, nil)
			if tt.wantErr {
				if err == nil {
					c.Close()
					t.Fatal("Open succeeded, want the credentials refused")
				}
				if msg := err.Error(); !strings.Contains(msg, "REDIS_PASSWORD") || strings.Contains(msg, tt.password) {
					t.Errorf("error = %q, want one naming REDIS_PASSWORD without the password", msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx := context.Background()
			// Keys of every node's slots: written through the one client.
			for i := range 30 {
				k := "k" + string(rune('a'+i))
				if err := c.Set(ctx, k, i, time.Minute).Err(); err != nil {
					t.Fatalf("SET %s: %v", k, err)
				}
			}
			if err := Ping(ctx, c); err != nil {
				t.Fatalf("Ping: %v", err)
			}
		})
	}

	c, err := Open(Config{URL: cl.URL(), Password: pw, Cluster: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	down := cl.Nodes()[2]
	down.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := Ping(ctx, c); err == nil || !strings.Contains(err.Error(), down.Addr()) {
		t.Errorf("Ping with %s down = %v, want an error naming it", down.Addr(), err)
	}
}

// TestOpenRedisDown: a Redis that does not answer at start is logged and
// not an error, for a server and for a cluster.
func TestOpenRedisDown(t *testing.T) {
	addr := proctest.FreeAddr(t)
	for _, cluster := range []bool{false, true} {
		var log strings.Builder
		c, err := Open(Config{URL: "redis://" + addr, Cluster: cluster}, slog.New(slog.NewTextHandler(&log, nil)))
		if err != nil {
			t.Fatalf("cluster=%v: Open with Redis down: %v", cluster, err)
		}
		c.Close()
		if !strings.Contains(log.String(), "redis_unavailable") {
			t.Errorf("cluster=%v: log = %q, want a redis_unavailable line", cluster, log.String())
		}
	}
}
