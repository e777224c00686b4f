package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"slices"
	"sync"
	"time"

	"github.com/fluxgate/fluxgate/internal/http1"
)

// leanPool holds the lean engine's kept-alive connections to one target.
// Connections are taken most recently used first, so that under low load
// few stay warm and the rest age out.
type leanPool struct {
	g     *Gateway
	addr  string
	tls   *tls.Config // nil: plain TCP
	mu    sync.Mutex
	idle  []*leanUpConn // guarded by mu: least recently used first
	open  int           // guarded by mu: connections open, idle or in use
	limit int

	idleFor time.Duration // leanIdleDuration
	pruning *time.Timer   // guarded by mu: runs prune while connections are idle

	// freed tells a request waiting for a connection (all limit of them
	// open) that one came back or closed; capacity 1, sent without
	// blocking.
	freed chan struct{}
}

// Bounds of a lean pool, as the fast engine's clients.
const (
	leanMaxConns     = 4096             // open to one target
	leanIdleDuration = 90 * time.Second // a connection unused longer is closed
)

// errLeanPoolFull: the target's leanMaxConns connections stayed in use
// for as long as a request may wait for one (Options.DialTimeout, as the
// fast engine's clients wait).
var errLeanPoolFull = errors.New("gateway: too many connections to the target")

// errLeanBadResponse: the target's response head is not one the lean
// engine relays (see http1).
var errLeanBadResponse = errors.New("gateway: target sent a response the gateway cannot relay")

// errSwitching: a target switched protocols on a request that asked for
// no Upgrade (the engines that relay an answer, not a connection, serve
// only those): answered 502, as net/http's ReverseProxy answers it.
var errSwitching = fmt.Errorf("%w: 101 Switching Protocols to a request without Upgrade", errLeanBadResponse)

func (g *Gateway) newLeanPool(k fastKey) *leanPool {
	p := &leanPool{g: g, addr: k.addr, limit: leanMaxConns, idleFor: leanIdleDuration, freed: make(chan struct{}, 1)}
	if k.tls {
		p.tls = g.opts.UpstreamTLSConfig.Clone()
		if p.tls == nil {
			p.tls = &tls.Config{MinVersion: tls.VersionTLS12}
		}
	}
	return p
}

// leanUpConn is one connection to a target with its read buffer:
// buf[r:w] is read and not yet relayed.
type leanUpConn struct {
	c    net.Conn
	buf  []byte
	r, w int
	resp http1.Response
	used time.Time // when it went back to the pool
	peek *peeker

	// The read deadline that bounds the wait for a response head
	// (ResponseHeaderTimeout) is set when armed is false or it was set
	// more than a second ago (armedAt), or half the timeout when that is
	// shorter: most requests on a busy connection then cost no timer
	// update, and the bound is kept within a second and never passed
	// before the request goes out. A body read past the head disarms it.
	armed   bool
	armedAt time.Time

	// unwatch stops the watch on the request's context that closes the
	// connection when the context is done (see watch); it reports false
	// when the watch fired. nil: nothing watched.
	unwatch func() bool
	// closeConn closes c, the watch's function: made once.
	closeConn func()
}

// leanDeadlineSlack is how stale a read deadline may get before the lean
// engine sets it again.
const leanDeadlineSlack = time.Second

// get returns an idle connection (reused) or a new one, and when it was
// ready: now, or later when get waited for a connection or dialled one.
// An idle one with bytes to read, or closed by the target, is closed and
// skipped.
func (p *leanPool) get(now time.Time) (c *leanUpConn, reused bool, ready time.Time, err error) {
	waitFrom := now
	// passOn: this request took a wake-up or closed idle connections; what
	// is left after it takes its connection may be another waiter's (see
	// freed), so it wakes one, which does the same.
	passOn := false
	p.mu.Lock()
	for {
		for len(p.idle) > 0 {
			c = p.idle[len(p.idle)-1]
			p.idle = p.idle[:len(p.idle)-1]
			if now.Sub(c.used) < p.idleFor {
				wake := passOn && p.spareLocked()
				p.mu.Unlock()
				if wake {
					p.free()
				}
				readable := c.peek.idleReadable()
				if c.peek.clearsDeadline() {
					c.armed = false
				}
				if !readable {
					return c, true, now, nil
				}
				p.discard(c) // the target sent more, or closed it
				p.mu.Lock()
				continue
			}
			p.open--
			_ = c.c.Close()
			passOn = true
		}
		if p.open < p.limit {
			break
		}
		p.mu.Unlock()
		if !p.waitFreed(waitFrom) {
			return nil, false, now, errLeanPoolFull
		}
		passOn = true
		now = time.Now()
		p.mu.Lock()
	}
	p.open++
	wake := passOn && p.spareLocked()
	p.mu.Unlock()
	if wake {
		p.free()
	}
	// The connection's own first-byte watch is off (0): the lean engine
	// sets the deadline itself (leanUpConn.armed).
	nc, err := p.g.dialUpstream(context.Background(), "tcp", p.addr, 0, p.tls)
	if err != nil {
		p.mu.Lock()
		p.open--
		p.mu.Unlock()
		p.free()
		return nil, false, now, err
	}
	return &leanUpConn{c: nc, buf: make([]byte, leanBufStart), peek: newPeeker(nc)}, false, time.Now(), nil
}

