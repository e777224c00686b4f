package gateway

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/fluxgate/fluxgate/internal/http1"
)

// leanTransport carries the net/http engine's requests to an HTTP/1.1
// group on the lean engine's connection pools (leanPool), in the calling
// goroutine: net/http's Transport hands every request to two goroutines
// of its connection (a writer and a reader) and back, which was a
// quarter of the CPU the net/http engine spent on a request from an
// HTTP/2 client (issue 20). What the pools do not carry goes to fallback,
// the group's http.Transport: a request with a body of unknown length or
// over leanMaxBody, with trailers, Expect or an Upgrade, or with a field
// the wire must not carry.
type leanTransport struct {
	u        *upstream
	fallback http.RoundTripper
}

func (t *leanTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	pool := t.u.lean[req.URL.Host]
	if pool == nil || !leanCarries(req) {
		return t.fallback.RoundTrip(req)
	}
	var body []byte
	if req.Body != nil && req.Body != http.NoBody {
		body = make([]byte, req.ContentLength)
		if _, err := io.ReadFull(req.Body, body); err != nil {
			return nil, fmt.Errorf("gateway: reading the request body: %w", err)
		}
		// One read more finds the end, as net/http's Transport does: the
		// gateway's clientBody then lifts the body's read deadline.
		var past [1]byte
		if n, _ := req.Body.Read(past[:]); n > 0 {
			return nil, errors.New("gateway: the request body is longer than its Content-Length")
		}
	}
	msg, ok := appendRequest(nil, req, body)
	switch {
	case !ok && body != nil:
		// The body is read: the fallback would send it empty. net/http's
		// Transport refuses such a request too.
		return nil, errors.New("gateway: the request has a method, target or field that cannot be sent")
	case !ok:
		return t.fallback.RoundTrip(req)
	}
	headReq := req.Method == http.MethodHead
	var got1xx func(int, textproto.MIMEHeader) error
	if trace := httptrace.ContextClientTrace(req.Context()); trace != nil {
		got1xx = trace.Got1xxResponse // ReverseProxy's: relays them to the client
	}
	up, err := pool.roundTrip(req.Context(), time.Time{}, msg, headReq, retryable(req.Method, body == nil), got1xx)
	if err != nil {
		return nil, err
	}
	return leanResponse(req, pool, up, headReq), nil
}

// leanCarries reports whether the lean pools can carry req as it is.
func leanCarries(req *http.Request) bool {
	if len(req.Trailer) > 0 || req.Header.Get("Upgrade") != "" || req.Header.Get("Expect") != "" {
		return false
	}
	if req.Body == nil || req.Body == http.NoBody {
		return true
	}
	return req.ContentLength > 0 && req.ContentLength <= leanMaxBody
}

// appendRequest appends req's HTTP/1.1 message to dst: the request line,
// Host, the fields of req.Header (ReverseProxy removed the hop-by-hop
// ones and set X-Forwarded-*), Content-Length, then body. It reports
// false for a method, target or field the wire must not carry.
func appendRequest(dst []byte, req *http.Request, body []byte) ([]byte, bool) {
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	dst, ok := appendRequestLine(dst, req.Method, req.URL.RequestURI(), host)
	if !ok {
		return nil, false
	}
	if dst, ok = appendFields(dst, req.Header, nil, false); !ok {
		return nil, false
	}
	return append(appendLength(dst, req.Method, int64(len(body))), body...), true
}

// appendRequestLine appends the request line and the Host field, or
// reports false when one of them must not go on the wire.
func appendRequestLine(dst []byte, method, uri, host string) ([]byte, bool) {
	if !httpguts.ValidHostHeader(host) || !validToken(method) || !validTarget(uri) {
		return nil, false
	}
	dst = append(dst, method...)
	dst = append(dst, ' ')
	dst = append(dst, uri...)
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	dst = append(dst, host...)
	return append(dst, "\r\n"...), true
}

