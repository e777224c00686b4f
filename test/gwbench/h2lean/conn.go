package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// What this server announces in its SETTINGS, and the bounds it keeps.
const (
	maxStreams    = 100      // SETTINGS_MAX_CONCURRENT_STREAMS
	maxHeaderList = 64 << 10 // SETTINGS_MAX_HEADER_LIST_SIZE, enforced by the Framer
	maxFrame      = 16384    // SETTINGS_MAX_FRAME_SIZE: the protocol's default, not announced
	// recvWindow is the receive window of the connection and of every
	// stream (SETTINGS_INITIAL_WINDOW_SIZE): a request body fits in one
	// stream window, so streams never need a WINDOW_UPDATE, and a body
	// larger than it breaks flow control and gets FLOW_CONTROL_ERROR.
	recvWindow = 1 << 20
	// maxRunning bounds the handlers running on a connection, reset
	// streams' included: a client that opens and resets streams faster
	// than they finish (CVE-2023-44487) gets GOAWAY ENHANCE_YOUR_CALM.
	maxRunning = 2 * maxStreams
)

// request is one stream's request: pseudo-header fields, the others as
// decoded (lower-case names), and the body, whole.
type request struct {
	method, scheme, authority, path string
	header                          []hpack.HeaderField
	body                            []byte
}

// response is what a handler answers: header names in lower case,
// without hop-by-hop fields; the body is sent with a content-length.
type response struct {
	status int
	header []hpack.HeaderField
	body   []byte
}

// handler answers a request. It runs on the connection's reader
// goroutine (inline) or on a goroutine of the stream's own, and must be
// safe for concurrent use.
type handler func(*request) *response

// stream is an open stream of a connection.
type stream struct {
	id      uint32
	req     request
	wantLen int64 // the request's content-length, -1 without one; reader only

	sendWindow int64 // guarded by conn.mu
	reset      bool  // guarded by conn.mu: the client reset it, or the connection ended
}

// conn is one HTTP/2 connection. Its reader goroutine (serve) reads every
// frame; responses are written by the handler that made them, under wmu,
// HEADERS and as much DATA as the windows allow in one flush.
type conn struct {
	nc net.Conn
	br *bufio.Reader
	h  handler
	// inline serves a request on the reader goroutine when it is the
	// connection's only running handler and no more bytes are buffered;
	// otherwise, or always without inline, a goroutine a stream.
	inline bool

	wmu  sync.Mutex    // guards bw, fr's writes, henc and hbuf
	bw   *bufio.Writer // guarded by wmu
	fr   *http2.Framer // reads: the reader goroutine only; writes: under wmu
	henc *hpack.Encoder
	hbuf bytes.Buffer

	mu         sync.Mutex
	cond       *sync.Cond         // on mu: a send window grew, a stream was reset, the connection closed
	streams    map[uint32]*stream // guarded by mu: streams opened and not yet answered or reset
	sendWindow int64              // guarded by mu: the connection's send window
	initWindow int64              // guarded by mu: the peer's SETTINGS_INITIAL_WINDOW_SIZE
	peerFrame  int                // guarded by mu: the peer's SETTINGS_MAX_FRAME_SIZE
	running    int                // guarded by mu: handlers running, reset streams' included
	closed     bool               // guarded by mu

	// The reader goroutine's own.
	lastID   uint32             // the highest stream opened
	bodies   map[uint32]*stream // streams whose request body is still arriving
	unacked  int                // DATA bytes consumed and not yet given back by WINDOW_UPDATE
	recvLeft int                // the connection's receive window left
}

var errPreface = errors.New("h2lean: bad client preface")

