package ratelimit

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Streams: calls written as they come. A pipe (pipe.go) shares round
// trips, but a call that arrives while its lanes are busy waits for a
// lane's round trip to end before it leaves: under bursts that wait is
// the p99. A stream is a connection of its own to a standalone Redis on
// which a call is written the moment it comes, whatever is in flight,
// and whose replies are read in order and matched to the calls first in,
// first out (RESP replies come in the order of the commands):
//
//   - the caller that finds nobody writing writes, from its own
//     goroutine, its call and whatever queued meanwhile, in one write;
//     calls that come while a write is under way queue for the next one,
//     which a goroutine of the stream's makes, so that no caller writes
//     others' calls for long. Nobody ever waits for a reply to write;
//   - a reader goroutine, started when the first call is written and
//     ended when none is left in flight, reads replies and completes the
//     calls in order. A stream holds no goroutine while idle.
//
// The guarantees of the pipe hold. Each caller waits at most its own
// deadline; a caller that gives up gets its error (and its limiter its
// failure mode); if its call was written, its reply is read and dropped
// when it comes; if not, it is never written. A script call is never
// written twice: when the connection breaks (a write or read error, or
// no reply for streamStale while a caller has given up on one), the
// calls in flight fail, and only later calls go on a new connection.
// NOSCRIPT is handled as on the pipe: the script is loaded (through the
// go-redis client) and that call, which did not run, is written once
// more.
//
// Connections are dialled by the go-redis client's own Dialer (its
// Network, Addr, DialTimeout, TLSConfig and any custom dialer), then
// AUTH (Username, Password), SELECT (DB) and CLIENT SETNAME
// (ClientName) as the options ask. Options a stream cannot honour
// (OnConnect, credential providers) keep the pipe: see streamable. A
// failed dial is retried no sooner than a back-off that doubles from
// streamBackoffMin to streamBackoffMax; meanwhile calls fail at once
// with the dial's error, and the breaker sees them fail.
//
// Why our own RESP2 rather than rueidis (which also writes commands as
// they come and reads replies in order): the guarantees above would rest
// on its internals (when a queued command whose caller gave up is still
// written; which commands it retries after a network error, which its
// DisableRetry option governs for read-only ones), and it would be a
// second client, with options and a protocol (RESP3) of its own, next to
// go-redis, which the agent keeps for Cluster, lazy syncs and script
// loads. What a stream needs of RESP is one command (EVALSHA) and five
// reply types: resp.go.
type stream struct {
	opts   *redis.Options // the go-redis client's, with its Dialer
	client RedisClient    // loads scripts on NOSCRIPT

	mu      sync.Mutex
	conn    *streamConn   // guarded by mu: nil or broken means dial
	dialing chan struct{} // guarded by mu: closed when the dial under way ends
	dialErr error         // guarded by mu: the last dial's error, returned until retryAt
	retryAt time.Time     // guarded by mu
	backoff time.Duration // guarded by mu: the wait after the next failed dial
	closed  bool          // guarded by mu
}

// defaultStreams is RedisOptions.Streams's default.
const defaultStreams = 1

// Back-off between failed dials, and how long a connection may go
// without a reply while a caller has given up on one of its calls (Redis
// stalled, or a link that silently died) before it is closed.
const (
	streamBackoffMin = 10 * time.Millisecond
	streamBackoffMax = time.Second
	streamStale      = time.Second
)

// errStreamClosed is the error of calls made after Close.
var errStreamClosed = errors.New("ratelimit: redis stream closed")

// streamable reports whether a stream can honour the options of a
// go-redis client, and if not why.
func streamable(o *redis.Options) error {
	switch {
	case o.Dialer == nil:
		return errors.New("no dialer")
	case o.OnConnect != nil:
		return errors.New("OnConnect is set")
	case o.CredentialsProvider != nil, o.CredentialsProviderContext != nil, o.StreamingCredentialsProvider != nil:
		return errors.New("a credentials provider is set")
	}
	return nil
}

// do runs c (one EVALSHA) and returns its reply, by its deadline
// (pipeCall.deadlineAt) at the latest. A script Redis lost is loaded and
// c written once more.
func (s *stream) do(c *pipeCall) ([]any, error) {
	reply, err := s.send(c)
	if err != nil && isNoScript(err) {
		ctx, cancel := c.context()
		err = c.script.Load(ctx, s.client).Err()
		cancel()
		if err == nil {
			reply, err = s.send(&pipeCall{ctx: c.ctx, deadline: c.deadline, script: c.script, keys: c.keys, args: c.args})
		}
	}
	return reply, err
}