// appendFields appends the fields of header but the framing ones (and an
// empty User-Agent: ReverseProxy's way of asking for none), or reports
// false for one the wire must not carry. A client's header (inbound)
// also loses its hop-by-hop fields, those listed (by its Connection
// fields), Forwarded and X-Forwarded-*, as ReverseProxy's rewrite drops
// them.
func appendFields(dst []byte, header http.Header, listed []string, inbound bool) ([]byte, bool) {
	for name, values := range header {
		switch name {
		case "Host", "Content-Length", "Transfer-Encoding", "Trailer", "Connection":
			continue
		case "Te", "Upgrade", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
			"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto":
			if inbound {
				continue
			}
		}
		if !httpguts.ValidHeaderFieldName(name) {
			return nil, false
		}
		if listed != nil && slices.ContainsFunc(listed, func(l string) bool { return strings.EqualFold(l, name) }) {
			continue
		}
		for _, v := range values {
			if v == "" && name == "User-Agent" {
				continue
			}
			if !httpguts.ValidHeaderFieldValue(v) {
				return nil, false
			}
			dst = append(dst, name...)
			dst = append(dst, ": "...)
			dst = append(dst, v...)
			dst = append(dst, "\r\n"...)
		}
	}
	return dst, true
}

// appendLength appends Content-Length for a body of n bytes (net/http
// sends it for the empty bodies of some methods too, see
// methodSendsLength) and the end of the head.
func appendLength(dst []byte, method string, n int64) []byte {
	if n > 0 || methodSendsLength(method) {
		dst = append(dst, "Content-Length: "...)
		dst = strconv.AppendInt(dst, n, 10)
		dst = append(dst, "\r\n"...)
	}
	return append(dst, "\r\n"...)
}

// methodSendsLength: net/http sends Content-Length: 0 with these methods'
// empty bodies, and so do the other engines.
func methodSendsLength(m string) bool {
	return m == http.MethodPost || m == http.MethodPut || m == http.MethodPatch
}

func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		if !httpguts.IsTokenRune(rune(s[i])) {
			return false
		}
	}
	return true
}

