package h2

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

var (
	errConnClosed    = errors.New("h2: connection closed")
	errStreamReset   = errors.New("h2: stream reset")
	errHeaderFlood   = errors.New("h2: header block in too many frames")
	errWindowTimeout = errors.New("h2: timed out waiting for the client's flow-control window")
)

// conn is one HTTP/2 connection. Its reader goroutine (serve) reads every
// frame and answers the control frames; each request runs on a goroutine
// of its own, which writes its response under wmu.
type conn struct {
	s          *Server
	nc         net.Conn
	br         *bufio.Reader
	fc         frameCounter // between br and fr: bounds a header block's frames
	hb         headerBlock  // the reader's: the header block being decoded
	tls        *tls.ConnectionState
	remoteAddr string
	log        *slog.Logger
	handlers   sync.WaitGroup
	// work hands streams to the workers waiting for one (see worker):
	// unbuffered, sent to by the reader only, closed once the handlers
	// returned, which ends the waiting workers.
	work    chan *stream
	workers sync.WaitGroup // worker goroutines
	bg      sync.WaitGroup // other goroutines of the connection (closeWriteLocked's)

	// The settings this side announced, from s.
	maxStreams   int
	streamWindow int64
	connWindow   int64
	wtimeout     time.Duration

	wmu       sync.Mutex    // guards bw, the Framer's writes, henc and hbuf
	bw        *bufio.Writer // guarded by wmu
	fr        *http2.Framer // reads: the reader goroutine only; writes under wmu
	henc      *hpack.Encoder
	hbuf      bytes.Buffer
	werr      error       // guarded by wmu: the first write error; later writes fail with it
	wdeadline time.Time   // guarded by wmu: when the write deadline was last set (see write)
	unflushed atomic.Bool // frames written to bw and not flushed (the reader flushes before it blocks)
	// flushers counts the writes that will flush waiting for wmu: a write
	// that sees one leaves its frames to that write's flush, so that
	// answers finishing together go out in one TLS record and syscall.
	flushers atomic.Int32

	mu         sync.Mutex
	cond       *sync.Cond         // on mu: a send window grew, a stream was reset, the connection closed
	streams    map[uint32]*stream // guarded by mu: streams whose handler runs and that are not reset
	running    int                // guarded by mu: handlers running, reset streams' included
	sendWindow int64              // guarded by mu: the connection's send window
	initWindow int64              // guarded by mu: the peer's SETTINGS_INITIAL_WINDOW_SIZE
	peerFrame  int                // guarded by mu: the peer's SETTINGS_MAX_FRAME_SIZE
	closed     bool               // guarded by mu
	goingAway  bool               // guarded by mu: GOAWAY sent; close once no handler runs
	accepted   uint32             // guarded by mu: the highest stream whose handler was started (GOAWAY's last stream)
	closing    bool               // guarded by mu: the write side is closed; the reader drains
	idle       *time.Timer        // guarded by mu: IdleTimeout with no handler running

	lastID    atomic.Uint32 // the highest stream id the client opened (written by the reader)
	recvAvail atomic.Int64  // the connection's receive window left
	recvUsed  atomic.Int64  // bytes taken from the receive window and not yet given back

	// The reader goroutine's own.
	awaiting    atomic.Int32 // streams whose request body is arriving (read timeout while > 0)
	deadlineSet bool
	resets      int       // client resets in the window started at resetStart
	resetStart  time.Time // guarded by the reader
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{
		s: s, nc: nc, tls: tlsState(nc), log: s.logger(),
		br: bufio.NewReaderSize(nc, bufferSize), bw: bufio.NewWriterSize(nc, bufferSize),
		maxStreams: int(s.maxStreams()), streamWindow: int64(s.streamWindow()), connWindow: int64(s.connWindow()),
		wtimeout: s.writeTimeout(),
		streams:  map[uint32]*stream{}, sendWindow: 65535, initWindow: 65535, peerFrame: 16384,
		work: make(chan *stream),
	}
	if a := nc.RemoteAddr(); a != nil {
		c.remoteAddr = a.String()
	}
	c.cond = sync.NewCond(&c.mu)
	c.fc.r = c.br
	c.fr = http2.NewFramer(c.bw, &c.fc)
	c.hb.init() // header blocks are decoded by readHeaderBlock, not the Framer
	c.fr.SetMaxReadFrameSize(maxReadFrameSize)
	c.fr.SetReuseFrames()
	c.henc = hpack.NewEncoder(&c.hbuf)
	c.recvAvail.Store(c.connWindow)
	return c
}