// waitFreed waits, from since and for at most the dial timeout, until a
// connection comes back or closes; it reports false when none did.
func (p *leanPool) waitFreed(since time.Time) bool {
	left := p.g.opts.DialTimeout - time.Since(since)
	if left <= 0 {
		return false
	}
	t := time.NewTimer(left)
	defer t.Stop()
	select {
	case <-p.freed:
		return true
	case <-t.C:
		return false
	}
}

// spareLocked reports whether a connection can be had without waiting:
// one idle, or room for a new one. p.mu is held.
func (p *leanPool) spareLocked() bool { return len(p.idle) > 0 || p.open < p.limit }

// free wakes a request waiting for a connection, if any. One wake-up is
// kept (freed's capacity), however many connections came back meanwhile:
// the request it wakes passes it on while connections are left (get's
// passOn), so that every waiter gets one.
func (p *leanPool) free() {
	select {
	case p.freed <- struct{}{}:
	default:
	}
}

// put returns c, its response read to the end, to the pool.
func (p *leanPool) put(c *leanUpConn) { p.putAt(c, time.Now()) }

// putAt is put at now, the caller's reading of the clock taken once the
// response was read and relayed to its end: c is idle from now.
func (p *leanPool) putAt(c *leanUpConn, now time.Time) {
	c.r, c.w = 0, 0
	c.used = now
	p.mu.Lock()
	p.idle = append(p.idle, c)
	if p.pruning == nil {
		p.pruning = time.AfterFunc(p.idleFor, p.prune)
	}
	full := p.open >= p.limit
	p.mu.Unlock()
	if full {
		p.free()
	}
}

// prune closes the connections idle for the pool's idle duration or
// longer: taken most recently used first, the least recently used would
// otherwise stay open to the target as long as the pool is not busier.
// While connections stay idle, it runs again when the oldest is due.
func (p *leanPool) prune() {
	now := time.Now()
	p.mu.Lock()
	n := 0
	for n < len(p.idle) && now.Sub(p.idle[n].used) >= p.idleFor {
		n++
	}
	stale := slices.Clone(p.idle[:n])
	p.idle = slices.Delete(p.idle, 0, n)
	p.open -= n
	switch {
	case len(p.idle) == 0:
		if p.pruning != nil {
			p.pruning.Stop()
		}
		p.pruning = nil
	case p.pruning != nil:
		p.pruning.Reset(p.idleFor - now.Sub(p.idle[0].used))
	}
	p.mu.Unlock()
	for _, c := range stale {
		_ = c.c.Close()
	}
	if n > 0 {
		p.free()
	}
}

// discard closes c.
func (p *leanPool) discard(c *leanUpConn) {
	_ = c.c.Close()
	p.mu.Lock()
	p.open--
	p.mu.Unlock()
	p.free()
}

// CloseIdleConnections closes the connections not in use.
func (p *leanPool) CloseIdleConnections() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.open -= len(idle)
	p.mu.Unlock()
	for _, c := range idle {
		_ = c.c.Close()
	}
	if len(idle) > 0 {
		p.free()
	}
}

// roundTrip sends msg, a whole request, on a pooled connection and reads
// the response head (past any 1xx). With retry, a request that failed on
// a reused connection before any answer (the target had closed it: a
// keep-alive race) is sent once more on a new one. Once ctx is done the
// connection is closed, as net/http's Transport ends a request whose
// context is done: the wait for the head ends with ctx's error, and the
// body then being read ends too (the connection's unwatch tells).
// got1xx, when not nil, is told each informational (1xx) head before the
// final one, as net/http's Transport tells ClientTrace.Got1xxResponse;
// its error ends the exchange. now is the caller's reading of the clock
// with no wait since (zero: none): the wait for the answer on an idle
// connection starts then.
func (p *leanPool) roundTrip(ctx context.Context, now time.Time, msg []byte, headReq, retry bool, got1xx func(int, textproto.MIMEHeader) error) (*leanUpConn, error) {
	if now.IsZero() {
		now = time.Now()
	}
	for attempt := 0; ; attempt++ {
		// The wait for the answer starts when the request goes out, not
		// before a wait for a connection or a dial (as on the fast engine).
		c, reused, ready, err := p.get(now)
		if err != nil {
			return nil, err
		}
		c.watch(ctx)
		answered, err := c.exchange(msg, ready, p.g.opts.ResponseHeaderTimeout, got1xx)
		if err == nil {
			return c, nil
		}
		cancelled := !c.stopWatch()
		p.discard(c)
		if cancelled {
			return nil, fmt.Errorf("gateway: request to the target: %w", context.Cause(ctx))
		}
		if resendOnNew(reused, answered, retry, attempt, err) {
			now = time.Now() // after the failed exchange
			continue
		}
		return nil, err
	}
}

