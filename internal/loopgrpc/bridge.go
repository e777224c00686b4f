//go:build linux

package loopgrpc

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"sync"

	"golang.org/x/net/http2/hpack"

	"github.com/fluxgate/fluxgate/internal/h2"
)

// A bridge serves a call with Fallback, an http.Handler, on a goroutine,
// as an HTTP/2 request of net/http's: its body is what the client sends,
// given back to the windows as the handler reads it, and what the
// handler writes goes out as the stream's frames, each flush waiting
// until the client's windows took it.
type bridge struct {
	c  *conn
	st *h2.SessionStream
	a  answer // the loop's

	ctx    context.Context // the handler's; ends with the call
	cancel context.CancelFunc

	mu      sync.Mutex
	cond    sync.Cond
	body    [][]byte // received and not read
	bodyEnd bool     // all of it came
	gone    error    // the stream was reset, or the handler closed the body
	credit  chan error
}

var errStreamGone = errors.New("loopgrpc: the call was reset")

// bridge starts st's call on Fallback.
func (c *conn) bridge(st *h2.SessionStream, req *h2.SessionRequest) {
	s := c.st.s
	b := &bridge{c: c, st: st, credit: make(chan error, 1), bodyEnd: req.End}
	b.cond.L = &b.mu
	b.a = answer{c: c, st: st}
	st.Value = b
	ctx, cancel := context.WithCancel(context.Background())
	b.ctx, b.cancel = ctx, cancel
	ctx = context.WithValue(ctx, http.LocalAddrContextKey, s.local)
	r := &http.Request{
		Method:        req.Method,
		URL:           &url.URL{Path: req.Path},
		RequestURI:    req.Path,
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Header:        make(http.Header, len(req.Fields)),
		Host:          req.Authority,
		RemoteAddr:    c.remote,
		TLS:           c.tlsState,
		ContentLength: req.ContentLength,
		Body:          (*bridgeBody)(b),
	}
	if i := strings.IndexByte(req.Path, '?'); i >= 0 {
		r.URL.Path, r.URL.RawQuery = req.Path[:i], req.Path[i+1:]
	}
	for _, f := range req.Fields {
		k := textproto.CanonicalMIMEHeaderKey(f.Name)
		r.Header[k] = append(r.Header[k], f.Value)
	}
	r = r.WithContext(ctx)
	s.calls.Add(1)
	go b.serve(r)
}

// serve runs the handler and ends the stream with what it wrote.
func (b *bridge) serve(r *http.Request) {
	s, l := b.c.st.s, b.c.st.l
	defer s.calls.Done()
	defer b.cancel()
	w := &bridgeWriter{b: b, header: http.Header{}}
	ok := func() (ok bool) {
		defer func() {
			if p := recover(); p != nil {
				if err, isErr := p.(error); !isErr || !errors.Is(err, http.ErrAbortHandler) {
					s.logger.Error("gRPC fallback handler panicked", "path", r.URL.Path, "panic", p)
				}
			}
		}()
		s.o.Fallback.ServeHTTP(w, r)
		return true
	}()
	_ = (*bridgeBody)(b).Close()
	if !ok {
		l.Post(func() { b.a.close(); b.c.flush() }) // RST_STREAM
		return
	}
	w.finish()
}

// data takes a piece of the request body (the loop's).
func (b *bridge) data(p []byte, end bool) {
	b.mu.Lock()
	if b.gone != nil {
		b.mu.Unlock()
		b.c.ss.Consumed(b.st, len(p))
		return
	}
	if len(p) > 0 {
		b.body = append(b.body, append([]byte(nil), p...))
	}
	b.bodyEnd = b.bodyEnd || end
	b.cond.Broadcast()
	b.mu.Unlock()
}

// reset: the client reset the call, or the connection ends.
func (b *bridge) reset() {
	b.cancel()
	b.mu.Lock()
	if b.gone == nil {
		b.gone = errStreamGone
	}
	b.cond.Broadcast()
	b.mu.Unlock()
	b.a.close()
	b.give(errStreamGone)
}

// give answers a Flush that waits (the loop's; a Flush waits for one at
// a time).
func (b *bridge) give(err error) {
	select {
	case b.credit <- err:
	default:
	}
}

// post runs f on the loop, then writes the frames it queued; false when
// the loops stopped.
func (b *bridge) post(f func()) bool {
	return b.c.st.l.Post(func() {
		if b.c.closed {
			return
		}
		f()
		b.c.flush()
	})
}

// bridgeBody is the request body the handler reads.
type bridgeBody bridge