// frameCounter counts the frames the Framer reads in one ReadFrame (a
// frame header is one read of 9 bytes; a 9-byte payload read counts too,
// which only makes the bound stricter) and fails past maxHeaderFrames.
type frameCounter struct {
	r      io.Reader
	frames int
}

func (fc *frameCounter) Read(p []byte) (int, error) {
	if len(p) == 9 {
		if fc.frames++; fc.frames > maxHeaderFrames {
			return 0, errHeaderFlood
		}
	}
	return fc.r.Read(p)
}

// connError ends the connection with GOAWAY code.
type connError struct {
	code   http2.ErrCode
	reason string // a Reason… value
	detail string
}

func (e connError) Error() string { return "h2: " + e.code.String() + ": " + e.detail }

// serve reads the connection until it ends, closes it and waits for its
// handlers.
func (c *conn) serve() (err error) {
	defer func() {
		c.close()
		c.handlers.Wait()
		close(c.work)
		c.workers.Wait()
		c.bg.Wait()
		c.mu.Lock()
		if c.idle != nil {
			c.idle.Stop()
		}
		c.mu.Unlock()
	}()
	_ = c.nc.SetReadDeadline(time.Now().Add(c.s.readTimeout()))
	var preface [len(http2.ClientPreface)]byte
	if _, err := io.ReadFull(c.br, preface[:]); err != nil {
		c.s.count(ReasonBadPreface)
		c.log.Debug("h2: no client preface", "remote", c.remoteAddr, "err", err)
		return nil
	}
	if string(preface[:]) != http2.ClientPreface {
		c.s.count(ReasonBadPreface)
		c.log.Debug("h2: bad client preface", "remote", c.remoteAddr)
		c.goAway(http2.ErrCodeProtocol)
		return nil
	}
	c.deadlineSet = true
	werr := c.write(true, func() error {
		err := c.fr.WriteSettings(
			http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: uint32(c.maxStreams)},
			http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(c.streamWindow)},
			http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: c.s.maxHeaderList()},
		)
		if err == nil && c.connWindow > 65535 {
			err = c.fr.WriteWindowUpdate(0, uint32(c.connWindow-65535))
		}
		return err
	})
	if werr != nil {
		return nil
	}
	c.mu.Lock()
	c.armIdleLocked()
	c.mu.Unlock()
	first := true
	for {
		c.beforeRead()
		c.fc.frames = 0
		f, err := c.fr.ReadFrame()
		if hf, ok := f.(*http2.HeadersFrame); ok && err == nil {
			f, err = c.readHeaderBlock(hf)
		}
		if err != nil {
			if done, rerr := c.readError(err); done {
				return rerr
			}
			continue
		}
		if first {
			first = false
			if sf, ok := f.(*http2.SettingsFrame); !ok || sf.IsAck() {
				c.s.count(ReasonBadPreface)
				c.goAway(http2.ErrCodeProtocol)
				return nil
			}
		}
		if err := c.frame(f); err != nil {
			var ce connError
			if errors.As(err, &ce) {
				c.s.count(ce.reason)
				c.log.Debug("h2: connection error", "remote", c.remoteAddr, "code", ce.code.String(), "err", ce.detail)
				c.goAway(ce.code)
				return nil
			}
			return err
		}
	}
}

// beforeRead flushes the control frames written since the last flush if
// the next read may block, and sets the read deadline: ReadTimeout while a
// request body is arriving, none otherwise (IdleTimeout is a timer).
func (c *conn) beforeRead() {
	if c.br.Buffered() == 0 && c.unflushed.Load() {
		_ = c.write(true, func() error { return nil })
	}
	c.mu.Lock()
	closing := c.closing
	c.mu.Unlock()
	switch {
	case closing:
	case c.awaiting.Load() > 0:
		_ = c.nc.SetReadDeadline(time.Now().Add(c.s.readTimeout()))
		c.deadlineSet = true
	case c.deadlineSet:
		_ = c.nc.SetReadDeadline(time.Time{})
		c.deadlineSet = false
	}
}

