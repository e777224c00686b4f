//go:build linux

package eventloop

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func startGroup(t *testing.T, n int) *Group {
	t.Helper()
	var panics atomic.Int64
	g, err := New(Options{Loops: n, OnPanic: func(any) { panics.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	g.Start()
	t.Cleanup(g.Close)
	return g
}

// An echo server on the loops: each connection's bytes come back, across
// many connections, each served on the loop that accepted it.
func TestAcceptAndEcho(t *testing.T) {
	g := startGroup(t, 2)
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	perLoop := map[int]int{}
	a, err := g.Accept(ln, func(l *Loop, fd int, _ unix.Sockaddr) {
		if v, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY); err != nil || v == 0 {
			panic(fmt.Sprintf("TCP_NODELAY not set: %d %v", v, err))
		}
		mu.Lock()
		perLoop[l.Index()]++
		mu.Unlock()
		buf := make([]byte, 4096)
		_ = l.Add(fd, Readable, func(uint32) {
			n, err := unix.Read(fd, buf)
			if n <= 0 {
				if errors.Is(err, unix.EAGAIN) {
					return
				}
				_ = l.Delete(fd)
				_ = unix.Close(fd)
				return
			}
			_, _ = unix.Write(fd, buf[:n]) // small: the socket takes it whole
		})
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			br := bufio.NewReader(c)
			for j := range 50 {
				msg := fmt.Sprintf("conn %d line %d\n", i, j)
				if _, err := io.WriteString(c, msg); err != nil {
					t.Error(err)
					return
				}
				got, err := br.ReadString('\n')
				if err != nil || got != msg {
					t.Errorf("got %q, %v; want %q", got, err, msg)
					return
				}
			}
		})
	}
	wg.Wait()
	mu.Lock()
	total := 0
	for _, n := range perLoop {
		total += n
	}
	mu.Unlock()
	if total != 20 {
		t.Fatalf("accepted %d connections, want 20", total)
	}
}

// Posted functions run on the loop in order, and timers run in the
// order of their deadlines, a stopped one never; a reset one at its new
// deadline.
func TestPostAndTimers(t *testing.T) {
	g := startGroup(t, 1)
	l := g.Loops()[0]
	var got []int
	for i := range 100 {
		l.Post(func() { got = append(got, i) })
	}
	var fired []string
	done := make(chan struct{})
	l.Post(func() {
		for i, v := range got {
			if i != v {
				t.Errorf("posted functions out of order: %v", got)
				break
			}
		}
		a := l.NewTimer(func() { fired = append(fired, "a") })
		b := l.NewTimer(func() { fired = append(fired, "b") })
		c := l.NewTimer(func() { fired = append(fired, "c") })
		end := l.NewTimer(func() { close(done) })
		a.Reset(30 * time.Millisecond)
		b.Reset(10 * time.Millisecond)
		c.Reset(20 * time.Millisecond)
		a.Reset(5 * time.Millisecond) // now first
		if !c.Stop() || c.Stop() {
			t.Error("Stop reports wrongly whether the timer was set")
		}
		end.Reset(60 * time.Millisecond)
	})
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("timers did not run")
	}
	wait := make(chan []string)
	l.Post(func() { wait <- fired })
	if f := <-wait; fmt.Sprint(f) != "[a b]" {
		t.Fatalf("timers fired %v, want [a b]", f)
	}
	if len(got) != 100 {
		t.Fatalf("%d posted functions ran, want 100", len(got))
	}
}

// Now is read once an iteration: it stays put while the iteration runs,
// lags the clock, moves on with the next wait, and timers count from it.
func TestNowIsTheIterationsClock(t *testing.T) {
	g := startGroup(t, 1)
	l := g.Loops()[0]
	type reading struct{ first, second, wall, fired time.Time }
	got := make(chan reading, 1)
	l.Post(func() {
		var r reading
		r.first = l.Now()
		time.Sleep(5 * time.Millisecond)
		r.second, r.wall = l.Now(), time.Now()
		l.NewTimer(func() {
			r.fired = l.Now()
			got <- r
		}).Reset(20 * time.Millisecond)
	})
	var r reading
	select {
	case r = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("the timer did not run")
	}
	if !r.first.Equal(r.second) {
		t.Errorf("Now moved within an iteration: %v then %v", r.first, r.second)
	}
	if r.wall.Sub(r.first) < 5*time.Millisecond {
		t.Errorf("Now %v is not the iteration's start: the clock read %v after a 5 ms sleep", r.first, r.wall)
	}
	if d := r.fired.Sub(r.first); d < 20*time.Millisecond {
		t.Errorf("a timer set for 20 ms ran %v after its iteration's Now", d)
	}
	if r.fired.After(time.Now()) {
		t.Error("Now is ahead of the clock")
	}
}

