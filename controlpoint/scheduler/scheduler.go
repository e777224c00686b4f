// Package scheduler is the weighted fair queue behind the
// flow_control.load_scheduler component (Scheduler) and, in front of a
// resource kept per key, behind the quota and concurrency schedulers and
// the concurrency limiter (Gate, gate.go).
//
// A Scheduler admits tokens at a rate (SetRate), from a bucket that holds
// a tenth of a second of that rate. A request that finds the bucket short
// waits in a queue ordered by weighted-fair-queuing finish tags: each
// workload advances its own virtual clock by tokens/weight, so a workload
// with twice the weight gets twice the share of a saturated scheduler and
// none starves. A request waits at most its timeout (and never past its
// context's deadline), then is rejected.
//
// IncomingRate (incoming.go) measures the rate at which a load scheduler's
// flows arrive, which its admission rate is a multiple of; it does not
// read a lull as a low rate.
//
// With no rate set, or a rate of +Inf, every request is admitted at once.
// Unlike the rate limiter, a scheduler makes requests wait in real time,
// so it reads a clock (New's argument, time.Now in production) instead of
// taking `now` per call. A Scheduler is safe for concurrent use.
package scheduler

import (
	"context"
	"math"
	"sync"
	"time"
)

// Request is one flow asking to be scheduled.
type Request struct {
	Workload string
	// Weight is the workload's share; higher is served sooner. Values
	// below 1 count as 1.
	Weight float64
	// Tokens is the flow's cost.
	Tokens float64
	// Timeout bounds the wait in the queue.
	Timeout time.Duration
	// Fairness is the flow's fairness key within its workload (see
	// FairQueue.PushFlow); "" for none.
	Fairness string
}

// Scheduler is a token-rate limited weighted fair queue.
type Scheduler struct {
	clock  func() time.Time
	mu     sync.Mutex
	rate   float64 // tokens per second; +Inf: unlimited
	tokens float64
	last   time.Time
	queue  FairQueue[*waiter]
	timer  *time.Timer // armed while the queue waits for tokens
}

// New returns a Scheduler that admits everything until SetRate. clock nil
// means time.Now.
func New(clock func() time.Time) *Scheduler {
	if clock == nil {
		clock = time.Now
	}
	return &Scheduler{clock: clock, rate: math.Inf(1)}
}

// SetRate sets the admission rate in tokens per second. NaN, +Inf or a
// negative rate removes the limit; queued requests are then admitted at
// once. 0 admits nothing: requests wait out their timeouts. A limit set
// while there was none starts with a full bucket.
func (s *Scheduler) SetRate(rate float64) {
	if math.IsNaN(rate) || rate < 0 {
		rate = math.Inf(1)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock()
	s.refill(now)
	unlimited := math.IsInf(s.rate, 1)
	s.rate = rate
	if unlimited {
		// A limit set on an unlimited scheduler starts with a full bucket,
		// as a bucket that sat idle would be: its first flows must not
		// wait a token interval for the first token.
		s.tokens = s.capacity()
	}
	if s.tokens > s.capacity() {
		s.tokens = s.capacity()
	}
	s.dispatch(now)
}

// Rate is the current admission rate.
func (s *Scheduler) Rate() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rate
}

// QueueLen is the number of waiting requests.
func (s *Scheduler) QueueLen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queue.Len()
}

func (s *Scheduler) capacity() float64 { return BucketCapacity(s.rate) }

// BucketCapacity is the token bucket a scheduler admits from at rate
// tokens/s: a tenth of a second of the rate, at least one token (so that
// a low rate still admits a flow now and then), unbounded when the rate
// is. The simulator's load scheduler (circuit/sim) uses the same.
func BucketCapacity(rate float64) float64 {
	switch {
	case math.IsInf(rate, 1):
		return math.Inf(1)
	case rate == 0:
		return 0
	}
	return math.Max(rate/10, 1)
}

func (s *Scheduler) refill(now time.Time) {
	if !s.last.IsZero() && now.After(s.last) && !math.IsInf(s.rate, 1) {
		s.tokens = math.Min(s.tokens+now.Sub(s.last).Seconds()*s.rate, s.capacity())
	}
	if s.last.IsZero() && !math.IsInf(s.rate, 1) {
		s.tokens = s.capacity()
	}
	if now.After(s.last) {
		s.last = now
	}
}