func (bb *bridgeBody) Read(p []byte) (int, error) {
	b := (*bridge)(bb)
	b.mu.Lock()
	for len(b.body) == 0 && !b.bodyEnd && b.gone == nil {
		b.cond.Wait()
	}
	if b.gone != nil {
		b.mu.Unlock()
		return 0, b.gone
	}
	if len(b.body) == 0 {
		b.mu.Unlock()
		return 0, io.EOF
	}
	n := copy(p, b.body[0])
	if b.body[0] = b.body[0][n:]; len(b.body[0]) == 0 {
		b.body[0] = nil
		b.body = b.body[1:]
	}
	b.mu.Unlock()
	b.post(func() { b.c.ss.Consumed(b.st, n) })
	return n, nil
}

// Close ends the handler's reading: what is left, and what comes, is
// given back to the windows unread.
func (bb *bridgeBody) Close() error {
	b := (*bridge)(bb)
	b.mu.Lock()
	if b.gone != nil {
		b.mu.Unlock()
		return nil
	}
	b.gone = errors.New("loopgrpc: read after the request body was closed")
	n := 0
	for _, p := range b.body {
		n += len(p)
	}
	b.body = nil
	b.cond.Broadcast()
	b.mu.Unlock()
	if n > 0 {
		b.post(func() { b.c.ss.Consumed(b.st, n) })
	}
	return nil
}

// bridgeWriter is the handler's ResponseWriter (and http.Flusher).
type bridgeWriter struct {
	b       *bridge
	header  http.Header
	status  int
	fields  []hpack.HeaderField // the header as WriteHeader saw it
	buf     []byte
	failed  error
	flushed bool // headers went to the loop
}

func (w *bridgeWriter) Header() http.Header { return w.header }

func (w *bridgeWriter) WriteHeader(code int) {
	if w.status != 0 || code < 200 {
		return
	}
	w.status = code
	w.fields = headerFields(w.header, false)
}

func (w *bridgeWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.failed != nil {
		return 0, w.failed
	}
	w.buf = append(w.buf, p...)
	if len(w.buf) >= 32<<10 {
		w.Flush()
		if w.failed != nil {
			return 0, w.failed
		}
	}
	return len(p), nil
}

// Flush sends the header and what was written, and waits until the
// client's windows took it.
func (w *bridgeWriter) Flush() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.failed != nil {
		return
	}
	b, data, fields, status := w.b, w.buf, w.fields, w.status
	w.buf = nil
	head := !w.flushed
	w.flushed = true
	ok := b.post(func() {
		if b.a.done {
			b.give(errStreamGone)
			return
		}
		if head {
			b.c.ss.WriteHeaders(b.st, status, fields, false)
		}
		b.a.drained = func() {
			b.a.drained = nil
			b.give(nil)
		}
		b.a.send(data, nil, false)
	})
	if !ok {
		w.failed = errStreamGone
		return
	}
	select {
	case err := <-b.credit:
		w.failed = err
	case <-b.ctx.Done(): // reset, or the connection closed
		w.failed = errStreamGone
	}
}

// finish ends the stream after the handler returned: what is left, then
// the trailers (the fields declared in Trailer, and those named with
// http.TrailerPrefix).
func (w *bridgeWriter) finish() {
	if w.failed != nil {
		return
	}
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	b, data, fields, status, head := w.b, w.buf, w.fields, w.status, !w.flushed
	trailers := headerFields(w.header, true)
	b.post(func() {
		if b.a.done {
			return
		}
		if head {
			if len(data) == 0 && len(trailers) == 0 {
				b.c.ss.WriteHeaders(b.st, status, fields, true)
				b.a.close()
				return
			}
			b.c.ss.WriteHeaders(b.st, status, fields, false)
		}
		b.a.send(data, trailers, true)
	})
}

// headerFields is h as HTTP/2 fields: the header's (trailers false) or
// the trailers'.
func headerFields(h http.Header, trailers bool) []hpack.HeaderField {
	declared := map[string]bool{}
	for _, v := range h["Trailer"] {
		for k := range strings.SplitSeq(v, ",") {
			if k = strings.TrimSpace(k); k != "" {
				declared[http.CanonicalHeaderKey(k)] = true
			}
		}
	}
	var out []hpack.HeaderField
	for k, vs := range h {
		name, prefixed := strings.CutPrefix(k, http.TrailerPrefix)
		isTrailer := prefixed || declared[k]
		if k == "Trailer" || isTrailer != trailers {
			continue
		}
		for _, v := range vs {
			out = append(out, hpack.HeaderField{Name: strings.ToLower(name), Value: v})
		}
	}
	return out
}
