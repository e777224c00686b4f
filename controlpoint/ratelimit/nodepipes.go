package ratelimit

import (
	"context"
	"maps"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// Redis Cluster: a pipe per master. One pipe shared by every master (as
// before) coupled them: go-redis's Cluster client splits a pipeline by
// node and sends the parts in parallel, but Exec returns when the last
// part is back, so a lane carried every master's calls for as long as the
// slowest master took, the calls of the masters that had answered waited
// with them, and those masters sat idle meanwhile; and each master had at
// most the pipe's few lanes in flight, each with its share of one batch.
// When Redis is the bottleneck that wasted the masters' time where it is
// scarcest: 6 masters, each on a budget of 0.1 cores, served 4.8× one
// master instead of about 6× (BENCHMARKS.md, Redis Cluster).
//
// With a pipe per master, a call goes to the pipe of the master that
// serves its key's slot, as the client's slot map says: each master gets
// its own lanes and batches sized by its own pace, and a slow or stalled
// master holds up only its own calls. The calls are still sent through
// the Cluster client, so MOVED and ASK are followed as before (a slot
// that moved behind the map only puts a call in the old master's pipe,
// and the client reads the map again after a failed call). A call whose
// key has no master in the map (the map cannot be read) goes through the
// shared pipe and fails there as before.

// clusterMasters is what nodePipes needs of a *redis.ClusterClient.
type clusterMasters interface {
	MasterForKey(ctx context.Context, key string) (*redis.Client, error)
}

// nodePipesMax bounds the pipes kept: past it (masters replaced over a
// long life: failovers, new addresses) the set starts again, the pipes
// dropped being idle or finishing their calls on their own.
const nodePipesMax = 256

// nodePipes hands out the pipe of a key's master. The zero value is not
// usable; see newNodePipes.
type nodePipes struct {
	cluster               clusterMasters
	client                RedisClient // the Cluster client, which sends every pipe's calls
	lanes, wide, maxBatch int         // as RedisOptions: Pipelines, WidePipelines; the batch bound

	byAddr atomic.Pointer[map[string]*pipe] // read by every call; replaced under mu
	mu     sync.Mutex                       // serializes writers of byAddr
}

func newNodePipes(cluster clusterMasters, client RedisClient, lanes, wide, maxBatch int) *nodePipes {
	n := &nodePipes{cluster: cluster, client: client, lanes: lanes, wide: wide, maxBatch: maxBatch}
	n.byAddr.Store(&map[string]*pipe{})
	return n
}

// pipeFor is the pipe of key's master, or nil when the client cannot
// name it (the slot map cannot be read within ctx).
func (n *nodePipes) pipeFor(ctx context.Context, key string) *pipe {
	node, err := n.cluster.MasterForKey(ctx, key)
	if err != nil || node == nil {
		return nil
	}
	addr := node.Options().Addr
	if p := (*n.byAddr.Load())[addr]; p != nil {
		return p
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	cur := *n.byAddr.Load()
	if p := cur[addr]; p != nil {
		return p
	}
	next := map[string]*pipe{}
	if len(cur) < nodePipesMax {
		next = maps.Clone(cur)
	}
	p := &pipe{client: n.client, lanes: n.lanes, maxBatch: n.maxBatch}
	next[addr] = p
	// The wide lanes are shared out among the masters, each keeping at
	// least lanes: at full width each, a master with few callers never
	// saw its batches grow, stayed wide, and every call went alone, each
	// costing Redis a read of its own.
	wide := max(n.lanes, n.wide/len(next))
	for _, q := range next {
		q.mu.Lock()
		q.wideLanes = wide
		q.mu.Unlock()
	}
	n.byAddr.Store(&next)
	return p
}

// len is the number of pipes held.
func (n *nodePipes) len() int { return len(*n.byAddr.Load()) }

// pipeFor is the pipe a call on keys goes through: on Redis Cluster the
// pipe of the first key's master (a call's keys share a slot), else the
// backend's one pipe.
func (b *RedisBackend) pipeFor(ctx context.Context, keys []string) *pipe {
	if b.nodes == nil || len(keys) == 0 {
		return &b.pipe
	}
	if p := b.nodes.pipeFor(ctx, keys[0]); p != nil {
		return p
	}
	return &b.pipe
}
