//go:build linux

package gateway

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/fluxgate/fluxgate/internal/eventloop"
	"github.com/fluxgate/fluxgate/internal/http1"
)

// loopPool holds one loop's connections to one target, idle ones most
// recently used last (taken first). Idle connections stay registered for
// reading: a byte or a close from the target closes them at once.
type loopPool struct {
	st      *loopState
	addr    string
	ap      netip.AddrPort // the address when it is an IP literal
	literal bool
	idle    []*loopUp
	open    int         // idle or in use, or connecting
	waiters []*loopConn // requests waiting for a connection (all open), first first
	gauge   prometheus.Gauge
	pruning *eventloop.Timer
	retired bool // a reload removed the target: connections coming back close (see LoopServer.keepOnly)
}

// loopUp is one connection to a target on a loop, with its read buffer:
// buf[r:w] is read and not yet relayed.
type loopUp struct {
	p          *loopPool
	fd         int
	buf        []byte
	r, w       int
	resp       http1.Response
	owner      *loopConn // the request using it; nil while idle
	used       time.Time // when it went back to the pool
	connecting bool
	out        []byte // the request's bytes not yet written
	interest   uint32
	paused     bool // reading stopped until the client takes what it has (back-pressure)
	unwatched  bool // out of the epoll set while paused (an error or hang-up came)
	closed     bool
	peek       [1]byte // readable's: a buffer that does not escape each call
	idleIter   uint64  // the loop's iteration when it went idle, watched for reading
}

// loopQuietScan is how many of a pool's most recently used idle
// connections get looks for one the loop's last wait found quiet.
const loopQuietScan = 4

func newLoopPool(st *loopState, addr string) *loopPool {
	p := &loopPool{st: st, addr: addr, gauge: st.s.g.metrics.connections.WithLabelValues(addr)}
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		p.ap, p.literal = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
	}
	p.pruning = st.l.NewTimer(p.prune)
	return p
}

// get returns an idle connection (reused), or one being dialled for c
// (up.connecting: c is told with connected), or nothing with wait when
// the pool's connections are all open: c then waits (see waitFor).
func (p *loopPool) get(c *loopConn) (up *loopUp, reused, wait bool, err error) {
	now := p.st.l.Now()
	// A connection idle since before the loop's last wait, which that wait
	// did not report, had nothing to read when the wait returned: it is
	// taken without a system call (among the few most recently used, so
	// that the rest still age out).
	l := p.st.l
	for i := len(p.idle) - 1; i >= max(0, len(p.idle)-loopQuietScan); i-- {
		up = p.idle[i]
		if !up.unwatched && up.interest == eventloop.Readable && up.idleIter < l.Iteration() && !l.Reported(up.fd) && now.Sub(up.used) < leanIdleDuration {
			p.idle = slices.Delete(p.idle, i, i+1)
			up.owner = c
			return up, true, false, nil
		}
	}
	for len(p.idle) > 0 {
		up = p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		// The loop may not have been told yet what the target sent
		// (a request taking the connection in the iteration that gave
		// it back, or whose wait reported it): peek, as the lean pool
		// does.
		if now.Sub(up.used) < leanIdleDuration && !up.readable() {
			up.owner = c
			return up, true, false, nil
		}
		p.closeUp(up)
	}
	if p.open >= p.st.limit {
		return nil, false, true, nil
	}
	p.open++
	up = &loopUp{p: p, fd: -1, buf: make([]byte, leanBufStart), owner: c, connecting: true}
	if !p.literal {
		p.dialAside(up)
		return up, false, false, nil
	}
	if err := p.connect(up); err != nil {
		p.open--
		p.wake()
		return nil, false, false, err
	}
	return up, false, false, nil
}

