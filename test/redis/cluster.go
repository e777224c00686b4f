package redis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Cluster is a real Redis Cluster started by a test: masters with one
// replica each, every node a redis-server in cluster mode on free
// loopback ports (its cluster bus port too).
type Cluster struct {
	Nodes []*Server // every node; Masters and Replicas are the roles at creation
}

// clusterNodeTimeout is the cluster's node timeout: a master that does
// not answer for this long is failed over to its replica. Short, so
// failover tests stay short.
const clusterNodeTimeout = 500 * time.Millisecond

// StartCluster runs masters × 2 redis-server in cluster mode, creates the
// cluster with redis-cli --cluster create (one replica per master; with
// fewer than 3 masters, which redis-cli refuses, by hand: see create), and
// waits until every node reports cluster_state:ok and every slot is
// served. Everything stops when the test ends. Without the redis-server
// or redis-cli binary the test is skipped, as Start does (under CI=true
// it fails); CI installs the Debian package redis-server, which has both.
func StartCluster(t testing.TB, masters int) *Cluster {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		missing(t, "redis-server is not installed (Debian package redis-server; `make deps` installs it)")
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		missing(t, "redis-cli is not installed (Debian package redis-tools, a dependency of redis-server; `make deps` installs it)")
	}
	c := &Cluster{}
	var addrs []string
	for range 2 * masters {
		s := &Server{bin: bin, dir: t.TempDir(), port: freePort(t), clusterPort: freePort(t)}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
		t.Cleanup(s.Kill)
		if err := s.Restart(); err != nil {
			t.Fatal(err)
		}
		c.Nodes = append(c.Nodes, s)
		addrs = append(addrs, s.Addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if masters < 3 {
		// redis-cli --cluster create refuses fewer than 3 masters.
		if err := c.create(ctx, masters); err != nil {
			t.Fatal(err)
		}
	} else {
		args := append([]string{"--cluster", "create"}, addrs...)
		args = append(args, "--cluster-replicas", "1", "--cluster-yes")
		if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
			t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
		}
	}
	if err := c.WaitHealthy(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := c.waitReplicasSynced(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	return c
}

// create makes a cluster of the first masters nodes, the slots split
// evenly, each master with the node masters further as its replica, as
// redis-cli --cluster create would: CLUSTER ADDSLOTSRANGE and a config
// epoch on each master, CLUSTER MEET with the first node, CLUSTER
// REPLICATE once every node knows every other.
func (c *Cluster) create(ctx context.Context, masters int) error {
	clients := make([]*goredis.Client, len(c.Nodes))
	for i, s := range c.Nodes {
		clients[i] = goredis.NewClient(&goredis.Options{Addr: s.Addr, MaxRetries: -1, DialerRetries: 1})
		defer func() { _ = clients[i].Close() }()
	}
	for i := range masters {
		lo, hi := i*16384/masters, (i+1)*16384/masters-1
		if err := clients[i].ClusterAddSlotsRange(ctx, lo, hi).Err(); err != nil {
			return fmt.Errorf("redis: CLUSTER ADDSLOTSRANGE %d %d on %s: %w", lo, hi, c.Nodes[i].Addr, err)
		}
		if err := clients[i].Do(ctx, "cluster", "set-config-epoch", i+1).Err(); err != nil {
			return fmt.Errorf("redis: CLUSTER SET-CONFIG-EPOCH on %s: %w", c.Nodes[i].Addr, err)
		}
	}
	first := c.Nodes[0]
	for i := 1; i < len(c.Nodes); i++ {
		if err := clients[i].Do(ctx, "cluster", "meet", "127.0.0.1", first.port, first.clusterPort).Err(); err != nil {
			return fmt.Errorf("redis: CLUSTER MEET from %s: %w", c.Nodes[i].Addr, err)
		}
	}
	for _, s := range c.Nodes {
		for {
			nodes, err := nodesSeenBy(ctx, s)
			if err == nil && len(nodes) == len(c.Nodes) {
				break
			}
			if ctx.Err() != nil {
				return fmt.Errorf("redis: %s sees %d of %d nodes: %w", s.Addr, len(nodes), len(c.Nodes), errors.Join(ctx.Err(), err))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for i := range masters {
		id, err := clients[i].ClusterMyID(ctx).Result()
		if err != nil {
			return fmt.Errorf("redis: CLUSTER MYID on %s: %w", c.Nodes[i].Addr, err)
		}
		r := clients[masters+i]
		for {
			err := r.ClusterReplicate(ctx, id).Err()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return fmt.Errorf("redis: CLUSTER REPLICATE %s on %s: %w", id, c.Nodes[masters+i].Addr, err)
			}
			time.Sleep(20 * time.Millisecond) // the replica does not know the master's role yet
		}
	}
	return nil
}

// LimitCPU gives every node, masters and replicas, a CPU budget of cores
// (Server.LimitCPU): in production each is a machine of its own, the
// replicas of the same size as their masters.
func (c *Cluster) LimitCPU(t testing.TB, cores float64) error {
	t.Helper()
	for _, s := range c.Nodes {
		if err := s.LimitCPU(t, cores); err != nil {
			return err
		}
	}
	return nil
}

// waitReplicasSynced waits until every replica's link to its master is
// up, so that any master can be failed over.
func (c *Cluster) waitReplicasSynced(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for _, s := range c.Nodes {
		cl := goredis.NewClient(&goredis.Options{Addr: s.Addr, MaxRetries: -1, DialerRetries: 1})
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			info, err := cl.Info(ctx, "replication").Result()
			cancel()
			if err == nil && (strings.Contains(info, "role:master") || strings.Contains(info, "master_link_status:up")) {
				break
			}
			if time.Now().After(deadline) {
				_ = cl.Close()
				return fmt.Errorf("redis: replica %s not synced after %v: %w %s", s.Addr, limit, err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = cl.Close()
	}
	return nil
}

// Addrs are the nodes' addresses, for a cluster client.
func (c *Cluster) Addrs() []string {
	var out []string
	for _, s := range c.Nodes {
		out = append(out, s.Addr)
	}
	return out
}

// Client returns a cluster client configured as the agent configures its
// own (context deadlines bound socket I/O, commands not retried by the
// client, one dial attempt). It is closed when the test ends.
func (c *Cluster) Client(t testing.TB) *goredis.ClusterClient { return c.ClientVia(t, nil) }

// ClientVia is Client with its connections made by dial (nil: net.Dial),
// for a test that puts a faulty link between the client and the nodes.
func (c *Cluster) ClientVia(t testing.TB, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *goredis.ClusterClient {
	cc := goredis.NewClusterClient(&goredis.ClusterOptions{
		Addrs:                 c.Addrs(),
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
		DialerRetries:         1,
		DialTimeout:           time.Second,
		Dialer:                dial,
	})
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// node is one line of CLUSTER NODES.
type clusterNode struct {
	addr   string // 127.0.0.1:PORT
	master bool
	failed bool
	slots  int
}

// nodes is CLUSTER NODES as seen by s.
func nodesSeenBy(ctx context.Context, s *Server) ([]clusterNode, error) {
	cl := goredis.NewClient(&goredis.Options{Addr: s.Addr, MaxRetries: -1, DialerRetries: 1})
	defer func() { _ = cl.Close() }()
	txt, err := cl.ClusterNodes(ctx).Result()
	if err != nil {
		return nil, err
	}
	var out []clusterNode
	for line := range strings.SplitSeq(strings.TrimSpace(txt), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		n := clusterNode{addr: f[1], master: strings.Contains(f[2], "master"), failed: strings.Contains(f[2], "fail")}
		if i := strings.IndexByte(n.addr, '@'); i >= 0 {
			n.addr = n.addr[:i]
		}
		for _, r := range f[8:] {
			if strings.HasPrefix(r, "[") {
				continue // a slot being migrated
			}
			lo, hi, ok := strings.Cut(r, "-")
			a, _ := strconv.Atoi(lo)
			b := a
			if ok {
				b, _ = strconv.Atoi(hi)
			}
			n.slots += b - a + 1
		}
		out = append(out, n)
	}
	return out, nil
}

// Masters are the addresses of the masters that serve slots, as the
// running nodes see them (after a failover, the promoted replicas).
func (c *Cluster) Masters(ctx context.Context) ([]string, error) {
	for _, s := range c.Nodes {
		if !s.running() {
			continue
		}
		nodes, err := nodesSeenBy(ctx, s)
		if err != nil {
			continue
		}
		var out []string
		for _, n := range nodes {
			if n.master && !n.failed && n.slots > 0 {
				out = append(out, n.addr)
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("redis: no cluster node answers")
}

// Node is the node at addr.
func (c *Cluster) Node(addr string) *Server {
	for _, s := range c.Nodes {
		if s.Addr == addr {
			return s
		}
	}
	return nil
}

// WaitHealthy waits until every running node reports cluster_state:ok
// and sees all 16384 slots served by masters that are running (after a
// master is killed: until its replica is promoted).
func (c *Cluster) WaitHealthy(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var last string
	for time.Now().Before(deadline) {
		if ok, why := c.healthy(); ok {
			return nil
		} else {
			last = why
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("redis: cluster not healthy after %v: %s", limit, last)
}

func (c *Cluster) healthy() (bool, string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, s := range c.Nodes {
		if !s.running() {
			continue
		}
		cl := goredis.NewClient(&goredis.Options{Addr: s.Addr, MaxRetries: -1, DialerRetries: 1})
		info, err := cl.ClusterInfo(ctx).Result()
		_ = cl.Close()
		if err != nil {
			return false, fmt.Sprintf("%s: %v", s.Addr, err)
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return false, s.Addr + " reports " + firstLine(info)
		}
		nodes, err := nodesSeenBy(ctx, s)
		if err != nil {
			return false, err.Error()
		}
		slots := 0
		for _, n := range nodes {
			if n.master && !n.failed {
				if node := c.Node(n.addr); n.slots > 0 && (node == nil || !node.running()) {
					return false, fmt.Sprintf("%s sees %s, which is down, serve slots", s.Addr, n.addr)
				}
				slots += n.slots
			}
		}
		if slots != 16384 {
			return false, fmt.Sprintf("%s sees %d slots served", s.Addr, slots)
		}
	}
	return true, ""
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(line)
}

func (s *Server) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// serverArgs are redis-server's arguments for s.
func (s *Server) serverArgs() []string {
	args := []string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir}
	if s.clusterPort != 0 {
		args = append(args, "--cluster-enabled", "yes", "--cluster-port", strconv.Itoa(s.clusterPort),
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.FormatInt(clusterNodeTimeout.Milliseconds(), 10),
			// Replicas sync at once (Redis 7 waits 5s for more replicas by
			// default): a replica that never synced cannot be promoted.
			"--repl-diskless-sync-delay", "0")
	}
	return args
}
