package gateway

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/fluxgate/fluxgate/internal/http1"
)

// The net/http engine's direct path. A request whose group speaks
// HTTP/1.1 and that the lean pools can carry (see directCarries) skips
// httputil.ReverseProxy: forward writes the outbound message straight
// from the client's *http.Request, sends it on a lean pool in the
// handler's goroutine and relays the answer to the ResponseWriter. The
// request is not copied (ReverseProxy clones it and its header) and no
// http.Response is built. What goes out and what comes back are what
// ReverseProxy with rewrite and leanTransport send and relay; everything
// else still goes through them.

// directCarries reports whether the direct path can carry r to u: an
// HTTP/1.1 group, a body of known length up to leanMaxBody or none, no
// trailers, Expect or Upgrade, not CONNECT, and a query ReverseProxy
// would send as it is.
func directCarries(r *http.Request, u *upstream) bool {
	if u.lean == nil || r.Method == http.MethodConnect || len(r.Trailer) > 0 ||
		r.Header.Get("Upgrade") != "" || r.Header.Get("Expect") != "" || queryCleaned(r.URL.RawQuery) {
		return false
	}
	return noBodyOn(r) || r.ContentLength > 0 && r.ContentLength <= leanMaxBody
}

// noBodyOn reports whether r, a request a server received, has no body
// to send on: ReverseProxy sends none when its length is 0 (HTTP/2's
// server gives a request without one a Body all the same).
func noBodyOn(r *http.Request) bool {
	return r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0
}

// queryCleaned reports whether ReverseProxy would re-encode the query
// (its Rewrite mode drops parameters it cannot parse): one with a
// semicolon, a malformed percent escape, or over 10,000 parameters.
func queryCleaned(q string) bool {
	if strings.Count(q, "&") >= 10000 {
		return true
	}
	for i := 0; i < len(q); i++ {
		switch q[i] {
		case ';':
			return true
		case '%':
			if i+2 >= len(q) || !isHex(q[i+1]) || !isHex(q[i+2]) {
				return true
			}
		}
	}
	return false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// directMessages holds the buffers the direct path writes requests into.
var directMessages = sync.Pool{New: func() any { return new([]byte) }}

// directMessageKeep bounds the buffers kept: a head and the largest body
// the path carries.
const directMessageKeep = leanMaxBody + headerBuffer

// direct sends r to u on the lean pools and relays the answer to w. It
// reports false, having done nothing, when r has a method, target or
// field that the wire must not carry: ReverseProxy then answers it. It
// ends with ReverseProxy's http.ErrAbortHandler panic when the answer's
// body breaks off, on either side.
//
// now is the clock's reading when the request entered the upstream
// group, with no wait since: the first attempt starts then.
func (g *Gateway) direct(w http.ResponseWriter, r *http.Request, fl *proxied, u *upstream, now time.Time) bool {
	mp := directMessages.Get().(*[]byte)
	defer func() {
		if cap(*mp) <= directMessageKeep {
			directMessages.Put(mp)
		}
	}()
	msg, ok := appendOutbound((*mp)[:0], r)
	if !ok {
		return false
	}
	*mp = msg
	headReq := r.Method == http.MethodHead
	noBody := noBodyOn(r)
	again := retryable(r.Method, noBody)
	ctx := r.Context()
	var up *leanUpConn
	var pool *leanPool
	bodyRead := noBody
	got1xx := func(code int, h textproto.MIMEHeader) error {
		relay1xx(w, code, h)
		return nil
	}
	err := g.try(u, fl, now, again, func() bool { return ctx.Err() != nil || fl.body.failed() != nil },
		func(t *target, start time.Time) (int, error) {
			if !bodyRead { // once, into the message
				var err error
				if msg, err = appendBody(msg, fl.body, r.ContentLength); err != nil {
					return 0, err
				}
				*mp, bodyRead = msg, true
				start = time.Time{} // the body's read was a wait
			}
			if pool = u.lean[t.addr]; pool == nil {
				return 0, fmt.Errorf("gateway: no connection pool for target %s", t.addr)
			}
			var err error
			if up, err = pool.roundTrip(ctx, start, msg, headReq, again, got1xx); err != nil {
				return 0, err
			}
			return up.resp.Status, nil
		})
	if err != nil {
		g.answerError(w, r, fl, err)
		return true
	}
	relayDirect(w, r, fl, pool, up, headReq)
	return true
}

// appendOutbound appends the head of the HTTP/1.1 request that carries r
// to a target, as ReverseProxy with rewrite and leanTransport write it:
// the client's fields without the hop-by-hop ones (and those Connection
// lists) and without Forwarded and X-Forwarded-*; Te: trailers when the
// client asked for trailers; X-Forwarded-For appended to the client's
// chain, X-Forwarded-Host and -Proto; Content-Length for a body of known
// length (the body follows, appendBody). It reports false for a method,
// target or field that the wire must not carry.
func appendOutbound(dst []byte, r *http.Request) ([]byte, bool) {
	dst, ok := appendRequestLine(dst, r.Method, r.URL.RequestURI(), r.Host)
	if !ok {
		return nil, false
	}
	var listed []string
	for _, v := range r.Header["Connection"] {
		listed = connectionListed(listed, []byte(v))
	}
	if dst, ok = appendFields(dst, r.Header, listed, true); !ok {
		return nil, false
	}
	if httpguts.HeaderValuesContainsToken(r.Header["Te"], "trailers") {
		dst = append(dst, "Te: trailers\r\n"...)
	}
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		dst = append(dst, "X-Forwarded-For: "...)
		for _, prior := range r.Header["X-Forwarded-For"] {
			if !httpguts.ValidHeaderFieldValue(prior) {
				return nil, false
			}
			dst = append(append(dst, prior...), ", "...)
		}
		dst = append(append(dst, ip...), "\r\n"...)
	}
	dst = append(dst, "X-Forwarded-Host: "...)
	dst = append(dst, r.Host...)
	if r.TLS == nil {
		dst = append(dst, "\r\nX-Forwarded-Proto: http\r\n"...)
	} else {
		dst = append(dst, "\r\nX-Forwarded-Proto: https\r\n"...)
	}
	n := r.ContentLength
	if noBodyOn(r) {
		n = 0
	}
	return appendLength(dst, r.Method, n), true
}