// A loop kept busy passes through Go's scheduler at least once every
// yieldEvery of its clock, and not on every wake: the runtime's sysmon
// then never finds it on one scheduling tick for the 10 ms after which it
// would preempt it and take its P.
func TestLoopYieldsWhileBusy(t *testing.T) {
	g := startGroup(t, 1)
	l := g.Loops()[0]
	type span struct {
		first, last  time.Time
		maxGap       time.Duration // between wakes
		wakes        int
		yieldsBefore uint64
		yields       uint64
	}
	done := make(chan span, 1)
	var s span
	var tick *Timer
	tick = l.NewTimer(func() { // a wake every millisecond for 60 ms of the loop's clock
		s.wakes++
		if s.wakes == 1 {
			s.first, s.yieldsBefore = l.Now(), l.yields
		}
		if s.wakes > 1 {
			s.maxGap = max(s.maxGap, l.Now().Sub(s.last))
		}
		s.last = l.Now()
		if l.Now().Sub(s.first) < 60*time.Millisecond {
			tick.Reset(time.Millisecond)
			return
		}
		s.yields = l.yields - s.yieldsBefore
		done <- s
	})
	l.Post(func() { tick.Reset(0) })
	select {
	case s = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the timer did not run")
	}
	elapsed := s.last.Sub(s.first)
	// A yield comes with the first wake yieldEvery after the last one.
	if least := int(elapsed/(yieldEvery+s.maxGap)) - 1; int(s.yields) < least {
		t.Errorf("%d yields in %v of the loop's clock (%d wakes, at most %v apart); want at least %d, one every %v", s.yields, elapsed, s.wakes, s.maxGap, least, yieldEvery)
	}
	if most := int(elapsed/yieldEvery) + 1; int(s.yields) > most {
		t.Errorf("%d yields in %v of the loop's clock (%d wakes); want at most %d, one every %v", s.yields, elapsed, s.wakes, most, yieldEvery)
	}
}