func newConn(nc net.Conn, h handler, inline bool) *conn {
	c := &conn{
		nc: nc, br: bufio.NewReaderSize(nc, 16<<10), bw: bufio.NewWriterSize(nc, 16<<10), h: h, inline: inline,
		streams: map[uint32]*stream{}, bodies: map[uint32]*stream{},
		sendWindow: 65535, initWindow: 65535, peerFrame: 16384, recvLeft: recvWindow,
	}
	c.cond = sync.NewCond(&c.mu)
	c.fr = http2.NewFramer(c.bw, c.br)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = maxHeaderList
	c.fr.SetMaxReadFrameSize(maxFrame)
	c.fr.SetReuseFrames()
	c.henc = hpack.NewEncoder(&c.hbuf)
	return c
}

// serve reads the connection until it ends and closes it.
func (c *conn) serve() error {
	defer c.close()
	var preface [len(http2.ClientPreface)]byte
	if _, err := io.ReadFull(c.br, preface[:]); err != nil {
		return err
	}
	if string(preface[:]) != http2.ClientPreface {
		return errPreface
	}
	c.wmu.Lock()
	err := c.fr.WriteSettings(
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: maxStreams},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: recvWindow},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: maxHeaderList},
	)
	if err == nil {
		err = c.fr.WriteWindowUpdate(0, recvWindow-65535)
	}
	if err == nil {
		err = c.bw.Flush()
	}
	c.wmu.Unlock()
	if err != nil {
		return err
	}
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				c.endBody(se.StreamID)
				if err := c.writeFrames(func() error { return c.fr.WriteRSTStream(se.StreamID, se.Code) }); err != nil {
					return err
				}
				continue
			}
			var ce http2.ConnectionError
			if errors.As(err, &ce) {
				return c.goAway(http2.ErrCode(ce), err)
			}
			return err
		}
		if err := c.frame(f); err != nil {
			return err
		}
	}
}

// connError is a connection error found by frame: GOAWAY with its code.
type connError struct {
	code   http2.ErrCode
	reason string
}

func (e connError) Error() string { return "h2lean: " + e.code.String() + ": " + e.reason }

// frame handles one frame read; an error ends the connection.
func (c *conn) frame(f http2.Frame) error {
	var err error
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		err = c.headers(f)
	case *http2.DataFrame:
		err = c.data(f)
	case *http2.SettingsFrame:
		err = c.settings(f)
	case *http2.PingFrame:
		if !f.IsAck() {
			err = c.writeFrames(func() error { return c.fr.WritePing(true, f.Data) })
		}
	case *http2.WindowUpdateFrame:
		err = c.windowUpdate(f)
	case *http2.RSTStreamFrame:
		if f.StreamID > c.lastID {
			err = connError{http2.ErrCodeProtocol, "RST_STREAM on an idle stream"}
			break
		}
		c.endBody(f.StreamID)
		c.mu.Lock()
		if st := c.streams[f.StreamID]; st != nil {
			st.reset = true
			delete(c.streams, f.StreamID)
			c.cond.Broadcast()
		}
		c.mu.Unlock()
	case *http2.GoAwayFrame:
		// The client will open no more streams; the ones open finish.
	case *http2.PushPromiseFrame:
		err = connError{http2.ErrCodeProtocol, "PUSH_PROMISE from a client"}
	case *http2.PriorityFrame:
		if f.StreamID == f.StreamDep {
			c.endBody(f.StreamID)
			err = c.writeFrames(func() error { return c.fr.WriteRSTStream(f.StreamID, http2.ErrCodeProtocol) })
		}
		// Otherwise ignored, as RFC 9113 allows.
	}
	var ce connError
	if errors.As(err, &ce) {
		return c.goAway(ce.code, err)
	}
	return err
}

