package h2

import (
	"errors"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// stream is a request the client opened and its handler.
type stream struct {
	c    *conn
	id   uint32
	req  *http.Request
	body *body          // nil when the request has none
	ctx  streamContext  // the request's
	w    responseWriter // the handler's

	sendWindow int64 // guarded by c.mu
	reset      bool  // guarded by c.mu: reset by either side, or done: no more frames for it
}

// body is a request body: what DATA frames brought and the handler has not
// read yet. Its buffer is bounded by the stream's receive window, given
// back (WINDOW_UPDATE) as the handler reads.
type body struct {
	st   *stream
	mu   sync.Mutex
	cond sync.Cond // on mu: data arrived, the body ended, a read deadline passed

	buf        []byte      // guarded by mu: received, unread from off
	off        int         // guarded by mu
	err        error       // guarded by mu: io.EOF once END_STREAM came and buf is read, or why the body failed
	recvClosed bool        // guarded by mu: no more DATA is accepted (END_STREAM, reset)
	closed     bool        // guarded by mu: the handler closed the body or returned; DATA is dropped
	recvAvail  int64       // guarded by mu: the stream's receive window left
	unacked    int64       // guarded by mu: bytes read (or padding) not yet given back
	want, got  int64       // guarded by mu: content-length (-1 without) and the DATA bytes received
	deadline   time.Time   // guarded by mu: SetReadDeadline's
	timer      *time.Timer // guarded by mu: fires at deadline
	timedOut   bool        // guarded by mu

	// trailer is Request.Trailer, the handler's: the values the client
	// sent (sent, from the reader) are copied into it by the Read that
	// returns io.EOF, on the handler's goroutine, as net/http does.
	trailer  http.Header
	declared http.Header // the trailer names the Trailer field declared, the reader's copy
	sent     http.Header // guarded by mu
}

// Read reads the body as DATA frames bring it.
func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	for b.off == len(b.buf) && b.err == nil && !b.closed && !b.timedOut {
		b.cond.Wait()
	}
	switch {
	case b.closed && b.off == len(b.buf) && b.err == nil:
		b.mu.Unlock()
		return 0, http.ErrBodyReadAfterClose
	case b.off == len(b.buf) && b.err == nil && b.timedOut:
		b.mu.Unlock()
		return 0, errDeadline
	case b.off == len(b.buf):
		err := b.err
		if errors.Is(err, io.EOF) && b.sent != nil {
			for k, vv := range b.sent {
				b.trailer[k] = vv
			}
			b.sent = nil
		}
		b.mu.Unlock()
		return 0, err
	}
	n := copy(p, b.buf[b.off:])
	b.off += n
	if b.off == len(b.buf) {
		b.buf, b.off = b.buf[:0], 0
	}
	b.unacked += int64(n)
	var inc int64
	c := b.st.c
	if !b.recvClosed && b.unacked >= c.streamWindow/2 {
		inc, b.unacked = b.unacked, 0
		b.recvAvail += inc
	}
	b.mu.Unlock()
	if inc > 0 {
		id := b.st.id
		_ = c.write(true, func() error { return c.fr.WriteWindowUpdate(id, uint32(inc)) })
	}
	c.consumed(int64(n))
	return n, nil
}

// Close drops what is buffered; DATA still arriving is dropped too.
func (b *body) Close() error {
	b.mu.Lock()
	unread := int64(len(b.buf) - b.off)
	b.buf, b.off, b.closed = nil, 0, true
	b.cond.Broadcast()
	b.mu.Unlock()
	b.st.c.consumed(unread)
	return nil
}

// setDeadline makes a blocked Read fail with os.ErrDeadlineExceeded at t.
func (b *body) setDeadline(t time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.deadline, b.timedOut = t, false
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	switch d := time.Until(t); {
	case t.IsZero():
	case d <= 0:
		b.timedOut = true
		b.cond.Broadcast()
	default:
		b.timer = time.AfterFunc(d, func() {
			b.mu.Lock()
			if b.deadline.Equal(t) {
				b.timedOut = true
				b.cond.Broadcast()
			}
			b.mu.Unlock()
		})
	}
}