// resendOnNew reports whether a request that failed with err on a
// pooled connection is sent once more on another: the connection was
// reused and failed before any answer (the target had closed it: a
// keep-alive race), the request may be sent again (retry), it is the
// first such failure (attempt 0) and not a timeout.
func resendOnNew(reused, answered, retry bool, attempt int, err error) bool {
	return reused && !answered && retry && attempt == 0 && !isTimeout(err)
}

// afterFuncer is a context that registers its own functions to run when
// it is done, as internal/h2's request contexts do: context.AfterFunc
// would wrap it in a context of its own (two allocations and a child
// entry), where the method costs none.
type afterFuncer interface {
	AfterFunc(func()) (stop func() bool)
}

// watch closes c once ctx is done, until stopWatch.
func (c *leanUpConn) watch(ctx context.Context) {
	if c.closeConn == nil {
		nc := c.c
		c.closeConn = func() { _ = nc.Close() }
	}
	if a, ok := ctx.(afterFuncer); ok {
		c.unwatch = a.AfterFunc(c.closeConn)
		return
	}
	if ctx.Done() == nil {
		return
	}
	c.unwatch = context.AfterFunc(ctx, c.closeConn)
}

// stopWatch ends c's watch and reports whether c is still usable: false
// when the watch closed it.
func (c *leanUpConn) stopWatch() bool {
	if c.unwatch == nil {
		return true
	}
	ok := c.unwatch()
	c.unwatch = nil
	return ok
}

// exchange writes msg and reads the response head into c.resp within
// timeout, telling got1xx (if not nil) the informational heads before
// it. answered reports whether any byte of a response came.
func (c *leanUpConn) exchange(msg []byte, now time.Time, timeout time.Duration, got1xx func(int, textproto.MIMEHeader) error) (answered bool, err error) {
	if timeout > 0 && (!c.armed || now.Sub(c.armedAt) > min(leanDeadlineSlack, timeout/2)) {
		_ = c.c.SetReadDeadline(now.Add(timeout))
		c.armed, c.armedAt = true, now
	}
	if _, err := c.c.Write(msg); err != nil {
		return false, err
	}
	c.r, c.w = 0, 0
	for {
		n, err := c.readHead()
		if err != nil {
			return c.w > 0, err
		}
		if c.resp.Status >= 200 {
			c.r = n
			return true, nil
		}
		if c.resp.Status == 101 {
			return true, errSwitching
		}
		// 1xx: informational; the final response follows. The lean
		// engine does not relay them (as the fast engine); the net/http
		// engine's ReverseProxy does, through got1xx.
		if got1xx != nil {
			h := make(textproto.MIMEHeader, len(c.resp.Headers))
			for _, f := range c.resp.Headers {
				name := textproto.CanonicalMIMEHeaderKey(string(f.Name))
				h[name] = append(h[name], string(f.Value))
			}
			if err := got1xx(c.resp.Status, h); err != nil {
				return true, err
			}
		}
		copy(c.buf, c.buf[n:c.w])
		c.w -= n
	}
}

// disarm lifts the response-head deadline before a body is read: a body
// may stream for as long as it takes.
func (c *leanUpConn) disarm() {
	if c.armed {
		_ = c.c.SetReadDeadline(time.Time{})
		c.armed = false
	}
}

// readHead reads until buf[:w] starts with a whole response head and
// returns its length.
func (c *leanUpConn) readHead() (int, error) {
	for {
		if c.w > 0 {
			n, err := http1.ParseResponse(c.buf[:c.w], headerBuffer, &c.resp)
			switch {
			case err != nil:
				return 0, fmt.Errorf("%w: %w", errLeanBadResponse, err)
			case n > 0:
				return n, nil
			}
		}
		if c.w == len(c.buf) {
			if len(c.buf) >= headerBuffer {
				return 0, fmt.Errorf("%w: head over %d bytes", errLeanBadResponse, headerBuffer)
			}
			nb := make([]byte, 2*len(c.buf))
			copy(nb, c.buf[:c.w])
			c.buf = nb
		}
		n, err := c.c.Read(c.buf[c.w:])
		c.w += n
		if n == 0 && err != nil {
			return 0, err
		}
	}
}