// connect starts a non-blocking connect of up to the pool's address.
func (p *loopPool) connect(up *loopUp) error {
	family := unix.AF_INET
	var sa unix.Sockaddr
	if p.ap.Addr().Is4() {
		sa = &unix.SockaddrInet4{Port: int(p.ap.Port()), Addr: p.ap.Addr().As4()}
	} else {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(p.ap.Port()), Addr: p.ap.Addr().As16()}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return p.dialError(os.NewSyscallError("socket", err))
	}
	setUpstreamSockopts(fd)
	if n := p.st.s.upSndBuf; n > 0 {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, n)
	}
	err = unix.Connect(fd, sa)
	switch {
	case err == nil, errors.Is(err, unix.EINPROGRESS):
	default:
		_ = unix.Close(fd)
		return p.dialError(os.NewSyscallError("connect", err))
	}
	up.fd = fd
	if err := p.st.l.Add(fd, eventloop.Writable, up.onEvent); err != nil {
		_ = unix.Close(fd)
		up.fd = -1
		return p.dialError(err)
	}
	up.interest = eventloop.Writable
	return nil
}

// setUpstreamSockopts sets what the gateway's dialer sets: no delay (Go's
// default) and keep-alive probes after 30 s.
func setUpstreamSockopts(fd int) {
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 30)
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 30)
}

// dialError is err as a failed dial: isRefused and isConnectError read it
// as they read the dialer's.
func (p *loopPool) dialError(err error) error {
	return &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(p.ap), Err: err}
}

// loopDialTimeout is the error of a dial that took longer than
// Options.DialTimeout.
type loopDialTimeout struct{}

func (loopDialTimeout) Error() string   { return "i/o timeout" }
func (loopDialTimeout) Timeout() bool   { return true }
func (loopDialTimeout) Temporary() bool { return true }

// dialAside dials a target named by a host name on a goroutine (a name
// lookup may wait) and hands the socket to the loop.
func (p *loopPool) dialAside(up *loopUp) {
	g, l, addr := p.st.s.g, p.st.l, p.addr
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), g.opts.DialTimeout)
		defer cancel()
		fd := -1
		nc, err := g.dialer.DialContext(ctx, "tcp", addr)
		if err == nil {
			fd, err = socketOf(nc)
			_ = nc.Close()
		}
		if !l.Post(func() { p.dialed(up, fd, err) }) && fd >= 0 {
			_ = unix.Close(fd) // the loops are stopped
		}
	}()
}