// A handler that panics does not stop its loop, and a descriptor deleted
// gets no more events.
func TestPanicAndDelete(t *testing.T) {
	var panics atomic.Int64
	g, err := New(Options{Loops: 1, OnPanic: func(any) { panics.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	g.Start()
	defer g.Close()
	l := g.Loops()[0]
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	var calls atomic.Int64
	added := make(chan error)
	l.Post(func() {
		added <- l.Add(p[0], Readable, func(uint32) {
			calls.Add(1)
			_ = l.Delete(p[0]) // the byte stays unread: only the delete keeps it quiet
			panic("handler panics")
		})
	})
	if err := <-added; err != nil {
		t.Fatal(err)
	}
	_, _ = unix.Write(p[1], []byte{1})
	deadline := time.Now().Add(5 * time.Second)
	for panics.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	ran := make(chan struct{})
	l.Post(func() { close(ran) })
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("the loop stopped after a panic")
	}
	if panics.Load() != 1 || calls.Load() != 1 {
		t.Fatalf("panics %d, calls %d; want 1 and 1", panics.Load(), calls.Load())
	}
}

// A function posted once the group is closed is dropped, and the loop's
// eventfd, closed, is not written: its number may be another
// descriptor's by then (a socket of another connection), which would get
// the wake-up's eight bytes. Post reports that it dropped the function,
// so that its poster can release what the function was to take.
func TestPostAfterCloseWritesNothing(t *testing.T) {
	for _, started := range []bool{true, false} {
		g, err := New(Options{Loops: 1})
		if err != nil {
			t.Fatal(err)
		}
		if started {
			g.Start()
		}
		l := g.Loops()[0]
		efd := l.efd
		g.Close()
		// Take the eventfd's number again: socket pairs until one end
		// has it (the lowest free numbers are taken first).
		var mine, peer = -1, -1
		var opened []int
		for range 64 {
			fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			opened = append(opened, fds[0], fds[1])
			if fds[0] == efd {
				mine, peer = fds[0], fds[1]
				break
			}
			if fds[1] == efd {
				mine, peer = fds[1], fds[0]
				break
			}
		}
		if mine < 0 {
			for _, fd := range opened {
				_ = unix.Close(fd)
			}
			t.Fatalf("started=%v: the eventfd's number %d was not free again", started, efd)
		}
		ran := false
		if l.Post(func() { ran = true }) {
			t.Errorf("started=%v: Post reported the function queued on a closed group", started)
		}
		var b [16]byte
		n, err := unix.Read(peer, b[:])
		if n > 0 {
			t.Errorf("started=%v: a Post after Close wrote %d bytes to descriptor %d, the eventfd's number", started, n, mine)
		} else if !errors.Is(err, unix.EAGAIN) {
			t.Errorf("started=%v: reading the socket pair: %d, %v", started, n, err)
		}
		if ran {
			t.Errorf("started=%v: the function posted after Close ran", started)
		}
		for _, fd := range opened {
			_ = unix.Close(fd)
		}
	}
}

// Accept on a closed group fails with ErrClosed; it does not wait for
// loops that will not run.
func TestAcceptOnClosedGroup(t *testing.T) {
	g, err := New(Options{Loops: 2})
	if err != nil {
		t.Fatal(err)
	}
	g.Start()
	g.Close()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		a, err := g.Accept(ln, func(*Loop, int, unix.Sockaddr) {}, nil)
		if a != nil {
			a.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Accept on a closed group: %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second): // a bound, not a measure
		t.Fatal("Accept on a closed group did not return")
	}
}

// Reported tells, during an iteration, which descriptors its wait
// reported, including those whose handlers come later in the batch; a
// descriptor with nothing to read is not reported, and the iteration
// count moves with each wait.
func TestReported(t *testing.T) {
	g := startGroup(t, 1)
	l := g.Loops()[0]
	pair := func() [2]int {
		p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = unix.Close(p[0]); _ = unix.Close(p[1]) })
		return p
	}
	a, b, quiet := pair(), pair(), pair()
	type seen struct {
		iter                 uint64
		other, quiet, itself bool
	}
	got := make(chan seen, 4)
	var buf [16]byte
	handler := func(fd, other int) Handler {
		return func(uint32) {
			got <- seen{l.Iteration(), l.Reported(other), l.Reported(quiet[0]), l.Reported(fd)}
			_, _ = unix.Read(fd, buf[:])
		}
	}
	added := make(chan struct{})
	l.Post(func() {
		for _, fd := range []int{a[0], b[0], quiet[0]} {
			other := b[0]
			if fd == b[0] {
				other = a[0]
			}
			if err := l.Add(fd, Readable, handler(fd, other)); err != nil {
				panic(err)
			}
		}
		close(added)
	})
	<-added
	// Both become readable before the loop wakes: one wait reports both.
	holding, stopped := make(chan struct{}), make(chan struct{})
	l.Post(func() { close(holding); <-stopped }) // hold the loop while both are written
	<-holding
	_, _ = unix.Write(a[1], []byte("x"))
	_, _ = unix.Write(b[1], []byte("y"))
	close(stopped)
	first, second := <-got, <-got
	for i, s := range []seen{first, second} {
		if !s.itself || !s.other {
			t.Errorf("handler %d: itself reported %v, the other (same wait) %v; want both", i, s.itself, s.other)
		}
		if s.quiet {
			t.Errorf("handler %d: a descriptor with nothing to read is reported", i)
		}
	}
	if first.iter != second.iter {
		t.Errorf("one wait, iterations %d and %d", first.iter, second.iter)
	}
	_, _ = unix.Write(a[1], []byte("z"))
	third := <-got
	if third.iter <= first.iter || third.other {
		t.Errorf("a later wait: iteration %d after %d, the other reported %v; want a later iteration and the other not reported", third.iter, first.iter, third.other)
	}
}