// headers handles a HEADERS frame (with its CONTINUATIONs): a new request,
// or a request's trailers.
func (c *conn) headers(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	if id%2 == 0 {
		return connError{http2.ErrCodeProtocol, ReasonProtocol, "HEADERS on an even stream"}
	}
	if id <= c.lastID.Load() {
		st := c.lookup(id)
		if st == nil || st.body == nil {
			return connError{http2.ErrCodeStreamClosed, ReasonProtocol, "HEADERS on a closed stream"}
		}
		return c.trailers(st, f)
	}
	c.lastID.Store(id)
	c.mu.Lock()
	goingAway := c.goingAway
	c.mu.Unlock()
	if goingAway {
		return nil // past the GOAWAY's last stream: ignored, the client retries elsewhere
	}
	if f.HasPriority() && f.Priority.StreamDep == id {
		c.writeRST(id, http2.ErrCodeProtocol)
		return nil
	}
	if f.Truncated {
		c.s.count(ReasonHeaderListTooLong)
		c.log.Debug("h2: request header list too long", "remote", c.remoteAddr, "limit", c.s.maxHeaderList())
		c.answerAndClose(id, http.StatusRequestHeaderFieldsTooLarge, !f.StreamEnded())
		return nil
	}
	st := &stream{c: c, id: id}
	status, ok := c.newRequest(st, f)
	if !ok {
		c.s.count(ReasonMalformedRequest)
		c.log.Debug("h2: malformed request", "remote", c.remoteAddr, "stream", id)
		if status != 0 {
			c.answerAndClose(id, status, !f.StreamEnded())
		} else {
			c.writeRST(id, http2.ErrCodeProtocol)
		}
		return nil
	}
	if c.s.testHookOpen != nil {
		c.s.testHookOpen(c)
	}
	c.mu.Lock()
	switch {
	case c.goingAway:
		// GOAWAY went out since the check above, with a last stream
		// below this one: the client will retry it elsewhere.
		c.mu.Unlock()
		st.ctx.cancel()
		return nil
	case len(c.streams) >= c.maxStreams:
		c.mu.Unlock()
		st.ctx.cancel()
		c.s.count(ReasonRefusedStream)
		c.log.Debug("h2: stream refused: max concurrent streams", "remote", c.remoteAddr, "limit", c.maxStreams)
		c.writeRST(id, http2.ErrCodeRefusedStream)
		return nil
	case c.running >= 2*c.maxStreams:
		c.mu.Unlock()
		st.ctx.cancel()
		return connError{http2.ErrCodeEnhanceYourCalm, ReasonRapidReset, "too many handlers running (streams reset and reopened)"}
	}
	st.sendWindow = c.initWindow
	c.accepted = id
	c.streams[id] = st
	c.running++
	if c.running == 1 {
		c.s.idleChanged(c.nc, false)
	}
	if c.idle != nil {
		c.idle.Stop()
	}
	c.mu.Unlock()
	if st.body != nil {
		c.awaiting.Add(1)
	}
	c.startHandler(st)
	return nil
}

// trailers handles the HEADERS that end a request body.
func (c *conn) trailers(st *stream, f *http2.MetaHeadersFrame) error {
	b := st.body
	if !f.StreamEnded() {
		return connError{http2.ErrCodeProtocol, ReasonProtocol, "trailers without END_STREAM"}
	}
	if len(f.PseudoFields()) > 0 {
		c.s.count(ReasonMalformedRequest)
		c.resetStream(st, http2.ErrCodeProtocol, true)
		return nil
	}
	b.mu.Lock()
	if b.recvClosed {
		b.mu.Unlock()
		return connError{http2.ErrCodeStreamClosed, ReasonProtocol, "HEADERS on a half-closed stream"}
	}
	if b.want >= 0 && b.got != b.want {
		b.mu.Unlock()
		c.s.count(ReasonMalformedRequest)
		c.resetStream(st, http2.ErrCodeProtocol, true)
		return nil
	}
	for _, hf := range f.RegularFields() {
		k := textproto.CanonicalMIMEHeaderKey(hf.Name)
		if _, declared := b.declared[k]; declared {
			if b.sent == nil {
				b.sent = http.Header{}
			}
			b.sent[k] = append(b.sent[k], hf.Value)
		}
	}
	c.endRecvLocked(b, nil)
	b.mu.Unlock()
	return nil
}

// answerAndClose answers a stream with a bare status (431, 501) and, if
// the client is still sending, resets it.
func (c *conn) answerAndClose(id uint32, status int, open bool) {
	c.writeCtl(func() error {
		c.hbuf.Reset()
		_ = c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: strconv.Itoa(status)})
		_ = c.henc.WriteField(hpack.HeaderField{Name: "content-length", Value: "0"})
		if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
			return err
		}
		if open {
			return c.fr.WriteRSTStream(id, http2.ErrCodeNo)
		}
		return nil
	})
}