// validTarget: no spaces or controls in a request target.
func validTarget(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// leanResponse is the http.Response of up's response head; its body reads
// the rest from up and gives the connection back to pool at its end.
func leanResponse(req *http.Request, pool *leanPool, up *leanUpConn, headReq bool) *http.Response {
	r := &up.resp
	resp := &http.Response{
		Status:     strconv.Itoa(r.Status) + " " + string(r.Reason),
		StatusCode: r.Status,
		Proto:      "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:  make(http.Header, len(r.Headers)),
		Close:   r.Close,
		Request: req,
	}
	for _, h := range r.Headers {
		name := textproto.CanonicalMIMEHeaderKey(string(h.Name))
		resp.Header[name] = append(resp.Header[name], string(h.Value))
	}
	// Only a chunked body has trailers: otherwise the Trailer field stays
	// a field (ReverseProxy drops it, a hop-by-hop one), as net/http's
	// Transport leaves it.
	if declared := resp.Header.Values("Trailer"); len(declared) > 0 && r.Chunked {
		for _, v := range declared {
			resp.Trailer = declareTrailers(resp.Trailer, v)
		}
		resp.Header.Del("Trailer")
	}
	resp.Header.Del("Transfer-Encoding")
	n := r.BodyLength(headReq)
	b := &leanBody{}
	switch {
	case !b.start(pool, up, n, &resp.Trailer):
		resp.ContentLength = 0
		if headReq {
			resp.ContentLength = -1
			if cl, err := strconv.ParseInt(resp.Header.Get("Content-Length"), 10, 64); err == nil {
				resp.ContentLength = cl
			}
		}
		resp.Body = http.NoBody
		return resp
	case n > 0:
		resp.ContentLength = n
	case n == http1.BodyChunked:
		resp.ContentLength, resp.TransferEncoding = -1, []string{"chunked"}
	default: // to the target's close
		resp.ContentLength = -1
	}
	resp.Body = b
	return resp
}

// start makes b the body of up's response, framed as n tells (see
// http1.Response.BodyLength), and reports true; or false when it has
// none: the connection is then released. The trailers of a chunked body
// are added to *trailer.
func (b *leanBody) start(pool *leanPool, up *leanUpConn, n int64, trailer *http.Header) bool {
	if n != http1.BodyNone && (n < 0 || int64(up.w-up.r) < n) {
		// The body may take as long as it takes. One the head's read
		// brought whole is not read from the connection: the deadline
		// stays armed for the next request (leanUpConn.armed), as on the
		// lean engine, at no timer update.
		up.disarm()
	}
	*b = leanBody{pool: pool, up: up, trailer: trailer, reusable: !up.resp.Close}
	switch {
	case n == http1.BodyNone:
		b.finish(nil)
		return false
	case n > 0:
		b.left = n
	case n == http1.BodyChunked:
		b.br = bufio.NewReader(upReader{up})
		b.chunked = httputil.NewChunkedReader(b.br)
	default: // to the target's close
		b.reusable, b.left = false, -1
	}
	return true
}

// upReader reads what up holds, then its connection.
type upReader struct{ up *leanUpConn }

func (r upReader) Read(p []byte) (int, error) {
	up := r.up
	if up.r < up.w {
		n := copy(p, up.buf[up.r:up.w])
		up.r += n
		return n, nil
	}
	return up.c.Read(p)
}

// leanBody is the body of a response the lean pools carried: left bytes
// more (-1: until the target closes), or chunked. At its end the
// connection goes back to the pool when it can carry another request;
// closed before, or on an error, it is closed.
type leanBody struct {
	pool     *leanPool
	up       *leanUpConn  // nil once released
	trailer  *http.Header // where the trailers go
	reusable bool
	left     int64
	br       *bufio.Reader // chunked: over upReader
	chunked  io.Reader
}

func (b *leanBody) Read(p []byte) (int, error) {
	if b.up == nil {
		return 0, io.EOF
	}
	if b.chunked != nil {
		n, err := b.chunked.Read(p)
		if errors.Is(err, io.EOF) {
			err = b.readTrailers()
			b.finish(err)
			if err == nil {
				err = io.EOF
			}
		} else if err != nil {
			b.finish(err)
		}
		return n, err
	}
	if b.left == 0 {
		b.finish(nil)
		return 0, io.EOF
	}
	if b.left > 0 && int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := upReader{b.up}.Read(p)
	if b.left > 0 {
		b.left -= int64(n)
	}
	switch {
	case b.left == 0:
		b.finish(nil)
		return n, io.EOF
	case errors.Is(err, io.EOF) && b.left < 0:
		b.finish(nil) // the end of a body delimited by close
		return n, io.EOF
	case errors.Is(err, io.EOF):
		err = io.ErrUnexpectedEOF
		fallthrough
	case err != nil:
		b.finish(err)
	}
	return n, err
}

// readTrailers reads the trailer section after the last chunk into
// *b.trailer, as net/http's Transport does into Response.Trailer.
func (b *leanBody) readTrailers() error {
	hdr, err := textproto.NewReader(b.br).ReadMIMEHeader()
	if err != nil {
		return fmt.Errorf("gateway: reading the target's trailers: %w", err)
	}
	if len(hdr) > 0 && *b.trailer == nil {
		*b.trailer = http.Header{}
	}
	for k, vs := range hdr {
		(*b.trailer)[k] = append((*b.trailer)[k], vs...)
	}
	return nil
}

// finish releases the connection: back to the pool after a whole body
// with nothing more read, closed otherwise.
func (b *leanBody) finish(err error) {
	up := b.up
	if up == nil {
		return
	}
	b.up = nil
	if up.stopWatch() && err == nil && b.reusable && up.r == up.w && (b.br == nil || b.br.Buffered() == 0) {
		b.pool.put(up)
	} else {
		b.pool.discard(up)
	}
}

// Close closes the connection unless the body was read to its end.
func (b *leanBody) Close() error {
	b.finish(errBodyClosedEarly)
	return nil
}

var errBodyClosedEarly = errors.New("gateway: response body closed before its end")
