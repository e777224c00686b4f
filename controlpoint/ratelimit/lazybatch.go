package ratelimit

import (
	"container/heap"
	"context"
	"sync"
	"time"

	"github.com/fluxgate/fluxgate/controlpoint/breaker"
)

// Batched syncs. Lazy sync used to start each sync on its own goroutine
// (or a timer, when not yet due) and send it as its own round trip. With
// many keys each busy below the sync rate (10,000 keys at 1.6 checks a
// key a second), nearly every check made a sync, so lazy sync cost more
// CPU per check than exact mode's one script call. Now a limiter's syncs
// wait in one queue, ordered by when each may leave, and one goroutine
// (running only while syncs are pending) sends every sync that is due,
// each batch window, as one pipeline. A sync never waits more than one
// window (at most 5ms, and a tenth of the sync period) past when it is
// due, and the next one is due a window early, so a busy key still syncs
// at least once a period: the overshoot bound does not change. (A cold
// key's sync also waits, up to an interval, for its takes to add up:
// scheduleLocked; a queued sync is brought forward in place when its
// key turns busy or its share is evicted.) Decisions never wait on any
// of this.
type syncQueue struct {
	window time.Duration // how often due syncs leave, together

	mu      sync.Mutex
	pending syncHeap    // guarded by mu: syncs by when they may leave; a bucket is in it once, while its state is syncScheduled (its qi)
	running bool        // guarded by mu: the sending goroutine is on
	timer   *time.Timer // guarded by mu: wakes the sending goroutine, while it is on
	wake    int64       // guarded by mu: when the timer fires (unix nanoseconds)
	wakes   int         // guarded by mu: times the sending goroutine woke, for tests
}

// maxSyncWindow bounds how long a due sync waits for company;
// minSyncWindow keeps the sending goroutine from spinning when the sync
// period is tiny.
const (
	maxSyncWindow = 5 * time.Millisecond
	minSyncWindow = 100 * time.Microsecond
)

// maxSyncBatch bounds one pipeline of syncs.
const maxSyncBatch = 256

// syncBatchCost is the deadline a batch of syncs gets per sync, on top
// of the limiter's redis_timeout: Redis runs a batch's scripts one after
// the other.
const syncBatchCost = 50 * time.Microsecond

type syncItem struct {
	at  int64 // wall clock (unix nanoseconds) when it may leave
	key string
	b   *lazyBucket
}

// syncHeap keeps each bucket's place in it (lazyBucket.qi, guarded by
// syncQueue.mu), so that a queued sync can be moved.
type syncHeap []syncItem

func (h syncHeap) Len() int           { return len(h) }
func (h syncHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h syncHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].b.qi, h[j].b.qi = i+1, j+1
}
func (h *syncHeap) Push(x any) {
	it := x.(syncItem)
	*h = append(*h, it)
	it.b.qi = len(*h)
}
func (h *syncHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = syncItem{}
	*h = old[:len(old)-1]
	it.b.qi = 0
	return it
}

// add queues key's sync to leave at at (wall clock) or at the first
// batch after it, or moves it there if it is queued already, and starts
// the sending goroutine if it is not on. The caller holds the shard's
// mutex of key.
func (q *syncQueue) add(z *lazy, key string, b *lazyBucket, at int64) {
	q.mu.Lock()
	if b.qi > 0 {
		q.pending[b.qi-1].at = at
		heap.Fix(&q.pending, b.qi-1)
	} else {
		heap.Push(&q.pending, syncItem{at: at, key: key, b: b})
	}
	start := !q.running
	q.running = true
	if start {
		q.wake = time.Now().UnixNano() + int64(q.window)
		q.timer = time.NewTimer(q.window)
	} else if at < q.wake {
		// The goroutine sleeps until a later sync is due: wake it for the
		// batch after this one's time instead.
		now := time.Now().UnixNano()
		if w := max(at, now+int64(q.window)); w < q.wake {
			q.wake = w
			q.timer.Reset(time.Duration(w - now))
		}
	}
	t := q.timer
	q.mu.Unlock()
	if start {
		go q.run(z, t)
	}
}