// connectionSpecific are the fields RFC 9113 §8.2.2 forbids in HTTP/2.
var connectionSpecific = map[string]bool{
	"connection": true, "proxy-connection": true, "keep-alive": true, "transfer-encoding": true, "upgrade": true,
}

// newRequest builds st's request from f as net/http's HTTP/2 server does.
// Not ok: malformed, with a status to answer (CONNECT: 501) or 0 for
// RST_STREAM PROTOCOL_ERROR.
func (c *conn) newRequest(st *stream, f *http2.MetaHeadersFrame) (status int, ok bool) {
	p, ok := pseudo(f)
	if !ok {
		return 0, false
	}
	if status, ok := p.check(); !ok {
		return status, false
	}
	h, want, ok := regularFields(f.RegularFields(), &p.authority)
	if !ok || !p.authorityValid() {
		return 0, false
	}
	var u *url.URL
	if p.path == "*" {
		u = &url.URL{Path: "*"}
	} else {
		var err error
		if u, err = url.ParseRequestURI(p.path); err != nil {
			return 0, false
		}
	}
	ended := f.StreamEnded()
	if ended && want > 0 {
		return 0, false // a content-length with no DATA to come
	}
	r := &http.Request{
		Method: p.method, URL: u, RequestURI: p.path, Host: p.authority,
		Proto: "HTTP/2.0", ProtoMajor: 2, ProtoMinor: 0,
		Header: h, RemoteAddr: c.remoteAddr, TLS: c.tls,
	}
	if ended {
		r.Body, r.ContentLength = http.NoBody, 0
	} else {
		b := &body{st: st, want: want, recvAvail: c.streamWindow, trailer: declaredTrailers(h), declared: declaredTrailers(h)}
		b.cond.L = &b.mu
		st.body = b
		r.Body, r.ContentLength, r.Trailer = b, want, b.trailer
	}
	st.req = r.WithContext(&st.ctx)
	return 0, true
}

// pseudoFields are a request's pseudo-header fields.
type pseudoFields struct{ method, scheme, authority, path string }

// check reports whether a request's pseudo-header fields may be served:
// not ok for a malformed request, with a status to answer (CONNECT: 501)
// or 0 for RST_STREAM PROTOCOL_ERROR. The authority is checked apart
// (authorityValid), once a host field may have given it.
func (p pseudoFields) check() (status int, ok bool) {
	if p.method == "CONNECT" {
		if p.scheme != "" || p.path != "" || p.authority == "" {
			return 0, false
		}
		return http.StatusNotImplemented, false // no tunnels, no extended CONNECT
	}
	// :scheme http or https, as net/http's server wants; :path in origin
	// form, or * for OPTIONS (RFC 9113 §8.3.1): an absolute or opaque
	// form would be routed and checked as one target and reach the
	// upstream as another.
	if p.method == "" || p.scheme != "https" && p.scheme != "http" || p.path == "" ||
		p.path[0] != '/' && (p.path != "*" || p.method != http.MethodOptions) {
		return 0, false
	}
	return 0, true
}

// authorityValid reports whether the authority (from :authority or the
// host field) has no userinfo (RFC 9113 §8.3.1) and is a valid Host, as
// net/http's HTTP/1 server wants: net/http's Transport would send none.
func (p pseudoFields) authorityValid() bool {
	return strings.IndexByte(p.authority, '@') < 0 && httpguts.ValidHostHeader(p.authority)
}

// pseudo takes f's pseudo-header fields; not ok with :status, or
// :protocol (SETTINGS_ENABLE_CONNECT_PROTOCOL is not announced).
func pseudo(f *http2.MetaHeadersFrame) (p pseudoFields, ok bool) {
	for _, hf := range f.PseudoFields() {
		switch hf.Name {
		case ":method":
			p.method = hf.Value
		case ":scheme":
			p.scheme = hf.Value
		case ":authority":
			p.authority = hf.Value
		case ":path":
			p.path = hf.Value
		default:
			return p, false
		}
	}
	return p, true
}