// Post reports true exactly when the function will run: one posted in
// the instant the loops stop (or queued on a group closed before it
// started) runs on the way out; one refused is not run. A poster that
// hands a resource over (a socket dialled aside) relies on it: true, the
// function owns it; false, the poster releases it.
func TestPostRunsWhatItAccepts(t *testing.T) {
	for round := range 40 {
		started := round%4 != 0
		g, err := New(Options{Loops: 2})
		if err != nil {
			t.Fatal(err)
		}
		if started {
			g.Start()
		}
		var accepted, ran atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for _, l := range g.Loops() {
			for range 2 {
				wg.Go(func() {
					for {
						select {
						case <-stop:
							return
						default:
						}
						if l.Post(func() { ran.Add(1) }) {
							accepted.Add(1)
						} else {
							return // closed: every later Post is refused too
						}
					}
				})
			}
		}
		time.Sleep(time.Millisecond) // posters busy before the close
		g.Close()
		close(stop)
		wg.Wait()
		if a, r := accepted.Load(), ran.Load(); a != r {
			t.Fatalf("round %d (started %v): Post accepted %d functions, %d ran", round, started, a, r)
		}
	}
}

// Out of descriptors (EMFILE), a loop stops accepting for a moment
// instead of spinning on the listener, which stays readable
// (level-triggered) while the connection waits in the backlog: over half
// a second it tries a few times, not thousands; it serves its
// connections meanwhile, and accepts the waiting one once descriptors
// are free again.
func TestAcceptBacksOffOutOfDescriptors(t *testing.T) {
	g := startGroup(t, 2)
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var errs, accepted atomic.Int64
	a, err := g.Accept(ln, func(l *Loop, fd int, _ unix.Sockaddr) {
		accepted.Add(1)
		buf := make([]byte, 64)
		_ = l.Add(fd, Readable, func(uint32) {
			n, err := unix.Read(fd, buf)
			if n <= 0 {
				if !errors.Is(err, unix.EAGAIN) {
					_ = l.Delete(fd)
					_ = unix.Close(fd)
				}
				return
			}
			_, _ = unix.Write(fd, buf[:n])
		})
	}, func(err error) {
		if !errors.Is(err, unix.EMFILE) {
			t.Errorf("accept error %v, want EMFILE", err)
		}
		errs.Add(1)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	echo := func(c net.Conn, msg string) {
		t.Helper()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, msg); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, len(msg))
		if _, err := io.ReadFull(c, b); err != nil || string(b) != msg {
			t.Fatalf("echo: %q, %v; want %q", b, err, msg)
		}
	}
	c1, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	echo(c1, "before")

	// Every descriptor number taken but one, which the next client's
	// socket takes: the loops' accept then fails with EMFILE.
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	fill, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	lowered := old
	lowered.Cur = uint64(fill + 64)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lowered); err != nil {
		t.Fatal(err)
	}
	fillers := []int{fill}
	release := func() {
		for _, fd := range fillers {
			_ = unix.Close(fd)
		}
		fillers = nil
		_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &old)
	}
	defer release()
	for {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.EMFILE) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		fillers = append(fillers, fd)
	}
	_ = unix.Close(fillers[len(fillers)-1])
	fillers = fillers[:len(fillers)-1]
	c2, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	for end := time.Now().Add(5 * time.Second); errs.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("no accept failed with the descriptors all taken")
		}
	}
	iterations := func() uint64 {
		var sum uint64
		for _, l := range g.Loops() {
			ch := make(chan uint64, 1)
			l.Post(func() { ch <- l.Iteration() })
			sum += <-ch
		}
		return sum
	}
	e0, i0 := errs.Load(), iterations()
	time.Sleep(500 * time.Millisecond) // a window to count in, not a measure
	e1, i1 := errs.Load(), iterations()
	t.Logf("out of descriptors for 500ms: %d failed accepts, %d loop iterations", e1-e0, i1-i0)
	echo(c1, "meanwhile") // the loops serve on
	// Two loops pausing 100 ms after each failure: about 10 tries in the
	// window; a loop spinning on the readable listener makes thousands.
	if e1-e0 > 40 || i1-i0 > 400 {
		t.Errorf("out of descriptors for 500ms: %d failed accepts, %d loop iterations; want a few (a pause after each)", e1-e0, i1-i0)
	}
	if n := accepted.Load(); n != 1 {
		t.Errorf("%d connections accepted with no descriptor free, want the first only", n)
	}
	release()
	echo(c2, "after") // accepted once descriptors are free
}