func (c *conn) headers(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	if id%2 == 0 {
		return connError{http2.ErrCodeProtocol, "HEADERS on an even stream"}
	}
	if id <= c.lastID {
		if st := c.bodies[id]; st != nil && f.StreamEnded() { // trailers: ignored
			delete(c.bodies, id)
			return c.ended(st)
		}
		if st := c.bodies[id]; st != nil {
			return connError{http2.ErrCodeProtocol, "trailers without END_STREAM"}
		}
		return connError{http2.ErrCodeStreamClosed, "HEADERS on a closed stream"}
	}
	c.lastID = id
	if f.Truncated {
		return c.writeFrames(func() error { return c.writeHeaderBlock(id, &response{status: 431}, true) })
	}
	if f.HasPriority() && f.Priority.StreamDep == id {
		return c.writeFrames(func() error { return c.fr.WriteRSTStream(id, http2.ErrCodeProtocol) })
	}
	st := &stream{id: id, wantLen: -1, req: request{
		method: f.PseudoValue("method"), scheme: f.PseudoValue("scheme"),
		authority: f.PseudoValue("authority"), path: f.PseudoValue("path"),
	}}
	if !st.valid(f) {
		return c.writeFrames(func() error { return c.fr.WriteRSTStream(id, http2.ErrCodeProtocol) })
	}
	st.req.header = append([]hpack.HeaderField(nil), f.RegularFields()...)
	c.mu.Lock()
	open := len(c.streams)
	if open < maxStreams {
		st.sendWindow = c.initWindow
		c.streams[id] = st
	}
	c.mu.Unlock()
	if open >= maxStreams {
		return c.writeFrames(func() error { return c.fr.WriteRSTStream(id, http2.ErrCodeRefusedStream) })
	}
	if !f.StreamEnded() {
		c.bodies[id] = st
		return nil
	}
	return c.ended(st)
}

// valid reports whether f's request is well-formed for this server (the
// Framer checked the rest), and takes its content-length.
func (st *stream) valid(f *http2.MetaHeadersFrame) bool {
	r := &st.req
	if r.method == "" || r.scheme == "" || r.path == "" || r.method == "CONNECT" || f.PseudoValue("status") != "" || f.PseudoValue("protocol") != "" {
		return false
	}
	for _, hf := range f.RegularFields() {
		if hf.Name == "connection" || hf.Name == "te" && hf.Value != "trailers" {
			return false
		}
		if hf.Name == "content-length" {
			n, err := strconv.ParseInt(hf.Value, 10, 64)
			if err != nil || n < 0 || st.wantLen >= 0 {
				return false
			}
			st.wantLen = n
		}
	}
	return true
}

// ended dispatches a stream whose request is complete, or resets it with
// PROTOCOL_ERROR if its body's length is not its content-length.
func (c *conn) ended(st *stream) error {
	if st.wantLen >= 0 && int64(len(st.req.body)) != st.wantLen {
		c.resetLocal(st)
		return c.writeFrames(func() error { return c.fr.WriteRSTStream(st.id, http2.ErrCodeProtocol) })
	}
	c.dispatch(st)
	return nil
}

func (c *conn) data(f *http2.DataFrame) error {
	n := int(f.Length) // padding included, as flow control counts it
	if c.recvLeft -= n; c.recvLeft < 0 {
		return connError{http2.ErrCodeFlowControl, "DATA past the connection window"}
	}
	// The connection's window is given back at once: a stream's data is
	// bounded by its own window.
	if c.unacked += n; c.unacked >= recvWindow/2 {
		inc := c.unacked
		c.unacked, c.recvLeft = 0, c.recvLeft+inc
		if err := c.writeFrames(func() error { return c.fr.WriteWindowUpdate(0, uint32(inc)) }); err != nil {
			return err
		}
	}
	id := f.StreamID
	st := c.bodies[id]
	if st == nil {
		if id > c.lastID {
			return connError{http2.ErrCodeProtocol, "DATA on an idle stream"}
		}
		return c.writeFrames(func() error { return c.fr.WriteRSTStream(id, http2.ErrCodeStreamClosed) })
	}
	if st.wantLen >= 0 && int64(len(st.req.body)+len(f.Data())) > st.wantLen {
		c.endBody(id)
		c.resetLocal(st)
		return c.writeFrames(func() error { return c.fr.WriteRSTStream(id, http2.ErrCodeProtocol) })
	}
	if len(st.req.body)+len(f.Data()) > recvWindow {
		c.endBody(id)
		c.resetLocal(st)
		return c.writeFrames(func() error { return c.fr.WriteRSTStream(id, http2.ErrCodeFlowControl) })
	}
	st.req.body = append(st.req.body, f.Data()...)
	if f.StreamEnded() {
		delete(c.bodies, id)
		return c.ended(st)
	}
	return nil
}

