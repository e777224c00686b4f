//go:build linux

package eventloop

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Interest in a descriptor's events.
const (
	Readable = unix.EPOLLIN
	Writable = unix.EPOLLOUT
)

// Handler is called on the loop with the events epoll reported for its
// descriptor: EPOLLIN, EPOLLOUT, EPOLLERR and EPOLLHUP bits (unix.EPOLL*).
// EPOLLERR and EPOLLHUP come whatever the interest, and come again while
// they hold (level-triggered): a handler that cannot act on them now
// deletes the descriptor. A peer's half-close is EPOLLIN (a read of 0).
type Handler func(events uint32)

// Options configures New.
type Options struct {
	// Loops is the number of loops. Default (0) runtime.GOMAXPROCS(0),
	// as it was before running groups added their spare P (see Start).
	Loops int
	// OnPanic is told what a handler, timer or posted function panicked
	// with; the loop goes on. Nil: the panic is dropped.
	OnPanic func(any)
	// NoSpareP keeps GOMAXPROCS as it is while the group runs (see
	// Start): for loops that wait most of the time beside other Go code
	// that is busy, whose every check the spare P makes dearer.
	NoSpareP bool
}

// Group is a set of loops. See the package doc.
type Group struct {
	loops   []*Loop
	onPanic func(any)
	spare   bool // raises GOMAXPROCS while running (not Options.NoSpareP)
	workers *Workers
	wg      sync.WaitGroup
	started atomic.Bool
	closed  atomic.Bool
}

// Loop is one event loop: a goroutine around epoll_wait.
type Loop struct {
	g     *Group
	index int
	epfd  int
	efd   int // eventfd: Post wakes the loop through it

	mu     sync.Mutex
	posted []func()    // guarded by mu
	done   bool        // guarded by mu: epfd and efd are closed (their numbers may be others' now)
	woken  atomic.Bool // an eventfd write is pending
	run    []func()    // the loop's: posted functions being run

	handlers []slot // by descriptor
	gen      int32  // generation of the last registration
	iter     uint64 // iterations: waits returned
	timers   timerHeap
	base     time.Time // timers count from it (monotonic)
	now      time.Time // when the current iteration's wait returned (Now)
	yielded  int64     // since() at the loop's last runtime.Gosched (yield)
	yields   uint64    // runtime.Gosched calls (yield)
	events   []unix.EpollEvent
	stop     bool
}

// slot is a registered descriptor's handler. gen tells an event for a
// descriptor closed and registered again within one wait (a number the
// kernel reused) from one for the new registration. reported is the
// iteration whose wait last reported an event for it (see Reported).
type slot struct {
	h        Handler
	gen      int32
	reported uint64
}

// ErrClosed is returned by registering on a Group that is closed.
var ErrClosed = errors.New("eventloop: closed")

// New makes the loops; Start runs them.
func New(opts Options) (*Group, error) {
	n := opts.Loops
	if n <= 0 {
		n = defaultLoops()
	}
	g := &Group{onPanic: opts.OnPanic, spare: !opts.NoSpareP, workers: newWorkers()}
	for i := range n {
		l, err := newLoop(g, i)
		if err != nil {
			for _, l := range g.loops {
				l.closeFDs()
			}
			return nil, err
		}
		g.loops = append(g.loops, l)
	}
	return g, nil
}

func newLoop(g *Group, i int) (*Loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("eventloop: epoll_create1: %w", err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("eventloop: eventfd: %w", err)
	}
	l := &Loop{g: g, index: i, epfd: epfd, efd: efd, events: make([]unix.EpollEvent, 256)}
	l.base = time.Now()
	l.now = l.base
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(efd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, efd, &ev); err != nil {
		l.closeFDs()
		return nil, fmt.Errorf("eventloop: add eventfd: %w", err)
	}
	return l, nil
}

func (l *Loop) closeFDs() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.done = true
	l.posted = nil
	_ = unix.Close(l.efd)
	_ = unix.Close(l.epfd)
}

// finish ends the loop: Post refuses from now on, the functions it
// accepted and that have not run yet run (Post's promise), then the
// loop's descriptors close. On the loop's goroutine, or on Close's
// caller for a group that never started.
func (l *Loop) finish() {
	l.mu.Lock()
	l.done = true
	rest := l.posted
	l.posted = nil
	l.mu.Unlock()
	for _, f := range rest {
		l.callFunc(f)
	}
	_ = unix.Close(l.efd)
	_ = unix.Close(l.epfd)
}

