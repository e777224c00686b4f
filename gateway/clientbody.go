package gateway

import (
	"errors"
	"io"
	"net/http"
	"sync/atomic"

	"github.com/valyala/fasthttp"
)

// A client's request body that fails to arrive whole — a malformed
// chunk, a body shorter than its Content-Length, a client that stalls
// past the read timeout or leaves — is the client's fault, not the
// target's: the gateway answers it 400 (408 when the client stalled,
// 413 for a body over a limit), or nothing when the client has left,
// and the request counts against neither the target, its outlier
// detection, its breaker nor the canary analysis. A target whose
// answer arrived before the body failed is judged by that answer, which
// goes on to the client.

// clientBody is a client's request body on its way to a target. It
// remembers the first failure to read it; the transport reads it from
// another goroutine than the handler's (net/http), hence the atomic.
type clientBody struct {
	r    io.Reader
	want int64 // the declared length, or -1
	n    int64 // read so far; only the reader's goroutine touches it
	done bool  // reading the body under it ended (EOF or error); only the reader's goroutine touches it
	err  atomic.Pointer[error]
	end  func() // called once when reading ends (EOF or error); may be nil
}

// newClientBody wraps r, whose Content-Length is want (-1 unknown).
func newClientBody(r io.Reader, want int64) *clientBody {
	return &clientBody{r: r, want: want}
}

func (b *clientBody) Read(p []byte) (int, error) {
	if b.done || b.want >= 0 && b.n >= b.want {
		// The end is known: the body under it is not read again. After
		// the last byte, net/http's server closes a request body when
		// the handler answers (ReverseProxy, once the target has), while
		// the transport still reads once more to find its end: that read
		// failed with "invalid Read on closed Body" and the transport
		// closed the target's connection with the response half relayed.
		b.ended()
		if err := b.failed(); err != nil {
			return 0, err
		}
		return 0, io.EOF
	}
	n, err := b.r.Read(p)
	b.n += int64(n)
	if err != nil {
		b.done = true
	}
	if err == io.EOF && b.want >= 0 && b.n < b.want {
		err = io.ErrUnexpectedEOF // fasthttp's stream ends a short body with EOF
	}
	if err != nil && err != io.EOF && b.err.Load() == nil {
		b.err.Store(&err)
	}
	if err != nil {
		b.ended()
	}
	return n, err
}

// ended calls end once.
func (b *clientBody) ended() {
	if b.end != nil {
		b.end()
		b.end = nil
	}
}

// Close closes the body under it, if it can be closed.
func (b *clientBody) Close() error {
	if c, ok := b.r.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// failed returns why reading the body failed, or nil. b may be nil.
func (b *clientBody) failed() error {
	if b == nil {
		return nil
	}
	if p := b.err.Load(); p != nil {
		return *p
	}
	return nil
}

// errClientBody stands for a target's answer the gateway drops because
// the client's body failed while the target was being sent it.
var errClientBody = errors.New("gateway: the client's request body failed")

// clientFault answers through rs a request whose body failed with err:
// 408 when the client stalled, 413 over a limit, 400 otherwise.
func clientFault(rs responder, err error) {
	status, reason := http.StatusBadRequest, "request_body_invalid"
	switch {
	case isTimeout(err):
		status, reason = http.StatusRequestTimeout, "request_body_timeout"
	case errors.Is(err, fasthttp.ErrBodyTooLarge), errors.As(err, new(*http.MaxBytesError)):
		status, reason = http.StatusRequestEntityTooLarge, "request_body_too_large"
	}
	rs.reject(status, reason, 0, map[string]string{"error": reason})
}
