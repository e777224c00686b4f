package ratelimit

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	redistest "github.com/fluxgate/fluxgate/test/redis"
)

// keyOn is a key of l whose bucket lives on a master other than not (""
// for any), and that master's address.
func keyOn(t *testing.T, cc *goredis.ClusterClient, l *RedisLimiter, not string) (key, master string) {
	t.Helper()
	for i := range 1000 {
		k := strconv.Itoa(i)
		node, err := cc.MasterForKey(context.Background(), l.Key(k))
		if err != nil {
			t.Fatal(err)
		}
		if addr := node.Options().Addr; addr != not {
			return k, addr
		}
	}
	t.Fatalf("no key of %s off master %s", l.scope, not)
	return "", ""
}

// On Redis Cluster each master has a pipe of its own: a stalled master
// holds up only the calls on its own slots. Calls on a master stopped
// with SIGSTOP fill every lane of its pipe and queue behind them; a call
// on another master is still decided by Redis within its own, shorter,
// deadline. With one pipe for all masters it queued behind the stalled
// calls and failed with a timeout.
func TestClusterStalledMasterHoldsUpOnlyItsCalls(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	cc := cl.Client(t)
	b := newBackend(t, cc)
	ctx := context.Background()
	if err := b.Load(ctx); err != nil {
		t.Fatal(err)
	}
	lim := Limits{Capacity: 1000, FillAmount: 1000, Interval: time.Second}
	slow := b.NewLimiter(RedisLimiterOptions{Scope: "ns/slow:0", Timeout: 5 * time.Second, FailureMode: FailClosed, Limits: lim})
	fast := b.NewLimiter(RedisLimiterOptions{Scope: "ns/fast:0", Timeout: time.Second, FailureMode: FailClosed, Limits: lim})
	kb, stalled := keyOn(t, cc, slow, "")
	ka, other := keyOn(t, cc, fast, stalled)
	for _, c := range []struct {
		l *RedisLimiter
		k string
	}{{slow, kb}, {fast, ka}} {
		if r := c.l.Take(ctx, time.Now(), c.k, 1); r.Failure != "" {
			t.Fatalf("take before the stall: %+v", r)
		}
	}

	var wg sync.WaitGroup
	defer wg.Wait() // after the master goes on
	node := cl.Node(stalled)
	node.Signal(t, "STOP")
	defer node.Signal(t, "CONT")
	p := b.pipeFor(ctx, []string{slow.Key(kb)})
	p.mu.Lock()
	wide := p.wideLanes
	p.mu.Unlock()
	n := 2 * wide
	for range n {
		wg.Go(func() { slow.Take(ctx, time.Now(), kb, 1) })
	}
	// Wait until the stalled master's calls hold every lane and the rest
	// queue behind them (a hang guard of 10 s: it takes milliseconds).
	deadline := time.Now().Add(10 * time.Second)
	for {
		p.mu.Lock()
		running, queued := p.running, len(p.queue)
		p.mu.Unlock()
		if running == wide && queued == n-wide {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("calls on the stopped master: %d lanes running, %d queued; want %d and %d", running, queued, wide, n-wide)
		}
		time.Sleep(5 * time.Millisecond)
	}

	if r := fast.Take(ctx, time.Now(), ka, 1); r.Failure != "" || !r.Allowed {
		t.Errorf("take on master %s while %s is stopped: %+v; want decided by Redis", other, stalled, r)
	}
	if b.nodes == nil || b.nodes.len() != 2 {
		t.Errorf("pipes: %v; want one for each of the 2 masters used", b.nodes)
	}
}

// fakeMasters names the master of a key by its first letter.
type fakeMasters map[byte]*goredis.Client

func (f fakeMasters) MasterForKey(_ context.Context, key string) (*goredis.Client, error) {
	c, ok := f[key[0]]
	if !ok {
		return nil, errors.New("no master")
	}
	return c, nil
}

// A pipe per master, found by address; the wide lanes are shared out
// among the masters seen, each keeping at least the narrow lanes; a key
// without a master gets no pipe (the caller uses the shared one).
func TestNodePipes(t *testing.T) {
	masters := fakeMasters{}
	for _, c := range "abcd" {
		masters[byte(c)] = goredis.NewClient(&goredis.Options{Addr: string(c) + ":6379"})
		t.Cleanup(func() { _ = masters[byte(c)].Close() })
	}
	n := newNodePipes(masters, nil, 2, 8, 256)
	width := func(p *pipe) int {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.widthLocked()
	}
	a := n.pipeFor(context.Background(), "a1")
	if a == nil || n.pipeFor(context.Background(), "a2") != a || width(a) != 8 {
		t.Fatalf("one master: pipes %v and %v, width %d; want the same pipe, 8 lanes", a, n.pipeFor(context.Background(), "a2"), width(a))
	}
	for _, tc := range []struct {
		key  string
		wide int
	}{{"b", 4}, {"c", 2}, {"d", 2}} {
		p := n.pipeFor(context.Background(), tc.key)
		if p == nil || p == a || p.lanes != 2 || p.maxBatch != 256 {
			t.Fatalf("%s: pipe %+v", tc.key, p)
		}
		if width(p) != tc.wide || width(a) != tc.wide {
			t.Errorf("%d masters: widths %d and %d, want %d", n.len(), width(p), width(a), tc.wide)
		}
	}
	if n.len() != 4 {
		t.Errorf("%d pipes, want 4", n.len())
	}
	if p := n.pipeFor(context.Background(), "z"); p != nil {
		t.Errorf("a key without a master: pipe %v", p)
	}
}