// regularFields makes a request's Header from its fields (cookie fields
// joined, no Host) and takes its content-length (-1 without); authority is
// set from host when empty. Not ok with a connection-specific field or a
// bad content-length.
func regularFields(fields []hpack.HeaderField, authority *string) (h http.Header, want int64, ok bool) {
	h = make(http.Header, len(fields))
	want = -1
	var cookies []string
	// A field's first value is a one-value slice of one array: one
	// allocation, not one a field; a repeated field's append copies.
	slots := make([]string, len(fields))
	for i, hf := range fields {
		if hf.Name == "cookie" {
			cookies = append(cookies, hf.Value)
			continue
		}
		keep, ok := requestField(hf, &want, authority)
		if !ok {
			return nil, 0, false
		}
		if !keep {
			continue
		}
		k := textproto.CanonicalMIMEHeaderKey(hf.Name)
		if prior, ok := h[k]; ok {
			h[k] = append(prior, hf.Value)
		} else {
			slots[i] = hf.Value
			h[k] = slots[i : i+1 : i+1]
		}
	}
	if len(cookies) > 0 {
		h["Cookie"] = []string{strings.Join(cookies, "; ")}
	}
	return h, want, true
}

// requestField checks one regular field of a request: not ok for a
// connection-specific field, te other than trailers, or a content-length
// not all digits or repeated with another value. It takes content-length
// into *want and host into *authority when that is empty; keep reports
// whether the field goes into the request's header (host does not).
func requestField(hf hpack.HeaderField, want *int64, authority *string) (keep, ok bool) {
	switch {
	case connectionSpecific[hf.Name], hf.Name == "te" && hf.Value != "trailers":
		return false, false
	case hf.Name == "content-length":
		n, err := strconv.ParseUint(hf.Value, 10, 63) // digits only: no sign
		if err != nil || *want >= 0 && int64(n) != *want {
			return false, false
		}
		*want = int64(n)
	case hf.Name == "host":
		if *authority == "" {
			*authority = hf.Value
		}
		return false, true
	}
	return true, true
}

// declaredTrailers is Request.Trailer before the body ends: the keys the
// Trailer field declares, without values; nil without any.
func declaredTrailers(h http.Header) http.Header {
	var t http.Header
	for _, v := range h["Trailer"] {
		for k := range strings.SplitSeq(v, ",") {
			k = textproto.CanonicalMIMEHeaderKey(textproto.TrimString(k))
			switch k {
			case "", "Transfer-Encoding", "Trailer", "Content-Length":
			default:
				if t == nil {
					t = http.Header{}
				}
				t[k] = nil
			}
		}
	}
	return t
}

// runHandler runs the stream's handler and ends the stream.
func (c *conn) runHandler(st *stream) {
	st.w = responseWriter{st: st, c: c, isHead: st.req.Method == http.MethodHead, declared: -1}
	w := &st.w
	completed := false
	defer func() {
		if p := recover(); p != nil {
			if err, ok := p.(error); !ok || !errors.Is(err, http.ErrAbortHandler) {
				c.s.count(ReasonHandlerPanic)
				c.log.Error("h2: handler panic", "remote", c.remoteAddr, "path", st.req.URL.Path, "panic", p, "stack", string(debug.Stack()))
			}
		}
		c.endStream(st, w, completed)
	}()
	h := c.s.Handler
	if h == nil {
		h = http.NotFoundHandler()
	}
	h.ServeHTTP(w, st.req)
	w.finish()
	completed = true
}

// endStream ends a stream whose handler returned: the body is dropped, and
// the stream reset if its answer is not complete (INTERNAL_ERROR) or the
// client is still sending (NO_ERROR).
func (c *conn) endStream(st *stream, w *responseWriter, completed bool) {
	sending := false
	if b := st.body; b != nil {
		b.mu.Lock()
		sending = !b.recvClosed
		unread := int64(len(b.buf) - b.off)
		b.buf, b.off, b.closed = nil, 0, true
		if b.timer != nil {
			b.timer.Stop()
			b.timer = nil
		}
		if sending {
			b.recvClosed = true
			c.awaiting.Add(-1)
		}
		if b.err == nil {
			b.err = errStreamReset
		}
		b.cond.Broadcast()
		b.mu.Unlock()
		c.consumed(unread)
	}
	c.mu.Lock()
	wasReset := st.reset
	st.reset = true
	if !wasReset {
		delete(c.streams, st.id)
	}
	c.running--
	if c.running == 0 {
		c.s.idleChanged(c.nc, true)
		if c.goingAway {
			c.closeWriteLocked()
		} else {
			c.armIdleLocked()
		}
	}
	c.mu.Unlock()
	st.ctx.cancel()
	if !wasReset {
		switch {
		case !completed || !w.ended:
			_ = c.write(true, func() error { return c.fr.WriteRSTStream(st.id, http2.ErrCodeInternal) })
		case sending:
			_ = c.write(true, func() error { return c.fr.WriteRSTStream(st.id, http2.ErrCodeNo) })
		}
	}
	c.handlers.Done()
}
