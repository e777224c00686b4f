package h2

import (
	"errors"
	"net/http"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2/hpack"
)

var errDeadline = os.ErrDeadlineExceeded

// responseWriter is a stream's http.ResponseWriter. The handler's goroutine
// only uses it (as net/http's), except the deadlines.
type responseWriter struct {
	st     *stream
	c      *conn
	header http.Header
	isHead bool

	status      int
	wroteHeader bool  // WriteHeader called (a final status)
	sentHeader  bool  // the HEADERS frame is written
	ended       bool  // END_STREAM is written
	failed      error // a write failed (stream reset, connection closed)
	declared    int64 // the content-length header's, -1 without
	written     int64 // body bytes the handler wrote
	buf         []byte
	trailers    []string // declared by the Trailer header, canonical

	writeDeadline atomic.Int64 // unix nanoseconds, 0 for none
}

var (
	_ http.Flusher = (*responseWriter)(nil)
	_ interface {
		SetReadDeadline(time.Time) error
		SetWriteDeadline(time.Time) error
		FlushError() error
	} = (*responseWriter)(nil)
)

func (w *responseWriter) Header() http.Header {
	if w.header == nil {
		w.header = make(http.Header)
	}
	return w.header
}

// WriteHeader sends a 1xx status at once (as an informational HEADERS) and
// records any other for the first write or the handler's end.
func (w *responseWriter) WriteHeader(code int) {
	if w.wroteHeader || w.failed != nil {
		return
	}
	if code < 100 || code > 999 {
		panic("h2: invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code < 200 {
		if code == http.StatusSwitchingProtocols {
			return // no upgrades in HTTP/2
		}
		w.failed = w.send(nil, false, code)
		return
	}
	w.status, w.wroteHeader = code, true
	if v := w.header.Get("Content-Length"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			w.declared = n
		} else {
			w.header.Del("Content-Length")
		}
	}
	for _, v := range w.header["Trailer"] {
		for k := range strings.SplitSeq(v, ",") {
			if k = textproto.CanonicalMIMEHeaderKey(textproto.TrimString(k)); k != "" {
				w.trailers = append(w.trailers, k)
			}
		}
	}
}

func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

// Write buffers p, or sends it (with what is buffered) as DATA frames when
// the buffer would overflow, waiting for the client's windows.
func (w *responseWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	switch {
	case w.failed != nil:
		return 0, w.failed
	case !bodyAllowed(w.status):
		return 0, http.ErrBodyNotAllowed
	case w.declared >= 0 && w.written+int64(len(p)) > w.declared:
		return 0, http.ErrContentLength
	}
	w.written += int64(len(p))
	if w.isHead {
		return len(p), nil
	}
	if len(w.buf)+len(p) <= respBuffer {
		w.buf = append(w.buf, p...)
		return len(p), nil
	}
	if len(w.buf) > 0 {
		if err := w.send(w.buf, false, 0); err != nil {
			w.failed = err
			return 0, err
		}
		w.buf = w.buf[:0]
	}
	if err := w.send(p, false, 0); err != nil {
		w.failed = err
		return 0, err
	}
	return len(p), nil
}

// WriteString is Write without a copy to []byte by the caller.
func (w *responseWriter) WriteString(s string) (int, error) { return w.Write([]byte(s)) }

// Flush sends the header and what is buffered.
func (w *responseWriter) Flush() { _ = w.FlushError() }

// FlushError is Flush, reporting a stream reset or a connection closed.
func (w *responseWriter) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.failed != nil {
		return w.failed
	}
	if w.sentHeader && len(w.buf) == 0 {
		return nil
	}
	err := w.send(w.buf, false, 0)
	w.buf = w.buf[:0]
	if err != nil {
		w.failed = err
	}
	return err
}

// SetReadDeadline bounds the handler's reads of the request body.
func (w *responseWriter) SetReadDeadline(t time.Time) error {
	if b := w.st.body; b != nil {
		b.setDeadline(t)
	}
	return nil
}

// SetWriteDeadline bounds the handler's waits for the client's windows.
func (w *responseWriter) SetWriteDeadline(t time.Time) error {
	if t.IsZero() {
		w.writeDeadline.Store(0)
	} else {
		w.writeDeadline.Store(t.UnixNano())
	}
	return nil
}

// finish completes the response after the handler returned: the header if
// not sent (with a content-length when the body is whole), what is
// buffered, and the trailers or END_STREAM.
func (w *responseWriter) finish() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.failed != nil || w.ended {
		return
	}
	w.failed = w.send(w.buf, true, 0)
	w.buf = nil
}