// readError handles an error of ReadFrame: a stream error resets the
// stream and reading goes on (done false); anything else ends the
// connection.
func (c *conn) readError(err error) (done bool, _ error) {
	var se http2.StreamError
	if errors.As(err, &se) {
		if se.StreamID > c.lastID.Load() && se.StreamID%2 == 1 {
			c.lastID.Store(se.StreamID) // a malformed HEADERS: the stream is closed
		}
		c.s.count(ReasonMalformedRequest)
		c.log.Debug("h2: stream error", "remote", c.remoteAddr, "stream", se.StreamID, "code", se.Code.String(), "err", se.Cause)
		if st := c.lookup(se.StreamID); st != nil {
			c.resetStream(st, se.Code, true)
		} else {
			c.writeRST(se.StreamID, se.Code)
		}
		return false, nil
	}
	if code, reason, ok := frameError(err); ok {
		c.s.count(reason)
		c.log.Debug("h2: connection error", "remote", c.remoteAddr, "code", code.String(), "reason", reason)
		c.goAway(code)
		return true, nil
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() && c.awaiting.Load() > 0 {
		c.s.count(ReasonReadTimeout)
		c.log.Debug("h2: read timeout with a request body arriving", "remote", c.remoteAddr)
	}
	return true, nil
}

// frameError is the GOAWAY code and the Reason… of a frame or header
// block error that ends the connection; not ok for other errors (the
// connection's reads failed).
func frameError(err error) (code http2.ErrCode, reason string, ok bool) {
	var ce http2.ConnectionError
	switch {
	case errors.As(err, &ce):
		return http2.ErrCode(ce), ReasonProtocol, true
	case errors.Is(err, http2.ErrFrameTooLarge):
		return http2.ErrCodeFrameSize, ReasonProtocol, true
	case errors.Is(err, errHeaderFlood):
		return http2.ErrCodeEnhanceYourCalm, ReasonContinuationFlood, true
	}
	return 0, "", false
}

// frame handles one frame; a connError ends the connection.
func (c *conn) frame(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		return c.headers(f)
	case *http2.DataFrame:
		return c.data(f)
	case *http2.SettingsFrame:
		return c.settings(f)
	case *http2.PingFrame:
		if !f.IsAck() {
			c.writeCtl(func() error { return c.fr.WritePing(true, f.Data) })
		}
	case *http2.WindowUpdateFrame:
		return c.windowUpdate(f)
	case *http2.RSTStreamFrame:
		return c.rstStream(f)
	case *http2.GoAwayFrame:
		// The client opens no more streams; those open finish.
	case *http2.PushPromiseFrame:
		return connError{http2.ErrCodeProtocol, ReasonProtocol, "PUSH_PROMISE from a client"}
	case *http2.PriorityFrame:
		if f.StreamID == f.StreamDep {
			if st := c.lookup(f.StreamID); st != nil {
				c.resetStream(st, http2.ErrCodeProtocol, true)
			} else {
				c.writeRST(f.StreamID, http2.ErrCodeProtocol)
			}
		}
		// Otherwise ignored, as RFC 9113 allows.
	}
	return nil
}

func (c *conn) lookup(id uint32) *stream {
	c.mu.Lock()
	st := c.streams[id]
	c.mu.Unlock()
	return st
}

func (c *conn) settings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			code := http2.ErrCodeProtocol
			var ce http2.ConnectionError
			if errors.As(err, &ce) {
				code = http2.ErrCode(ce)
			}
			return connError{code, ReasonProtocol, "bad setting " + s.String()}
		}
		switch s.ID {
		case http2.SettingInitialWindowSize:
			c.mu.Lock()
			delta := int64(s.Val) - c.initWindow
			c.initWindow = int64(s.Val)
			for _, st := range c.streams {
				if st.sendWindow += delta; st.sendWindow > 1<<31-1 {
					c.mu.Unlock()
					return connError{http2.ErrCodeFlowControl, ReasonFlowControl, "a stream window past 2^31-1"}
				}
			}
			c.cond.Broadcast()
			c.mu.Unlock()
		case http2.SettingMaxFrameSize:
			c.mu.Lock()
			c.peerFrame = int(s.Val)
			c.mu.Unlock()
		case http2.SettingHeaderTableSize:
			c.wmu.Lock()
			c.henc.SetMaxDynamicTableSizeLimit(s.Val)
			c.wmu.Unlock()
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.writeCtl(c.fr.WriteSettingsAck)
	return nil
}