// Loops are the group's loops.
func (g *Group) Loops() []*Loop { return g.loops }

// Workers run what the group's loops hand off to wait (workers.go).
// They end as they come free once Close has stopped the loops.
func (g *Group) Workers() *Workers { return g.workers }

// Start runs each loop on its own goroutine. Calling it again does nothing.
// While groups run, GOMAXPROCS is one more than it was (a P spare for the
// loops' waits in epoll_wait: see procs.go), unless Options.NoSpareP;
// Close of the last one running sets it back.
func (g *Group) Start() {
	if g.started.Swap(true) {
		return
	}
	if g.spare {
		raiseProcs()
	}
	for _, l := range g.loops {
		g.wg.Add(1)
		go l.loop()
	}
}

// Close stops the loops after their current iteration and waits for
// them. What was posted (Post reported true) and has not run yet runs
// before Close returns: on its loop as the loop stops, or on Close's
// caller for a group that never started; a function so run may not
// Post again (refused) and its timers never fire. Descriptors still
// registered stay open: they are their owners' to close. The Workers end
// as they come free. Not to be called from a loop.
func (g *Group) Close() {
	if g.closed.Swap(true) {
		return
	}
	defer g.workers.close()
	if !g.started.Load() {
		for _, l := range g.loops {
			l.finish()
		}
		return
	}
	for _, l := range g.loops {
		l.Post(func() { l.stop = true })
	}
	g.wg.Wait()
	if g.spare {
		restoreProcs()
	}
}

// Index is the loop's place in its group, from 0.
func (l *Loop) Index() int { return l.index }

// Post queues f to run on the loop and wakes it. Safe for concurrent use.
// Functions posted run in order. Post reports whether f will run: true,
// f runs, even if the group closes meanwhile (on the loop's way out; see
// Close); false, the loop has stopped and f never runs, so that its
// poster releases what f was to take (a socket, a permit).
func (l *Loop) Post(f func()) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done { // efd is closed: its number may be another descriptor's
		return false
	}
	l.posted = append(l.posted, f)
	if !l.woken.Swap(true) {
		var one = [8]byte{1}
		_, _ = unix.Write(l.efd, one[:])
	}
	return true
}

// Add registers fd with the events of interest (Readable, Writable or
// both; 0: errors and hang-ups only) and its handler.
func (l *Loop) Add(fd int, events uint32, h Handler) error {
	l.gen++
	ev := unix.EpollEvent{Events: events, Fd: int32(fd), Pad: l.gen}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("eventloop: add fd %d: %w", fd, err)
	}
	for fd >= len(l.handlers) {
		l.handlers = append(l.handlers, make([]slot, len(l.handlers)+64)...)
	}
	l.handlers[fd] = slot{h: h, gen: l.gen}
	return nil
}

// Modify changes the events of interest of fd, registered with Add.
func (l *Loop) Modify(fd int, events uint32) error {
	ev := unix.EpollEvent{Events: events, Fd: int32(fd), Pad: l.handlers[fd].gen}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, fd, &ev); err != nil {
		return fmt.Errorf("eventloop: modify fd %d: %w", fd, err)
	}
	return nil
}

// Iteration counts the loop's waits: it changes each time epoll_wait
// returns, before the handlers of what it reported run.
func (l *Loop) Iteration() uint64 { return l.iter }

// Reported reports whether the current iteration's wait reported an event
// for fd, delivered yet or not. With level-triggered interest, a
// descriptor registered for reading before the current wait began and not
// Reported had nothing to read when the wait returned: what an owner
// would otherwise learn with a system call (a peek).
func (l *Loop) Reported(fd int) bool {
	return fd >= 0 && fd < len(l.handlers) && l.handlers[fd].h != nil && l.handlers[fd].reported == l.iter
}

// Delete unregisters fd. Events already reported for it in this
// iteration are not delivered.
func (l *Loop) Delete(fd int) error {
	if fd < len(l.handlers) {
		l.handlers[fd] = slot{}
	}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, fd, nil); err != nil {
		return fmt.Errorf("eventloop: delete fd %d: %w", fd, err)
	}
	return nil
}