// send writes the HEADERS if not yet sent, then data within the send
// windows (waiting for them), then, if end, the trailers or END_STREAM.
// With info, it sends an informational HEADERS with that status only.
func (w *responseWriter) send(data []byte, end bool, info int) error {
	c, st := w.c, w.st
	if info != 0 {
		return c.write(true, func() error {
			if w.streamGone() {
				return errStreamReset
			}
			return c.writeHeaders(st.id, info, w.header, nil, -1, false)
		})
	}
	var trailers http.Header
	if end {
		trailers = w.trailerValues()
	}
	for first := true; first || len(data) > 0; first = false {
		n, err := w.takeWindow(len(data))
		if err != nil {
			return err
		}
		chunk := data[:n]
		data = data[n:]
		last := end && len(data) == 0
		err = c.write(true, func() error { return w.writeFramesLocked(chunk, end, last, trailers) })
		if err != nil {
			if errors.Is(err, errStreamReset) && n > 0 {
				// Nothing was written: the connection's share goes back
				// (the client returns only what it receives).
				c.mu.Lock()
				c.sendWindow += int64(n)
				c.cond.Broadcast()
				c.mu.Unlock()
			}
			return err
		}
	}
	return nil
}

// writeFramesLocked writes the HEADERS if not yet sent, chunk as DATA
// frames, and with last the trailers or END_STREAM. Under c.wmu.
func (w *responseWriter) writeFramesLocked(chunk []byte, end, last bool, trailers http.Header) error {
	c, st := w.c, w.st
	if w.streamGone() {
		return errStreamReset
	}
	c.mu.Lock()
	frame := c.peerFrame
	c.mu.Unlock()
	if !w.sentHeader {
		clen := int64(-1)
		if end && len(trailers) == 0 && w.declared < 0 && bodyAllowed(w.status) {
			clen = w.written // the whole body is known
		}
		headersEnd := last && len(chunk) == 0 && len(trailers) == 0
		if err := c.writeHeaders(st.id, w.status, w.header, w.trailers, clen, headersEnd); err != nil {
			return err
		}
		w.sentHeader = true
		if headersEnd {
			w.ended = true
			return nil
		}
	}
	for p := chunk; len(p) > 0 || last && !w.ended && len(trailers) == 0; {
		k := min(len(p), frame)
		dataEnd := last && k == len(p) && len(trailers) == 0
		if err := c.fr.WriteData(st.id, dataEnd, p[:k]); err != nil {
			return err
		}
		p = p[k:]
		if dataEnd {
			w.ended = true
			break
		}
	}
	if last && len(trailers) > 0 {
		if err := c.writeHeaders(st.id, 0, trailers, nil, -1, true); err != nil {
			return err
		}
		w.ended = true
	}
	return nil
}

// streamGone reports whether the stream was reset or the connection closed.
func (w *responseWriter) streamGone() bool {
	w.c.mu.Lock()
	gone := w.st.reset || w.c.closed
	w.c.mu.Unlock()
	return gone
}

// takeWindow takes up to want bytes of both send windows, waiting until
// some are open (at most WriteTimeout, or the write deadline), and returns
// them. want 0 takes nothing and does not wait.
func (w *responseWriter) takeWindow(want int) (int, error) {
	c, st := w.c, w.st
	c.mu.Lock()
	defer c.mu.Unlock()
	var timer *time.Timer
	timedOut := false
	for want > 0 && !st.reset && !c.closed && (c.sendWindow <= 0 || st.sendWindow <= 0) {
		if timer == nil {
			wait := c.wtimeout
			if dl := w.writeDeadline.Load(); dl != 0 {
				wait = min(wait, time.Until(time.Unix(0, dl)))
			}
			if wait <= 0 {
				return 0, errWindowTimeout
			}
			timer = time.AfterFunc(wait, func() {
				c.mu.Lock()
				timedOut = true
				c.cond.Broadcast()
				c.mu.Unlock()
			})
			defer timer.Stop()
		}
		if timedOut {
			c.s.count(ReasonWriteTimeout)
			c.log.Debug("h2: response timed out waiting for the client's window", "remote", c.remoteAddr, "stream", st.id)
			return 0, errWindowTimeout
		}
		c.cond.Wait()
	}
	if st.reset {
		return 0, errStreamReset
	}
	if c.closed {
		return 0, errConnClosed
	}
	k := max(min(int64(want), c.sendWindow, st.sendWindow), 0)
	c.sendWindow -= k
	st.sendWindow -= k
	return int(k), nil
}

