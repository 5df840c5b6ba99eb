package redistest

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/storeflow/storeflow/internal/proctest"
)

// cliNotInstalled is the failure when redis-cli, which creates the cluster,
// is missing (Debian: redis-tools, which redis-server depends on).
const cliNotInstalled = "redis-cli not found on PATH or in /usr/bin: install it with apt-get install -y redis-server (it brings redis-tools; see README)"

// clusterTimeout bounds the cluster's creation and the wait until every
// node says cluster_state:ok.
const clusterTimeout = 30 * time.Second

// ClusterNodes is how many primaries StartCluster starts.
const ClusterNodes = 3

// Cluster is a real Redis Cluster run by a test: ClusterNodes primaries
// without replicas on loopback ports, the hash slots split between them by
// redis-cli --cluster create. Its nodes are killed when the test ends.
type Cluster struct {
	nodes    []*Redis
	password string
}

// StartCluster starts a Redis Cluster and returns once every node says
// cluster_state:ok and knows every other.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	return StartClusterWithPassword(t, "")
}

// StartClusterWithPassword is StartCluster with requirepass (and
// masterauth) set to password on every node (none when empty).
func StartClusterWithPassword(t testing.TB, password string) *Cluster {
	t.Helper()
	cli := proctest.FindTool(t, cliNotInstalled, "redis-cli", "/usr/bin/redis-cli")
	c := &Cluster{password: password}
	for range ClusterNodes {
		c.nodes = append(c.nodes, launch(t, password, true))
	}

	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	args := []string{"--cluster", "create"}
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if password != "" {
		args = append([]string{"-a", password, "--no-auth-warning"}, args...)
	}
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create %s: %v\n%s", strings.Join(c.Addrs(), " "), err, out)
	}

	want := fmt.Sprintf("cluster_known_nodes:%d", ClusterNodes)
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for _, n := range c.nodes {
		for {
			info, err := n.do("CLUSTER", "INFO")
			if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, want) {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("cluster node %s not ok within %v: %v\n%s", n.Addr(), clusterTimeout, err, info)
			case <-poll.C:
			}
		}
	}
	return c
}

// Addrs are the nodes' host:port addresses.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// URL is the cluster's REDIS_URL (with REDIS_CLUSTER=true), without the
// password: the first node, the others as addr= query values.
func (c *Cluster) URL() string {
	addrs := c.Addrs()
	return "redis://" + addrs[0] + "?addr=" + strings.Join(addrs[1:], "&addr=")
}

// Password is the nodes' requirepass, empty when there is none.
func (c *Cluster) Password() string { return c.password }

// Nodes are the cluster's servers, for a test that stops one.
func (c *Cluster) Nodes() []*Redis { return c.nodes }
