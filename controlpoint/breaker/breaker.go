package breaker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fluxgate/fluxgate/metricnames"
)

// State is the state of a Breaker.
type State int

// The states of a Breaker, with the values of fluxgate_circuit_breaker_state.
const (
	Closed   State = 0 // calls pass; outcomes are counted
	Open     State = 1 // calls are refused until OpenFor has passed
	HalfOpen State = 2 // at most HalfOpenProbes calls in flight decide
)

// States lists every state in value order.
var States = []State{Closed, Open, HalfOpen}

// String is the state's name in metrics and logs: closed, open, half_open.
func (s State) String() string {
	switch s {
	case Closed:
		return metricnames.StateClosed
	case Open:
		return metricnames.StateOpen
	case HalfOpen:
		return metricnames.StateHalfOpen
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Defaults of Config.
const (
	DefaultErrorRate      = 0.5
	DefaultMinRequests    = 20
	DefaultWindow         = 10 * time.Second
	DefaultOpenFor        = 5 * time.Second
	DefaultHalfOpenProbes = 3
)

// Config is when a Breaker trips and how it recovers. Zero fields take
// their defaults.
type Config struct {
	// ErrorRate is the failure ratio over Window above which a closed
	// breaker opens (0 < ErrorRate <= 1). Default 0.5.
	ErrorRate float64
	// MinRequests is the fewest calls in Window before ErrorRate is
	// considered. Default 20.
	MinRequests int
	// Window is how far back outcomes count. Default 10s.
	Window time.Duration
	// OpenFor is how long an open breaker refuses calls before it admits
	// probes. Default 5s.
	OpenFor time.Duration
	// HalfOpenProbes is the most calls in flight while half-open, and the
	// number of successes in a row that close the breaker. Default 3.
	HalfOpenProbes int
	// ConsecutiveFailures, when positive, is the trip condition instead
	// of ErrorRate: a closed breaker opens after that many failures in a
	// row (a success starts the count again), and ErrorRate, MinRequests
	// and Window are not used. While such a breaker is closed with no
	// failure counted, AllowAt and a success take no lock. Default 0: the
	// error rate decides.
	ConsecutiveFailures int
}

func (c Config) withDefaults() Config {
	if c.ErrorRate == 0 {
		c.ErrorRate = DefaultErrorRate
	}
	if c.MinRequests == 0 {
		c.MinRequests = DefaultMinRequests
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.OpenFor == 0 {
		c.OpenFor = DefaultOpenFor
	}
	if c.HalfOpenProbes == 0 {
		c.HalfOpenProbes = DefaultHalfOpenProbes
	}
	return c
}

// Validate reports every invalid field at once.
func (c Config) Validate() error {
	var errs []error
	if c.ErrorRate < 0 || c.ErrorRate > 1 {
		errs = append(errs, fmt.Errorf("breaker: error_rate must be in (0, 1], got %g", c.ErrorRate))
	}
	if c.MinRequests < 0 {
		errs = append(errs, fmt.Errorf("breaker: min_requests must not be negative, got %d", c.MinRequests))
	}
	if c.Window < 0 {
		errs = append(errs, fmt.Errorf("breaker: window must not be negative, got %s", c.Window))
	}
	if c.OpenFor < 0 {
		errs = append(errs, fmt.Errorf("breaker: open_for must not be negative, got %s", c.OpenFor))
	}
	if c.HalfOpenProbes < 0 {
		errs = append(errs, fmt.Errorf("breaker: half_open_probes must not be negative, got %d", c.HalfOpenProbes))
	}
	if c.ConsecutiveFailures < 0 {
		errs = append(errs, fmt.Errorf("breaker: consecutive_failures must not be negative, got %d", c.ConsecutiveFailures))
	}
	return errors.Join(errs...)
}

// Listener hears every state change of the breakers it is attached to.
//
// OnTransition is called with the breaker's lock held, in the order the
// transitions happen; it must be quick and must not call the breaker.
// reason says what caused the transition, with the value that did, such
// as "error rate 0.60 over 20 calls exceeds 0.50".
type Listener interface {
	OnTransition(name string, from, to State, reason string)
}

// Attacher is a Listener that also wants to know a breaker's state when it
// is created (always Closed), for example to export it before the first
// transition.
type Attacher interface {
	Attach(name string, s State)
}

// ErrOpen is matched (errors.Is) by the error of a refused call.
var ErrOpen = errors.New("breaker: open")

// OpenError is the error of a call the breaker refused.
type OpenError struct {
	Name  string
	State State // Open, or HalfOpen when every probe slot is taken
	// RetryAfter is how long until the breaker admits probes; 0 when
	// half-open.
	RetryAfter time.Duration
}

func (e *OpenError) Error() string {
	if e.State == HalfOpen {
		return fmt.Sprintf("breaker %q: half-open, every probe slot is in use", e.Name)
	}
	return fmt.Sprintf("breaker %q: open for another %s", e.Name, e.RetryAfter)
}

// Is makes errors.Is(err, ErrOpen) true.
func (e *OpenError) Is(target error) bool { return target == ErrOpen }

// Options configures New.
type Options struct {
	// Name identifies the breaker to listeners (circuit_name in metrics).
	Name string
	Config
	// Listeners hear every transition. Nil means none.
	Listeners []Listener
	// IsFailure tells which outcomes count as failures. Nil means any
	// error except context.Canceled, which counts as no outcome at all.
	IsFailure func(error) bool
}

// Outcome is what a finished call tells the breaker.
type Outcome int

// Outcomes of a call.
const (
	Success Outcome = iota
	Failure
	// Ignored frees the call's probe slot without counting it, as for a
	// call the caller abandoned.
	Ignored
)

// Permit is handed out by AllowAt for an admitted call; give it back to
// DoneAt. The zero Permit is not valid.
type Permit struct {
	gen   uint64 // the breaker's generation when the call was admitted
	probe bool
}

// Breaker is a circuit breaker for calls to one dependency. Closed, it
// counts outcomes over a sliding window and opens when more than ErrorRate
// of at least MinRequests calls failed, or, with ConsecutiveFailures set,
// when that many calls failed in a row. Open, it refuses calls for OpenFor.
// Then it is half-open: it admits up to HalfOpenProbes calls at a time,
// closes after that many succeed and opens again on the first failure.
//
// Outcomes of calls admitted before the last transition are not counted:
// a slow call that started while closed cannot close a half-open breaker.
//
// Time is a parameter (AllowAt, DoneAt); Do uses the wall clock. A Breaker
// is safe for concurrent use. Create one with New.
type Breaker struct {
	name      string
	cfg       Config
	listeners []Listener
	isFailure func(error) bool

	// gen is the generation, bumped by each transition; written with mu
	// held, read without it by the clean fast path.
	gen atomic.Uint64
	// clean is true while the breaker is closed, counts consecutive
	// failures and has counted none since the last success: AllowAt and
	// a success then need no lock. Written with mu held.
	clean atomic.Bool

	mu        sync.Mutex
	state     State     // guarded by mu
	fails     int       // failures in a row since the last success; guarded by mu
	win       window    // outcomes while closed; guarded by mu
	openedAt  time.Time // guarded by mu
	inFlight  int       // probes in flight while half-open; guarded by mu
	successes int       // probe successes while half-open; guarded by mu
}

// New returns a closed breaker, or an error naming every invalid field.
func New(opts Options) (*Breaker, error) {
	if err := opts.Config.Validate(); err != nil {
		return nil, err
	}
	b := &Breaker{
		name:      opts.Name,
		cfg:       opts.Config.withDefaults(),
		listeners: append([]Listener(nil), opts.Listeners...),
		isFailure: opts.IsFailure,
	}
	b.gen.Store(1)
	b.clean.Store(b.cfg.ConsecutiveFailures > 0)
	if b.isFailure == nil {
		b.isFailure = defaultIsFailure
	}
	b.win = newWindow(b.cfg.Window)
	for _, l := range b.listeners {
		if a, ok := l.(Attacher); ok {
			a.Attach(b.name, Closed)
		}
	}
	return b, nil
}

func defaultIsFailure(err error) bool {
	return err != nil && !errors.Is(err, context.Canceled)
}

// Name is the breaker's name.
func (b *Breaker) Name() string { return b.name }

// Config is the breaker's configuration with defaults filled in.
func (b *Breaker) Config() Config { return b.cfg }

// State is the current state. An open breaker whose OpenFor has passed
// reports Open until the next AllowAt moves it to HalfOpen.
func (b *Breaker) State() State {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}

// StateAt is the state a call at now finds: like State, except that an
// open breaker whose OpenFor has passed is HalfOpen.
func (b *Breaker) StateAt(now time.Time) State {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state == Open && !now.Before(b.openedAt.Add(b.cfg.OpenFor)) {
		return HalfOpen
	}
	return b.state
}

// Failures is the number of calls that failed in a row since the last
// success (in any state; a transition to Closed also clears it).
func (b *Breaker) Failures() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.fails
}

// AllowAt decides whether a call may start at now. It returns a Permit to
// pass to DoneAt when the call ends, or an *OpenError.
func (b *Breaker) AllowAt(now time.Time) (Permit, error) {
	// The generation before clean: when a transition comes between the
	// two loads, the permit carries the old generation and its outcome is
	// ignored rather than counted against the new state.
	if gen := b.gen.Load(); b.clean.Load() {
		return Permit{gen: gen}, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case Closed:
		return Permit{gen: b.gen.Load()}, nil
	case Open:
		if wait := b.openedAt.Add(b.cfg.OpenFor).Sub(now); wait > 0 {
			return Permit{}, &OpenError{Name: b.name, State: Open, RetryAfter: wait}
		}
		b.setLocked(HalfOpen, fmt.Sprintf("open for %s", b.cfg.OpenFor))
	}
	// Half-open.
	if b.inFlight >= b.cfg.HalfOpenProbes {
		return Permit{}, &OpenError{Name: b.name, State: HalfOpen}
	}
	b.inFlight++
	return Permit{gen: b.gen.Load(), probe: true}, nil
}

// DoneAt records the end, at now, of the call p admitted, with the error
// it returned, classified by Options.IsFailure. A context.Canceled error
// that IsFailure does not call a failure is no outcome (Ignored): the
// caller gave up, which says nothing about the dependency.
func (b *Breaker) DoneAt(now time.Time, p Permit, err error) {
	o := Success
	switch {
	case b.isFailure(err):
		o = Failure
	case errors.Is(err, context.Canceled):
		o = Ignored
	}
	b.RecordAt(now, p, o)
}

// RecordAt records the end, at now, of the call p admitted, with its
// outcome. Callers that classify outcomes themselves (an HTTP 5xx is a
// failure with no Go error) use it instead of DoneAt.
func (b *Breaker) RecordAt(now time.Time, p Permit, o Outcome) {
	if p.gen == 0 || o != Failure && b.clean.Load() {
		return // closed with no failure counted: nothing to reset
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if p.gen != b.gen.Load() {
		return // admitted before the last transition: not evidence about now
	}
	switch o {
	case Success:
		b.fails = 0
	case Failure:
		b.fails++
	}
	switch b.state {
	case Closed:
		if o == Ignored {
			return
		}
		if n := b.cfg.ConsecutiveFailures; n > 0 {
			b.clean.Store(b.fails == 0)
			if b.fails >= n {
				b.openedAt = now
				b.setLocked(Open, fmt.Sprintf("%d calls failed in a row", b.fails))
			}
			return
		}
		b.win.add(now, o == Failure)
		total, failed := b.win.counts(now)
		if total >= b.cfg.MinRequests && total > 0 {
			if rate := float64(failed) / float64(total); rate > b.cfg.ErrorRate {
				b.openedAt = now
				b.setLocked(Open, fmt.Sprintf("error rate %.2f over %d calls exceeds %.2f", rate, total, b.cfg.ErrorRate))
			}
		}
	case HalfOpen:
		if !p.probe {
			return
		}
		b.inFlight--
		switch o {
		case Failure:
			b.openedAt = now
			b.setLocked(Open, "a half-open probe failed")
		case Success:
			b.successes++
			if b.successes >= b.cfg.HalfOpenProbes {
				b.setLocked(Closed, fmt.Sprintf("%d half-open probes succeeded", b.successes))
			}
		}
	}
}

// setLocked moves to s, starting a new generation, and tells the listeners.
func (b *Breaker) setLocked(s State, reason string) {
	from := b.state
	b.state = s
	if s != Closed {
		b.clean.Store(false) // before the new generation, so no clean permit carries it
	}
	b.gen.Add(1)
	b.inFlight, b.successes = 0, 0
	if s == Closed {
		b.win.reset()
		b.fails = 0
		b.clean.Store(b.cfg.ConsecutiveFailures > 0)
	}
	for _, l := range b.listeners {
		l.OnTransition(b.name, from, s, reason)
	}
}

// Do runs fn if the breaker admits a call now and records its outcome. A
// refused call returns an *OpenError without running fn.
func (b *Breaker) Do(ctx context.Context, fn func(context.Context) error) error {
	p, err := b.AllowAt(time.Now())
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done { // fn panicked: count it, then let the panic go on
			b.RecordAt(time.Now(), p, Failure)
		}
	}()
	err = fn(ctx)
	done = true
	b.DoneAt(time.Now(), p, err)
	return err
}

// window counts outcomes in a ring of buckets covering a duration.
type window struct {
	width   time.Duration // of one bucket
	buckets []bucket
}

type bucket struct {
	epoch  int64 // which bucket-width slot of time the counts belong to
	total  int
	failed int
}

const windowBuckets = 10

func newWindow(d time.Duration) window {
	w := d / windowBuckets
	if w <= 0 {
		w = 1
	}
	return window{width: w, buckets: make([]bucket, windowBuckets)}
}

func (w *window) epoch(now time.Time) int64 { return now.UnixNano() / int64(w.width) }

func (w *window) add(now time.Time, failed bool) {
	e := w.epoch(now)
	b := &w.buckets[int(uint64(e)%uint64(len(w.buckets)))]
	if b.epoch != e {
		*b = bucket{epoch: e}
	}
	b.total++
	if failed {
		b.failed++
	}
}

// counts sums the buckets of the last len(buckets) slots up to now.
func (w *window) counts(now time.Time) (total, failed int) {
	e := w.epoch(now)
	for _, b := range w.buckets {
		if b.epoch <= e && e-b.epoch < int64(len(w.buckets)) {
			total += b.total
			failed += b.failed
		}
	}
	return total, failed
}

func (w *window) reset() { clear(w.buckets) }
