package ratelimit

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisClient is what a RedisBackend needs of a go-redis client: scripts,
// commands of its own making (a script call that is never resent), and
// pipelines to share round trips. *redis.Client and *redis.ClusterClient
// are RedisClients.
type RedisClient interface {
	redis.Scripter
	Process(ctx context.Context, cmd redis.Cmder) error
	Pipeline() redis.Pipeliner
}

// Shared round trips. Before, each decision was one EVALSHA on a pooled
// connection: one write and one read system call on each side per
// decision, which is where the floor (a bare EVALSHA loop) sits and where
// half of the agent's CPU went. A pipe lets concurrent calls share round
// trips without ever waiting for company:
//
//   - a call that finds a lane free and nobody queued runs at once, alone,
//     on the caller's goroutine, exactly as before (no added latency at
//     low load);
//   - a call that finds the lanes busy queues; when a lane comes back it
//     sends everything queued (up to maxBatch) as one go-redis pipeline:
//     one write, one read, one round trip for the lot. The busier Redis
//     is, the larger the batches, so the cost per decision falls as load
//     rises instead of the queue growing.
//
// How many lanes follows the batches. While they stay small (light load:
// calls mostly go alone, a few arrive together) a pipe opens up to
// wideLanes, so that a burst of calls goes out at once as a burst of
// bare EVALSHAs would, each on its own connection: queued behind two
// lanes, the third call of a burst waited a round trip for company it did
// not need. Once batches grow (Redis is busy; more lanes would only cut
// the same calls into more, smaller round trips, which costs CPU on both
// sides), it narrows to lanes. sizeBatchLocked has the rule.
//
// Why our own batching on go-redis pipelines rather than an
// auto-pipelining client (rueidis, or go-redis's experimental
// AutoPipeline): the decision's hard deadline stays ours (each caller
// waits at most its own deadline, whatever its batch does); a call whose
// caller gave up before its batch left is never sent, so a decision that
// fell back to its failure mode is not also charged in Redis; a script
// call is never sent twice (see sentOnce: a replayed take would be
// charged twice); and the same code serves Redis Cluster, whose go-redis
// client splits a pipeline by node and sends the parts in parallel. No
// new dependency, and the agent keeps one client.
//
// Which calls use a pipe: those to a Redis Cluster, lazy syncs, and a
// standalone Redis's when RedisOptions.Streams is -1 or its client's
// options keep it; a standalone Redis's exact decisions otherwise go on a
// stream (stream.go), which does not make a call that arrives while the
// lanes are busy wait for a lane's round trip.
//
// A pipe holds no goroutine while idle: lanes are started by callers and
// end when the queue is empty. The queue holds at most one call per
// caller waiting (plus lazy syncs, which are bounded by their shares).
type pipe struct {
	client    RedisClient
	lanes     int // calls or batches in flight at once while batches are large
	wideLanes int // … while they are small (at least lanes)
	maxBatch  int

	mu      sync.Mutex
	queue   []*pipeCall // guarded by mu
	running int         // guarded by mu: lanes in use
	// guarded by mu: calls a round trip carried, averaged over the last
	// few (see sizeBatchLocked), and whether wideLanes apply.
	batchAvg float64
	narrow   bool
}

// pipeCall is one script call. The caller fills script, keys, args and
// ctx; the lane that sends it sets reply and err, then closes done.
type pipeCall struct {
	ctx context.Context // the caller's
	// deadline, when set, is the limiter's own (redis_timeout), kept
	// apart from ctx so that a stream's call makes no context of its
	// own (streams only; a pipe's calls have it in ctx).
	deadline time.Time
	script   *redis.Script
	keys     []string
	args     []any
	reply    []any
	err      error
	done     chan struct{}
	// Set by a stream (stream.go) under its connection's lock: written
	// and not yet answered; given up by its caller.
	inFlight, gone bool
	// A decision's keys and args, in the call's own memory.
	key  [1]string
	argv [maxScriptArgs]any
}