// appendBody appends the body of n bytes to msg, then reads once more to
// find its end, as net/http's Transport does: the gateway's clientBody
// then lifts the body's read deadline.
func appendBody(msg []byte, body io.Reader, n int64) ([]byte, error) {
	start := len(msg)
	msg = append(msg, make([]byte, n)...)
	if _, err := io.ReadFull(body, msg[start:]); err != nil {
		return msg[:start], fmt.Errorf("gateway: reading the request body: %w", err)
	}
	var past [1]byte
	if k, _ := body.Read(past[:]); k > 0 {
		return msg[:start], errors.New("gateway: the request body is longer than its Content-Length")
	}
	return msg, nil
}

// relay1xx sends an informational answer on to the client as ReverseProxy
// does: its fields with those already set, then the header is cleared.
func relay1xx(w http.ResponseWriter, code int, fields textproto.MIMEHeader) {
	h := w.Header()
	for k, vs := range fields {
		h[k] = append(h[k], vs...)
	}
	w.WriteHeader(code)
	clear(h)
}

// relayDirect writes the target's answer, whose head up has read, to w as
// ReverseProxy relays it: its fields without the hop-by-hop ones (and
// those Connection lists) added to those set, the declared trailers
// announced, the body copied through a pooled buffer and flushed as it
// comes when its length is unknown or it is an event stream, then the
// trailers. A body that breaks off ends the handler with
// http.ErrAbortHandler, after noting in fl whether the target failed.
func relayDirect(w http.ResponseWriter, r *http.Request, fl *proxied, pool *leanPool, up *leanUpConn, headReq bool) {
	resp := &up.resp
	h := w.Header()
	n := resp.BodyLength(headReq)
	trailer, eventStream := addFields(h, resp)
	announced := len(trailer)
	if announced > 0 {
		names := make([]string, 0, announced)
		for k := range trailer {
			names = append(names, k)
		}
		h.Add("Trailer", strings.Join(names, ", "))
	}
	w.WriteHeader(resp.Status)
	var body leanBody
	if body.start(pool, up, n, &trailer) {
		rc := http.NewResponseController(w)
		stream := eventStream || n == http1.BodyChunked || n == http1.BodyToClose
		if stream && up.r == up.w {
			// The head goes out before the body starts. (With some of
			// the body in, its first write goes with the head: net/http
			// then sniffs a Content-Type the target left out, as it does
			// behind ReverseProxy but for a slow first read.)
			_ = rc.Flush()
		}
		if err := copyBody(w, &body, rc, stream); err != nil {
			if !errors.Is(err, errClientWrite) && r.Context().Err() == nil {
				fl.bodyFailed = true
			}
			_ = body.Close()
			panic(http.ErrAbortHandler)
		}
	}
	if len(trailer) > 0 {
		_ = http.NewResponseController(w).Flush() // chunked, so that the trailers can follow
	}
	if len(trailer) == announced {
		// Values only: a declared trailer that did not come stays out of
		// the header, or HTTP/2's server would wait to send it and never
		// end the stream.
		for k, vs := range trailer {
			for _, v := range vs {
				h.Add(k, v)
			}
		}
		return
	}
	for k, vs := range trailer {
		for _, v := range vs {
			h.Add(http.TrailerPrefix+k, v)
		}
	}
}

