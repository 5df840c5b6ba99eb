package app

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/storeflow/storeflow/internal/metrictest"
	"github.com/storeflow/storeflow/internal/redistest"
)

// TestRedisCluster: with REDIS_CLUSTER=true storeflow uses a Redis Cluster,
// given every node or one seed node: the focus path's reads are cached in
// the cluster without a Redis error (a plain client to one node gets MOVED
// for the other nodes' keys); with a node down only its slots' reads go to
// the central; /readyz asks every primary.
func TestRedisCluster(t *testing.T) {
	const pw = "cluster p@ss"
	cl := redistest.StartClusterWithPassword(t, pw)
	seed := (&url.URL{Scheme: "redis", User: url.UserPassword("", pw), Host: cl.Addrs()[2], Path: "/0"}).String()
	tests := []struct {
		name        string
		env         map[string]string
		nodeGoesOff bool // and comes back
	}{
		{"every node, REDIS_PASSWORD", map[string]string{"REDIS_URL": cl.URL(), "REDIS_PASSWORD": pw, "REDIS_CLUSTER": "true"}, false},
		{"one seed node, password in the URL", map[string]string{"REDIS_URL": seed, "REDIS_CLUSTER": "true"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.env["CACHE_PREFIX"] = strings.ReplaceAll(tt.name, " ", "_") + ":"
			a := runApp(t, tt.env)
			customers := a.catalog.Customers()[:30] // their keys fall in every node's slots
			for range 2 {
				for _, c := range customers {
					if _, err := a.cache.Customer(context.Background(), c.ID); err != nil {
						t.Fatalf("Customer(%s): %v", c.ID, err)
					}
				}
			}
			if n := metrictest.Sum(t, a.reg, "storeflow_cache_errors_total", "kind=redis"); n != 0 {
				t.Errorf("storeflow_cache_errors_total{kind=redis} = %v, want 0", n)
			}
			if n := metrictest.Sum(t, a.reg, "storeflow_cache_hits_total", "kind=customer"); n != float64(len(customers)) {
				t.Errorf("storeflow_cache_hits_total{kind=customer} = %v, want %d: the second round read from the cluster", n, len(customers))
			}
			if code, body := readyz(t, a); code != http.StatusOK {
				t.Errorf("GET /readyz = %d %q, want 200", code, body)
			}
			if !tt.nodeGoesOff {
				return
			}
			// A node down: the reads of its slots go to the central, counted.
			down := cl.Nodes()[1]
			down.Stop()
			for _, c := range customers {
				if _, err := a.cache.Customer(context.Background(), c.ID); err != nil {
					t.Fatalf("Customer(%s) with %s down: %v", c.ID, down.Addr(), err)
				}
			}
			if n := metrictest.Sum(t, a.reg, "storeflow_cache_errors_total", "kind=redis"); n == 0 || n == float64(len(customers)) {
				t.Errorf("storeflow_cache_errors_total{kind=redis} = %v with one node of %d down, want some of the %d reads", n, redistest.ClusterNodes, len(customers))
			}
			waitReadyz(t, a, http.StatusServiceUnavailable, "not ready: redis: cluster node "+down.Addr())
			down.Restart()
			waitReadyz(t, a, http.StatusOK, "ready")
		})
	}
}
