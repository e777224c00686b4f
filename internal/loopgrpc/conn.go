//go:build linux

package loopgrpc

import (
	"crypto/tls"
	"errors"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fluxgate/fluxgate/internal/conncap"
	"github.com/fluxgate/fluxgate/internal/eventloop"
	"github.com/fluxgate/fluxgate/internal/h2"
	"github.com/fluxgate/fluxgate/internal/looptls"
)

// conn is a client connection on a loop; everything in it is its loop's.
type conn struct {
	st     *loopState
	fd     int
	remote string
	slot   *conncap.Slot // nil without a Cap
	ss     *h2.Session
	in     []byte // read and not yet taken by the Session (a frame not yet whole); nil when none

	tls      *looptls.TLS         // nil: plain (h2c)
	tlsState *tls.ConnectionState // the handshake's, for Fallback's calls; nil: plain
	wq       []byte               // over TLS: records written and not yet sent (a view of the tls.Conn's buffer)

	interest   uint32
	registered bool
	closed     bool
	failed     bool // a write failed: the connection closes (posted)
	feeding    bool // within the Session's Feed
	reading    bool // within read, which reads on while the tls.Conn may hold records
	heldPosted bool // a read of records the tls.Conn holds is posted (readHeld)
	toFlush    bool // in its loop's waitedAnswers.flush
	timer      *eventloop.Timer
	timing     timing
	age        *eventloop.Timer // MaxConnectionAge, then its grace; nil without
	aging      bool             // the age's GOAWAY went: the grace runs

	blocked map[*answer]struct{} // answers waiting for the client's windows
	partial int                  // bytes of unary requests arriving in pieces (maxPartial)
}

// timing is what the connection's timer is set for.
type timing uint8

const (
	timeNone    timing = iota
	timePreface        // the client's preface and SETTINGS
	timeIdle           // a call, with none open
	timeWrite          // the client to take the frames
)

// onEvent is the socket's handler.
func (c *conn) onEvent(ev uint32) {
	if c.closed {
		return
	}
	if c.waitingOut() > 0 && ev&(eventloop.Writable|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		c.flush()
		if c.closed {
			return
		}
	}
	// Over TLS the tls.Conn may hold records the socket no longer tells
	// of, left when the frames waiting passed maxOut: read them once the
	// client took those.
	held := c.tls != nil && c.tls.More()
	if (held || ev&(eventloop.Readable|unix.EPOLLERR|unix.EPOLLHUP) != 0) && c.waitingOut() <= maxOut {
		c.read()
	}
}

// waitingOut is how many bytes wait for the client: frames, and over
// TLS records.
func (c *conn) waitingOut() int { return len(c.ss.Output()) + len(c.wq) }

// read reads the client once and feeds the Session; over TLS, on while
// the tls.Conn may hold records the socket will not tell of.
func (c *conn) read() {
	c.reading = true
	defer func() { c.reading = false }() // a panic the loop recovers leaves no stale flag
	for {
		// Into the loop's buffer, unless a frame not yet whole waits in
		// the connection's own: an idle connection holds no read buffer.
		dst := c.in[len(c.in):cap(c.in)]
		if len(c.in) == 0 {
			if c.st.in == nil {
				c.st.in = make([]byte, readSize)
			}
			dst = c.st.in
		}
		var n int
		var err error
		if c.tls == nil {
			n, err = unix.Read(c.fd, dst)
		} else {
			n, err = c.tls.Read(&c.st.tls, c.fd, dst)
			c.wq = c.tls.Waiting() // what the read wrote (a KeyUpdate's reply) counts with the frames waiting
		}
		switch {
		case n > 0 && len(c.in) == 0:
			c.feed(dst[:n])
		case n > 0:
			c.in = c.in[:len(c.in)+n]
			c.feed(c.in)
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
		default: // the end, or an error
			c.close()
		}
		if c.closed || c.tls == nil || !c.tls.More() || c.waitingOut() > maxOut {
			return
		}
	}
}

// feed gives the Session b, what was read; the calls it opens start
// within it. A frame not yet whole stays in c.in.
func (c *conn) feed(b []byte) {
	c.feeding = true
	k, err := c.ss.Feed(c.st.l.Now(), b)
	c.feeding = false
	switch rest := b[k:]; {
	case len(rest) == 0:
		c.in = nil
	case len(c.in) == 0: // b is the loop's: the rest moves into the connection's
		c.in = append(make([]byte, 0, readSize), rest...)
	default:
		c.in = c.in[:copy(c.in, rest)]
	}
	if err == nil && len(c.in) == cap(c.in) && cap(c.in) > 0 {
		err = errors.New("unreachable: a frame past the read buffer") // the Session refuses frames past 16 KiB
	}
	c.flush()
	if err != nil && !c.closed && len(c.ss.Output()) == 0 {
		c.close()
	}
}

// flush writes the Session's frames; what the socket does not take waits
// for it to be writable, within the write timeout. A connection whose
// Session ended closes once its last frames are out.
func (c *conn) flush() {
	if c.closed || c.failed {
		return
	}
	if err := c.write(); err != nil {
		// Gone. Closing resets the streams, whose code may be on the
		// stack: close once it returned.
		c.failed = true
		if !c.st.l.Post(c.close) {
			c.close()
		}
		return
	}
	if c.waitingOut() == 0 && c.ss.Ended() {
		if !c.feeding {
			c.close()
		}
		return
	}
	c.arm()
}