// run sends the due syncs, those due together in one window, until none
// is pending. While none is due it sleeps until the first one is, not a
// window at a time: a key that syncs once a minute costs one wake-up a
// minute.
func (q *syncQueue) run(z *lazy, t *time.Timer) {
	for range t.C {
		now := time.Now().UnixNano()
		q.mu.Lock()
		q.wakes++
		var due []syncItem
		for len(q.pending) > 0 && q.pending[0].at <= now {
			due = append(due, heap.Pop(&q.pending).(syncItem))
		}
		done := len(due) == 0 && len(q.pending) == 0
		if done {
			q.running = false
			q.timer = nil
			q.pending = nil // give back a queue that grew under a burst
		} else {
			next := now + int64(q.window)
			if len(q.pending) > 0 {
				next = max(next, q.pending[0].at)
			}
			q.wake = next
			t.Reset(time.Duration(next - now))
		}
		q.mu.Unlock()
		if done {
			return
		}
		for len(due) > 0 {
			n := min(len(due), maxSyncBatch)
			z.syncBatch(due[:n])
			due = due[n:]
		}
	}
}

// syncBatch reconciles the shares of items with Redis in one pipeline.
func (z *lazy) syncBatch(items []syncItem) {
	lim := z.l.limits.Load()
	start := time.Now()
	calls := make([]*pipeCall, len(items))
	totals := make([]float64, len(items))
	n := 0
	for _, it := range items {
		sh := z.shard(it.key)
		sh.mu.Lock()
		if it.b.state != syncScheduled {
			sh.mu.Unlock()
			continue
		}
		total, ack := z.startSyncLocked(it.b, start)
		epoch := it.b.epoch
		sh.mu.Unlock()
		items[n], totals[n] = it, total
		calls[n] = &pipeCall{script: z.l.script, keys: []string{z.l.Key(it.key)}, args: z.syncArgs(lim, epoch, total, ack)}
		n++
	}
	if n == 0 {
		return
	}
	items, calls = items[:n], calls[:n]
	z.l.evalBatch(calls, z.l.timeout+time.Duration(len(calls))*syncBatchCost)
	for i, it := range items {
		c := calls[i]
		var grant, agents float64
		err := c.err
		if err == nil {
			grant, agents, err = parseSync(c.reply)
		}
		z.finishSync(it.key, it.b, lim, start.UnixNano(), totals[i], grant, agents, err)
	}
}

// evalBatch runs calls as one pipeline within timeout, through the
// breaker, and sets each call's reply or error. The batch is one round
// trip: the breaker counts it as one call, failed when no call in it got
// an answer.
func (l *RedisLimiter) evalBatch(calls []*pipeCall, timeout time.Duration) {
	b := l.b
	start := time.Now()
	permit, err := b.breaker.AllowAt(start)
	if err != nil {
		b.errs.WithLabelValues("breaker_open").Add(float64(len(calls)))
		for _, c := range calls {
			c.err = errBreakerOpen
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	b.pipe.exec(ctx, calls, true)
	end := time.Now()
	b.duration.Observe(end.Sub(start).Seconds())
	var firstErr error
	answered := false
	for _, c := range calls {
		if c.err == nil {
			answered = true
			continue
		}
		b.errs.WithLabelValues(errorReason(c.err)).Inc()
		if firstErr == nil {
			firstErr = c.err
		}
	}
	if firstErr != nil {
		b.noteError(end, firstErr)
		b.reloadTopology()
	}
	if !answered {
		b.breaker.RecordAt(end, permit, breaker.Failure)
		return
	}
	b.breaker.RecordAt(end, permit, breaker.Success)
	b.okAt.Store(end.UnixNano())
}