// trailerValues are the response's trailers: the declared ones with a
// value, and those named with http.TrailerPrefix.
func (w *responseWriter) trailerValues() http.Header {
	var t http.Header
	for _, k := range w.trailers {
		if vv := w.header[k]; len(vv) > 0 {
			if t == nil {
				t = http.Header{}
			}
			t[k] = vv
		}
	}
	for k, vv := range w.header {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok && len(vv) > 0 {
			if t == nil {
				t = http.Header{}
			}
			t[textproto.CanonicalMIMEHeaderKey(name)] = vv
		}
	}
	return t
}

// writeHeaders encodes a header block (":status" first unless status is
// 0, for trailers) as HEADERS and CONTINUATION frames. The fields are
// lower-cased; connection-specific ones, invalid ones, the trailers and
// "Trailer:"-prefixed keys are left out; clen >= 0 adds a content-length,
// and a final status gets a date unless the handler set one. Under wmu.
func (c *conn) writeHeaders(id uint32, status int, h http.Header, trailers []string, clen int64, end bool) error {
	c.hbuf.Reset()
	if status != 0 {
		_ = c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: statusText(status)})
	}
	for k, vv := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) || isTrailer(k, trailers) {
			continue
		}
		name := lowerHeader(k)
		if connectionSpecific[name] || !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		isTE := name == "te"
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) || isTE && v != "trailers" {
				continue
			}
			_ = c.henc.WriteField(hpack.HeaderField{Name: name, Value: v})
		}
	}
	if clen >= 0 && (h == nil || h["Content-Length"] == nil) {
		var num [20]byte
		_ = c.henc.WriteField(hpack.HeaderField{Name: "content-length", Value: string(strconv.AppendInt(num[:0], clen, 10))})
	}
	if status >= 200 {
		if _, set := h["Date"]; !set {
			_ = c.henc.WriteField(hpack.HeaderField{Name: "date", Value: httpDate()})
		}
	}
	c.mu.Lock()
	frame := c.peerFrame
	c.mu.Unlock()
	return writeBlock(c.fr, id, c.hbuf.Bytes(), end, frame)
}

func isTrailer(k string, trailers []string) bool {
	for _, t := range trailers {
		if t == k {
			return true
		}
	}
	return false
}

// commonLower are lower-case names of frequent canonical header keys.
var commonLower = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"Accept", "Accept-Encoding", "Accept-Language", "Accept-Ranges", "Age", "Allow", "Authorization",
		"Cache-Control", "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length",
		"Content-Location", "Content-Range", "Content-Type", "Cookie", "Date", "Etag", "Expires",
		"Last-Modified", "Link", "Location", "Retry-After", "Server", "Set-Cookie", "Trailer", "Vary",
		"Via", "Www-Authenticate", "X-Content-Type-Options", "X-Frame-Options", "X-Request-Id",
		"Ratelimit", "Ratelimit-Limit", "Ratelimit-Remaining", "Ratelimit-Reset", "Ratelimit-Policy",
		"Strict-Transport-Security", "Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade", "Te",
	} {
		m[k] = strings.ToLower(k)
	}
	return m
}()

func lowerHeader(k string) string {
	if v, ok := commonLower[k]; ok {
		return v
	}
	for i := 0; i < len(k); i++ {
		if 'A' <= k[i] && k[i] <= 'Z' {
			return strings.ToLower(k)
		}
	}
	return k
}

// statusText is a status code's digits, without allocating for the usual ones.
func statusText(code int) string {
	switch code {
	case 200:
		return "200"
	case 204:
		return "204"
	case 301:
		return "301"
	case 302:
		return "302"
	case 304:
		return "304"
	case 400:
		return "400"
	case 403:
		return "403"
	case 404:
		return "404"
	case 429:
		return "429"
	case 500:
		return "500"
	case 502:
		return "502"
	case 503:
		return "503"
	}
	return strconv.Itoa(code)
}

// dateCache is the Date header value of the current second.
type dateValue struct {
	sec int64
	s   string
}

var dateCache atomic.Pointer[dateValue]

func httpDate() string {
	now := time.Now()
	if d := dateCache.Load(); d != nil && d.sec == now.Unix() {
		return d.s
	}
	d := &dateValue{sec: now.Unix(), s: now.UTC().Format(http.TimeFormat)}
	dateCache.Store(d)
	return d.s
}