func (s *stream) send(c *pipeCall) ([]any, error) {
	if err := c.gaveUp(); err != nil {
		return nil, err
	}
	cn, err := s.connection(c)
	if err != nil {
		return nil, err
	}
	return cn.do(c)
}

// connection returns a live connection, dialling one if there is none,
// waiting at most until c's caller stops waiting.
func (s *stream) connection(c *pipeCall) (*streamConn, error) {
	cn, ch, err := s.liveConnection()
	if ch == nil {
		return cn, err
	}
	ctx, cancel := c.context()
	defer cancel()
	for {
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if cn, ch, err = s.liveConnection(); ch == nil {
			return cn, err
		}
	}
}

// liveConnection returns a live connection, or the channel closed when
// the dial under way ends (starting one if none is).
func (s *stream) liveConnection() (*streamConn, chan struct{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, nil, errStreamClosed
	}
	if cn := s.conn; cn != nil && !cn.broken.Load() {
		return cn, nil, nil
	}
	if s.dialing == nil {
		if time.Now().Before(s.retryAt) {
			return nil, nil, s.dialErr
		}
		s.dialing = make(chan struct{})
		go s.dial(s.dialing)
	}
	return nil, s.dialing, nil
}

// dial makes a connection and says hello, then closes done.
func (s *stream) dial(done chan struct{}) {
	timeout := s.opts.DialTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	nc, err := s.opts.Dialer(ctx, s.opts.Network, s.opts.Addr)
	if err == nil {
		if err = hello(nc, s.opts, time.Now().Add(timeout)); err != nil {
			_ = nc.Close()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	defer close(done)
	s.dialing = nil
	if err != nil {
		s.backoff = min(max(2*s.backoff, streamBackoffMin), streamBackoffMax)
		s.dialErr = fmt.Errorf("ratelimit: redis stream: %w", err)
		s.retryAt = time.Now().Add(s.backoff)
		return
	}
	if s.closed {
		_ = nc.Close()
		return
	}
	s.backoff = 0
	s.conn = &streamConn{nc: nc, br: bufio.NewReaderSize(nc, 16<<10)}
}

// hello sends AUTH, SELECT and CLIENT SETNAME as o asks, in one write,
// and checks that each was answered OK.
func hello(nc net.Conn, o *redis.Options, deadline time.Time) error {
	var cmds [][]any
	if o.Password != "" {
		if o.Username != "" {
			cmds = append(cmds, []any{"auth", o.Username, o.Password})
		} else {
			cmds = append(cmds, []any{"auth", o.Password})
		}
	}
	if o.DB != 0 {
		cmds = append(cmds, []any{"select", o.DB})
	}
	if o.ClientName != "" {
		cmds = append(cmds, []any{"client", "setname", o.ClientName})
	}
	if len(cmds) == 0 {
		return nil
	}
	var b []byte
	for _, c := range cmds {
		var err error
		if b, err = appendCommand(b, c...); err != nil {
			return err
		}
	}
	if err := nc.SetDeadline(deadline); err != nil {
		return err
	}
	if _, err := nc.Write(b); err != nil {
		return err
	}
	r := bufio.NewReader(nc)
	for _, c := range cmds {
		v, err := readReply(r)
		if err != nil {
			return err
		}
		if v != "OK" {
			return fmt.Errorf("%v: %v", c[0], v)
		}
	}
	return nc.SetDeadline(time.Time{})
}

// Close closes the connection. Calls in flight fail; later calls fail
// with errStreamClosed.
func (s *stream) Close() error {
	s.mu.Lock()
	s.closed = true
	cn := s.conn
	s.mu.Unlock()
	if cn != nil {
		cn.mu.Lock()
		cn.breakLocked(errStreamClosed)
		cn.mu.Unlock()
	}
	return nil
}

// streamConn is one connection of a stream.
type streamConn struct {
	nc     net.Conn
	br     *bufio.Reader // owned by the reader
	broken atomic.Bool   // set with err

	mu      sync.Mutex
	queue   []*pipeCall // guarded by mu: calls not yet written
	sent    []*pipeCall // guarded by mu: written, reply not yet read, oldest first
	sentMem []*pipeCall // guarded by mu: the array sent is in, from its start
	spare   []*pipeCall // guarded by mu: an empty slice for the next queue
	writing bool        // guarded by mu: a writer is at work
	reading bool        // guarded by mu: the reader runs
	stale   bool        // guarded by mu: a read deadline is set (a caller gave up on a written call)
	err     error       // guarded by mu: why the connection broke
	buf     []byte      // owned by the writer
}

// do writes c, or has it written, and waits for its reply or its
// caller's deadline.
func (cn *streamConn) do(c *pipeCall) ([]any, error) {
	c.done = make(chan struct{})
	cn.mu.Lock()
	if cn.err != nil {
		err := cn.err
		cn.mu.Unlock()
		return nil, err
	}
	cn.queue = append(cn.queue, c)
	if cn.writing {
		cn.mu.Unlock()
	} else {
		cn.writing = true
		if len(cn.sent) > 0 {
			// Redis is busy with earlier calls, and callers its replies
			// woke are about to come: let them queue, and write them
			// all in one go.
			cn.mu.Unlock()
			runtime.Gosched()
			cn.mu.Lock()
		}
		cn.write(c) // unlocks
	}
	t := deadlineTimer(c)
	select {
	case <-c.done:
		stopTimer(t)
		return c.reply, c.err
	case <-c.ctx.Done():
	case <-t.C:
	}
	stopTimer(t)
	cn.mu.Lock()
	select {
	case <-c.done: // answered meanwhile: Redis decided
		cn.mu.Unlock()
		return c.reply, c.err
	default:
	}
	c.gone = true
	if c.inFlight && !cn.stale && cn.err == nil {
		// Its reply will be dropped. Should no reply come at all, the
		// connection is dead: give it streamStale to answer.
		cn.stale = true
		_ = cn.nc.SetReadDeadline(time.Now().Add(streamStale))
	}
	cn.mu.Unlock()
	if err := c.gaveUp(); err != nil {
		return nil, err
	}
	return nil, context.DeadlineExceeded // the timer fired a hair early for time.Now
}

// timers are stopped timers for deadlineTimer to reuse: a timer a call
// would otherwise make, at the rate of the calls.
var timers sync.Pool

// deadlineTimer is a timer that fires at c's deadline, or never when it
// has none. Give it back with stopTimer.
func deadlineTimer(c *pipeCall) *time.Timer {
	d, ok := c.deadlineAt()
	wait := time.Until(d)
	if !ok {
		wait = time.Duration(math.MaxInt64)
	}
	if t, _ := timers.Get().(*time.Timer); t != nil {
		t.Reset(wait)
		return t
	}
	return time.NewTimer(wait)
}

// stopTimer stops t and keeps it for another call; since Go 1.23 a
// stopped timer's channel holds no stale tick.
func stopTimer(t *time.Timer) {
	t.Stop()
	timers.Put(t)
}

// write writes what is queued, then (from a goroutine of the stream's
// when called by a caller, own being the caller's call) what queued
// meanwhile, until the queue is empty. cn.mu is held on entry and
// released on return; the caller set cn.writing.
//
// A caller writes until its own deadline at most: should the write still
// be under way then (Redis stopped reading and the socket's buffer is
// full), a goroutine of the stream's writes the rest and the caller
// returns. A write that makes no progress for streamStale breaks the
// connection.
func (cn *streamConn) write(own *pipeCall) {
	for {
		buf, startReader := cn.takeLocked()
		cn.mu.Unlock()
		var err error
		if len(buf) > 0 {
			deadline := time.Now().Add(streamStale)
			if own != nil {
				if d, ok := own.deadlineAt(); ok && d.Before(deadline) {
					deadline = d
				}
			}
			n := 0
			if err = cn.nc.SetWriteDeadline(deadline); err == nil {
				n, err = cn.nc.Write(buf)
			}
			if startReader {
				// After the write: a reader is never in a read when the
				// bytes it answers leave, as go-redis's reads never are.
				go cn.read()
			}
			if err != nil && own != nil && isTimeout(err) {
				go cn.writeRest(buf[n:])
				return
			}
		}
		cn.mu.Lock()
		if cn.wroteLocked(err) {
			return
		}
		if own != nil {
			// More came while this caller wrote: a goroutine of the
			// stream's writes it, and the caller goes back to wait.
			cn.mu.Unlock()
			go cn.writeLoop()
			return
		}
	}
}

// takeLocked moves the queued calls whose callers still wait to sent and
// returns their commands, one write's worth, and whether the caller is
// to start the reader once it wrote them. The others are completed with
// their caller's error: they are never written. cn.mu is held.
func (cn *streamConn) takeLocked() (buf []byte, startReader bool) {
	batch := cn.queue
	cn.queue = cn.spare
	buf = cn.buf[:0]
	for i, c := range batch {
		batch[i] = nil
		if err := c.gaveUp(); err != nil || c.gone {
			if err == nil {
				err = context.Canceled
			}
			c.err = err
			close(c.done)
			continue
		}
		var err error
		if buf, err = appendEvalSha(buf, c); err != nil {
			c.err = err
			close(c.done)
			continue
		}
		c.inFlight = true
		before := cap(cn.sent)
		cn.sent = append(cn.sent, c)
		if cap(cn.sent) != before {
			cn.sentMem = cn.sent[:0] // a new array; the last one is dropped
		}
	}
	cn.spare = batch[:0]
	cn.buf = buf
	if len(buf) > 0 && !cn.reading {
		cn.reading = true
		startReader = true
	}
	return buf, startReader
}

// writeRest writes what a caller's write left when its deadline came,
// then goes on writing what queued.
func (cn *streamConn) writeRest(rest []byte) {
	err := cn.nc.SetWriteDeadline(time.Now().Add(streamStale))
	if err == nil {
		_, err = cn.nc.Write(rest)
	}
	cn.mu.Lock()
	if cn.wroteLocked(err) {
		return
	}
	cn.write(nil)
}

// wroteLocked ends a write that failed with err (nil: it did not): the
// connection breaks on an error, and when nothing more is queued or the
// connection is broken the writing stops, cn.mu is released and
// wroteLocked reports true. Otherwise cn.mu stays held for the next
// write. cn.mu is held on entry.
func (cn *streamConn) wroteLocked(err error) (stopped bool) {
	if err != nil {
		cn.breakLocked(err)
	}
	if len(cn.queue) == 0 || cn.err != nil {
		cn.writing = false
		cn.mu.Unlock()
		return true
	}
	return false
}

func (cn *streamConn) writeLoop() {
	cn.mu.Lock()
	cn.write(nil)
}

// maxKeptSent is the most calls' room kept for sent when none is in
// flight.
const maxKeptSent = 1024

// read reads replies and completes the written calls in order, until
// none is in flight or the connection breaks.
func (cn *streamConn) read() {
	for {
		arr, v, err := readReplyArray(cn.br)
		cn.mu.Lock()
		if err == nil && len(cn.sent) == 0 {
			err = errors.New("ratelimit: redis sent a reply to no call")
		}
		if err != nil {
			cn.reading = false
			cn.breakLocked(err)
			cn.mu.Unlock()
			return
		}
		c := cn.sent[0]
		c.inFlight = false
		cn.sent[0] = nil
		cn.sent = cn.sent[1:]
		last := len(cn.sent) == 0
		if last {
			// Every call read is cleared from sent's array: the next
			// writes start it again, unless a burst made it large.
			cn.sent, cn.sentMem = cn.sentMem[:0], cn.sentMem[:0]
			if cap(cn.sentMem) > maxKeptSent {
				cn.sent, cn.sentMem = nil, nil
			}
			cn.reading = false
		}
		if cn.stale {
			// Redis answers: give the rest as long again, or clear the
			// deadline when nothing is left in flight.
			var d time.Time
			if !last {
				d = time.Now().Add(streamStale)
			} else {
				cn.stale = false
			}
			_ = cn.nc.SetReadDeadline(d)
		}
		cn.mu.Unlock()
		switch v := v.(type) {
		case nil:
			if arr != nil {
				c.reply = arr
			} else {
				c.err = redis.Nil
			}
		case []any:
			c.reply = v
		case respError:
			c.err = v
		default:
			c.err = fmt.Errorf("ratelimit: unexpected script reply %v", v)
		}
		close(c.done)
		if last {
			return
		}
	}
}

// breakLocked marks the connection broken by err, closes it, and fails
// every call written or queued on it: none is sent again. cn.mu is held.
func (cn *streamConn) breakLocked(err error) {
	if cn.err != nil {
		return
	}
	cn.err = fmt.Errorf("ratelimit: redis stream: %w", err)
	cn.broken.Store(true)
	_ = cn.nc.Close()
	for _, c := range cn.sent {
		c.err = cn.err
		close(c.done)
	}
	for _, c := range cn.queue {
		c.err = cn.err
		close(c.done)
	}
	cn.sent, cn.queue = nil, nil
}

// appendEvalSha appends EVALSHA of c's script with c's keys and args.
func appendEvalSha(b []byte, c *pipeCall) ([]byte, error) {
	start := len(b)
	b = appendLen(b, '*', 3+len(c.keys)+len(c.args))
	b = appendBulk(b, "evalsha")
	b = appendBulk(b, c.script.Hash())
	b, _ = appendArg(b, len(c.keys))
	for _, k := range c.keys {
		b = appendBulk(b, k)
	}
	for _, a := range c.args {
		var ok bool
		if b, ok = appendArg(b, a); !ok {
			return b[:start], fmt.Errorf("ratelimit: redis argument of type %T", a)
		}
	}
	return b, nil
}