func (c *conn) windowUpdate(f *http2.WindowUpdateFrame) error {
	inc := int64(f.Increment)
	c.mu.Lock()
	if f.StreamID == 0 {
		c.sendWindow += inc
		over := c.sendWindow > 1<<31-1
		c.cond.Broadcast()
		c.mu.Unlock()
		if over {
			return connError{http2.ErrCodeFlowControl, ReasonFlowControl, "the connection window past 2^31-1"}
		}
		return nil
	}
	st := c.streams[f.StreamID]
	if st == nil {
		c.mu.Unlock()
		if f.StreamID > c.lastID.Load() {
			return connError{http2.ErrCodeProtocol, ReasonProtocol, "WINDOW_UPDATE on an idle stream"}
		}
		return nil // a stream answered or reset: the update comes late
	}
	st.sendWindow += inc
	over := st.sendWindow > 1<<31-1
	c.cond.Broadcast()
	c.mu.Unlock()
	if over {
		c.s.count(ReasonFlowControl)
		c.resetStream(st, http2.ErrCodeFlowControl, true)
	}
	return nil
}

func (c *conn) rstStream(f *http2.RSTStreamFrame) error {
	if f.StreamID > c.lastID.Load() {
		return connError{http2.ErrCodeProtocol, ReasonProtocol, "RST_STREAM on an idle stream"}
	}
	st := c.lookup(f.StreamID)
	if st == nil {
		return nil
	}
	c.resetStream(st, 0, false)
	now := time.Now()
	if now.Sub(c.resetStart) > time.Second {
		c.resetStart, c.resets = now, 0
	}
	if c.resets++; c.resets > c.s.maxResets() {
		return connError{http2.ErrCodeEnhanceYourCalm, ReasonRapidReset, "too many streams reset by the client"}
	}
	return nil
}

// data handles a DATA frame: the bytes go to the stream's body, within the
// receive windows.
func (c *conn) data(f *http2.DataFrame) error {
	n := int64(f.Length) // padding included, as flow control counts it
	if c.recvAvail.Add(-n) < 0 {
		return connError{http2.ErrCodeFlowControl, ReasonFlowControl, "DATA past the connection window"}
	}
	id := f.StreamID
	st := c.lookup(id)
	if st == nil || st.body == nil {
		c.consumed(n)
		switch {
		case id > c.lastID.Load():
			return connError{http2.ErrCodeProtocol, ReasonProtocol, "DATA on an idle stream"}
		case st != nil: // half-closed (remote): END_STREAM came with the HEADERS
			c.resetStream(st, http2.ErrCodeStreamClosed, true)
		default:
			c.writeRST(id, http2.ErrCodeStreamClosed)
		}
		return nil
	}
	b := st.body
	data := f.Data()
	b.mu.Lock()
	switch {
	case b.recvClosed:
		b.mu.Unlock()
		c.consumed(n)
		c.resetStream(st, http2.ErrCodeStreamClosed, true)
		return nil
	case b.recvAvail-n < 0:
		b.mu.Unlock()
		c.consumed(n)
		c.s.count(ReasonFlowControl)
		c.resetStream(st, http2.ErrCodeFlowControl, true)
		return nil
	}
	b.recvAvail -= n
	b.got += int64(len(data))
	if b.want >= 0 && (b.got > b.want || f.StreamEnded() && b.got != b.want) {
		b.mu.Unlock()
		c.consumed(n)
		c.s.count(ReasonMalformedRequest)
		c.resetStream(st, http2.ErrCodeProtocol, true)
		return nil
	}
	pad := n - int64(len(data))
	if b.closed {
		pad = n // nobody reads: all of it goes back to the connection at once
	} else {
		if b.off > 0 && len(b.buf)+len(data) > cap(b.buf) {
			// Drop the bytes read before the buffer grows: a reader
			// that never empties it would otherwise keep all the body
			// ever received, not a window of it.
			b.buf = b.buf[:copy(b.buf, b.buf[b.off:])]
			b.off = 0
		}
		b.buf = append(b.buf, data...)
		b.unacked += pad
	}
	if f.StreamEnded() {
		c.endRecvLocked(b, nil)
	}
	b.cond.Broadcast()
	b.mu.Unlock()
	if pad > 0 {
		c.consumed(pad)
	}
	return nil
}