// endBody forgets a stream whose body was arriving.
func (c *conn) endBody(id uint32) { delete(c.bodies, id) }

// resetLocal closes a stream this side reset.
func (c *conn) resetLocal(st *stream) {
	c.mu.Lock()
	st.reset = true
	delete(c.streams, st.id)
	c.mu.Unlock()
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
			return connError{code, "bad setting " + s.String()}
		}
		switch s.ID {
		case http2.SettingInitialWindowSize:
			c.mu.Lock()
			delta := int64(s.Val) - c.initWindow
			c.initWindow = int64(s.Val)
			for _, st := range c.streams {
				if st.sendWindow += delta; st.sendWindow > 1<<31-1 {
					c.mu.Unlock()
					return connError{http2.ErrCodeFlowControl, "a stream window past 2^31-1"}
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
	return c.writeFrames(c.fr.WriteSettingsAck)
}

func (c *conn) windowUpdate(f *http2.WindowUpdateFrame) error {
	inc := int64(f.Increment)
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.StreamID == 0 {
		if c.sendWindow += inc; c.sendWindow > 1<<31-1 {
			return connError{http2.ErrCodeFlowControl, "the connection window past 2^31-1"}
		}
		c.cond.Broadcast()
		return nil
	}
	st := c.streams[f.StreamID]
	if st == nil {
		if f.StreamID > c.lastID {
			return connError{http2.ErrCodeProtocol, "WINDOW_UPDATE on an idle stream"}
		}
		return nil // a stream answered or reset: the update comes late
	}
	if st.sendWindow += inc; st.sendWindow > 1<<31-1 {
		st.reset = true
		delete(c.streams, st.id)
		c.cond.Broadcast()
		go func() {
			_ = c.writeFrames(func() error { return c.fr.WriteRSTStream(st.id, http2.ErrCodeFlowControl) })
		}()
		return nil
	}
	c.cond.Broadcast()
	return nil
}

// dispatch runs a stream's handler, inline or on a goroutine of its own.
func (c *conn) dispatch(st *stream) {
	c.mu.Lock()
	c.running++
	running := c.running
	c.mu.Unlock()
	if running > maxRunning {
		c.resetLocal(st)
		c.finish()
		_ = c.goAway(http2.ErrCodeEnhanceYourCalm, errors.New("h2lean: too many handlers running"))
		_ = c.nc.Close() // the reader's next read fails and ends the connection
		return
	}
	if c.inline && running == 1 && c.br.Buffered() == 0 {
		c.respond(st, true)
		return
	}
	go c.respond(st, false)
}

// respond runs the handler and writes its answer. Inline, it never waits
// for a send window: what does not fit is sent from a goroutine.
func (c *conn) respond(st *stream, inline bool) {
	r := c.h(&st.req)
	body := r.body
	c.mu.Lock()
	reset := st.reset || c.closed
	n := c.takeLocked(st, len(body))
	frame := c.peerFrame
	c.mu.Unlock()
	if reset {
		c.finish()
		return
	}
	err := c.writeFrames(func() error {
		if err := c.writeHeaderBlock(st.id, r, len(body) == 0); err != nil {
			return err
		}
		return c.writeData(st.id, body[:n], n == len(body), frame)
	})
	body = body[n:]
	if err != nil || len(body) == 0 {
		c.done(st)
		return
	}
	if inline {
		go c.sendRest(st, body)
		return
	}
	c.sendRest(st, body)
}

// sendRest writes the rest of a body as the send windows open.
func (c *conn) sendRest(st *stream, body []byte) {
	defer c.done(st)
	for len(body) > 0 {
		c.mu.Lock()
		for !st.reset && !c.closed && (c.sendWindow <= 0 || st.sendWindow <= 0) {
			c.cond.Wait()
		}
		if st.reset || c.closed {
			c.mu.Unlock()
			return
		}
		n := c.takeLocked(st, len(body))
		frame := c.peerFrame
		c.mu.Unlock()
		if err := c.writeFrames(func() error { return c.writeData(st.id, body[:n], n == len(body), frame) }); err != nil {
			return
		}
		body = body[n:]
	}
}

// takeLocked takes up to want bytes of both send windows.
func (c *conn) takeLocked(st *stream, want int) int {
	n := int64(want)
	n = min(n, c.sendWindow, st.sendWindow)
	if n < 0 {
		n = 0
	}
	c.sendWindow -= n
	st.sendWindow -= n
	return int(n)
}

// done closes an answered stream.
func (c *conn) done(st *stream) {
	c.mu.Lock()
	delete(c.streams, st.id)
	c.mu.Unlock()
	c.finish()
}

// finish counts a handler out.
func (c *conn) finish() {
	c.mu.Lock()
	c.running--
	c.mu.Unlock()
}

// writeFrames writes with fn under wmu and flushes.
func (c *conn) writeFrames(fn func() error) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := fn(); err != nil {
		return err
	}
	return c.bw.Flush()
}

// writeHeaderBlock encodes r's status and header, with a content-length,
// as HEADERS and CONTINUATION frames. Under wmu.
func (c *conn) writeHeaderBlock(id uint32, r *response, end bool) error {
	c.hbuf.Reset()
	var num [20]byte
	_ = c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: statusText(r.status)})
	for _, hf := range r.header {
		_ = c.henc.WriteField(hf)
	}
	_ = c.henc.WriteField(hpack.HeaderField{Name: "content-length", Value: string(strconv.AppendInt(num[:0], int64(len(r.body)), 10))})
	block := c.hbuf.Bytes()
	first := block[:min(len(block), maxFrame)]
	block = block[len(first):]
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndStream: end, EndHeaders: len(block) == 0}); err != nil {
		return err
	}
	for len(block) > 0 {
		part := block[:min(len(block), maxFrame)]
		block = block[len(part):]
		if err := c.fr.WriteContinuation(id, len(block) == 0, part); err != nil {
			return err
		}
	}
	return nil
}

