package client

import (
	"sync"
	"sync/atomic"
	"time"
)

// breakerState is the state of a Guard's circuit breaker, with the values
// of fluxgate_client_breaker_state.
type breakerState int

const (
	breakerClosed   breakerState = 0 // checks go to the agent
	breakerOpen     breakerState = 1 // checks are skipped until the cool-down ends
	breakerHalfOpen breakerState = 2 // one probe is in flight; the rest are skipped
)

func (s breakerState) String() string {
	switch s {
	case breakerClosed:
		return "closed"
	case breakerOpen:
		return "open"
	}
	return "half_open"
}

// breaker counts consecutive failures of the agent. After threshold of
// them it opens for coolDown; then it lets one probe through. Time is a
// parameter of every method. A breaker is safe for concurrent use; when
// closed with no failures counted, allow and success take no lock.
type breaker struct {
	threshold int
	coolDown  time.Duration
	onChange  func(from, to breakerState) // called with mu held; may be nil

	clean atomic.Bool // closed with no failure counted: the lock-free fast path

	mu       sync.Mutex
	state    breakerState // guarded by mu
	fails    int          // consecutive failures, guarded by mu
	openedAt time.Time    // guarded by mu
}

func newBreaker(threshold int, coolDown time.Duration, onChange func(from, to breakerState)) *breaker {
	b := &breaker{threshold: threshold, coolDown: coolDown, onChange: onChange}
	b.clean.Store(true)
	return b
}

// allow reports whether a check may go to the agent at now. probe is true
// when it is the one probe of a half-open breaker: the caller must then
// report success, failure or abandon.
func (b *breaker) allow(now time.Time) (ok, probe bool) {
	if b.clean.Load() {
		return true, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case breakerClosed:
		return true, false
	case breakerOpen:
		if now.Sub(b.openedAt) < b.coolDown {
			return false, false
		}
		b.setLocked(breakerHalfOpen)
		return true, true
	}
	return false, false // half-open: a probe is already in flight
}

// success records a check the agent answered. A probe's success closes
// the breaker.
func (b *breaker) success(probe bool) {
	if b.clean.Load() {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state == breakerOpen || (b.state == breakerHalfOpen && !probe) {
		return // a check sent before the breaker opened; wait for the probe
	}
	b.fails = 0
	b.setLocked(breakerClosed)
	b.clean.Store(true)
}

// failure records a check the agent did not answer at now. It opens the
// breaker after threshold consecutive failures, or when the probe fails.
func (b *breaker) failure(now time.Time, probe bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.clean.Store(false)
	switch b.state {
	case breakerOpen:
		return
	case breakerHalfOpen:
		if !probe {
			return
		}
	case breakerClosed:
		b.fails++
		if b.fails < b.threshold {
			return
		}
	}
	b.openedAt = now
	b.setLocked(breakerOpen)
}

// abandon records a probe whose caller went away before the agent
// answered: it neither closes nor reopens the breaker, and the next check
// probes again.
func (b *breaker) abandon(probe bool) {
	if !probe {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state == breakerHalfOpen {
		b.setLocked(breakerOpen) // openedAt is unchanged, so the cool-down is over
	}
}

func (b *breaker) setLocked(s breakerState) {
	if b.state == s {
		return
	}
	if b.onChange != nil {
		b.onChange(b.state, s)
	}
	b.state = s
}

// current returns the state.
func (b *breaker) current() breakerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}