// endRecvLocked marks a body complete (err nil: io.EOF) or failed. Under b.mu.
func (c *conn) endRecvLocked(b *body, err error) {
	if !b.recvClosed {
		b.recvClosed = true
		c.awaiting.Add(-1)
	}
	if b.err == nil {
		if err == nil {
			err = io.EOF
		}
		b.err = err
	}
	b.cond.Broadcast()
}

// consumed gives n bytes back to the connection's receive window, by
// WINDOW_UPDATE once half of it is used.
func (c *conn) consumed(n int64) {
	if n <= 0 {
		return
	}
	if c.recvUsed.Add(n) < c.connWindow/2 {
		return
	}
	inc := c.recvUsed.Swap(0)
	if inc <= 0 {
		return
	}
	c.recvAvail.Add(inc) // before the update: the client may send at once
	_ = c.write(true, func() error { return c.fr.WriteWindowUpdate(0, uint32(inc)) })
}

// resetStream ends a stream's life on this connection: its handler's
// writes and body reads fail and its context is cancelled. With send, this
// side resets it (RST_STREAM code); otherwise the client did.
func (c *conn) resetStream(st *stream, code http2.ErrCode, send bool) {
	c.mu.Lock()
	if st.reset {
		c.mu.Unlock()
		return
	}
	st.reset = true
	delete(c.streams, st.id)
	c.cond.Broadcast()
	c.mu.Unlock()
	if b := st.body; b != nil {
		b.mu.Lock()
		unread := int64(len(b.buf) - b.off)
		b.buf, b.off, b.closed = nil, 0, true
		c.endRecvLocked(b, errStreamReset)
		b.mu.Unlock()
		c.consumed(unread)
	}
	st.ctx.cancel()
	if send {
		c.writeRST(st.id, code)
	}
}

// armIdleLocked starts the idle timer. Under mu, with no handler running.
func (c *conn) armIdleLocked() {
	d := c.s.idleTimeout()
	if d < 0 || c.closed {
		return
	}
	if c.idle == nil {
		c.idle = time.AfterFunc(d, c.idleFired)
		return
	}
	c.idle.Reset(d)
}

func (c *conn) idleFired() {
	c.mu.Lock()
	idle := c.running == 0 && !c.closed && !c.goingAway
	c.mu.Unlock()
	if idle {
		c.s.count(ReasonIdleTimeout)
		c.log.Debug("h2: idle connection closed", "remote", c.remoteAddr)
		c.goAwayGraceful()
	}
}

// goAwayGraceful sends GOAWAY NO_ERROR with the last stream taken; the
// connection closes once no handler runs.
func (c *conn) goAwayGraceful() {
	c.mu.Lock()
	if c.goingAway || c.closed {
		c.mu.Unlock()
		return
	}
	c.goingAway = true
	// The last stream taken, with goingAway set under the same lock: a
	// stream the reader opens later sees goingAway and is not served.
	last := c.accepted
	c.mu.Unlock()
	_ = c.write(true, func() error { return c.fr.WriteGoAway(last, http2.ErrCodeNo, nil) })
	c.mu.Lock()
	if c.running == 0 {
		c.closeWriteLocked()
	}
	c.mu.Unlock()
}

// closeWriteLocked ends the write side after a GOAWAY and gives the reader
// a second to read what the client still sends (closing at once could
// reset the connection before the client read the last answers). Under mu.
func (c *conn) closeWriteLocked() {
	if c.closing || c.closed {
		return
	}
	c.closing = true
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		// Not under mu: a write may hold wmu. closed is false, so serve
		// has not reached bg.Wait yet.
		c.bg.Go(func() {
			c.wmu.Lock()
			_ = cw.CloseWrite()
			c.wmu.Unlock()
		})
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(time.Second))
}