// gaveUp is why c's caller no longer waits: its context's error, or
// context.DeadlineExceeded past c.deadline; nil while it waits.
func (c *pipeCall) gaveUp() error {
	if err := c.ctx.Err(); err != nil {
		return err
	}
	if !c.deadline.IsZero() && !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// deadlineAt is the earlier of c.deadline and its context's deadline;
// ok is false when there is neither.
func (c *pipeCall) deadlineAt() (d time.Time, ok bool) {
	d = c.deadline
	if cd, has := c.ctx.Deadline(); has && (d.IsZero() || cd.Before(d)) {
		d = cd
	}
	return d, !d.IsZero()
}

// context is c's caller's context with c.deadline, for the calls that
// need one (a script load, a dial); cancel it when done.
func (c *pipeCall) context() (context.Context, context.CancelFunc) {
	if c.deadline.IsZero() {
		return context.WithCancel(c.ctx)
	}
	return context.WithDeadline(c.ctx, c.deadline)
}

// Default sizes of a pipe: lanes is how many pipelines may be in flight
// at once when Redis is busy (a lane's round trip overlaps Redis working
// on another's batch), wideLanes how many while batches stay small;
// maxBatch bounds a batch's size, hence its reply's.
const (
	defaultPipeLanes     = 2
	defaultPipeWideLanes = 8
	defaultPipeMaxBatch  = 256
)

// The rule for the number of lanes: batchAvg is an exponentially weighted
// average of the calls each round trip carried (a call sent alone counts
// 1), over about pipeAvgOver round trips. Above pipeNarrowAbove calls the
// pipe narrows to lanes; below pipeWidenBelow it widens to wideLanes. The
// gap keeps it from flapping: at the wide width a busy pipe's batches
// are about callers/wideLanes, at the narrow one about callers/lanes.
const (
	pipeAvgOver     = 8
	pipeNarrowAbove = 4
	pipeWidenBelow  = 2
)

// sizeBatchLocked counts a round trip of n calls into batchAvg and sets
// the pipe's width by it. p.mu is held.
func (p *pipe) sizeBatchLocked(n int) {
	p.batchAvg += (float64(n) - p.batchAvg) / pipeAvgOver
	switch {
	case !p.narrow && p.batchAvg > pipeNarrowAbove:
		p.narrow = true
	case p.narrow && p.batchAvg < pipeWidenBelow:
		p.narrow = false
	}
}

// widthLocked is how many lanes may be in use now. p.mu is held.
func (p *pipe) widthLocked() int {
	if p.narrow {
		return p.lanes
	}
	return p.wideLanes
}

// do runs c and returns its reply. It returns by c.ctx's deadline at the
// latest.
func (p *pipe) do(c *pipeCall) ([]any, error) {
	p.mu.Lock()
	if p.running < p.widthLocked() && len(p.queue) == 0 {
		// Nobody to share with: send it now, from here.
		p.running++
		p.sizeBatchLocked(1)
		p.mu.Unlock()
		c.reply, c.err = p.evalOne(c.ctx, c)
		p.release()
		return c.reply, c.err
	}
	c.done = make(chan struct{})
	p.queue = append(p.queue, c)
	var batch []*pipeCall
	if p.running < p.widthLocked() {
		p.running++
		batch = p.takeLocked()
	}
	p.mu.Unlock()
	if batch != nil {
		go p.lane(batch)
	}
	select {
	case <-c.done:
		return c.reply, c.err
	case <-c.ctx.Done():
		// The lane sees the caller gone and does not send the call if it
		// has not left yet.
		return nil, c.ctx.Err()
	}
}

// release gives a lane back, or hands it what queued meanwhile.
func (p *pipe) release() {
	p.mu.Lock()
	if len(p.queue) == 0 || p.running > p.widthLocked() {
		p.running--
		p.mu.Unlock()
		return
	}
	batch := p.takeLocked()
	p.mu.Unlock()
	go p.lane(batch)
}

// lane sends batches until the queue is empty.
func (p *pipe) lane(batch []*pipeCall) {
	for {
		p.send(batch)
		p.mu.Lock()
		if len(p.queue) == 0 || p.running > p.widthLocked() {
			// Nothing queued, or the pipe narrowed: the lanes left
			// send what queues.
			p.running--
			p.mu.Unlock()
			return
		}
		batch = p.takeLocked()
		p.mu.Unlock()
	}
}

// takeLocked removes up to maxBatch calls from the front of the queue,
// a round trip's batch.
func (p *pipe) takeLocked() []*pipeCall {
	p.sizeBatchLocked(min(len(p.queue), p.maxBatch))
	if len(p.queue) <= p.maxBatch {
		b := p.queue
		p.queue = nil
		return b
	}
	b := make([]*pipeCall, p.maxBatch)
	copy(b, p.queue)
	p.queue = append(p.queue[:0], p.queue[p.maxBatch:]...)
	return b
}

// send runs a batch as one pipeline and completes its calls. Calls whose
// caller has gone (deadline passed or canceled) are not sent.
func (p *pipe) send(batch []*pipeCall) {
	live := batch[:0:0]
	var deadline time.Time
	unbounded := false // a caller without a deadline
	for _, c := range batch {
		if err := c.ctx.Err(); err != nil {
			c.err = err
			close(c.done)
			continue
		}
		live = append(live, c)
		if d, ok := c.ctx.Deadline(); !ok {
			unbounded = true
		} else if d.After(deadline) {
			deadline = d
		}
	}
	if len(live) == 0 {
		return
	}
	// The pipeline lives as long as its longest-lived caller: no call in
	// it fails before its own deadline because another's came first.
	ctx, cancel := context.WithCancel(context.Background())
	if !unbounded {
		ctx, cancel = context.WithDeadline(context.Background(), deadline)
	}
	defer cancel()
	p.exec(ctx, live, true)
	for _, c := range live {
		close(c.done)
	}
}

// exec runs calls as one pipeline (one call: a plain EVALSHA) and sets
// each call's reply and err. With reload, a script Redis has lost
// (NOSCRIPT: Redis restarted or flushed its scripts) is loaded again and
// the calls that found it missing run again, once, within ctx.
func (p *pipe) exec(ctx context.Context, calls []*pipeCall, reload bool) {
	if len(calls) == 1 {
		c := calls[0]
		c.reply, c.err = p.evalOne(ctx, c)
		return
	}
	pl := p.client.Pipeline()
	cmds := make([]sentOnce, len(calls))
	for i, c := range calls {
		cmds[i] = evalShaOnce(ctx, c)
		_ = pl.Process(ctx, cmds[i])
	}
	_, _ = pl.Exec(ctx) // each command carries its own error
	var again []*pipeCall
	for i, c := range calls {
		c.reply, c.err = cmds[i].Slice()
		if reload && c.err != nil && isNoScript(c.err) {
			again = append(again, c)
		}
	}
	if len(again) == 0 {
		return
	}
	loaded := map[*redis.Script]error{}
	for _, c := range again {
		err, ok := loaded[c.script]
		if !ok {
			err = c.script.Load(ctx, p.client).Err()
			loaded[c.script] = err
		}
		if err != nil {
			c.err = err
		}
	}
	again = againLoaded(again, loaded)
	if len(again) > 0 {
		p.exec(ctx, again, false)
	}
}

// againLoaded keeps the calls whose script loaded.
func againLoaded(calls []*pipeCall, loaded map[*redis.Script]error) []*pipeCall {
	out := calls[:0]
	for _, c := range calls {
		if loaded[c.script] == nil {
			out = append(out, c)
		}
	}
	return out
}

// evalOne runs one call with a plain EVALSHA, reloading the script on
// NOSCRIPT within ctx.
func (p *pipe) evalOne(ctx context.Context, c *pipeCall) ([]any, error) {
	reply, err := p.evalShaOnce(ctx, c)
	if err != nil && isNoScript(err) {
		if err = c.script.Load(ctx, p.client).Err(); err == nil {
			reply, err = p.evalShaOnce(ctx, c)
		}
	}
	return reply, err
}

func (p *pipe) evalShaOnce(ctx context.Context, c *pipeCall) ([]any, error) {
	cmd := evalShaOnce(ctx, c)
	_ = p.client.Process(ctx, cmd)
	return cmd.Slice()
}

// sentOnce is an EVALSHA that go-redis sends at most once. Our token
// bucket and sliding window scripts are not idempotent: a take whose
// reply was lost may have run, and sending it again charges it twice. A
// standalone client built with MaxRetries -1 never resends, but go-redis
// v9.23's Cluster client has a loop of its own, bounded by MaxRedirects
// (3 by default), not by MaxRetries: after an error its shouldRetry
// accepts (io.EOF, a reset connection, an i/o timeout, LOADING, TRYAGAIN,
// CLUSTERDOWN, MASTERDOWN…) it sends a command again, to the same node
// and then to another; in a pipeline it sends all of a node's commands
// again, those already answered included, after such an error on any of
// them or on the first one's reply. A command whose NoRetry is true is
// kept out of all of these. Still followed: MOVED and ASK (Redis refused
// the command, the script did not run), READONLY (a replica refuses
// writes) and, for a pipeline, a connection that could not be had
// (nothing was sent). A call that is not sent again fails, its decision
// falls back to the failure mode, and the backend asks the client to
// read the slot map again.
type sentOnce struct{ *redis.Cmd }

// NoRetry tells go-redis never to send the command again.
func (sentOnce) NoRetry() bool { return true }

var _ redis.Cmder = sentOnce{}

// evalShaOnce is EVALSHA of c's script with c's keys and arguments, as
// go-redis's EvalSha builds it (keys from position 3, for the Cluster
// client's slot), but never resent.
func evalShaOnce(ctx context.Context, c *pipeCall) sentOnce {
	args := make([]any, 0, 3+len(c.keys)+len(c.args))
	args = append(args, "evalsha", c.script.Hash(), len(c.keys))
	for _, k := range c.keys {
		args = append(args, k)
	}
	args = append(args, c.args...)
	cmd := redis.NewCmd(ctx, args...)
	if len(c.keys) > 0 {
		cmd.SetFirstKeyPos(3)
	}
	return sentOnce{cmd}
}