// socketOf returns a non-blocking duplicate of nc's socket.
func socketOf(nc net.Conn) (int, error) {
	tc, isTCP := nc.(*net.TCPConn)
	if !isTCP {
		return -1, errors.New("gateway: not a TCP connection")
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	cerr := raw.Control(func(s uintptr) {
		fd, err = unix.Dup(int(s))
	})
	if cerr != nil {
		return -1, cerr
	}
	if err != nil {
		return -1, os.NewSyscallError("dup", err)
	}
	unix.CloseOnExec(fd)
	_ = unix.SetNonblock(fd, true)
	return fd, nil
}

// dialed takes the socket dialAside made for up, on the loop.
func (p *loopPool) dialed(up *loopUp, fd int, err error) {
	if err == nil {
		if up.closed { // the request left meanwhile
			_ = unix.Close(fd)
			return
		}
		up.fd = fd
		if err = p.st.l.Add(fd, eventloop.Readable, up.onEvent); err != nil {
			_ = unix.Close(fd)
			up.fd = -1
		}
	}
	if up.closed {
		return
	}
	up.interest = eventloop.Readable
	if err == nil {
		up.connecting = false
		p.gauge.Inc()
	}
	if c := up.owner; c != nil {
		c.connected(up, err)
	}
}

// finishConnect reads the outcome of a non-blocking connect.
func (up *loopUp) finishConnect() error {
	errno, err := unix.GetsockoptInt(up.fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err == nil && errno != 0 {
		err = unix.Errno(errno)
	}
	if err != nil {
		return up.p.dialError(os.NewSyscallError("connect", err))
	}
	up.connecting = false
	up.p.gauge.Inc()
	up.setInterest(eventloop.Readable)
	return nil
}

// onEvent is up's handler: an idle connection that becomes readable (a
// byte, a close, an error) is closed; one in use tells its request.
func (up *loopUp) onEvent(ev uint32) {
	if up.owner == nil {
		if i := slices.Index(up.p.idle, up); i >= 0 {
			up.p.idle = slices.Delete(up.p.idle, i, i+1)
		}
		up.p.closeUp(up)
		return
	}
	up.owner.onUp(up, ev)
}

// readable reports whether up, idle, has anything to read: bytes the
// target sent after its answer, its end, an error. Such a connection
// cannot carry a request: what it holds would be read as its answer.
func (up *loopUp) readable() bool {
	up.p.st.s.peeks.Add(1)
	for {
		// recvfrom without an address: unix.Recvfrom's allocates.
		_, _, errno := unix.Syscall6(unix.SYS_RECVFROM, uintptr(up.fd), uintptr(unsafe.Pointer(&up.peek[0])), 1,
			unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
		if errno != unix.EINTR {
			return errno != unix.EAGAIN
		}
	}
}

// unwatch takes up out of the loop's epoll set, watch puts it back for
// reading.
func (up *loopUp) unwatch() {
	if !up.unwatched && up.p.st.l.Delete(up.fd) == nil {
		up.unwatched = true
	}
}

func (up *loopUp) watch() {
	if !up.unwatched {
		up.setInterest(eventloop.Readable)
		return
	}
	if up.p.st.l.Add(up.fd, eventloop.Readable, up.onEvent) == nil {
		up.unwatched, up.interest = false, eventloop.Readable
	}
}

func (up *loopUp) setInterest(ev uint32) {
	if up.interest != ev && up.fd >= 0 && !up.closed && !up.unwatched {
		if up.p.st.l.Modify(up.fd, ev) == nil {
			up.interest = ev
		}
	}
}

// put returns up, its response read to the end, to the pool; a request
// waiting for a connection takes it.
func (p *loopPool) put(up *loopUp) {
	if p.retired {
		p.closeUp(up)
		return
	}
	up.owner, up.r, up.w, up.out = nil, 0, 0, nil
	up.used = p.st.l.Now()
	if up.paused || up.unwatched || up.interest != eventloop.Readable {
		up.paused = false
		up.watch()
	}
	up.idleIter = p.st.l.Iteration()
	p.idle = append(p.idle, up)
	if !p.pruning.Set() {
		p.pruning.Reset(leanIdleDuration)
	}
	p.wake()
}

// closeUp closes up, which is not idle in the pool (any more), and lets a
// waiting request open another.
func (p *loopPool) closeUp(up *loopUp) {
	if up.closed {
		return
	}
	up.closed = true
	up.owner = nil
	if up.fd >= 0 {
		if !up.unwatched {
			_ = p.st.l.Delete(up.fd)
		}
		_ = unix.Close(up.fd)
		if !up.connecting {
			p.gauge.Dec()
		}
	}
	p.open--
	p.wake()
}

// waitFor queues c for a connection.
func (p *loopPool) waitFor(c *loopConn) { p.waiters = append(p.waiters, c) }

// unwait takes c out of the queue, if it is in.
func (p *loopPool) unwait(c *loopConn) {
	if i := slices.Index(p.waiters, c); i >= 0 {
		p.waiters = slices.Delete(p.waiters, i, i+1)
	}
}

// wake lets the first waiting request try again when a connection can
// be had.
func (p *loopPool) wake() {
	if len(p.waiters) == 0 || len(p.idle) == 0 && p.open >= p.st.limit {
		return
	}
	c := p.waiters[0]
	p.waiters = p.waiters[1:]
	c.poolFreed()
}

// prune closes the connections idle for leanIdleDuration or longer.
func (p *loopPool) prune() {
	now := p.st.l.Now()
	n := 0
	for n < len(p.idle) && now.Sub(p.idle[n].used) >= leanIdleDuration {
		n++
	}
	stale := slices.Clone(p.idle[:n])
	p.idle = slices.Delete(p.idle, 0, n)
	for _, up := range stale {
		p.closeUp(up)
	}
	if len(p.idle) > 0 {
		p.pruning.Reset(leanIdleDuration - now.Sub(p.idle[0].used))
	}
}

// closeIdle closes the idle connections.
func (p *loopPool) closeIdle() {
	idle := p.idle
	p.idle = nil
	for _, up := range idle {
		p.closeUp(up)
	}
	p.pruning.Stop()
}