// loop is the loop's goroutine.
func (l *Loop) loop() {
	defer l.g.wg.Done()
	defer l.finish()
	for !l.stop {
		timeout := -1
		if next, ok := l.timers.next(); ok {
			d := next - l.since()
			switch {
			case d <= 0:
				timeout = 0
			default:
				timeout = int((d + int64(time.Millisecond) - 1) / int64(time.Millisecond))
			}
		}
		n, err := unix.EpollWait(l.epfd, l.events, timeout)
		if err != nil && !errors.Is(err, unix.EINTR) {
			l.panicked(fmt.Errorf("eventloop: epoll_wait: %w", err))
			time.Sleep(10 * time.Millisecond) // not spin on a broken epoll
		}
		l.iter++
		l.now = time.Now()
		// Mark first, then deliver: a handler may ask about a descriptor
		// whose event comes later in this batch (Reported).
		for i := range max(n, 0) {
			if fd := int(l.events[i].Fd); fd < len(l.handlers) && l.handlers[fd].gen == l.events[i].Pad {
				l.handlers[fd].reported = l.iter
			}
		}
		for i := range max(n, 0) {
			ev := &l.events[i]
			fd := int(ev.Fd)
			if fd == l.efd {
				l.drainWake()
				continue
			}
			if fd < len(l.handlers) {
				if s := l.handlers[fd]; s.h != nil && s.gen == ev.Pad {
					l.call(s.h, ev.Events)
				}
			}
		}
		l.runTimers()
		l.runPosted()
		l.yield()
	}
}

// yieldEvery is how often a loop passes through Go's scheduler: well
// within the 10 ms after which the runtime's sysmon counts a goroutine
// that has not been rescheduled as running too long.
const yieldEvery = 5 * time.Millisecond

// yield calls runtime.Gosched when the loop has not for yieldEvery. A
// loop never blocks in Go's scheduler (it waits in epoll_wait), so
// without it sysmon finds the loop's P on the same scheduling tick for
// 10 ms and from then on, at every one of its ticks (tens of µs apart,
// as it no longer backs off), asks the loop to stop (a signal when it
// runs) and takes its P away while it waits: under load about 1,450
// preemption requests and 965 P hand-offs a second, sysmon itself waking
// 3,300 times a second on the CPUs the requests need. A pass through the
// scheduler every few milliseconds is a new tick: sysmon leaves the loop
// alone and sleeps its 10 ms.
func (l *Loop) yield() {
	if now := l.since(); now-l.yielded >= int64(yieldEvery) {
		l.yielded = now
		l.yields++
		runtime.Gosched()
	}
}

func (l *Loop) drainWake() {
	var b [8]byte
	_, _ = unix.Read(l.efd, b[:])
	l.woken.Store(false)
}

func (l *Loop) runPosted() {
	l.mu.Lock()
	l.run, l.posted = l.posted, l.run[:0]
	l.mu.Unlock()
	for i, f := range l.run {
		l.run[i] = nil
		l.callFunc(f)
	}
}

func (l *Loop) call(h Handler, ev uint32) {
	defer l.recoverPanic()
	h(ev)
}

func (l *Loop) callFunc(f func()) {
	defer l.recoverPanic()
	f()
}

func (l *Loop) recoverPanic() {
	if p := recover(); p != nil {
		l.panicked(p)
	}
}

func (l *Loop) panicked(p any) {
	if l.g.onPanic != nil {
		l.g.onPanic(p)
	}
}

// Now is when the loop's current iteration began: the time its wait
// returned, read once for all the events, timers and posted functions
// the iteration runs (as nginx reads its clock once a wake). It lags the
// clock by the time the iteration has run so far — microseconds a
// handler, up to a few milliseconds for a full batch under load — and
// costs nothing, where each time.Now costs 50–70 ns on the virtual
// machines measured (about ten of them a proxied request). Before the
// loop's first wait, it is when the loop was made. On the loop only.
func (l *Loop) Now() time.Time { return l.now }

// since is the time from the loop's base to Now, in nanoseconds
// (monotonic): timers are set and run by the iteration's clock.
func (l *Loop) since() int64 { return int64(l.now.Sub(l.base)) }
