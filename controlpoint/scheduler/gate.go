package scheduler

import (
	"context"
	"sync"
	"time"
)

// Resource is what a Gate hands out: units of something kept per key (the
// tokens of a bucket, the slots of a concurrency limit). Its owner
// implements it; the Gate calls it with its own lock held, so a Resource
// must not call back into the Gate.
type Resource interface {
	// TryTake takes n units of key's resource at now if they are there.
	// When they are not, retry is how long until they would be if nothing
	// else took any (a bucket refilling), or 0 when only a unit given
	// back can make room (Gate.Release then says so), or a negative
	// duration when n units will never be there (n above a bucket's
	// capacity).
	TryTake(now time.Time, key string, n float64) (ok bool, retry time.Duration)
}

// GateRequest is one flow asking a Gate for units.
type GateRequest struct {
	// Key selects the resource (and the queue): flows of one key never
	// wait behind flows of another.
	Key      string
	Workload string
	// Weight is the workload's share of the key's queue; below 1 counts
	// as 1.
	Weight float64
	// Tokens is how many units the flow takes.
	Tokens float64
	// Fairness is the flow's fairness key (a fairness label's value):
	// within the workload, flows of different keys share its turns
	// fairly (FairQueue.PushFlow). "" for none.
	Fairness string
	// Timeout is the longest the flow waits; 0 means it does not wait.
	Timeout time.Duration
}

// Gate is a weighted fair queue per key in front of a Resource: a flow
// that finds its key's queue empty and the units there takes them at
// once; otherwise it waits, behind the flows of its key by
// weighted-fair-queuing finish tags (a workload with twice the weight is
// served twice as often while both wait), until units are there for it or
// its timeout passes.
//
// The methods that take now (Arrive, Advance, Release) are the Gate in
// virtual time: they never block and start no timer, so tests replay a
// schedule at t0…tn. Acquire is the same Gate in real time: it blocks the
// caller, reads the clock given to NewGate and arms timers for refills.
// Use one style per Gate. A Gate is safe for concurrent use.
type Gate struct {
	res   Resource
	clock func() time.Time

	mu   sync.Mutex
	keys map[string]*gateKey // keys with waiting flows; guarded by mu
}

type gateKey struct {
	q     FairQueue[*Ticket]
	timer *time.Timer // Acquire only: armed while the head waits for a refill
}

// Ticket is a flow waiting in a Gate.
type Ticket struct {
	Request  GateRequest
	Deadline time.Time
	entry    *Entry[*Ticket]
	granted  bool          // guarded by Gate.mu
	ready    chan struct{} // Acquire only: closed when granted
}

// NewGate returns a Gate in front of res; clock (nil: time.Now) is read by
// Acquire only.
func NewGate(res Resource, clock func() time.Time) *Gate {
	if clock == nil {
		clock = time.Now
	}
	return &Gate{res: res, clock: clock, keys: map[string]*gateKey{}}
}

// Arrive admits r at once when its key's queue is empty and the resource
// has its units; otherwise, when r may wait (Timeout > 0) and its units
// can ever be there, it queues r until now+Timeout and returns its
// ticket; otherwise it rejects r (admitted false, t nil).
func (g *Gate) Arrive(now time.Time, r GateRequest) (admitted bool, t *Ticket) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.arriveLocked(now, r, nil)
}

func (g *Gate) arriveLocked(now time.Time, r GateRequest, ready chan struct{}) (bool, *Ticket) {
	k := g.keys[r.Key]
	if k == nil || k.q.Len() == 0 {
		ok, retry := g.res.TryTake(now, r.Key, r.Tokens)
		if ok {
			return true, nil
		}
		if retry < 0 || r.Timeout <= 0 {
			return false, nil
		}
	} else if r.Timeout <= 0 {
		return false, nil
	}
	if k == nil {
		k = &gateKey{}
		g.keys[r.Key] = k
	}
	t := &Ticket{Request: r, Deadline: now.Add(r.Timeout), ready: ready}
	t.entry = k.q.PushFlow(r.Workload, r.Fairness, r.Weight, r.Tokens, t)
	return false, t
}

// Advance admits waiting flows of every key, in their queue's order, while
// their resource has the units, and takes out those whose deadline is not
// after now (or whose units will never be there). It returns both, in no
// particular order across keys.
func (g *Gate) Advance(now time.Time) (admitted, expired []*Ticket) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for key, k := range g.keys {
		for _, t := range k.q.items {
			if !t.Value.Deadline.After(now) {
				expired = append(expired, t.Value)
			}
		}
		for _, t := range expired {
			if t.Request.Key == key {
				k.q.Remove(t.entry)
			}
		}
		admitted, expired, _ = g.dispatchLocked(now, key, admitted, expired)
	}
	return admitted, expired
}

// Release says that units of key's resource were given back at now: it
// admits the key's waiting flows that now fit and returns them.
func (g *Gate) Release(now time.Time, key string) []*Ticket {
	g.mu.Lock()
	defer g.mu.Unlock()
	admitted, _, _ := g.dispatchLocked(now, key, nil, nil)
	return admitted
}