// writeData writes p in DATA frames of at most frame bytes, the last one
// ending the stream if end. Under wmu.
func (c *conn) writeData(id uint32, p []byte, end bool, frame int) error {
	for len(p) > 0 {
		k := min(len(p), frame)
		if err := c.fr.WriteData(id, end && k == len(p), p[:k]); err != nil {
			return err
		}
		p = p[k:]
	}
	return nil
}

// statusText is a status code's digits, without allocating for the usual ones.
func statusText(code int) string {
	switch code {
	case 200:
		return "200"
	case 404:
		return "404"
	case 502:
		return "502"
	}
	return strconv.Itoa(code)
}

// goAway writes GOAWAY with code and returns why.
func (c *conn) goAway(code http2.ErrCode, why error) error {
	_ = c.writeFrames(func() error { return c.fr.WriteGoAway(c.lastIDSafe(), code, nil) })
	return why
}

// lastIDSafe is lastID for GOAWAY: read on the reader goroutine, or after
// it, so without a lock.
func (c *conn) lastIDSafe() uint32 { return c.lastID }

// close ends the connection and wakes the writers that wait for windows.
func (c *conn) close() {
	c.mu.Lock()
	c.closed = true
	c.cond.Broadcast()
	c.mu.Unlock()
	_ = c.nc.Close()
}