// goAway writes GOAWAY code with the last stream taken, ending the
// connection (the caller returns from serve). Then it closes the write
// side and drops what the client still sends for up to a second: closing
// with unread bytes would reset the connection, and the client could lose
// the GOAWAY with the bytes it had not read yet.
func (c *conn) goAway(code http2.ErrCode) {
	if c.write(true, func() error { return c.fr.WriteGoAway(c.lastID.Load(), code, nil) }) != nil {
		return
	}
	c.mu.Lock()
	c.closeWriteLocked()
	c.mu.Unlock()
	_ = c.nc.SetReadDeadline(time.Now().Add(time.Second))
	_, _ = io.Copy(io.Discard, c.br)
}

// abort closes the connection at once (Shutdown past its context): the
// TCP connection under TLS, so that a write blocked on a client that does
// not read fails now (tls.Conn.Close would wait for it, then try to send
// close_notify).
func (c *conn) abort() {
	c.mu.Lock()
	streams := c.streamsLocked()
	c.mu.Unlock()
	for _, st := range streams {
		st.ctx.cancel()
	}
	closeNow(c.nc)
}

// streamsLocked returns the streams whose handler runs and that are not
// reset (those have their context cancelled already). Under mu.
func (c *conn) streamsLocked() []*stream {
	streams := make([]*stream, 0, len(c.streams))
	for _, st := range c.streams {
		streams = append(streams, st)
	}
	return streams
}

// closeNow closes c and, under TLS, the connection beneath first.
func closeNow(c net.Conn) {
	if tc, ok := c.(interface{ NetConn() net.Conn }); ok {
		_ = tc.NetConn().Close()
	}
	_ = c.Close()
}

// close ends the connection: every stream's writes and reads fail and the
// contexts are cancelled.
func (c *conn) close() {
	c.mu.Lock()
	c.closed = true
	streams := c.streamsLocked()
	c.cond.Broadcast()
	c.mu.Unlock()
	for _, st := range streams {
		if b := st.body; b != nil {
			b.mu.Lock()
			c.endRecvLocked(b, errConnClosed)
			b.mu.Unlock()
		}
		st.ctx.cancel()
	}
	_ = c.nc.Close()
}

// write runs fn under wmu with the write deadline set, and flushes if
// flush, unless another write that will flush waits for wmu. fn returns
// errStreamReset, having written nothing, for a stream gone; any other
// error of fn or the flush closes the connection, and later writes fail
// at once.
func (c *conn) write(flush bool, fn func() error) error {
	if flush {
		c.flushers.Add(1)
	}
	c.wmu.Lock()
	if flush {
		c.flushers.Add(-1)
	}
	defer c.wmu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	// The deadline is set again once it is older than a tenth of the
	// timeout (at most a second): every write still gets at least 90 %
	// of WriteTimeout, and most cost no timer update.
	if now := time.Now(); now.Sub(c.wdeadline) > min(time.Second, c.wtimeout/10) {
		_ = c.nc.SetWriteDeadline(now.Add(c.wtimeout))
		c.wdeadline = now
	}
	err := fn()
	if err != nil && !errors.Is(err, errStreamReset) {
		c.failWriteLocked(err)
		return err
	}
	if flush && c.flushers.Load() == 0 {
		// Flush even when fn wrote nothing: an earlier write may have
		// left its frames to this one.
		if ferr := c.bw.Flush(); ferr != nil {
			c.failWriteLocked(ferr)
			return ferr
		}
		c.unflushed.Store(false)
	} else {
		c.unflushed.Store(true)
	}
	return err
}

// failWriteLocked records a failed write and closes the connection. Under wmu.
func (c *conn) failWriteLocked(err error) {
	c.werr = err
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.s.count(ReasonWriteTimeout)
		c.log.Debug("h2: write timeout", "remote", c.remoteAddr)
	}
	closeNow(c.nc)
}

// writeCtl writes a control frame from the reader goroutine, flushed
// before the reader next blocks. The write buffer bounds what a client
// that does not read can make queue: once it is full, the write waits
// WriteTimeout and then ends the connection.
func (c *conn) writeCtl(fn func() error) { _ = c.write(false, fn) }

func (c *conn) writeRST(id uint32, code http2.ErrCode) {
	c.writeCtl(func() error { return c.fr.WriteRSTStream(id, code) })
}