// Admit schedules r: it returns at once when tokens are available and
// nobody is queued, else waits for its turn up to r.Timeout or ctx's
// deadline. It reports whether the request was admitted and how long it
// waited.
func (s *Scheduler) Admit(ctx context.Context, r Request) (bool, time.Duration) {
	s.mu.Lock()
	now := s.clock()
	if math.IsInf(s.rate, 1) {
		s.mu.Unlock()
		return true, 0
	}
	s.refill(now)
	if s.queue.Len() == 0 && s.tokens >= r.Tokens {
		s.tokens -= r.Tokens
		s.mu.Unlock()
		return true, 0
	}
	timeout := r.Timeout
	if dl, ok := ctx.Deadline(); ok {
		// Leave a millisecond to answer before the caller gives up.
		timeout = min(timeout, time.Until(dl)-time.Millisecond)
	}
	if timeout <= 0 {
		s.mu.Unlock()
		return false, 0
	}
	w := &waiter{tokens: r.Tokens, ready: make(chan struct{})}
	w.entry = s.queue.PushFlow(r.Workload, r.Fairness, r.Weight, r.Tokens, w)
	s.dispatch(now)
	s.mu.Unlock()

	t := time.NewTimer(timeout)
	defer t.Stop()
	began := time.Now()
	select {
	case <-w.ready:
		return true, time.Since(began)
	case <-t.C:
	case <-ctx.Done():
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if w.granted {
		return true, time.Since(began)
	}
	s.queue.Remove(w.entry)
	return false, time.Since(began)
}

// dispatch admits queued requests in finish-tag order while tokens last,
// and arms a timer for when the head can be afforded. Called with mu held.
func (s *Scheduler) dispatch(now time.Time) {
	for s.queue.Len() > 0 {
		head := s.queue.Peek().Value
		if !math.IsInf(s.rate, 1) && s.tokens < head.tokens {
			break
		}
		s.queue.Pop()
		if !math.IsInf(s.rate, 1) {
			s.tokens -= head.tokens
		}
		head.granted = true
		close(head.ready)
	}
	if s.queue.Len() == 0 || s.timer != nil || s.rate <= 0 {
		return
	}
	wait := time.Duration((s.queue.Peek().Value.tokens - s.tokens) / s.rate * float64(time.Second))
	s.timer = time.AfterFunc(max(wait, 100*time.Microsecond), func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.timer = nil
		now := s.clock()
		s.refill(now)
		s.dispatch(now)
	})
}

type waiter struct {
	tokens  float64
	ready   chan struct{}
	granted bool // guarded by Scheduler.mu
	entry   *Entry[*waiter]
}

// MinWaitTokens is how many of its token intervals (tokens/rate) a flow
// may always wait in a rate-limited queue (QueueTimeout), and
// MaxTokenWait the most that floor is ever worth.
const (
	MinWaitTokens = 2
	MaxTokenWait  = time.Second
)

// QueueTimeout is how long a flow of tokens may wait in a queue that
// admits rate tokens per second when its workload says timeout: at least
// MinWaitTokens of its token intervals, MinWaitTokens × tokens / rate
// (tokens below 1 count as 1), but that floor never above MaxTokenWait;
// timeout when it is longer, or when the rate is 0 or unlimited (no token
// is coming, or none is needed).
//
// Why: a flow that finds the bucket empty waits tokens/rate for its
// tokens, and more behind the flows ahead of it. The bucket holds a tenth
// of a second of the rate (a single token below 10 tokens/s), and a load
// scheduler's rate follows arrivals measured every 100 ms, so under light
// load a flow can find the bucket empty although the rate has room. A
// timeout shorter than its token interval then rejects it: at 20 tokens/s
// a 20 ms timeout rejects a flow that misses a token by more than 20 ms,
// while the next token is up to 50 ms away. With the floor, a short
// timeout keeps admitted flows fast at high rates (where an interval is a
// few milliseconds) without turning a low rate into rejections.
func QueueTimeout(timeout time.Duration, tokens, rate float64) time.Duration {
	if !(rate > 0) || math.IsInf(rate, 1) {
		return timeout
	}
	floor := MaxTokenWait
	if s := MinWaitTokens * max(tokens, 1) / rate; s < MaxTokenWait.Seconds() {
		floor = time.Duration(s * float64(time.Second))
	}
	return max(timeout, floor)
}

// TryAdmit is Admit that never waits: it admits r when Admit would at
// once, rejects it when Admit would at once (no time left to wait), and
// otherwise, when r would have to queue, changes nothing and reports
// decided false, so that the caller can Admit it where it may wait.
func (s *Scheduler) TryAdmit(ctx context.Context, r Request) (admitted, decided bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if math.IsInf(s.rate, 1) {
		return true, true
	}
	s.refill(s.clock())
	if s.queue.Len() == 0 && s.tokens >= r.Tokens {
		s.tokens -= r.Tokens
		return true, true
	}
	timeout := r.Timeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl)-time.Millisecond)
	}
	if timeout <= 0 {
		return false, true
	}
	return false, false
}

// Refund gives back tokens that TryAdmit or Admit took for a flow that
// is to be scheduled again (up to the bucket's capacity), and admits the
// waiting requests they now pay for.
func (s *Scheduler) Refund(tokens float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if math.IsInf(s.rate, 1) || tokens <= 0 {
		return
	}
	s.tokens = math.Min(s.tokens+tokens, s.capacity())
	s.dispatch(s.clock())
}
