package gateway

import (
	"bytes"
	"errors"
	"strconv"

	"golang.org/x/net/http2/hpack"

	"github.com/fluxgate/fluxgate/internal/h2"
	"github.com/fluxgate/fluxgate/internal/http1"
)

// An HTTP/2 stream served by the loop engine is a request of one HTTP/1.1
// exchange: the stream's head is written as an HTTP/1.1 request for the
// engine's parser (h1Request), and the engine's HTTP/1.1 answer — the head
// it writes, then the body as the target framed it (a content-length,
// chunked, or none) — is turned into the stream's frames (streamAnswer). The
// engine's routing, checks, balancing, retries and relay stay one code path
// for both protocols; what the conversion costs is a head written and read
// again each way.

// h1Request appends to dst the HTTP/1.1 request a stream's head stands
// for: the method and path, Host from the authority, the fields (the
// cookie fields joined with "; " into one, after the others, RFC 9113
// §8.2.3), the body's Content-Length
// (bodyLen; none when -1 and the request has no body, Transfer-Encoding:
// chunked when h1Chunked), and Connection:
// close — the exchange carries this one request.
func h1Request(dst []byte, req *h2.SessionRequest, bodyLen int64) []byte {
	dst = append(dst, req.Method...)
	dst = append(dst, ' ')
	dst = append(dst, req.Path...)
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	dst = append(dst, req.Authority...)
	dst = append(dst, "\r\n"...)
	cookies := 0
	for _, hf := range req.Fields {
		switch hf.Name {
		case "cookie":
			cookies++
		case "content-length": // bodyLen says it
		default:
			dst = appendField(dst, []byte(hf.Name), []byte(hf.Value))
		}
	}
	if cookies > 0 {
		dst = append(dst, "cookie: "...)
		sep := false
		for _, hf := range req.Fields {
			if hf.Name == "cookie" {
				if sep {
					dst = append(dst, "; "...)
				}
				dst, sep = append(dst, hf.Value...), true
			}
		}
		dst = append(dst, "\r\n"...)
	}
	switch {
	case bodyLen >= 0:
		dst = append(dst, "Content-Length: "...)
		dst = strconv.AppendInt(dst, bodyLen, 10)
		dst = append(dst, "\r\n"...)
	case bodyLen == h1Chunked:
		dst = append(dst, "Transfer-Encoding: chunked\r\n"...)
	}
	return append(dst, "Connection: close\r\n\r\n"...)
}

// h1Chunked is h1Request's bodyLen for a body sent chunked.
const h1Chunked = -2

var errAnswerHead = errors.New("gateway: http2: the answer's head is not whole or not valid")

// streamAnswer turns one HTTP/1.1 answer, as the loop engine writes it, into
// HTTP/2 frames of a stream. Its zero value is at the answer's start; set
// headReq for a HEAD request (no body follows its head).
type streamAnswer struct {
	headReq bool

	started bool  // the HEADERS went
	done    bool  // END_STREAM went
	length  int64 // the body's bytes left, or http1.BodyChunked
	chunk   http1.Chunked
	trailer []byte // a chunked answer's trailer section, as it comes
	resp    http1.Response
	fields  []hpack.HeaderField
}

// write turns the next bytes of the answer, p, into frames of st, as far
// as the client's windows take its body: it returns how many bytes of p
// it took; the rest waits for the windows (Writable). A head must come
// whole in one call (the engines write each in one piece); informational
// (1xx) heads are dropped.
func (a *streamAnswer) write(ss *h2.Session, st *h2.SessionStream, p []byte) (int, error) {
	n := 0
	for !a.started {
		k, err := http1.ParseResponse(p[n:], len(p)-n, &a.resp)
		if err != nil || k == 0 {
			return 0, errAnswerHead
		}
		n += k
		if a.resp.Status < 200 { // 100 Continue and the like: the final head follows
			if n == len(p) {
				return n, nil
			}
			continue
		}
		a.started = true
		a.length = a.resp.BodyLength(a.headReq)
		a.fields = a.fields[:0]
		for _, h := range a.resp.Headers { // WriteHeaders drops Transfer-Encoding and Connection
			a.fields = append(a.fields, hpack.HeaderField{Name: lowerASCII(h.Name), Value: string(h.Value)})
		}
		end := a.length == http1.BodyNone
		ss.WriteHeaders(st, a.resp.Status, a.fields, end)
		if end {
			a.done = true
			return n, nil
		}
	}
	for !a.done && n < len(p) {
		if a.length == http1.BodyChunked {
			inTrailer := a.chunk.InTrailer()
			k, data, ended, err := a.chunk.Next(p[n:], ss.Window(st))
			if err != nil {
				return n, err
			}
			if inTrailer { // at most 4 KiB: Next fails a longer section
				a.trailer = append(a.trailer, p[n:n+k]...)
			}
			ss.WriteData(st, data, false) // Next kept to the windows: all of it goes
			n += k
			if ended {
				a.end(ss, st)
			}
			if k == 0 {
				break // data comes next, and the windows are closed
			}
			continue
		}
		body := p[n:]
		if int64(len(body)) > a.length {
			body = body[:a.length]
		}
		k := ss.WriteData(st, body, int64(len(body)) == a.length)
		n += k
		a.length -= int64(k)
		a.done = a.length == 0
		if k < len(body) || k == 0 {
			break
		}
	}
	return n, nil
}

// end ends a chunked answer's stream: with its trailer fields in a
// HEADERS frame, or with an empty DATA frame when it has none.
func (a *streamAnswer) end(ss *h2.Session, st *h2.SessionStream) {
	a.done = true
	a.fields = a.fields[:0]
	for line := range bytes.SplitSeq(a.trailer, []byte("\r\n")) {
		// The section is well formed (Next checked it): name ":" value.
		if name, value, ok := bytes.Cut(line, []byte(":")); ok {
			a.fields = append(a.fields, hpack.HeaderField{Name: lowerASCII(name), Value: string(bytes.Trim(value, " \t"))})
		}
	}
	a.trailer = a.trailer[:0]
	if len(a.fields) == 0 {
		ss.WriteData(st, nil, true)
		return
	}
	ss.WriteTrailers(st, a.fields)
}

// lowerASCII is a field name in HTTP/2's lower case.
func lowerASCII(b []byte) string {
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			l := make([]byte, len(b))
			copy(l, b[:i])
			for j := i; j < len(b); j++ {
				c := b[j]
				if 'A' <= c && c <= 'Z' {
					c += 'a' - 'A'
				}
				l[j] = c
			}
			return string(l)
		}
	}
	return string(b)
}