// write writes the Session's frames until the socket takes no more; over
// TLS as records, the frames encrypted once the records before them went
// (what waits is bounded by one flush's frames, those by maxOut).
func (c *conn) write() error {
	if c.tls == nil {
		for out := c.ss.Output(); len(out) > 0; out = c.ss.Output() {
			n, err := eventloop.Write(c.fd, out)
			c.ss.Wrote(n)
			if err != nil || n < len(out) {
				return err
			}
		}
		return nil
	}
	for {
		var err error
		if len(c.wq) > 0 {
			if c.wq, err = c.tls.Flush(&c.st.tls, c.fd); err != nil || len(c.wq) > 0 {
				return err
			}
		}
		out := c.ss.Output()
		if len(out) == 0 {
			return nil
		}
		c.wq, err = c.tls.Write(&c.st.tls, c.fd, out)
		c.ss.Wrote(len(out))
		if err != nil {
			return err
		}
	}
}

// arm sets the socket's interest and the connection's timer for its
// state: frames waiting (writable, the write timeout; reading stops past
// maxOut), no call open (the idle timeout, or the preface timeout until
// the client's SETTINGS came), or neither.
func (c *conn) arm() {
	waiting := c.waitingOut()
	ev := uint32(0)
	if waiting <= maxOut {
		ev = eventloop.Readable
	}
	if waiting > 0 {
		ev |= eventloop.Writable
	}
	if c.interest != ev && c.registered {
		if c.st.l.Modify(c.fd, ev) == nil {
			c.interest = ev
		}
	}
	s := c.st.s
	switch {
	case waiting > 0:
		if c.timing != timeWrite {
			c.setTimer(timeWrite, s.o.WriteTimeout)
		}
	case c.ss.Open() > 0:
		c.slot.Busy()
		if c.timing != timeNone {
			c.timing = timeNone
			c.timer.Stop()
		}
	case !c.ss.Started():
		if c.timing != timePreface {
			c.setTimer(timePreface, s.o.PrefaceTimeout)
		}
	case c.timing != timeIdle:
		c.slot.IdleAt(c.st.l.Now())
		c.setTimer(timeIdle, s.o.IdleTimeout)
	}
	c.readHeld()
}

// readHeld reads again, on the loop after this turn, when the tls.Conn
// may hold records the socket's readiness will not tell of: read left
// them for the frames waiting past maxOut, which a flush outside the
// socket's events (a waited answer, Fallback's, a timer's GOAWAY) has
// since sent.
func (c *conn) readHeld() {
	if c.tls == nil || !c.tls.More() || c.reading || c.feeding || c.heldPosted || c.closed || c.waitingOut() > maxOut {
		return
	}
	c.heldPosted = true
	c.st.l.Post(func() {
		c.heldPosted = false
		if !c.closed && c.waitingOut() <= maxOut {
			c.read()
		}
	})
}

func (c *conn) setTimer(t timing, d time.Duration) {
	c.timing = t
	c.timer.Reset(d)
}

// timedOut is the connection's timer: a client that sends no preface, or
// reads nothing, is closed; an idle one gets GOAWAY.
func (c *conn) timedOut() {
	if c.closed {
		return
	}
	t := c.timing
	c.timing = timeNone
	switch t {
	case timeIdle:
		c.goAway()
	case timePreface, timeWrite:
		c.close()
	}
}

// aged is the age timer: GOAWAY at MaxConnectionAge, the end after its
// grace.
func (c *conn) aged() {
	if c.closed {
		return
	}
	if c.aging {
		c.close()
		return
	}
	c.aging = true
	c.age.Reset(c.st.s.o.MaxConnectionAgeGrace)
	c.goAway()
}

// goAway ends the connection gracefully: no call after those open,
// which finish; it closes once they did.
func (c *conn) goAway() {
	c.ss.GoAway()
	c.flush()
}

// evict closes the connection to make room under the cap if no call is
// open (conncap.Cap.Full, posted to its loop).
func (c *conn) evict() {
	if !c.closed && c.ss.Open() == 0 {
		c.close()
		return
	}
	c.slot.Spared()
}

// close closes the connection; its open calls are reset (their contexts
// end).
func (c *conn) close() {
	if c.closed {
		return
	}
	c.closed = true
	c.timer.Stop()
	if c.age != nil {
		c.age.Stop()
	}
	c.ss.End() // resets every open stream: Reset runs for each
	if c.tls != nil && !c.failed && len(c.wq) == 0 {
		c.tls.CloseNotify(&c.st.tls, c.fd) // one try, as a blocking tls.Conn's Close
	}
	if c.registered {
		_ = c.st.l.Delete(c.fd)
		c.registered = false
	}
	_ = unix.Close(c.fd)
	delete(c.st.conns, c)
	c.st.s.front.Closed()
	c.slot.Release()
	c.blocked = nil
	c.in = nil
	c.wq = nil
}