// Withdraw takes a waiting flow out of its queue, and reports whether it
// was still waiting (false: it was admitted, or withdrawn already).
func (g *Gate) Withdraw(t *Ticket) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.withdrawLocked(t)
}

func (g *Gate) withdrawLocked(t *Ticket) bool {
	if t.granted {
		return false
	}
	k := g.keys[t.Request.Key]
	if k == nil || !k.q.Remove(t.entry) {
		return false
	}
	g.dropIdleLocked(t.Request.Key, k)
	return true
}

// Waiting is the number of flows waiting, over every key.
func (g *Gate) Waiting() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, k := range g.keys {
		n += k.q.Len()
	}
	return n
}

// dispatchLocked admits key's waiting flows in queue order while the
// resource has their units, appending them to admitted, and takes out a
// head whose units will never be there, appending it to dropped. retry is
// what the resource said about the head it could not serve (0 when none
// waits).
func (g *Gate) dispatchLocked(now time.Time, key string, admitted, dropped []*Ticket) ([]*Ticket, []*Ticket, time.Duration) {
	k := g.keys[key]
	if k == nil {
		return admitted, dropped, 0
	}
	var retry time.Duration
	for k.q.Len() > 0 {
		head := k.q.Peek().Value
		ok, r := g.res.TryTake(now, key, head.Request.Tokens)
		if !ok && r >= 0 {
			retry = r
			break
		}
		k.q.Pop()
		if ok {
			head.granted = true
			admitted = append(admitted, head)
		} else {
			dropped = append(dropped, head)
		}
		if head.ready != nil {
			close(head.ready)
		}
	}
	g.dropIdleLocked(key, k)
	return admitted, dropped, retry
}

// dropIdleLocked forgets a key nobody waits for, so the map holds only
// keys with waiting flows.
func (g *Gate) dropIdleLocked(key string, k *gateKey) {
	if k.q.Len() == 0 && k.timer == nil {
		delete(g.keys, key)
	}
}

// Acquire is Arrive in real time: it returns at once when r is admitted
// or rejected, and otherwise waits for its turn, up to r.Timeout and never
// past ctx's deadline (less a millisecond to answer). While the head of a
// key's queue waits for a refill, a timer admits it when the resource
// said it would be ready; units given back must be reported with
// ReleaseNow. It reports whether r was admitted and how long it waited.
func (g *Gate) Acquire(ctx context.Context, r GateRequest) (bool, time.Duration) {
	if dl, ok := ctx.Deadline(); ok {
		r.Timeout = min(r.Timeout, time.Until(dl)-time.Millisecond)
	}
	g.mu.Lock()
	now := g.clock()
	ok, t := g.arriveLocked(now, r, make(chan struct{}))
	if ok || t == nil {
		g.mu.Unlock()
		return ok, 0
	}
	g.armLocked(now, r.Key)
	g.mu.Unlock()

	timer := time.NewTimer(r.Timeout)
	defer timer.Stop()
	began := time.Now()
	select {
	case <-t.ready:
		return true, time.Since(began)
	case <-timer.C:
	case <-ctx.Done():
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if t.granted {
		return true, time.Since(began)
	}
	g.withdrawLocked(t)
	// The head may have changed: the next one may fit.
	g.armLocked(g.clock(), r.Key)
	return false, time.Since(began)
}

// ReleaseNow is Release at the clock's now, for a Gate used with Acquire.
func (g *Gate) ReleaseNow(key string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.armLocked(g.clock(), key)
}

// Kick admits whatever fits now on every key, after the resource's limits
// changed (Acquire style).
func (g *Gate) Kick() {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.clock()
	for key := range g.keys {
		g.armLocked(now, key)
	}
}

// armLocked dispatches key and, when its head waits for a refill, arms a
// timer for when the resource said it would be ready.
func (g *Gate) armLocked(now time.Time, key string) {
	_, _, retry := g.dispatchLocked(now, key, nil, nil)
	k := g.keys[key]
	if k == nil || k.timer != nil || retry <= 0 {
		return
	}
	k.timer = time.AfterFunc(max(retry, 100*time.Microsecond), func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		k.timer = nil
		if g.keys[key] != k {
			return
		}
		g.armLocked(g.clock(), key)
		g.dropIdleLocked(key, k)
	})
}

// TryAcquire is Acquire that never waits: it admits r when Acquire would
// at once, rejects it when Acquire would at once (r may not wait, or its
// units will never be there), and otherwise, when r would have to queue,
// queues nothing and reports decided false, so that the caller can
// Acquire where it may wait.
func (g *Gate) TryAcquire(ctx context.Context, r GateRequest) (admitted, decided bool) {
	if dl, ok := ctx.Deadline(); ok {
		r.Timeout = min(r.Timeout, time.Until(dl)-time.Millisecond)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if k := g.keys[r.Key]; k != nil && k.q.Len() > 0 {
		// Flows of the key wait: r would queue behind them.
		return false, r.Timeout <= 0
	}
	ok, retry := g.res.TryTake(g.clock(), r.Key, r.Tokens)
	if ok {
		return true, true
	}
	return false, retry < 0 || r.Timeout <= 0
}