// addFields adds the fields of resp to h but the hop-by-hop ones (and
// those its Connection fields list), and returns the trailers a chunked
// body declares (names, no values) and whether it is an event stream.
func addFields(h http.Header, resp *http1.Response) (trailer http.Header, eventStream bool) {
	listed := connectionFields(resp.Headers)
	// The values are views of one string, the one-value slices of one
	// array: two allocations, not two a field.
	size := 0
	for _, f := range resp.Headers {
		size += len(f.Value)
	}
	var values strings.Builder
	values.Grow(size)
	for _, f := range resp.Headers {
		values.Write(f.Value)
	}
	all := values.String()
	slots := make([]string, len(resp.Headers))
	at := 0
	for i, f := range resp.Headers {
		v := all[at : at+len(f.Value)]
		at += len(f.Value)
		switch fieldKind(f.Name) {
		case fieldTrailer:
			if resp.Chunked { // only a chunked body has trailers (see leanResponse)
				trailer = declareTrailers(trailer, v)
			}
			continue
		case fieldHop, fieldConn, fieldTE:
			continue
		}
		if listed != nil && listedIn(listed, f.Name) {
			continue
		}
		name := headerName(f.Name)
		if prior, ok := h[name]; ok {
			h[name] = append(prior, v)
		} else {
			slots[i] = v
			h[name] = slots[i : i+1 : i+1]
		}
		if name == "Content-Type" {
			eventStream = isEventStream(v)
		}
	}
	return trailer, eventStream
}

// errClientWrite marks a failed write to the client in copyBody.
var errClientWrite = errors.New("gateway: writing to the client failed")

// copyBody copies body to w through a buffer of copyBuffers, flushing
// after every write when stream is set.
func copyBody(w io.Writer, body *leanBody, rc *http.ResponseController, stream bool) error {
	buf := copyBuffers.Get()
	defer copyBuffers.Put(buf)
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return fmt.Errorf("%w: %w", errClientWrite, err)
			}
			if stream {
				_ = rc.Flush()
			}
		}
		if errors.Is(rerr, io.EOF) {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// declareTrailers adds the names a Trailer field's value lists to t.
func declareTrailers(t http.Header, v string) http.Header {
	for name := range strings.SplitSeq(v, ",") {
		if name = strings.TrimSpace(name); name != "" {
			if t == nil {
				t = http.Header{}
			}
			t[textproto.CanonicalMIMEHeaderKey(name)] = nil
		}
	}
	return t
}

// isEventStream reports whether a Content-Type is text/event-stream,
// whose answers ReverseProxy flushes as they come.
func isEventStream(ct string) bool {
	base, _, _ := strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(base), "text/event-stream")
}

// commonNames holds the canonical names of fields targets often send,
// by their canonical and lower-case spellings: headerName finds them
// without allocating.
var commonNames = func() map[string]string {
	m := map[string]string{}
	for _, n := range []string{
		"Accept-Ranges", "Age", "Cache-Control", "Content-Encoding", "Content-Language", "Content-Length",
		"Content-Range", "Content-Type", "Date", "Etag", "Expires", "Last-Modified", "Link", "Location",
		"Server", "Set-Cookie", "Strict-Transport-Security", "Vary", "Via", "X-Content-Type-Options",
		"X-Frame-Options", "X-Request-Id",
	} {
		m[n], m[strings.ToLower(n)] = n, n
	}
	return m
}()

// headerName is name in canonical form (textproto.CanonicalMIMEHeaderKey).
func headerName(name []byte) string {
	if n, ok := commonNames[string(name)]; ok {
		return n
	}
	return textproto.CanonicalMIMEHeaderKey(string(name))
}
